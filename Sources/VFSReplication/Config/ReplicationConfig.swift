import Foundation

/// Which databases the `replicated` VFS replicates, and where to.
///
/// Read from a YAML file whose keys follow Litestream's (kebab-case):
///
/// ```yaml
/// defaults:                  # optional, merged under every database
///   replica:
///     region: auto
///   max-delay: 1s
/// databases:
///   - path: storage/production.sqlite3          # relative to this file's folder, or absolute
///     replica:
///       url: s3://my-bucket/production          # or file:///var/backups/app/production,
///       endpoint: ${S3_ENDPOINT}                #    or a plain directory path
///       access-key-id: ${AWS_ACCESS_KEY_ID}
///       secret-access-key: ${AWS_SECRET_ACCESS_KEY}
///     max-delay: 500ms
///     spool-max-bytes: 1GiB
///     retention: 168h                           # point-in-time restore reaches a week back
/// ```
///
/// Compaction, snapshots and retention (in `defaults` or per database; Litestream 0.5's
/// `levels:` list and `snapshot.interval` / `snapshot.retention`, flattened):
///
/// ```yaml
/// defaults:
///   retention: 24h              # how far back a restore can go (default 24h)
///   snapshot-interval: 24h      # a new snapshot at most this long after a change (default 24h)
///   levels:                     # compaction levels 1, 2, 3 (level 0 = shipped batches)
///     - interval: 30s           # defaults: 30s, 5m, 1h; 1 to 8 levels, each longer than the last
///     - interval: 5m
///     - interval: 1h
/// ```
///
/// Restore points: every shipped batch for the interval of level 2, every level-1 slot for the
/// interval of level 3, then every slot of the level below the top for the whole retention (see
/// `MaintenancePolicy`).
///
/// ```swift
/// let config = try ReplicationConfig.load(path: "config/replication.yml")
/// if let database = config.database(forPath: "/app/storage/production.sqlite3") { ... }
/// ```
///
/// `${VAR}` and `$VAR` in values come from the environment (`$$` is a literal `$`). Every mistake
/// (unknown key, bad value, missing field, duplicate database) is a
/// `ReplicationError(.invalidConfig, "config.yml:7: ...")` naming the line, key and database;
/// secrets never appear in messages or descriptions.
///
/// See https://litestream.io/reference/config/
public struct ReplicationConfig: Sendable, Equatable {
    /// The configured databases, in file order.
    public var databases: [DatabaseConfig]
    /// The absolute path of the file this was loaded from; nil when parsed from a string.
    public var sourcePath: String?
    /// Threads that ship every database of a `Replicator` (`uploader-threads`; nil: the
    /// default, min(4, cores)). Databases do not get a thread each: see `UploaderPool`.
    public var uploaderThreads: Int?
    /// The price lists replicas may name (`price-list:`): the shipped ones (`ShippedPrices`)
    /// with the config's `prices:` applied.
    public var priceLists: [String: PriceList] = ShippedPrices.all
    /// The most `uploader-threads` accepts.
    public static let maxUploaderThreads = 64

    /// How long a committed transaction may wait before it is shipped, when not configured.
    public static let defaultMaxDelay: Duration = .seconds(1)

    public init(databases: [DatabaseConfig], sourcePath: String? = nil) {
        self.databases = databases
        self.sourcePath = sourcePath
    }

    /// Reads and validates the configuration file at `path`. Relative paths inside it are
    /// resolved against the file's folder; messages name the file as `path` spells it.
    public static func load(
        path: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> ReplicationConfig {
        let (yaml, absolutePath) = try readText(path: path)
        var config = try parse(
            yaml: yaml,
            baseDirectory: (absolutePath as NSString).deletingLastPathComponent,
            environment: environment,
            sourceName: path
        )
        config.sourcePath = absolutePath
        return config
    }

    /// One more database for the configuration file at `path`, as if the file listed it: the
    /// file's `defaults` apply (max-delay, levels, S3 settings, encryption, price list) and every
    /// check a listed database passes. The file is read again, so it must still be valid; a
    /// relative `databasePath` or `url` is taken from the file's folder. For databases added while
    /// running (`vfs_replication_add`), which must not miss what `defaults` says: a database
    /// shipped unencrypted beside encrypted ones would be a silent hole.
    public static func addedDatabase(
        configPath path: String, databasePath: String, replicaURL: String,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> DatabaseConfig {
        let (yaml, absolutePath) = try readText(path: path)
        let parser = ConfigParser(
            sourceName: path, baseDirectory: (absolutePath as NSString).deletingLastPathComponent,
            environment: environment)
        return try parser.addedDatabase(yaml: yaml, path: databasePath, url: replicaURL)
    }

    /// The text of the configuration file at `path` and its absolute path; errors name the file
    /// as `path` spells it (missing, a directory, too large, unreadable, not UTF-8).
    private static func readText(path: String) throws -> (yaml: String, absolutePath: String) {
        let absolutePath = ConfigPaths.absolute(path, relativeTo: FileManager.default.currentDirectoryPath)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: absolutePath, isDirectory: &isDirectory) else {
            throw ReplicationError(.invalidConfig, "\(path): configuration file does not exist")
        }
        guard !isDirectory.boolValue else {
            throw ReplicationError(.invalidConfig, "\(path): is a directory, not a configuration file")
        }
        if let size = (try? FileManager.default.attributesOfItem(atPath: absolutePath))?[.size] as? Int,
            size > ConfigShape.maxBytes
        {
            throw ReplicationError(
                .invalidConfig, "\(path): configuration file is larger than \(ConfigShape.maxBytes >> 20) MiB")
        }
        guard let data = FileManager.default.contents(atPath: absolutePath) else {
            throw ReplicationError(.invalidConfig, "\(path): configuration file cannot be read")
        }
        guard let yaml = String(data: data, encoding: .utf8) else {
            throw ReplicationError(.invalidConfig, "\(path): configuration file is not UTF-8 text")
        }
        return (yaml, absolutePath)
    }

    /// Parses and validates configuration text. `baseDirectory` anchors relative paths (made
    /// absolute against the current directory if it is relative itself); `sourceName` prefixes
    /// error messages (`"config.yml:7: ..."`).
    public static func parse(
        yaml: String,
        baseDirectory: String,
        environment: [String: String],
        sourceName: String
    ) throws -> ReplicationConfig {
        let parser = ConfigParser(
            sourceName: sourceName,
            baseDirectory: ConfigPaths.absolute(baseDirectory, relativeTo: FileManager.default.currentDirectoryPath),
            environment: environment
        )
        return try parser.parse(yaml: yaml)
    }

    /// The entry for the database file at `path` (relative paths are taken from the current
    /// directory), or nil if it is not configured. Paths match by canonical form: standardized,
    /// with symlinks resolved along the way, so the path SQLite opens matches the configured one
    /// even when either goes through a symlinked folder, and even before the file exists.
    public func database(forPath path: String) -> DatabaseConfig? {
        let wanted = ConfigPaths.canonical(
            ConfigPaths.absolute(path, relativeTo: FileManager.default.currentDirectoryPath))
        if let exact = databases.first(where: { $0.path == wanted }) { return exact }
        return databases.first { ConfigPaths.canonical($0.path) == wanted }
    }
}

/// When a commit returns: at once (`local`) or once durable in the replica (`remote`).
public enum Durability: String, Sendable, Equatable {
    case local
    case remote
}

/// One replicated database.
public struct DatabaseConfig: Sendable, Equatable {
    /// The database file: absolute and standardized (no `.`, `..` or `//`); symlinks are kept.
    public var path: String
    /// Where its transactions go: one replica (`replica:`) or several (`replicas:`), the first
    /// listed first. Every replica gets every transaction; see `ReplicaSet`.
    public var replicas: [ReplicaConfig]
    /// The first replica (the only one unless the config lists `replicas:`).
    public var replica: ReplicaConfig {
        get { replicas[0] }
        set { replicas[0] = newValue }
    }
    /// How many replicas must hold a transaction before it counts as shipped (`durable-replicas`,
    /// default 1): what a `durability: remote` commit waits for, and what lets the spool be
    /// trimmed. Replicas beyond it that missed a file are caught up from the others.
    public var durableReplicas: Int = 1
    /// How long a committed transaction may wait before it is shipped (`max-delay`, default 1s).
    public var maxDelay: Duration
    /// How many bytes of not-yet-shipped transactions the local spool may hold
    /// (`spool-max-bytes`); nil leaves the limit to the replicator.
    public var spoolMaxBytes: Int64?
    /// At `spool-max-bytes`: false (`spool-full: block`, the default) holds new write transactions
    /// (SQLITE_BUSY, so the app's busy timeout waits for the uploader); true (`grow`) goes on past
    /// the bound with a warning. Nothing is ever dropped.
    public var spoolGrows: Bool
    /// `durability: local` (commit returns at once; shipped within max-delay) or `remote` (commit
    /// returns once durable in the replica, or after `durabilityTimeout`). See RELIABILITY.md.
    public var durability: Durability
    /// How long a `remote` commit waits for the replica (`durability-timeout`, default 10s).
    public var durabilityTimeout: Duration
    /// How long a `remote` upload waits for more committers to join it (`group-commit-window`, default 2ms).
    public var groupCommitWindow: Duration
    public static let defaultDurabilityTimeout: Duration = .seconds(10)
    public static let defaultGroupCommitWindow: Duration = .milliseconds(2)
    /// How far back a point-in-time restore reaches (`retention`, default 24h).
    public var retention: Duration
    /// The longest a change waits for a snapshot that includes it (`snapshot-interval`, default 24h).
    public var snapshotInterval: Duration
    /// Intervals of compaction levels 1...n (`levels`, default 30s, 5m, 1h).
    public var compactionIntervals: [Duration]
    /// Bytes of local copies the compaction may keep in `<db>-vfsrepl/compaction`
    /// (`compaction-cache-bytes`, default 64 MiB; 0: none).
    public var compactionCacheBytes: Int64

    /// `path` is made absolute against the current directory and standardized.
    public init(
        path: String,
        replica: ReplicaConfig,
        maxDelay: Duration = ReplicationConfig.defaultMaxDelay,
        spoolMaxBytes: Int64? = nil,
        spoolGrows: Bool = false,
        durability: Durability = .local,
        durabilityTimeout: Duration = DatabaseConfig.defaultDurabilityTimeout,
        groupCommitWindow: Duration = DatabaseConfig.defaultGroupCommitWindow,
        retention: Duration = MaintenancePolicy.defaultRetention,
        snapshotInterval: Duration = MaintenancePolicy.defaultSnapshotInterval,
        compactionIntervals: [Duration] = MaintenancePolicy.defaultCompactionIntervals,
        compactionCacheBytes: Int64 = MaintenancePolicy.defaultCacheMaxBytes
    ) {
        self.path = ConfigPaths.absolute(path, relativeTo: FileManager.default.currentDirectoryPath)
        self.replicas = [replica]
        self.maxDelay = maxDelay
        self.spoolMaxBytes = spoolMaxBytes
        self.spoolGrows = spoolGrows
        self.durability = durability
        self.durabilityTimeout = durabilityTimeout
        self.groupCommitWindow = groupCommitWindow
        self.retention = retention
        self.snapshotInterval = snapshotInterval
        self.compactionIntervals = compactionIntervals
        self.compactionCacheBytes = compactionCacheBytes
    }
}

/// Where one database's LTX files go: a local directory or an S3-compatible bucket (AWS S3,
/// Cloudflare R2, SeaweedFS, MinIO).
///
/// ```swift
/// let replica = try ReplicaConfig(url: "s3://my-bucket/app/production")
/// // replica.kind == .s3(bucket: "my-bucket", prefix: "app/production")
/// ```
///
/// For a `.file` replica parsed from a config file the S3 settings are nil (shared S3 settings in
/// `defaults` do not apply to it). Its `description` (and `debugDescription`, `dump`) never shows
/// the credentials.
public struct ReplicaConfig: Sendable, Equatable {
    public enum Kind: Sendable, Equatable, Hashable {
        /// A local directory, absolute and standardized (Litestream's `file` replica layout).
        case file(directory: String)
        /// An S3 bucket and a key prefix without leading or trailing `/` (may be empty).
        case s3(bucket: String, prefix: String)
    }

    /// Normalized location: `file:///abs/path` (percent-encoded) or `s3://bucket/prefix`.
    public var url: String
    /// What status and messages call the replica when a database has several (`name:` in
    /// `replicas:`, else its kind: `s3`, `file`, numbered when taken); nil for a lone `replica:`.
    public var name: String?
    /// `name`, else the location.
    public var label: String { name ?? url }
    public var kind: Kind
    /// S3 endpoint, e.g. `http://127.0.0.1:8333`; nil for AWS (or R2 through `r2AccountID`).
    public var endpoint: String?
    public var region: String?
    public var forcePathStyle: Bool?
    public var accessKeyID: String?
    public var secretAccessKey: String?
    /// Cloudflare account id; R2's endpoint is derived from it (see `resolvedEndpoint`).
    public var r2AccountID: String?
    /// A PEM bundle of CA certificates to trust for the endpoint (absolute path).
    public var caFile: String?
    /// The prices of the replica's provider as the config chose them (`price-list:`); nil when
    /// it names none (`prices` then guesses from the location).
    public var priceList: PriceList?

    /// What cost estimates use: `priceList`, else the shipped list for the kind of location
    /// (`PriceList.defaultName(for:)`: free for a directory, R2, AWS S3 Standard), else nil (an
    /// S3-compatible endpoint of unknown price).
    public var prices: PriceList? {
        priceList ?? PriceList.defaultName(for: self).flatMap { ShippedPrices.all[$0] }
    }

    /// Client-side encryption of every object (`encryption:`; nil: objects are plain LTX, as
    /// Litestream writes them). See `EncryptedReplicaClient`.
    public var encryption: ReplicaEncryption?

    public init(
        kind: Kind,
        endpoint: String? = nil,
        region: String? = nil,
        forcePathStyle: Bool? = nil,
        accessKeyID: String? = nil,
        secretAccessKey: String? = nil,
        r2AccountID: String? = nil,
        caFile: String? = nil
    ) {
        self.url = ReplicaConfig.url(for: kind)
        self.kind = kind
        self.endpoint = endpoint
        self.region = region
        self.forcePathStyle = forcePathStyle
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.r2AccountID = r2AccountID
        self.caFile = caFile
    }

    /// Parses a replica location as the config file accepts it: `s3://bucket/prefix`,
    /// `file:///absolute/dir`, `file:relative/dir`, or a plain directory path, relative paths
    /// taken from `baseDirectory` (default: the current directory). Throws
    /// `ReplicationError(.invalidArgument, ...)` for anything else.
    public init(url: String, relativeTo baseDirectory: String? = nil) throws {
        let base = baseDirectory ?? FileManager.default.currentDirectoryPath
        do {
            self.init(kind: try ReplicaConfig.parseLocation(url, relativeTo: base, home: nil))
        } catch {
            throw ReplicationError(.invalidArgument, "replica url: \(error.reason)")
        }
    }

    /// The endpoint to talk to: `endpoint`, else R2's `https://<account>.r2.cloudflarestorage.com`
    /// when `r2AccountID` is set, else nil (AWS S3 for `region`).
    public var resolvedEndpoint: String? {
        if let endpoint { return endpoint }
        if let r2AccountID { return "https://\(r2AccountID).r2.cloudflarestorage.com" }
        return nil
    }

    static func url(for kind: Kind) -> String {
        switch kind {
        case .file(let directory):
            return "file://" + (directory.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? directory)
        case .s3(let bucket, let prefix):
            return prefix.isEmpty ? "s3://\(bucket)" : "s3://\(bucket)/\(prefix)"
        }
    }

    struct LocationError: Error {
        var reason: String
    }

    /// See `init(url:relativeTo:)`. Reasons never repeat anything that might hold a credential.
    static func parseLocation(_ text: String, relativeTo base: String, home: String?) throws(LocationError) -> Kind {
        guard !text.isEmpty else { throw LocationError(reason: "is empty") }
        let lowered = text.lowercased()
        if lowered.hasPrefix("file:") {
            var rest = Substring(text.dropFirst(5))
            if rest.hasPrefix("//") {
                rest = rest.dropFirst(2)
                let slash = rest.firstIndex(of: "/") ?? rest.endIndex
                let host = rest[..<slash]
                guard host.isEmpty || host.lowercased() == "localhost" else {
                    throw LocationError(
                        reason: "'\(text)' names host '\(host)'; use file:///absolute/path or a plain directory path")
                }
                rest = rest[slash...]
            }
            guard !rest.isEmpty, let decoded = String(rest).removingPercentEncoding else {
                throw LocationError(reason: "'\(text)' has no directory path")
            }
            return .file(directory: ConfigPaths.absolute(decoded, relativeTo: base))
        }
        if let schemeEnd = text.range(of: "://"), isScheme(text[..<schemeEnd.lowerBound]) {
            let scheme = text[..<schemeEnd.lowerBound].lowercased()
            guard scheme == "s3" else {
                throw LocationError(
                    reason: "unsupported scheme '\(scheme)' (use s3://BUCKET/PREFIX or a file:// directory)")
            }
            let rest = text[schemeEnd.upperBound...]
            let slash = rest.firstIndex(of: "/") ?? rest.endIndex
            let bucket = String(rest[..<slash])
            guard !bucket.contains("@") else {
                throw LocationError(
                    reason: "credentials in the url are not supported; use 'access-key-id' and 'secret-access-key'")
            }
            guard !rest.contains("?"), !rest.contains("#") else {
                throw LocationError(
                    reason: "query parameters in the url are not supported; use the 'endpoint', 'region' and "
                        + "'force-path-style' keys")
            }
            guard !bucket.isEmpty else { throw LocationError(reason: "'\(text)' has no bucket (s3://BUCKET/PREFIX)") }
            guard bucket.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-._".contains($0)) }) else {
                throw LocationError(reason: "invalid bucket name '\(bucket)' in '\(text)'")
            }
            let components = rest[slash...].split(separator: "/")
            guard !components.contains(where: { $0 == "." || $0 == ".." }) else {
                throw LocationError(reason: "'\(text)' has a '.' or '..' in its prefix")
            }
            return .s3(bucket: bucket, prefix: components.joined(separator: "/"))
        }
        return .file(directory: ConfigPaths.absolute(text, relativeTo: base, home: home))
    }

    private static func isScheme(_ text: Substring) -> Bool {
        guard let first = text.first, first.isASCII, first.isLetter else { return false }
        return text.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || "+-.".contains($0)) }
    }
}

extension ReplicaConfig: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// Location and settings, with credentials shown only as `<redacted>`.
    public var description: String {
        var parts = ["url: \(url)"]
        if let endpoint { parts.append("endpoint: \(endpoint)") }
        if let region { parts.append("region: \(region)") }
        if let forcePathStyle { parts.append("forcePathStyle: \(forcePathStyle)") }
        if accessKeyID != nil { parts.append("accessKeyID: <redacted>") }
        if secretAccessKey != nil { parts.append("secretAccessKey: <redacted>") }
        if let r2AccountID { parts.append("r2AccountID: \(r2AccountID)") }
        if let caFile { parts.append("caFile: \(caFile)") }
        if let priceList { parts.append("priceList: \(priceList.name)") }
        if let encryption { parts.append("\(encryption)") }
        return "ReplicaConfig(" + parts.joined(separator: ", ") + ")"
    }

    public var debugDescription: String { description }

    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "url": url, "kind": kind, "endpoint": endpoint as Any, "region": region as Any,
                "forcePathStyle": forcePathStyle as Any,
                "accessKeyID": (accessKeyID == nil ? nil : "<redacted>") as Any,
                "secretAccessKey": (secretAccessKey == nil ? nil : "<redacted>") as Any,
                "r2AccountID": r2AccountID as Any, "caFile": caFile as Any,
                "encryption": encryption.map { "\($0)" } as Any,
            ],
            displayStyle: .struct
        )
    }
}
