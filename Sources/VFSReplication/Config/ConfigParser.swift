import Foundation
internal import Yams

/// Turns configuration YAML into a `ReplicationConfig`, walking Yams' `Node` tree so every message
/// can name its line. Reads no files (`ReplicationConfig.load` does that); it only looks at what
/// a database path names, to refuse a folder.
struct ConfigParser {
    let sourceName: String
    /// Absolute; anchors relative database, replica and CA file paths.
    let baseDirectory: String
    let environment: [String: String]

    static let topLevelKeys = ["defaults", "databases", "uploader-threads", "prices"]
    static let policyKeys = [
        "max-delay", "spool-max-bytes", "spool-full", "retention", "snapshot-interval", "levels", "durability",
        "durability-timeout", "group-commit-window", "compaction-cache-bytes", "durable-replicas",
    ]
    static let databaseKeys = ["path", "replica", "replicas"] + policyKeys
    static let defaultsKeys = ["replica"] + policyKeys
    static let levelKeys = ["interval"]
    static let replicaKeys = [
        "url", "endpoint", "region", "force-path-style", "access-key-id", "secret-access-key", "r2-account-id",
        "ca-file", "price-list", "encryption",
    ]
    /// The largest price any key of a price list accepts, in dollars (a typo of magnitude is
    /// caught; no real price per unit comes near).
    static let largestPrice = 1_000_000.0
    static let encryptionKeys = ["key-id", "keys"]
    /// The longest duration each key accepts. Beyond these a value is a mistake (a week of
    /// max-delay ships nothing), and every sum with a clock reading stays far from overflowing.
    static let longestDurations: [String: Duration] = [
        "max-delay": .seconds(24 * 3600),
        "durability-timeout": .seconds(24 * 3600),
        "group-commit-window": .seconds(10),
        "retention": .seconds(10 * 8760 * 3600),
        "snapshot-interval": .seconds(10 * 8760 * 3600),
        "interval": .seconds(10 * 8760 * 3600),
    ]
    /// The largest `spool-max-bytes` (1 PiB): larger is no limit at all, and sums stay in range.
    static let largestSpool: Int64 = 1 << 50

    /// Values never repeated in a message.
    static let secretKeys: Set<String> = ["access-key-id", "secret-access-key"]

    /// Explanations for keys people bring from Litestream or other tools.
    static let hints: [String: String] = [
        "dbs": "did you mean 'databases'?",
        "bucket": "put the bucket in 'url': s3://BUCKET/PREFIX",
        "type": "the replica type comes from the 'url' scheme: s3:// or file://",
        "<<": "YAML merge keys are not supported; put shared settings under 'defaults'",
        "snapshot": "use 'snapshot-interval' for the interval and 'retention' for how long history is kept",
        "l0-retention": "level-0 files are kept for the interval of level 2; see 'levels'",
        "price-list": "put 'price-list' under 'replica'; it names a list of 'prices'",
        "pricing": "did you mean 'prices'? price lists go under a top-level 'prices'",
    ]

    /// Keys that belong in `defaults` (or a database), not at the top level as in Litestream.
    static let topLevelHints: [String: String] = [
        "levels": "put 'levels' under 'defaults' (or a database)",
        "retention": "put 'retention' under 'defaults' (or a database)",
        "snapshot-interval": "put 'snapshot-interval' under 'defaults' (or a database)",
        "snapshot": "put 'snapshot-interval' and 'retention' under 'defaults' (or a database)",
    ]

    /// Where in the document a key lives, for messages.
    enum Scope {
        case root
        case defaults
        case defaultsReplica
        case database(String)
        case replica(String)
        /// One of several replicas (`replicas:`): database name, replica name or number.
        case namedReplica(String, String)
        case priceList(String)
        indirect case level(Int, within: Scope)

        var suffix: String {
            switch self {
            case .level(let level, let within): " in level \(level)\(within.suffix)"
            case .root: ""
            case .defaults: " in defaults"
            case .defaultsReplica: " in the defaults replica"
            case .database(let name): " in database '\(name)'"
            case .replica(let name): " in the replica of database '\(name)'"
            case .namedReplica(let database, let replica): " in replica '\(replica)' of database '\(database)'"
            case .priceList(let name): " in price list '\(name)'"
            }
        }

        /// The replica a scope is, as a message's subject ("the replica of database 'app'").
        var replicaSubject: String {
            switch self {
            case .replica(let name): "the replica of database '\(name)'"
            case .namedReplica(let database, let replica): "replica '\(replica)' of database '\(database)'"
            default: "the replica" + suffix
            }
        }
    }

    struct Entry {
        var key: String
        var keyNode: Node
        var value: Node
        var line: Int { keyNode.mark?.line ?? value.mark?.line ?? 0 }
    }

    /// Settings that `defaults` and a database can both set; the database's win key by key.
    struct Layer {
        var maxDelay: Duration?
        var spoolMaxBytes: Int64?
        var spoolGrows: Bool?
        var durability: Durability?
        var durabilityTimeout: Duration?
        var groupCommitWindow: Duration?
        var retention: Duration?
        var snapshotInterval: Duration?
        var compactionIntervals: [Duration]?
        var compactionCacheBytes: Int64?
        var durableReplicas: (count: Int, node: Node)?
        var replica = ReplicaLayer()
        /// `replicas:` (a database only): each item's settings, its `name` and its node.
        var replicas: [(layer: ReplicaLayer, name: String?, node: Node)]?
    }

    struct ReplicaLayer {
        var url: (text: String, node: Node)?
        var endpoint: String?
        var region: String?
        var forcePathStyle: Bool?
        var accessKeyID: String?
        var secretAccessKey: String?
        var r2AccountID: String?
        var caFile: String?
        var priceList: String?
        /// `encryption`, keys already read (a database's section replaces the defaults' whole).
        var encryption: ReplicaEncryption?
        /// The value node each key came from (for conflicts found after merging).
        var nodes: [String: Node] = [:]

        func merged(over defaults: ReplicaLayer) -> ReplicaLayer {
            var result = self
            result.url = url ?? defaults.url
            result.endpoint = endpoint ?? defaults.endpoint
            result.region = region ?? defaults.region
            result.forcePathStyle = forcePathStyle ?? defaults.forcePathStyle
            result.accessKeyID = accessKeyID ?? defaults.accessKeyID
            result.secretAccessKey = secretAccessKey ?? defaults.secretAccessKey
            result.r2AccountID = r2AccountID ?? defaults.r2AccountID
            result.caFile = caFile ?? defaults.caFile
            result.priceList = priceList ?? defaults.priceList
            result.encryption = encryption ?? defaults.encryption
            result.nodes = defaults.nodes.merging(nodes) { _, mine in mine }
            return result
        }
    }

    // MARK: Document

    func parse(yaml: String) throws -> ReplicationConfig { try parseDocument(yaml: yaml).config }

    /// One more database, as if the config listed `- path: <path>` with `replica: {url: <url>}`:
    /// it gets the config's `defaults` (policy, S3 settings, encryption, price list) exactly as
    /// a listed database does, and the same checks (`$VAR` in them expands as in the file). For
    /// databases added while running (`vfs_replication_add`).
    func addedDatabase(yaml: String, path: String, url: String) throws -> DatabaseConfig {
        let (_, defaults, priceLists) = try parseDocument(yaml: yaml)
        let item = Node.mapping(
            Node.Mapping([
                (Node("path"), Node(path)),
                (Node("replica"), Node.mapping(Node.Mapping([(Node("url"), Node(url))]))),
            ]))
        return try parseDatabase(item, number: 1, defaults: defaults, priceLists: priceLists).0
    }

    private func parseDocument(yaml: String) throws -> (
        config: ReplicationConfig, defaults: Layer, priceLists: [String: PriceList]
    ) {
        guard yaml.utf8.count <= ConfigShape.maxBytes else {
            throw failure(nil, "the configuration is larger than \(ConfigShape.maxBytes >> 20) MiB")
        }
        // Yams recurses once per nesting level: the text is bounded before it gets there.
        if let violation = ConfigShape.scan(yaml) {
            throw ReplicationError(.invalidConfig, "\(sourceName):\(violation.line): \(violation.message)")
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let error as YamlError {
            throw syntaxError(error)
        }
        if let root, let violation = ConfigShape.measure(root) {
            throw ReplicationError(.invalidConfig, "\(sourceName):\(violation.line): \(violation.message)")
        }
        guard let root, !isNull(root) else {
            throw failure(nil, "the configuration is empty; expected a 'databases' list")
        }
        guard case .mapping = root else {
            throw failure(root, "expected a mapping with a 'databases' list at the top level")
        }
        let top = try entries(of: root, scope: .root, known: Self.topLevelKeys, hints: Self.topLevelHints)

        var priceLists = ShippedPrices.all
        if let entry = top["prices"], !isNull(entry.value) {
            priceLists = try prices(entry)
        }

        var defaults = Layer()
        if let entry = top["defaults"], !isNull(entry.value) {
            guard case .mapping = entry.value else {
                throw failure(entry.value, "'defaults' must be a mapping of settings")
            }
            let fields = try entries(
                of: entry.value, scope: .defaults, known: Self.defaultsKeys,
                refusals: ["path": "'path' cannot be set in defaults: each database names its own file"])
            defaults = try layer(fields, scope: .defaults)
        }

        guard let databasesEntry = top["databases"] else {
            throw failure(root, "missing 'databases': list the databases to replicate")
        }
        guard case .sequence(let items) = databasesEntry.value, !items.isEmpty else {
            if isNull(databasesEntry.value) || databasesEntry.value.sequence != nil {
                throw failure(databasesEntry.keyNode, "'databases' is empty: list the databases to replicate")
            }
            throw failure(databasesEntry.value, "'databases' must be a list, each item starting with '- path:'")
        }

        var databases: [DatabaseConfig] = []
        var seenPaths: [String: (name: String, line: Int)] = [:]
        var seenURLs: [String: (name: String, line: Int)] = [:]
        for (index, item) in items.enumerated() {
            let (database, name) = try parseDatabase(
                item, number: index + 1, defaults: defaults, priceLists: priceLists)
            let line = item.mark?.line ?? 0
            let canonical = ConfigPaths.canonical(database.path)
            if let first = seenPaths[canonical] {
                throw failure(
                    item, "database '\(name)' is the same file as database '\(first.name)' (line \(first.line))")
            }
            seenPaths[canonical] = (name, line)
            for replica in database.replicas {
                if let first = seenURLs[replica.url] {
                    throw failure(
                        item,
                        "database '\(name)' replicates to \(replica.url), as database '\(first.name)' "
                            + "(line \(first.line)) does; each database needs its own replica location")
                }
                seenURLs[replica.url] = (name, line)
            }
            databases.append(database)
        }
        var config = ReplicationConfig(databases: databases)
        config.priceLists = priceLists
        if let entry = top["uploader-threads"], let text = try string(entry, scope: .root) {
            guard let n = Int(text), (1...ReplicationConfig.maxUploaderThreads).contains(n) else {
                throw failure(
                    entry.value,
                    "invalid 'uploader-threads' '\(text)': a whole number from 1 to \(ReplicationConfig.maxUploaderThreads) (threads shipping all databases; default min(4, cores))"
                )
            }
            config.uploaderThreads = n
        }
        return (config, defaults, priceLists)
    }

    private func parseDatabase(_ item: Node, number: Int, defaults: Layer, priceLists: [String: PriceList]) throws
        -> (DatabaseConfig, String)
    {
        guard case .mapping(let mapping) = item else {
            if case .scalar(let scalar) = item {
                throw failure(item, "database #\(number) must be a mapping; write '- path: \(scalar.string)'")
            }
            throw failure(item, "database #\(number) must be a mapping with 'path' and 'replica'")
        }
        // Name the database by its path as written (expanded when possible), before other checks.
        var name = "#\(number)"
        if case .scalar(let scalar)? = mapping["path"], !scalar.string.isEmpty {
            name = (try? ConfigValues.expandEnvironment(scalar.string, environment)) ?? scalar.string
        }
        let scope = Scope.database(name)
        let fields = try entries(of: item, scope: scope, known: Self.databaseKeys)

        guard let pathEntry = fields["path"] else {
            throw failure(item, "database #\(number) has no 'path'")
        }
        guard let pathText = try string(pathEntry, scope: scope) else {
            throw failure(pathEntry.keyNode, "'path' of database #\(number) is empty")
        }
        if pathText.lowercased().hasPrefix("file:") {
            throw failure(
                pathEntry.value,
                "'path'\(scope.suffix) must be a file path, not a URI (drop 'file:' and any '?vfs=...')")
        }
        if pathText == ":memory:" {
            throw failure(pathEntry.value, "database '\(name)': an in-memory database cannot be replicated")
        }
        if pathText.hasSuffix("/") || pathText.hasSuffix("/.") || pathText.hasSuffix("/..") || pathText == "."
            || pathText == ".."
        {
            throw failure(pathEntry.value, "'path'\(scope.suffix) names a folder; it must name the database file")
        }
        let path = ConfigPaths.absolute(pathText, relativeTo: baseDirectory, home: environment["HOME"])
        if let problem = ConfigPaths.problem(withDatabasePath: path) {
            throw failure(pathEntry.value, "'path'\(scope.suffix) \(problem)")
        }

        let own = try layer(fields, scope: scope)
        var replicas: [ReplicaConfig] = []
        if let list = own.replicas {
            if let single = fields["replica"], !isNull(single.value) {
                throw failure(
                    single.keyNode,
                    "database '\(name)' sets both 'replica' and 'replicas'; list every replica under 'replicas'")
            }
            var names: [String: Int] = [:]
            for (index, item) in list.enumerated() {
                let label = item.name ?? "#\(index + 1)"
                var replica = try replicaConfig(
                    own: item.layer, defaults: defaults.replica, keyNode: item.node, scope: .namedReplica(name, label),
                    priceLists: priceLists)
                replica.name = item.name ?? Self.defaultReplicaName(replica.kind, taken: Set(names.keys))
                if let first = names[replica.name!] {
                    throw failure(
                        item.node,
                        "database '\(name)' has two replicas named '\(replica.name!)' (#\(first) and #\(index + 1)); give each its own 'name'")
                }
                names[replica.name!] = index + 1
                if let same = replicas.first(where: { $0.url == replica.url }) {
                    throw failure(
                        item.node,
                        "replicas '\(same.name ?? "")' and '\(replica.name!)' of database '\(name)' are both \(replica.url); each replica needs its own location")
                }
                replicas.append(replica)
            }
        } else {
            guard let replicaEntry = fields["replica"], !isNull(replicaEntry.value) else {
                throw failure(
                    fields["replica"]?.keyNode ?? item,
                    "database '\(name)' has no 'replica' (add 'replica:' with a 'url', or 'replicas:' with a list)")
            }
            replicas.append(
                try replicaConfig(
                    own: own.replica, defaults: defaults.replica, keyNode: replicaEntry.keyNode, scope: .replica(name),
                    priceLists: priceLists))
        }
        let durable = own.durableReplicas ?? defaults.durableReplicas
        if let durable, durable.count > replicas.count {
            throw failure(
                durable.node,
                "'durable-replicas' is \(durable.count) but database '\(name)' has \(replicas.count) replica\(replicas.count == 1 ? "" : "s"); it can be at most that"
            )
        }
        // A file replica ignores S3 settings (they usually come from `defaults`).
        var database = DatabaseConfig(
            path: path,
            replica: replicas[0],
            maxDelay: own.maxDelay ?? defaults.maxDelay ?? ReplicationConfig.defaultMaxDelay,
            spoolMaxBytes: own.spoolMaxBytes ?? defaults.spoolMaxBytes,
            spoolGrows: own.spoolGrows ?? defaults.spoolGrows ?? false,
            durability: own.durability ?? defaults.durability ?? .local,
            durabilityTimeout: own.durabilityTimeout ?? defaults.durabilityTimeout
                ?? DatabaseConfig.defaultDurabilityTimeout,
            groupCommitWindow: own.groupCommitWindow ?? defaults.groupCommitWindow
                ?? DatabaseConfig.defaultGroupCommitWindow,
            retention: own.retention ?? defaults.retention ?? MaintenancePolicy.defaultRetention,
            snapshotInterval: own.snapshotInterval ?? defaults.snapshotInterval
                ?? MaintenancePolicy.defaultSnapshotInterval,
            compactionIntervals: own.compactionIntervals ?? defaults.compactionIntervals
                ?? MaintenancePolicy.defaultCompactionIntervals,
            compactionCacheBytes: own.compactionCacheBytes ?? defaults.compactionCacheBytes
                ?? MaintenancePolicy.defaultCacheMaxBytes
        )
        database.replicas = replicas
        database.durableReplicas = durable?.count ?? 1
        return (database, name)
    }

    /// A replica's settings merged over the defaults' replica, checked and made a `ReplicaConfig`.
    private func replicaConfig(
        own: ReplicaLayer, defaults: ReplicaLayer, keyNode: Node, scope: Scope, priceLists: [String: PriceList]
    ) throws -> ReplicaConfig {
        let replicaLayer = own.merged(over: defaults)
        guard let url = replicaLayer.url else {
            throw failure(keyNode, "\(scope.replicaSubject) has no 'url'")
        }
        let kind: ReplicaConfig.Kind
        do {
            kind = try ReplicaConfig.parseLocation(url.text, relativeTo: baseDirectory, home: environment["HOME"])
        } catch {
            throw failure(url.node, "invalid 'url'\(scope.suffix): \(error.reason)")
        }
        var replica = ReplicaConfig(kind: kind)
        // Both kinds of replica can be encrypted.
        replica.encryption = replicaLayer.encryption
        if case .s3 = kind {
            if replicaLayer.endpoint != nil, replicaLayer.r2AccountID != nil {
                throw failure(
                    own.nodes["r2-account-id"] ?? own.nodes["endpoint"] ?? keyNode,
                    "\(scope.replicaSubject) sets both 'endpoint' and 'r2-account-id'; "
                        + "set one (R2's endpoint is derived from the account id)")
            }
            replica.endpoint = replicaLayer.endpoint
            replica.region = replicaLayer.region
            replica.forcePathStyle = replicaLayer.forcePathStyle
            replica.accessKeyID = replicaLayer.accessKeyID
            replica.secretAccessKey = replicaLayer.secretAccessKey
            replica.r2AccountID = replicaLayer.r2AccountID
            replica.caFile = replicaLayer.caFile
        }
        // A directory costs nothing unless its own replica names prices (a `price-list` in
        // `defaults` is meant for the S3 replicas).
        var chosenList = replicaLayer.priceList
        if case .file = kind { chosenList = own.priceList }
        if let listName = chosenList {
            guard let list = priceLists[listName] else {
                let node = own.nodes["price-list"] ?? defaults.nodes["price-list"] ?? keyNode
                let known = priceLists.keys.sorted()
                var hint = "price lists: \(known.joined(separator: ", ")); add your own under 'prices:'"
                if let suggestion = ConfigValues.suggestion(for: listName, among: known) {
                    hint = "did you mean '\(suggestion)'? " + hint
                }
                throw failure(node, "unknown 'price-list' '\(listName)'\(scope.suffix) (\(hint))")
            }
            replica.priceList = list
        }
        return replica
    }

    /// A replica without a `name`: its kind (`s3`, `file`), numbered when taken.
    static func defaultReplicaName(_ kind: ReplicaConfig.Kind, taken: Set<String>) -> String {
        let base: String
        switch kind {
        case .s3: base = "s3"
        case .file: base = "file"
        }
        if !taken.contains(base) { return base }
        var n = 2
        while taken.contains("\(base)-\(n)") { n += 1 }
        return "\(base)-\(n)"
    }

    // MARK: Layers

    /// Reads the policy keys and the `replica` mapping of a database or of `defaults`.
    private func layer(_ fields: [String: Entry], scope: Scope) throws -> Layer {
        var layer = Layer()
        if let entry = fields["max-delay"] { layer.maxDelay = try duration(entry, scope: scope) }
        if let entry = fields["spool-max-bytes"] {
            if let size = try byteSize(entry, scope: scope) {
                guard size > 0 else {
                    throw failure(entry.value, "'spool-max-bytes'\(scope.suffix) must be greater than zero")
                }
                guard size <= Self.largestSpool else {
                    throw failure(entry.value, "'spool-max-bytes'\(scope.suffix) must be at most 1PiB")
                }
                layer.spoolMaxBytes = size
            }
        }
        if let entry = fields["spool-full"], let text = try string(entry, scope: scope) {
            switch text {
            case "block": layer.spoolGrows = false
            case "grow": layer.spoolGrows = true
            default:
                throw failure(entry.value, "'spool-full'\(scope.suffix) must be 'block' or 'grow', not '\(text)'")
            }
        }
        if let entry = fields["compaction-cache-bytes"], let size = try byteSize(entry, scope: scope) {
            // 0 disables the cache (every compaction input is fetched from the replica).
            guard size <= 1 << 40 else {
                throw failure(entry.value, "'compaction-cache-bytes'\(scope.suffix) must be at most 1TiB")
            }
            layer.compactionCacheBytes = size
        }
        if let entry = fields["durability"], let text = try string(entry, scope: scope) {
            guard let value = Durability(rawValue: text) else {
                throw failure(entry.value, "'durability'\(scope.suffix) must be 'local' or 'remote', not '\(text)'")
            }
            layer.durability = value
        }
        if let entry = fields["durability-timeout"], let value = try duration(entry, scope: scope) {
            guard value > .zero else {
                throw failure(entry.value, "'durability-timeout'\(scope.suffix) must be greater than zero")
            }
            layer.durabilityTimeout = value
        }
        if let entry = fields["group-commit-window"], let value = try duration(entry, scope: scope) {
            layer.groupCommitWindow = value
        }
        for key in ["retention", "snapshot-interval"] {
            guard let entry = fields[key], let value = try duration(entry, scope: scope) else { continue }
            guard value > .zero else { throw failure(entry.value, "'\(key)'\(scope.suffix) must be greater than zero") }
            if key == "retention" { layer.retention = value } else { layer.snapshotInterval = value }
        }
        if let entry = fields["levels"], !isNull(entry.value) {
            layer.compactionIntervals = try levels(entry, scope: scope)
        }
        if let entry = fields["replica"], !isNull(entry.value) {
            let replicaScope: Scope
            var refusals: [String: String] = [:]
            switch scope {
            case .database(let name):
                replicaScope = .replica(name)
            default:
                replicaScope = .defaultsReplica
                refusals["url"] = "'url' cannot be set in defaults: each database needs its own replica location"
            }
            guard case .mapping = entry.value else {
                throw failure(entry.value, "'replica'\(scope.suffix) must be a mapping with a 'url'")
            }
            let replicaFields = try entries(
                of: entry.value, scope: replicaScope, known: Self.replicaKeys, refusals: refusals)
            layer.replica = try replicaLayer(replicaFields, scope: replicaScope)
        }
        if let entry = fields["durable-replicas"], let text = try string(entry, scope: scope) {
            guard let n = Int(text), (1...Self.maxReplicas).contains(n) else {
                throw failure(
                    entry.value,
                    "invalid 'durable-replicas' '\(text)'\(scope.suffix): a whole number from 1 to \(Self.maxReplicas) (how many replicas must hold a transaction before it counts as shipped)"
                )
            }
            layer.durableReplicas = (n, entry.value)
        }
        if let entry = fields["replicas"], !isNull(entry.value), case .database(let name) = scope {
            guard case .sequence(let items) = entry.value, !items.isEmpty else {
                throw failure(
                    entry.value, "'replicas'\(scope.suffix) must be a list of replicas, each starting with '- url:'")
            }
            guard items.count <= Self.maxReplicas else {
                throw failure(entry.value, "'replicas'\(scope.suffix) lists \(items.count) replicas; at most \(Self.maxReplicas)")
            }
            var list: [(layer: ReplicaLayer, name: String?, node: Node)] = []
            for (index, item) in items.enumerated() {
                var label = "#\(index + 1)"
                if case .mapping(let m) = item, case .scalar(let n)? = m["name"], !n.string.isEmpty { label = n.string }
                let itemScope = Scope.namedReplica(name, label)
                guard case .mapping = item else {
                    throw failure(item, "replica #\(index + 1)\(scope.suffix) must be a mapping with a 'url'")
                }
                let itemFields = try entries(of: item, scope: itemScope, known: ["name"] + Self.replicaKeys)
                var replicaName: String?
                if let e = itemFields["name"], let text = try string(e, scope: itemScope) {
                    guard Self.isValidReplicaName(text) else {
                        throw failure(
                            e.value,
                            "invalid replica name '\(text)'\(scope.suffix): 1 to 32 letters, digits, '.', '_' or '-'")
                    }
                    replicaName = text
                }
                list.append((try replicaLayer(itemFields, scope: itemScope), replicaName, item))
            }
            layer.replicas = list
        }
        return layer
    }

    /// The most replicas one database may list (`replicas:`).
    static let maxReplicas = 8

    static func isValidReplicaName(_ name: String) -> Bool {
        (1...32).contains(name.utf8.count)
            && name.utf8.allSatisfy { c in
                (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || c == 0x2E || c == 0x5F
                    || c == 0x2D
            }
    }

    private func replicaLayer(_ fields: [String: Entry], scope: Scope) throws -> ReplicaLayer {
        var replica = ReplicaLayer()
        for (key, entry) in fields {
            replica.nodes[key] = entry.value
        }
        if let entry = fields["url"], let text = try string(entry, scope: scope) {
            replica.url = (text, entry.value)
        }
        if let entry = fields["endpoint"], let text = try string(entry, scope: scope) {
            replica.endpoint = try endpoint(text, entry, scope: scope)
        }
        if let entry = fields["region"], let text = try string(entry, scope: scope) {
            guard !text.contains(where: \.isWhitespace) else {
                throw failure(entry.value, "invalid region '\(text)'\(scope.suffix)")
            }
            replica.region = text
        }
        if let entry = fields["force-path-style"], let text = try string(entry, scope: scope) {
            guard let value = ConfigValues.parseBool(text) else {
                throw failure(entry.value, "'force-path-style'\(scope.suffix) must be true or false, not '\(text)'")
            }
            replica.forcePathStyle = value
        }
        if let entry = fields["access-key-id"] { replica.accessKeyID = try string(entry, scope: scope) }
        if let entry = fields["secret-access-key"] { replica.secretAccessKey = try string(entry, scope: scope) }
        if let entry = fields["r2-account-id"], let text = try string(entry, scope: scope) {
            guard text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) else {
                throw failure(entry.value, "invalid 'r2-account-id' '\(text)'\(scope.suffix) (letters and digits only)")
            }
            replica.r2AccountID = text
        }
        if let entry = fields["ca-file"], let text = try string(entry, scope: scope) {
            replica.caFile = ConfigPaths.absolute(text, relativeTo: baseDirectory, home: environment["HOME"])
        }
        if let entry = fields["price-list"] { replica.priceList = try string(entry, scope: scope) }
        if let entry = fields["encryption"], !isNull(entry.value) {
            replica.encryption = try encryption(entry, scope: scope)
        }
        return replica
    }

    // MARK: Prices

    /// `prices:`: a mapping of price-list names to prices. A shipped list's name changes only
    /// the keys given; a new name starts from zero, or from the shipped list it is `based-on`.
    private func prices(_ entry: Entry) throws -> [String: PriceList] {
        guard case .mapping(let mapping) = entry.value else {
            throw failure(
                entry.value, "'prices' must be a mapping of price-list names (e.g. 'r2:') to their prices")
        }
        var lists = ShippedPrices.all
        for (keyNode, value) in mapping {
            guard case .scalar(let keyScalar) = keyNode, !keyScalar.string.isEmpty else {
                throw failure(keyNode, "price-list names in 'prices' must be plain names")
            }
            let name = keyScalar.string
            let scope = Scope.priceList(name)
            guard case .mapping = value else {
                throw failure(
                    value,
                    "price list '\(name)' in 'prices' must be a mapping of prices (e.g. 'storage-per-gb-month: 0.015')")
            }
            let fields = try entries(of: value, scope: scope, known: PriceList.configKeys)
            var list: PriceList
            if let base = fields["based-on"], let baseName = try string(base, scope: scope) {
                guard let shipped = ShippedPrices.all[baseName] else {
                    throw failure(
                        base.value,
                        "'based-on'\(scope.suffix) names '\(baseName)'; it must be a shipped price list: "
                            + ShippedPrices.all.keys.sorted().joined(separator: ", "))
                }
                list = shipped
                list.source = "\(shipped.source ?? shipped.name), changed in \(sourceName)"
            } else if let shipped = ShippedPrices.all[name] {
                list = shipped
                if !fields.isEmpty { list.source = "\(shipped.source ?? shipped.name), changed in \(sourceName)" }
            } else {
                list = PriceList(name: name, asOf: "unknown", source: sourceName)
            }
            list.name = name
            if let e = fields["as-of"], let text = try string(e, scope: scope) { list.asOf = text }
            if let e = fields["source"], let text = try string(e, scope: scope) { list.source = text }
            for (key, path) in PriceList.numericKeys {
                guard let e = fields[key], let text = try string(e, scope: scope) else { continue }
                let cleaned = text.hasPrefix("$") ? String(text.dropFirst()) : text
                guard let number = Double(cleaned), number.isFinite, number >= 0, number <= Self.largestPrice else {
                    throw failure(
                        e.value,
                        "invalid price '\(text)' for '\(key)'\(scope.suffix) (a number of dollars from 0 to \(Int(Self.largestPrice)), e.g. 0.015)"
                    )
                }
                list[keyPath: path] = number
            }
            lists[name] = list
        }
        return lists
    }

    /// `encryption:` with `key-id` and `keys` (id: env:VAR or file:PATH). The keys are read here,
    /// so a missing variable or file stops the configuration from loading; messages name the key
    /// id and the variable or file, never a value.
    private func encryption(_ entry: Entry, scope: Scope) throws -> ReplicaEncryption {
        guard case .mapping = entry.value else {
            throw failure(entry.value, "'encryption'\(scope.suffix) must be a mapping with 'key-id' and 'keys'")
        }
        let fields = try entries(of: entry.value, scope: scope, known: Self.encryptionKeys)
        guard let keysEntry = fields["keys"], case .mapping(let mapping) = keysEntry.value, !mapping.isEmpty else {
            throw failure(
                fields["keys"]?.value ?? entry.keyNode,
                "'encryption'\(scope.suffix) needs 'keys': a mapping of key ids to env:VARIABLE or file:PATH")
        }
        var keys: [EncryptionKey] = []
        for (keyNode, valueNode) in mapping {
            guard case .scalar(let idScalar) = keyNode, EncryptionKey.isValidID(idScalar.string) else {
                throw failure(
                    keyNode,
                    "encryption key ids\(scope.suffix) are 1 to \(EncryptionKey.maxIDLength) letters, digits, '.', '_' or '-'"
                )
            }
            let id = idScalar.string
            guard case .scalar(let reference) = valueNode, !isNull(valueNode) else {
                throw failure(
                    valueNode, "encryption key '\(id)'\(scope.suffix) must be env:VARIABLE or file:PATH")
            }
            if keys.contains(where: { $0.id == id }) {
                throw failure(keyNode, "encryption key '\(id)'\(scope.suffix) is given twice")
            }
            // `$VAR` may build a file path; what it expands to is never shown (it might be a key).
            let expanded: String
            do {
                expanded = try ConfigValues.expandEnvironment(reference.string, environment)
            } catch .undefined(let name) {
                throw failure(
                    valueNode,
                    "environment variable '\(name)' is not set (used by encryption key '\(id)'\(scope.suffix))")
            } catch {
                throw failure(valueNode, "malformed variable reference in encryption key '\(id)'\(scope.suffix)")
            }
            do {
                keys.append(
                    try EncryptionKey.load(
                        id: id, reference: expanded, environment: environment, baseDirectory: baseDirectory))
            } catch let error as ReplicationError {
                throw failure(valueNode, error.message + scope.suffix)
            }
        }
        guard let currentEntry = fields["key-id"], case .scalar(let current) = currentEntry.value,
            !isNull(currentEntry.value)
        else {
            throw failure(
                entry.keyNode, "'encryption'\(scope.suffix) needs 'key-id': the key new objects are sealed with")
        }
        do {
            return try ReplicaEncryption(currentKeyID: current.string, keys: keys)
        } catch let error as ReplicationError {
            throw failure(currentEntry.value, error.message + scope.suffix)
        }
    }

    // MARK: Values

    /// The value as a string with `$VAR`s expanded; nil when null or empty (the key is then unset).
    private func string(_ entry: Entry, scope: Scope) throws -> String? {
        let secret = Self.secretKeys.contains(entry.key)
        let scalar: Node.Scalar
        switch entry.value {
        case .scalar(let value): scalar = value
        case .mapping: throw failure(entry.value, "'\(entry.key)'\(scope.suffix) must be a single value, not a mapping")
        case .sequence: throw failure(entry.value, "'\(entry.key)'\(scope.suffix) must be a single value, not a list")
        }
        if isNull(entry.value) { return nil }
        do {
            let expanded = try ConfigValues.expandEnvironment(scalar.string, environment)
            return expanded.isEmpty ? nil : expanded
        } catch .undefined(let name) {
            throw failure(
                entry.value, "environment variable '\(name)' is not set (used by '\(entry.key)'\(scope.suffix))")
        } catch .malformed(let reference) {
            let shown = secret ? "" : " '\(reference)'"
            throw failure(
                entry.value,
                "malformed variable reference\(shown) in '\(entry.key)'\(scope.suffix) (write $$ for a literal $)")
        }
    }

    private func duration(_ entry: Entry, scope: Scope) throws -> Duration? {
        guard let text = try string(entry, scope: scope) else { return nil }
        if let value = ConfigValues.parseDuration(text) {
            if let longest = Self.longestDurations[entry.key], value > longest {
                throw failure(
                    entry.value,
                    "'\(entry.key)'\(scope.suffix) is \(text); it must be at most "
                        + ConfigValues.formatDuration(longest))
            }
            return value
        }
        var hint = "use a number and a unit: 50ms, 1s, 1.5s, 2m, 1h"
        if !text.isEmpty, text.allSatisfy({ $0.isASCII && $0.isNumber }) {
            hint = "missing unit: did you mean '\(text)s' or '\(text)ms'?"
        } else if text.hasPrefix("-") {
            hint = "must not be negative"
        }
        throw failure(entry.value, "invalid duration '\(text)' for '\(entry.key)'\(scope.suffix) (\(hint))")
    }

    private func byteSize(_ entry: Entry, scope: Scope) throws -> Int64? {
        guard let text = try string(entry, scope: scope) else { return nil }
        if let value = ConfigValues.parseByteSize(text) { return value }
        throw failure(
            entry.value,
            "invalid size '\(text)' for '\(entry.key)'\(scope.suffix) (use bytes or a unit: 64MiB, 1GiB, 500MB)")
    }

    /// `levels:` as Litestream spells it: a list of `- interval: <duration>`, level 1 first.
    private func levels(_ entry: Entry, scope: Scope) throws -> [Duration] {
        guard case .sequence(let items) = entry.value else {
            throw failure(
                entry.value, "'levels'\(scope.suffix) must be a list of '- interval: <duration>' (level 1 first)")
        }
        guard !items.isEmpty else {
            throw failure(entry.keyNode, "'levels'\(scope.suffix) is empty: give 1 to 8 levels, e.g. '- interval: 30s'")
        }
        guard items.count <= MaintenancePolicy.snapshotLevel - 1 else {
            throw failure(
                items[MaintenancePolicy.snapshotLevel - 1],
                "'levels'\(scope.suffix) has \(items.count) levels; at most 8 (level 9 holds snapshots)")
        }
        var intervals: [Duration] = []
        for (offset, item) in items.enumerated() {
            let level = offset + 1
            let levelScope = Scope.level(level, within: scope)
            guard case .mapping = item else {
                var hint = ""
                if case .scalar(let scalar) = item, !isNull(item) { hint = "; write '- interval: \(scalar.string)'" }
                throw failure(item, "level \(level)\(scope.suffix) must be a mapping with an 'interval'\(hint)")
            }
            let fields = try entries(of: item, scope: levelScope, known: Self.levelKeys)
            guard let intervalEntry = fields["interval"], let interval = try duration(intervalEntry, scope: levelScope)
            else {
                throw failure(item, "level \(level)\(scope.suffix) has no 'interval'")
            }
            guard interval > .zero else {
                throw failure(
                    intervalEntry.value, "'interval' of level \(level)\(scope.suffix) must be greater than zero")
            }
            if let previous = intervals.last, interval <= previous {
                throw failure(
                    intervalEntry.value,
                    "'interval' of level \(level)\(scope.suffix) (\(ConfigValues.formatDuration(interval))) must be "
                        + "longer than level \(level - 1)'s (\(ConfigValues.formatDuration(previous)))")
            }
            intervals.append(interval)
        }
        return intervals
    }

    private func endpoint(_ text: String, _ entry: Entry, scope: Scope) throws -> String {
        let lowered = text.lowercased()
        let schemeLength = lowered.hasPrefix("https://") ? 8 : lowered.hasPrefix("http://") ? 7 : 0
        guard schemeLength > 0 else {
            var hint = "expected http://HOST[:PORT] or https://HOST[:PORT]"
            if !text.contains("://") { hint = "did you mean 'https://\(text)'?" }
            throw failure(entry.value, "invalid endpoint '\(text)'\(scope.suffix) (\(hint))")
        }
        let rest = text.dropFirst(schemeLength)
        guard !rest.contains("@") else {
            throw failure(
                entry.value,
                "credentials in 'endpoint'\(scope.suffix) are not supported; "
                    + "use 'access-key-id' and 'secret-access-key'")
        }
        guard let first = rest.first, first != "/", !rest.contains(where: \.isWhitespace) else {
            throw failure(entry.value, "invalid endpoint '\(text)'\(scope.suffix) (no host)")
        }
        var normalized = text
        while normalized.hasSuffix("/") { normalized.removeLast() }
        return normalized
    }

    // MARK: Mappings

    /// The keys of a mapping, checked: plain scalars, known (else a "did you mean"), not repeated.
    /// `refusals` turns a key that is known elsewhere but not allowed here into its own message.
    private func entries(
        of node: Node, scope: Scope, known: [String], refusals: [String: String] = [:],
        hints: [String: String] = ConfigParser.hints
    ) throws -> [String: Entry] {
        guard case .mapping(let mapping) = node else {
            throw failure(node, "expected a mapping\(scope.suffix)")
        }
        var result: [String: Entry] = [:]
        for (keyNode, value) in mapping {
            guard case .scalar(let keyScalar) = keyNode else {
                throw failure(keyNode, "keys must be plain names\(scope.suffix)")
            }
            let key = keyScalar.string
            if let refusal = refusals[key] { throw failure(keyNode, refusal) }
            guard known.contains(key) else {
                var message = "unknown key '\(key)'\(scope.suffix)"
                if let hint = hints[key] ?? Self.hints[key] {
                    message += " (\(hint))"
                } else if let suggestion = ConfigValues.suggestion(for: key, among: known) {
                    message += " (did you mean '\(suggestion)'?)"
                } else {
                    message += " (known keys: \(known.joined(separator: ", ")))"
                }
                throw failure(keyNode, message)
            }
            let entry = Entry(key: key, keyNode: keyNode, value: value)
            if let first = result[key] {
                throw failure(keyNode, "duplicate key '\(key)'\(scope.suffix) (first set at line \(first.line))")
            }
            result[key] = entry
        }
        return result
    }

    private func isNull(_ node: Node) -> Bool {
        guard case .scalar(let scalar) = node, scalar.style == .plain else { return false }
        return ["", "~", "null", "Null", "NULL"].contains(scalar.string)
    }

    // MARK: Errors

    private func failure(_ node: Node?, _ message: String) -> ReplicationError {
        // Values quoted in a message may hold line breaks (a quoted key, a variable's value).
        let message = ConfigValues.oneLine(message)
        if let line = node?.mark?.line {
            return ReplicationError(.invalidConfig, "\(sourceName):\(line): \(message)")
        }
        return ReplicationError(.invalidConfig, "\(sourceName): \(message)")
    }

    /// libyaml's messages are fixed phrases and positions; the document text is never quoted.
    private func syntaxError(_ error: YamlError) -> ReplicationError {
        switch error {
        case .scanner(let context, let problem, let mark, _),
            .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            var text = problem
            if let context {
                // libyaml says "<problem> while parsing a <thing>"; Yams' own contexts read first.
                if context.text.hasPrefix("while") {
                    text += " " + context.text
                    if context.mark.line != mark.line { text += " that starts at line \(context.mark.line)" }
                } else {
                    text = context.text + ", " + problem
                }
            }
            return ReplicationError(.invalidConfig, "\(sourceName):\(mark.line):\(mark.column): invalid YAML: \(text)")
        case .reader(let problem, _, _, _):
            return ReplicationError(.invalidConfig, "\(sourceName): invalid YAML: \(problem)")
        default:
            return ReplicationError(.invalidConfig, "\(sourceName): invalid YAML")
        }
    }
}
