import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// A replica in an S3-compatible bucket (Cloudflare R2, AWS S3, SeaweedFS, MinIO), laid out as
/// Litestream 0.5's S3 replica: `<prefix>/<level %04x>/<minTXID %016x>-<maxTXID %016x>.ltx`.
///
/// ```swift
/// let config = try ReplicaConfig(url: "s3://backups/app/production")   // + endpoint, keys
/// let replica = try S3ReplicaClient(config: config)
/// try replica.publish(level: 0, minTXID: 5, maxTXID: 5, localPath: ltxPath, timestamp: Date())
/// // -> s3://backups/app/production/0000/0000000000000005-0000000000000005.ltx
/// ```
///
/// Every object is created with `If-None-Match: *` and the `litestream-timestamp` metadata
/// (RFC 3339 with fractional seconds, as Litestream writes it). An existing object means another
/// writer owns the lineage: `ReplicationError(.fenced, ...)`, unless it holds exactly our bytes
/// (a retry of an upload whose answer was lost). Listing uses ListObjectsV2 only: a file's
/// `createdAt` is the object's LastModified (reading each header or metadata would cost a
/// request per file); a restore to a time reads the headers it needs (`RoughlyDatedReplica`). An empty prefix puts levels at the bucket root (`0000/...`; Litestream
/// would write `/0000/...` there).
///
/// https://litestream.io/reference/config/#s3-replica
public final class S3ReplicaClient: RoughlyDatedReplica {
    public let client: S3Client
    /// Key prefix without leading or trailing `/`; may be empty.
    public let prefix: String

    public init(client: S3Client, prefix: String) {
        self.client = client
        var trimmed = Substring(prefix)
        while trimmed.hasPrefix("/") { trimmed = trimmed.dropFirst() }
        while trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        self.prefix = String(trimmed)
    }

    /// A client for an `s3://bucket/prefix` replica of the configuration. Credentials come from
    /// the replica, else AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY; the CA bundle from
    /// `ca-file`, else AWS_CA_BUNDLE / CURL_CA_BUNDLE / SSL_CERT_FILE. `options` overrides the
    /// transport settings (timeouts, retries, multipart) after they are taken from `config`.
    public convenience init(
        config: ReplicaConfig, environment: [String: String] = ProcessInfo.processInfo.environment,
        adjust: (inout S3ClientOptions) -> Void = { _ in }, logger: Logger = Logger(label: "vfsreplication.s3")
    ) throws {
        guard case .s3(let bucket, let prefix) = config.kind else {
            throw ReplicationError(.invalidConfig, "replica \(config.url) is not an s3:// replica")
        }
        var options = S3ClientOptions(config: config, environment: environment)
        adjust(&options)
        let client = try S3Client(
            bucket: bucket, credentials: try S3Credentials(config: config, environment: environment), options: options,
            logger: logger)
        self.init(client: client, prefix: prefix)
    }

    public var location: String {
        prefix.isEmpty ? "s3://\(client.bucket)" : "s3://\(client.bucket)/\(prefix)"
    }

    /// `<prefix>/<level %04x>/`.
    public func levelPrefix(_ level: Int) -> String {
        let hex = String(level, radix: 16)
        let name = String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        return (prefix.isEmpty ? "" : prefix + "/") + name + "/"
    }

    /// The object key of a file.
    public func key(level: Int, minTXID: UInt64, maxTXID: UInt64) -> String {
        levelPrefix(level) + LTXFileInfo.fileName(minTXID: minTXID, maxTXID: maxTXID)
    }

    public func key(of file: LTXFileInfo) -> String {
        key(level: file.level, minTXID: file.minTXID, maxTXID: file.maxTXID)
    }

    /// Levels with at least one object under their prefix: one LIST with a delimiter (a level
    /// holding only foreign objects is listed, and `listFiles` then finds nothing there; so is,
    /// on SeaweedFS, a level whose files were all deleted, as it keeps emptied prefixes).
    public func listLevels() throws -> [Int] {
        let root = prefix.isEmpty ? "" : prefix + "/"
        let listing = try client.listAllObjects(prefix: root, delimiter: "/")
        var levels: [Int] = []
        for common in listing.commonPrefixes {
            guard common.hasPrefix(root), common.hasSuffix("/") else { continue }
            let name = common.dropFirst(root.count).dropLast()
            guard name.count == 4, let level = Int(name, radix: 16) else { continue }
            levels.append(level)
        }
        return Array(Set(levels)).sorted()
    }

    /// Files of one level by (minTXID, maxTXID), from ListObjectsV2 (1,000 per page): size and
    /// LastModified as `createdAt`. Other names are ignored.
    public func listFiles(level: Int) throws -> [LTXFileInfo] {
        let dir = levelPrefix(level)
        let listing = try client.listAllObjects(prefix: dir, delimiter: "/")
        var files: [LTXFileInfo] = []
        for object in listing.objects {
            guard object.key.hasPrefix(dir) else { continue }
            let name = String(object.key.dropFirst(dir.count))
            guard let (minTXID, maxTXID) = LTXFileInfo.parse(fileName: name) else { continue }
            files.append(
                LTXFileInfo(
                    level: level, minTXID: minTXID, maxTXID: maxTXID, size: object.size,
                    createdAt: object.lastModified))
        }
        return files.sorted { ($0.minTXID, $0.maxTXID) < ($1.minTXID, $1.maxTXID) }
    }

    /// Downloads the file into a temporary file (removed by `release()`); messages about the
    /// copy should name `source`, its S3 URL.
    public func fetch(_ file: LTXFileInfo) throws -> LocalLTXFile {
        let url = client.url(key: key(of: file))
        var template = Array((S3ReplicaClient.temporaryDirectory + "/vfsrepl-s3-XXXXXX.ltx").utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemps($0.baseAddress!, 4) }
        guard fd >= 0 else {
            throw ReplicationError(.io, "fetch \(url): create a temporary file: \(String(cString: strerror(errno)))")
        }
        Glibc.close(fd)
        let path = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        do {
            try client.getObject(key: key(of: file), toFile: path)
        } catch let error as ReplicationError where error.code == .missingReplica {
            unlink(path)
            throw ReplicationError(.missingReplica, "replica object \(url) does not exist (\(error.message))")
        } catch {
            unlink(path)
            throw error
        }
        return LocalLTXFile(path: path, isTemporary: true, source: url)
    }

    /// The file's LTX header, from a ranged GET of its first 100 bytes (a restore to a time reads
    /// a few of them: LastModified has whole seconds only).
    public func readHeader(_ file: LTXFileInfo) throws -> LTXHeader {
        let key = key(of: file)
        let bytes = try client.getObjectBytes(key: key, range: 0..<Int64(LTX.headerSize)).bytes
        guard bytes.count == LTX.headerSize else {
            throw ReplicationError(
                .corruptReplicaFile,
                "corrupt LTX file \(client.url(key: key)): truncated: \(bytes.count) bytes, shorter than the LTX header")
        }
        do {
            return try LTXHeader(decoding: bytes)
        } catch {
            throw ReplicationError(
                .corruptReplicaFile, "corrupt LTX file \(client.url(key: key)): bad header: \(error.message)")
        }
    }

    public func publish(level: Int, minTXID: UInt64, maxTXID: UInt64, localPath: String, timestamp: Date) throws {
        let key = key(level: level, minTXID: minTXID, maxTXID: maxTXID)
        let outcome = try client.putObject(
            key: key, body: .file(path: localPath), ifNoneMatch: true,
            metadata: [S3ReplicaClient.timestampMetadataKey: S3ReplicaClient.formatTimestamp(timestamp)])
        switch outcome {
        case .created, .alreadyExists(identical: true):
            return
        case .alreadyExists(identical: false):
            throw ReplicationError(
                .fenced,
                "another writer owns this lineage: \(client.url(key: key)) already exists (with other contents)")
        }
    }

    /// Deletes with DeleteObjects (1,000 keys per request); missing files are not an error.
    public func delete(_ files: [LTXFileInfo]) throws {
        guard !files.isEmpty else { return }
        try client.deleteObjects(keys: files.map { key(of: $0) })
    }

    /// The metadata Litestream 0.5 stores with each LTX object.
    public static let timestampMetadataKey = "litestream-timestamp"

    /// Go's `time.RFC3339Nano` in UTC, at millisecond precision (LTX timestamps are
    /// milliseconds): `2026-11-26T14:03:27.5Z`, `2026-11-26T14:03:27Z` (trailing zeros dropped).
    public static func formatTimestamp(_ date: Date) -> String {
        let millis = Int64((date.timeIntervalSince1970 * 1000).rounded())
        var seconds = time_t(millis >= 0 ? millis / 1000 : (millis - 999) / 1000)
        let fraction = Int(millis - Int64(seconds) * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func pad(_ v: Int32, _ width: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, width - s.count)) + s
        }
        var text = "\(pad(parts.tm_year + 1900, 4))-\(pad(parts.tm_mon + 1, 2))-\(pad(parts.tm_mday, 2))T"
        text += "\(pad(parts.tm_hour, 2)):\(pad(parts.tm_min, 2)):\(pad(parts.tm_sec, 2))"
        if fraction > 0 {
            var digits = pad(Int32(fraction), 3)
            while digits.hasSuffix("0") { digits.removeLast() }
            text += "." + digits
        }
        return text + "Z"
    }

    /// Parses `formatTimestamp`'s output (and any RFC 3339 time with up to nanoseconds).
    public static func parseTimestamp(_ text: String) -> Date? {
        S3XML.parseTimestamp(text)
            ?? {
                // ISO8601DateFormatter takes at most milliseconds: cut longer fractions.
                guard let dot = text.firstIndex(of: "."),
                    let end = text[dot...].firstIndex(where: { !$0.isNumber && $0 != "." })
                else { return nil }
                let digits = text[text.index(after: dot)..<end]
                guard digits.count > 3 else { return nil }
                return S3XML.parseTimestamp(String(text[..<dot]) + "." + digits.prefix(3) + String(text[end...]))
            }()
    }

    static var temporaryDirectory: String {
        var dir = ProcessInfo.processInfo.environment["TMPDIR"] ?? "/tmp"
        if dir.isEmpty { dir = "/tmp" }
        while dir.count > 1 && dir.hasSuffix("/") { dir.removeLast() }
        return dir
    }
}

extension S3ReplicaClient: ReplicaRequestCounting {
    /// Wire requests so far (pages, parts and retries included), in the uploader's billing
    /// kinds: HEAD counts as GET (both R2 Class B); multipart calls and bucket calls as PUT (Class A).
    public func requestCounts() -> [RequestKind: Int] {
        let counts = client.requestCounts
        return [
            .put: counts.put + counts.multipart + counts.other, .get: counts.get + counts.head, .list: counts.list,
            .delete: counts.delete,
        ]
    }
}
