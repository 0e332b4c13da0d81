import Foundation
import Logging

/// The logic behind the `vfs-rebuild` command: find the replica(s), then list, plan or restore.
///
/// ```swift
/// var invocation = RebuildTool.Invocation(source: .replica(url: "file:///backups/app"))
/// invocation.output = "/tmp/app.db"
/// try RebuildTool.run(invocation) { print($0) }
/// ```
public enum RebuildTool {
    public enum Source: Sendable, Equatable {
        /// `--replica URL`
        case replica(url: String)
        /// `--config FILE --database PATH`
        case config(path: String, database: String)
        /// `--config FILE --all`: every configured database.
        case allConfigured(path: String)
    }

    public struct Invocation: Sendable, Equatable {
        public var source: Source
        /// Where to write; nil with `list` and `dryRun`, and for configured databases (their path).
        public var output: String?
        public var target: RestoreTarget = .latest
        public var force = false
        public var verify = true
        public var list = false
        /// Print the plan (files, bytes, requests) without downloading anything.
        public var dryRun = false
        /// One JSON document on standard output instead of text lines.
        public var json = false
        /// Do nothing (successfully) for a database whose output file exists.
        public var ifDatabaseNotExists = false
        /// Do nothing (successfully) for a replica without files.
        public var ifReplicaExists = false
        /// With `.allConfigured`: write each database to this folder (under its file name) instead
        /// of its configured path.
        public var outputDir: String?
        /// Files downloaded at once.
        public var downloads = 4
        public var verbose = false
        /// Keys of an encrypted replica given with `--replica` (`--encryption-key ID=env:VAR`); a
        /// configured replica has its own `encryption` section.
        public var encryption: ReplicaEncryption?

        public init(source: Source) { self.source = source }
    }

    /// Lists, plans or restores, sending each output line (or the JSON document) to `emit` and
    /// restore progress to `progress`. Errors are `ReplicationError`s whose messages name the
    /// replica, file or TXID range concerned; with `.allConfigured` each database is tried and
    /// the error (if any) sums up the failures.
    public static func run(
        _ invocation: Invocation, emit: (String) -> Void, progress: ((String, RestoreProgress) -> Void)? = nil
    ) throws {
        if case .allConfigured(let path) = invocation.source {
            return try runAll(invocation, configPath: path, emit: emit, progress: progress)
        }
        let (client, configured) = try replicaClient(invocation.source, encryption: invocation.encryption)
        if invocation.list {
            let files = try ReplicaRestorer.listFiles(client)
            if files.isEmpty && invocation.ifReplicaExists {
                emit(
                    invocation.json
                        ? jsonText(ListingJSON(replica: client.location, files: []))
                        : "no LTX files in \(client.location)")
                return
            }
            guard !files.isEmpty else {
                throw ReplicationError(.missingReplica, "no LTX files in \(client.location)")
            }
            if invocation.json {
                emit(jsonText(ListingJSON(replica: client.location, files: files)))
            } else {
                for line in listing(files, client: client) { emit(line) }
            }
            return
        }
        if invocation.dryRun {
            let files = try ReplicaRestorer.listFiles(client, for: invocation.target)
            if files.isEmpty && invocation.ifReplicaExists {
                emit(
                    invocation.json
                        ? jsonText(["replica": client.location, "status": "skipped", "reason": "no LTX files"])
                        : "no LTX files in \(client.location)")
                return
            }
            let plan = try RestorePlanner.plan(files: files, target: invocation.target, location: client.location)
            let lists = 1 + Set(files.map(\.level)).count
            if invocation.json {
                emit(jsonText(PlanJSON(plan: plan, replica: client.location, lists: lists)))
            } else {
                for line in planLines(plan, replica: client.location, lists: lists) { emit(line) }
            }
            return
        }
        guard let output = invocation.output ?? configured else {
            throw ReplicationError(.invalidArgument, "--output is required to restore")
        }
        let inPlace =
            configured.map {
                ConfigPaths.canonical(
                    ConfigPaths.absolute(output, relativeTo: FileManager.default.currentDirectoryPath))
                    == ConfigPaths.canonical($0)
            } ?? false
        let outcome = try restoreOne(
            invocation, client: client, output: output, name: configured ?? output, inPlace: inPlace,
            progress: progress)
        if invocation.json {
            emit(jsonText(outcome))
        } else {
            for line in outcome.lines { emit(line) }
        }
    }

    /// `--all`: every configured database, each restored to its own path.
    private static func runAll(
        _ invocation: Invocation, configPath: String, emit: (String) -> Void,
        progress: ((String, RestoreProgress) -> Void)?
    ) throws {
        switch invocation.target {
        case .timestamp:
            return try runAtOneInstant(invocation, configPath: configPath, emit: emit, progress: progress)
        case .txid:
            throw ReplicationError(
                .invalidArgument,
                "--all with --txid: TXIDs are each database's own; restore every database to one time with --timestamp")
        case .latest:
            if invocation.dryRun {
                return try runAtOneInstant(invocation, configPath: configPath, emit: emit, progress: progress)
            }
        }
        let config = try ReplicationConfig.load(path: configPath)
        var outcomes: [Outcome] = []
        for database in config.databases {
            do {
                let client = try makeReplicaClient(database.replica)
                let output = try outputPath(database.path, outputDir: invocation.outputDir)
                outcomes.append(
                    try restoreOne(
                        invocation, client: client, output: output, name: database.path,
                        inPlace: output == database.path, progress: progress))
            } catch let error as ReplicationError {
                outcomes.append(Outcome(database: database.path, replica: database.replica.url, failure: error))
            }
            if !invocation.json { for line in outcomes.last!.lines { emit(line) } }
        }
        let restored = outcomes.filter { $0.status == "restored" }.count
        let skipped = outcomes.filter { $0.status == "skipped" }.count
        let failed = outcomes.filter { $0.status == "failed" }
        if invocation.json {
            emit(jsonText(AllJSON(databases: outcomes, restored: restored, skipped: skipped, failed: failed.count)))
        } else {
            emit("\(restored) restored, \(skipped) skipped, \(failed.count) failed (\(configPath))")
        }
        if !failed.isEmpty {
            throw ReplicationError(
                failed[0].code ?? .io,
                "\(failed.count) of \(outcomes.count) databases failed to restore: "
                    + failed.map { "\($0.database): \($0.error ?? "")" }.joined(separator: "; "))
        }
    }

    /// Where `--all` writes a configured database: its path, or `--output-dir`/<its file name>.
    static func outputPath(_ database: String, outputDir: String?) throws -> String {
        guard let outputDir else { return database }
        guard LTXIO.isDirectory(outputDir) else {
            throw ReplicationError(.invalidArgument, "--output-dir \(outputDir) is not a directory")
        }
        let name = URL(fileURLWithPath: database).lastPathComponent
        return URL(fileURLWithPath: outputDir).appendingPathComponent(name).standardizedFileURL.path
    }

    /// `--all --timestamp T` (and `--all --dry-run`): every database to its newest restore point
    /// at or before T, all or nothing. Every replica is listed and planned, and every output
    /// checked (exists, in use), before the first byte is written; any database that cannot be
    /// restored to T, or written, fails the whole command, named. Then they are restored one
    /// by one to the same target, and the skew between the restore points reached is reported.
    private static func runAtOneInstant(
        _ invocation: Invocation, configPath: String, emit: (String) -> Void,
        progress: ((String, RestoreProgress) -> Void)?
    ) throws {
        let config = try ReplicationConfig.load(path: configPath)
        let target = invocation.target
        if case .timestamp = target, invocation.ifDatabaseNotExists {
            throw ReplicationError(
                .invalidArgument,
                "--if-db-not-exists cannot be combined with --all --timestamp: a database left as it is would not be at that time")
        }
        var clients: [String: any ReplicaClient] = [:]
        var candidates: [ConsistentRestore.Candidate] = []
        for database in config.databases {
            var output = database.path
            var listing: Result<[LTXFileInfo], ReplicationError>
            var skip: String?
            do {
                output = try outputPath(database.path, outputDir: invocation.outputDir)
                if invocation.ifDatabaseNotExists && LTXIO.exists(output) { skip = "\(output) exists" }
                let client = try makeReplicaClient(database.replica)
                clients[database.path] = client
                listing = .success(skip == nil ? try ReplicaRestorer.listFiles(client, for: target) : [])
            } catch let error as ReplicationError {
                listing = .failure(error)
            }
            candidates.append(
                ConsistentRestore.Candidate(
                    database: database.path, replica: database.replica.url, output: output, listing: listing,
                    skipIfEmpty: invocation.ifReplicaExists, skipReason: skip))
        }
        let plan = try ConsistentRestore.plan(target: target, databases: candidates)
        // Every output must be writable before any is written.
        var refused: [String] = []
        for entry in plan.entries {
            do {
                try ReplicaRestorer.prepareOutput(entry.output, force: invocation.force)
            } catch let error as ReplicationError {
                refused.append("\(entry.database): \(error.message)")
            }
        }
        let refusal = ReplicationError(
            .invalidArgument,
            "cannot restore every database to \(target): \(refused.count) of \(config.databases.count) cannot be written; "
                + "nothing was written: " + refused.joined(separator: "; "))
        if invocation.dryRun {
            // The plan either way; then whether the real run would be refused (and why).
            if invocation.json {
                emit(jsonText(InstantJSON(plan: plan, dryRun: true, results: [:])))
            } else {
                for line in ConsistentRestore.planLines(plan) { emit(line) }
            }
            if !refused.isEmpty { throw refusal }
            return
        }
        if !refused.isEmpty { throw refusal }
        if !invocation.json { for line in ConsistentRestore.planLines(plan) { emit(line) } }
        var results: [String: RestoreResult] = [:]
        for entry in plan.entries {
            let inPlace = entry.output == entry.database
            var logger = Logger(label: "vfsreplication.rebuild")
            logger.logLevel = invocation.verbose ? .debug : .warning
            do {
                let result = try ReplicaRestorer.restore(
                    from: clients[entry.database]!, to: entry.output,
                    options: RestoreOptions(
                        target: target, force: invocation.force, verify: invocation.verify,
                        downloads: invocation.downloads, continueLineageOf: inPlace ? entry.replica : nil),
                    logger: logger, progress: progress.map { report in { report(entry.database, $0) } })
                results[entry.database] = result
                if !invocation.json {
                    for line in Outcome(database: entry.database, replica: entry.replica, result: result).lines {
                        emit(line)
                    }
                    if result.txid != entry.plan.txid {
                        emit(
                            "note: \(entry.database) reached TXID \(hex16(result.txid)), not the planned "
                                + "\(hex16(entry.plan.txid)) (the replica changed since it was listed)")
                    }
                }
            } catch let error as ReplicationError {
                let done = plan.entries.filter { results[$0.database] != nil }.map(\.output)
                throw ReplicationError(
                    error.code,
                    "\(entry.database): \(error.message); the databases are not at one instant: "
                        + (done.isEmpty ? "none was written" : "already restored: \(done.joined(separator: ", "))")
                        + "; run the restore again (with --force for those already written)")
            }
        }
        let spread = ConsistentRestore.spread(results.values.map(\.timestamp))
        if invocation.json {
            emit(jsonText(InstantJSON(plan: plan, dryRun: false, results: results)))
        } else {
            emit(
                "\(results.count) restored to \(target), \(plan.skipped.count) skipped (\(configPath))"
                    + (spread.map { "; skew \(ConsistentRestore.seconds($0)) between their restore points" } ?? ""))
        }
    }

    /// Restores one database, or says why it was skipped. A configured database rebuilt at its
    /// own path (`inPlace`) gets a `RestoreMarker`, so that replicating it continues the replica's
    /// lineage instead of taking the replica for another writer's.
    private static func restoreOne(
        _ invocation: Invocation, client: any ReplicaClient, output: String, name: String, inPlace: Bool,
        progress: ((String, RestoreProgress) -> Void)?
    ) throws -> Outcome {
        if invocation.ifDatabaseNotExists && LTXIO.exists(output) {
            return Outcome(database: name, replica: client.location, skipped: "\(output) exists")
        }
        if invocation.ifReplicaExists, try ReplicaRestorer.listFiles(client).isEmpty {
            return Outcome(database: name, replica: client.location, skipped: "no LTX files in \(client.location)")
        }
        var logger = Logger(label: "vfsreplication.rebuild")
        logger.logLevel = invocation.verbose ? .debug : .warning
        let result = try ReplicaRestorer.restore(
            from: client, to: output,
            options: RestoreOptions(
                target: invocation.target, force: invocation.force, verify: invocation.verify,
                downloads: invocation.downloads, continueLineageOf: inPlace ? client.location : nil),
            logger: logger, progress: progress.map { report in { report(name, $0) } })
        return Outcome(database: name, replica: client.location, result: result)
    }

    /// The replica a source names, and the configured database path (for `--config`).
    public static func replicaClient(_ source: Source, encryption: ReplicaEncryption? = nil) throws -> (
        any ReplicaClient, String?
    ) {
        switch source {
        case .replica(let url):
            var replica = try ReplicaConfig(url: url)
            replica.encryption = encryption
            return (try makeReplicaClient(replica), nil)
        case .config(let path, let database):
            let config = try ReplicationConfig.load(path: path)
            guard let entry = config.database(forPath: database) else {
                let known = config.databases.map(\.path).joined(separator: ", ")
                throw ReplicationError(
                    .unknownDatabase, "database \(database) is not configured in \(path) (configured: \(known))")
            }
            return (try makeReplicaClient(entry.replica), entry.path)
        case .allConfigured(let path):
            throw ReplicationError(.invalidArgument, "\(path): --all restores every database; name one with --database")
        }
    }

    // MARK: - Text

    static func levelName(_ level: Int) -> String {
        switch level {
        case RestorePlanner.snapshotLevel: return "snapshots"
        case 0: return "shipped batches"
        default: return "compacted"
        }
    }

    /// The replica by level, snapshots first: a line per level (files, bytes, restore points and
    /// their time span), then a line per file: `<min>-<max>  <time>  <size>  <location>`.
    public static func listing(_ files: [LTXFileInfo], client: any ReplicaClient) -> [String] {
        let points = RestorePlanner.restorePoints(files: files)
        let total = files.reduce(Int64(0)) { $0 + $1.size }
        var lines: [String] = []
        let reachable = files.filter { points.contains($0.maxTXID) }
        let first = reachable.min { $0.maxTXID < $1.maxTXID }
        let last = reachable.max { $0.maxTXID < $1.maxTXID }
        var head = "replica \(client.location): \(files.count) files, \(RestoreProgressRenderer.formatBytes(total))"
        if let first, let last {
            head +=
                "; restore points from TXID \(hex16(first.maxTXID)) (\(time(first))) "
                + "to TXID \(hex16(last.maxTXID)) (\(time(last)))"
        } else {
            head += "; no restore points (no snapshot to start from)"
        }
        lines.append(head)
        for level in Set(files.map(\.level)).sorted(by: >) {
            let levelFiles = files.filter { $0.level == level }
            let bytes = levelFiles.reduce(Int64(0)) { $0 + $1.size }
            let levelPoints = levelFiles.filter { points.contains($0.maxTXID) }
            let dates = levelPoints.compactMap(\.createdAt)
            var line =
                "level \(level) (\(levelName(level))): \(levelFiles.count) files, "
                + "\(RestoreProgressRenderer.formatBytes(bytes)), \(levelPoints.count) restore points"
            if let from = dates.min(), let to = dates.max() {
                line += " from \(RestorePlanner.format(from)) to \(RestorePlanner.format(to))"
            }
            lines.append(line)
            for file in levelFiles {
                let location = (client as? FileReplicaClient)?.path(of: file) ?? "\(client.location) \(file)"
                lines.append(
                    "  \(hex16(file.minTXID))-\(hex16(file.maxTXID))  \(time(file))  "
                        + "\(RestoreProgressRenderer.formatBytes(file.size))  \(location)")
            }
        }
        return lines
    }

    private static func time(_ file: LTXFileInfo) -> String {
        file.createdAt.map(RestorePlanner.format) ?? "-"
    }

    static func planLines(_ plan: RestorePlan, replica: String, lists: Int) -> [String] {
        var lines = [
            "plan for \(plan.target) from \(replica): restore point TXID \(hex16(plan.txid)) (\(plan.txid)), "
                + "time \(plan.timestamp.map(RestorePlanner.format) ?? "-")"
        ]
        for file in plan.files {
            lines.append(
                "  level \(file.level)  \(hex16(file.minTXID))-\(hex16(file.maxTXID))  \(time(file))  "
                    + RestoreProgressRenderer.formatBytes(file.size))
        }
        lines.append(
            "\(plan.files.count) files, \(RestoreProgressRenderer.formatBytes(plan.bytes)) to download: "
                + "\(plan.requests) GET requests (after \(lists) LIST requests)")
        return lines
    }

    public static func summary(_ result: RestoreResult, replica: String) -> String {
        var checks: [String] = ["LTX checksums"]
        if result.checksumVerified { checks.append("database checksums") }
        if result.integrityChecked { checks.append("integrity_check") }
        let unchecked = result.checksumUnavailable.map { "; database checksum not checked: \($0)" } ?? ""
        return "restored \(result.outputPath) from \(replica): TXID \(hex16(result.txid)) (\(result.txid)), "
            + "time \(RestorePlanner.format(result.timestamp)), \(result.pageCount) pages of \(result.pageSize) bytes, "
            + "\(result.files.count) files (\(RestoreProgressRenderer.formatBytes(result.bytes)), "
            + "\(RestoreProgressRenderer.formatSeconds(result.seconds)): download and apply "
            + "\(RestoreProgressRenderer.formatSeconds(result.downloadApplySeconds)), verify "
            + "\(RestoreProgressRenderer.formatSeconds(result.verifySeconds))); verified: \(checks.joined(separator: ", "))"
            + unchecked
    }

    // MARK: - Parsing

    /// Decimal (`42`), 16 hex digits as in file names (`000000000000002a`), or `0x2a`.
    public static func parseTXID(_ text: String) throws -> UInt64 {
        let value: UInt64?
        if text.hasPrefix("0x") || text.hasPrefix("0X") {
            value = UInt64(text.dropFirst(2), radix: 16)
        } else if text.count == 16 {
            value = UInt64(text, radix: 16)
        } else {
            value = UInt64(text, radix: 10)
        }
        guard let value, value > 0 else {
            throw ReplicationError(
                .invalidArgument, "invalid TXID \(text): use a positive decimal number or 16 hex digits")
        }
        return value
    }

    /// ISO 8601 with a zone, optionally with fractional seconds: `2025-01-31T12:00:00Z`,
    /// `2025-01-31T12:00:00.250+01:00`.
    public static func parseTimestamp(_ text: String) throws -> Date {
        for options: ISO8601DateFormatter.Options in [
            [.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime],
        ] {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = options
            if let date = formatter.date(from: text) { return date }
        }
        throw ReplicationError(.invalidArgument, "invalid timestamp \(text): use ISO 8601, e.g. 2025-01-31T12:00:00Z")
    }

    // MARK: - JSON

    static func jsonText<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        encoder.keyEncodingStrategy = .convertToSnakeCase
        guard let data = try? encoder.encode(value) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    struct FileJSON: Encodable {
        var level: Int
        var minTxid: String
        var maxTxid: String
        var name: String
        var size: Int64
        var timestamp: String?

        init(_ file: LTXFileInfo) {
            level = file.level
            minTxid = hex16(file.minTXID)
            maxTxid = hex16(file.maxTXID)
            name = file.name
            size = file.size
            timestamp = file.createdAt.map(RestorePlanner.format)
        }
    }

    struct ListingJSON: Encodable {
        struct Level: Encodable {
            var level: Int
            var kind: String
            var bytes: Int64
            var restorePoints: Int
            var files: [FileJSON]
        }
        var replica: String
        var files: Int
        var bytes: Int64
        var restorePoints: Int
        var levels: [Level]

        init(replica: String, files: [LTXFileInfo]) {
            let points = RestorePlanner.restorePoints(files: files)
            self.replica = replica
            self.files = files.count
            bytes = files.reduce(0) { $0 + $1.size }
            restorePoints = points.count
            levels = Set(files.map(\.level)).sorted(by: >).map { level in
                let list = files.filter { $0.level == level }
                return Level(
                    level: level, kind: RebuildTool.levelName(level), bytes: list.reduce(0) { $0 + $1.size },
                    restorePoints: list.filter { points.contains($0.maxTXID) }.count, files: list.map(FileJSON.init))
            }
        }
    }

    struct PlanJSON: Encodable {
        var replica: String
        var target: String
        var txid: UInt64
        var txidHex: String
        var timestamp: String?
        var bytes: Int64
        var requests: [String: Int]
        var files: [FileJSON]

        init(plan: RestorePlan, replica: String, lists: Int) {
            self.replica = replica
            target = plan.target.description
            txid = plan.txid
            txidHex = hex16(plan.txid)
            timestamp = plan.timestamp.map(RestorePlanner.format)
            bytes = plan.bytes
            requests = ["GET": plan.requests, "LIST": lists]
            files = plan.files.map(FileJSON.init)
        }
    }

    /// What happened to one database.
    struct Outcome: Encodable {
        struct Timings: Encodable {
            var downloadApplySeconds: Double
            var verifySeconds: Double
        }
        struct Verified: Encodable {
            var ltxChecksums = true
            var databaseChecksum: Bool
            var integrityCheck: Bool
        }
        var database: String
        var replica: String
        var status: String
        var reason: String?
        var error: String?
        var output: String?
        var txid: UInt64?
        var txidHex: String?
        var timestamp: String?
        var pageSize: UInt32?
        var pageCount: UInt32?
        var bytes: Int64?
        var requests: [String: Int]?
        var seconds: Double?
        /// Where `seconds` went: downloading and applying the files, then verifying the result.
        var timings: Timings?
        var verified: Verified?
        /// Why `verified.databaseChecksum` is false, when it is.
        var databaseChecksumUnavailable: String?
        var skippedFiles: [String]?
        var files: [FileJSON]?
        /// The text form.
        var lines: [String] = []
        var code: ReplicationError.Code?

        private enum CodingKeys: String, CodingKey {
            case database, replica, status, reason, error, output, txid, txidHex, timestamp, pageSize, pageCount
            case bytes, requests, seconds, timings, verified, databaseChecksumUnavailable, skippedFiles, files
        }

        init(database: String, replica: String, skipped reason: String) {
            self.database = database
            self.replica = replica
            status = "skipped"
            self.reason = reason
            lines = ["skipped \(database): \(reason)"]
        }

        init(database: String, replica: String, failure: ReplicationError) {
            self.database = database
            self.replica = replica
            status = "failed"
            error = failure.message
            code = failure.code
            lines = ["failed \(database): \(failure.message)"]
        }

        init(database: String, replica: String, result: RestoreResult) {
            self.database = database
            self.replica = replica
            status = "restored"
            output = result.outputPath
            txid = result.txid
            txidHex = hex16(result.txid)
            timestamp = RestorePlanner.format(result.timestamp)
            pageSize = result.pageSize
            pageCount = result.pageCount
            bytes = result.bytes
            requests = ["GET": result.files.count]
            seconds = result.seconds
            timings = Timings(downloadApplySeconds: result.downloadApplySeconds, verifySeconds: result.verifySeconds)
            verified = Verified(databaseChecksum: result.checksumVerified, integrityCheck: result.integrityChecked)
            databaseChecksumUnavailable = result.checksumUnavailable
            skippedFiles = result.skipped
            files = result.files.map(FileJSON.init)
            lines = result.skipped.map { "warning: could not use \($0); restored through other files" }
            lines.append(RebuildTool.summary(result, replica: replica))
        }
    }

    /// `--all --timestamp` (or `--all --dry-run`) as one JSON document.
    struct InstantJSON: Encodable {
        struct Database: Encodable {
            var database: String
            var replica: String
            var output: String?
            var status: String
            var reason: String?
            var txid: UInt64?
            var txidHex: String?
            var timestamp: String?
            var secondsBeforeTarget: Double?
            var files: Int?
            var bytes: Int64?
        }
        var target: String
        var dryRun: Bool
        var skewSeconds: Double?
        var oldest: String?
        var newest: String?
        var databases: [Database]

        init(plan: ConsistentRestore.Plan, dryRun: Bool, results: [String: RestoreResult]) {
            target = plan.target.description
            self.dryRun = dryRun
            var times: [Date] = []
            databases = plan.entries.map { e in
                let result = results[e.database]
                let txid = result?.txid ?? e.plan.txid
                let time = result?.timestamp ?? e.time
                if let time { times.append(time) }
                var before: Double?
                if case .timestamp(let t) = plan.target, let time { before = t.timeIntervalSince(time) }
                return Database(
                    database: e.database, replica: e.replica, output: e.output,
                    status: dryRun ? "planned" : "restored", txid: txid, txidHex: hex16(txid),
                    timestamp: time.map(RestorePlanner.format), secondsBeforeTarget: before,
                    files: result?.files.count ?? e.plan.files.count, bytes: result?.bytes ?? e.plan.bytes)
            }
            databases += plan.skipped.map {
                Database(database: $0.database, replica: $0.replica, status: "skipped", reason: $0.reason)
            }
            skewSeconds = ConsistentRestore.spread(times)
            oldest = times.min().map(RestorePlanner.format)
            newest = times.max().map(RestorePlanner.format)
        }
    }

    struct AllJSON: Encodable {
        var databases: [Outcome]
        var restored: Int
        var skipped: Int
        var failed: Int
    }
}
