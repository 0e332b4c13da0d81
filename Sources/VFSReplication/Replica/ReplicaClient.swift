import Foundation

/// One LTX file in a replica, identified by level and TXID range.
///
/// Names follow Litestream 0.5: `<minTXID %016x>-<maxTXID %016x>.ltx`.
public struct LTXFileInfo: Sendable, Hashable, CustomStringConvertible {
    public var level: Int
    public var minTXID: UInt64
    public var maxTXID: UInt64
    /// Size in bytes of the object.
    public var size: Int64
    /// When the file was created (mtime for directories, `litestream-timestamp` / LastModified for S3).
    public var createdAt: Date?

    public init(level: Int, minTXID: UInt64, maxTXID: UInt64, size: Int64, createdAt: Date? = nil) {
        self.level = level
        self.minTXID = minTXID
        self.maxTXID = maxTXID
        self.size = size
        self.createdAt = createdAt
    }

    /// The file name, e.g. `0000000000000001-0000000000000007.ltx`.
    public var name: String { LTXFileInfo.fileName(minTXID: minTXID, maxTXID: maxTXID) }

    public static func fileName(minTXID: UInt64, maxTXID: UInt64) -> String {
        hex16(minTXID) + "-" + hex16(maxTXID) + ".ltx"
    }

    /// Parses `<min>-<max>.ltx`; nil for anything else.
    public static func parse(fileName: String) -> (minTXID: UInt64, maxTXID: UInt64)? {
        guard fileName.hasSuffix(".ltx"), fileName.utf8.count == 37 else { return nil }
        let stem = fileName.utf8.prefix(33)
        let parts = stem.split(separator: UInt8(ascii: "-"), omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 16, parts[1].count == 16,
            let lo = UInt64(String(decoding: parts[0], as: UTF8.self), radix: 16),
            let hi = UInt64(String(decoding: parts[1], as: UTF8.self), radix: 16)
        else { return nil }
        return (lo, hi)
    }

    public var description: String { "L\(level)/\(name)" }
}

@inline(__always)
func hex16(_ v: UInt64) -> String {
    let s = String(v, radix: 16)
    return String(repeating: "0", count: max(0, 16 - s.count)) + s
}

/// A local, readable copy of a replica file. For directory replicas this is the file itself;
/// remote replicas download into a temporary file that `release()` removes.
public struct LocalLTXFile: Sendable {
    public var path: String
    public var isTemporary: Bool
    /// What messages call the file when `path` is only a local copy (`s3://bucket/key`).
    public var source: String?
    public init(path: String, isTemporary: Bool, source: String? = nil) {
        self.path = path
        self.isTemporary = isTemporary
        self.source = source
    }
    public func release() {
        if isTemporary { unlink(path) }
    }

    /// `error` with the local copy's path replaced by the file's source, so that a message
    /// names the replica object rather than a temporary file that no longer exists.
    public func naming(_ error: ReplicationError) -> ReplicationError {
        guard let source, error.message.contains(path) else { return error }
        return ReplicationError(error.code, error.message.replacingOccurrences(of: path, with: source))
    }
}

/// Where LTX files live: a local directory (Litestream's `file` layout) or an object store.
///
/// All methods block; call them off the cooperative pool.
public protocol ReplicaClient: Sendable {
    /// A human-readable location, e.g. `file:///var/backups/app/production`.
    var location: String { get }

    /// Files of one level, sorted by minTXID (then maxTXID).
    func listFiles(level: Int) throws -> [LTXFileInfo]

    /// Levels that hold at least one file, ascending.
    func listLevels() throws -> [Int]

    /// A readable local copy of the file.
    func fetch(_ file: LTXFileInfo) throws -> LocalLTXFile

    /// Publishes a finished LTX file (already written and fsynced at `localPath`) as
    /// `level/<min>-<max>.ltx`, durably. Never overwrites: if the target exists, throws
    /// `ReplicationError(.fenced, ...)` naming the object.
    func publish(level: Int, minTXID: UInt64, maxTXID: UInt64, localPath: String, timestamp: Date) throws

    /// Deletes files (used by retention later). Missing files are not an error.
    func delete(_ files: [LTXFileInfo]) throws
}
