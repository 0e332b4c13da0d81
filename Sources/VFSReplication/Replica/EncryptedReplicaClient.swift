import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A replica that can hand out the first bytes of a file without a whole download (a ranged
/// GET on S3, a read of the file in a directory).
public protocol PrefixReadableReplica: ReplicaClient {
    func readPrefix(_ file: LTXFileInfo, length: Int) throws -> [UInt8]
    /// What messages call the file (its URL).
    func objectName(of file: LTXFileInfo) -> String
}

/// Client-side encryption of a replica: every object the inner client (a directory or S3) holds
/// is an LTX file sealed with AES-256-GCM (`SealedObject`), and everything above this wrapper
/// (the uploader, compaction, retention, restore, verification) sees plain LTX files.
///
/// ```swift
/// let encryption = try ReplicaEncryption(currentKeyID: "k2", keys: [k2, k1])
/// let replica = EncryptedReplicaClient(inner: try S3ReplicaClient(config: config), encryption: encryption)
/// ```
///
/// - `publish` seals the local file into a temporary file beside it (the current key), then
///   publishes that; a retry of the same publish produces the same bytes (derived nonces).
/// - `fetch` downloads through the inner client and opens into a temporary file (0600); an
///   object that fails authentication is `.corruptReplicaFile` (so a restore works around it as
///   around any corrupt file), an unknown or different key `.encryptionKey`; nothing of a
///   failed object is handed on.
/// - `listFiles` reports plaintext sizes (exact from the object size, see `SealedObject`), so
///   sizes agree with what the uploader and compaction note for the files they write.
/// - `readHeader` opens only the first chunk (one ranged GET of about 64 KiB on S3).
///
/// Not encrypted: object names (levels, TXID ranges), sizes, timestamps (S3 metadata, mtimes).
public final class EncryptedReplicaClient: RoughlyDatedReplica, ReplicaRequestCounting, @unchecked Sendable {
    public let inner: any ReplicaClient
    public let encryption: ReplicaEncryption
    private let lock = NSLock()
    private var ownCounts: [RequestKind: Int] = [:]

    public init(inner: any ReplicaClient, encryption: ReplicaEncryption) {
        self.inner = inner
        self.encryption = encryption
    }

    public var location: String { inner.location }

    public func listLevels() throws -> [Int] {
        count(.list)
        return try inner.listLevels()
    }

    public func listFiles(level: Int) throws -> [LTXFileInfo] {
        count(.list)
        return try inner.listFiles(level: level).map { file in
            var plain = file
            if let length = SealedObject.plaintextLength(sealedLength: file.size) { plain.size = length }
            return plain
        }
    }

    public func fetch(_ file: LTXFileInfo) throws -> LocalLTXFile {
        count(.get)
        let sealed = try inner.fetch(file)
        defer { sealed.release() }
        let object = sealed.source ?? sealed.path
        let path = try Self.temporaryPath()
        do {
            try SealedObject.openFile(
                sealed.path, to: path, name: SealedObject.name(of: file), encryption: encryption, object: object)
        } catch let error as ReplicationError {
            LTXIO.unlink(path)
            throw error
        }
        return LocalLTXFile(path: path, isTemporary: true, source: object)
    }

    public func publish(level: Int, minTXID: UInt64, maxTXID: UInt64, localPath: String, timestamp: Date) throws {
        count(.put)
        let sealed = localPath + ".sealed-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        defer { LTXIO.unlink(sealed) }
        try SealedObject.sealFile(
            localPath, to: sealed, name: SealedObject.name(level: level, minTXID: minTXID, maxTXID: maxTXID),
            key: encryption.currentKey)
        try inner.publish(level: level, minTXID: minTXID, maxTXID: maxTXID, localPath: sealed, timestamp: timestamp)
    }

    public func delete(_ files: [LTXFileInfo]) throws {
        count(.delete)
        try inner.delete(files)
    }

    public func readHeader(_ file: LTXFileInfo) throws -> LTXHeader {
        let object: String
        let prefix: [UInt8]
        if let readable = inner as? any PrefixReadableReplica {
            count(.get)
            object = readable.objectName(of: file)
            prefix = try readable.readPrefix(file, length: SealedObject.prefixLength)
        } else {
            count(.get)
            let sealed = try inner.fetch(file)
            defer { sealed.release() }
            object = sealed.source ?? sealed.path
            let fd = try LTXIO.open(sealed.path, O_RDONLY)
            defer { LTXIO.close(fd) }
            var bytes = [UInt8](repeating: 0, count: SealedObject.prefixLength)
            let n = try bytes.withUnsafeMutableBytes { try LTXIO.pread(fd, $0, offset: 0, path: sealed.path) }
            prefix = Array(bytes[0..<n])
        }
        let plain = try SealedObject.openFirstChunk(
            prefix, name: SealedObject.name(of: file), encryption: encryption, object: object)
        do {
            return try LTXHeader(decoding: plain)
        } catch {
            throw ReplicationError(.corruptReplicaFile, "corrupt LTX file \(object): bad header: \(error.message)")
        }
    }

    /// The inner client's wire counts when it keeps them (S3), else one per call.
    public func requestCounts() -> [RequestKind: Int] {
        if let counting = inner as? any ReplicaRequestCounting { return counting.requestCounts() }
        lock.lock()
        defer { lock.unlock() }
        return ownCounts
    }

    private func count(_ kind: RequestKind) {
        lock.lock()
        ownCounts[kind, default: 0] += 1
        lock.unlock()
    }

    static func temporaryPath() throws -> String {
        var template = Array((S3ReplicaClient.temporaryDirectory + "/vfsrepl-open-XXXXXX.ltx").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemps($0.baseAddress!, 4) }
        guard fd >= 0 else {
            throw ReplicationError(.io, "create a temporary file in \(S3ReplicaClient.temporaryDirectory): \(String(cString: strerror(errno)))")
        }
        Glibc.close(fd)
        let path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        // openFile creates its output exclusively.
        unlink(path)
        return path
    }
}

extension S3ReplicaClient: PrefixReadableReplica {
    /// A ranged GET of the object's first `length` bytes (fewer for a smaller object).
    public func readPrefix(_ file: LTXFileInfo, length: Int) throws -> [UInt8] {
        try client.getObjectBytes(key: key(of: file), range: 0..<Int64(length)).bytes
    }

    public func objectName(of file: LTXFileInfo) -> String { client.url(key: key(of: file)) }
}
