import Foundation

/// When a database counts as unhealthy.
public struct HealthPolicy: Sendable, Equatable {
    /// Longest acceptable age of the oldest commit not yet durable. Nil: per database, the larger
    /// of 60 seconds and three times its `max-delay`.
    public var maxLag: Duration?

    public init(maxLag: Duration? = nil) { self.maxLag = maxLag }

    public func maxLagSeconds(for database: DatabaseConfig) -> Double {
        if let maxLag { return maxLag.seconds }
        return max(60, 3 * database.maxDelay.seconds)
    }
}

/// Everything known about one database's replication, from any process: the shared state, the
/// spool, the uploader lock, the uploader's status file and the last verification.
///
/// ```swift
/// for report in StatusReport.collect(config: config) where !report.healthy {
///     print(report.summaryLine())
/// }
/// ```
public struct StatusReport: Sendable, Equatable, Encodable {
    /// The configured database path.
    public var database: String
    /// The replica location (`file:///...`, `s3://bucket/prefix`).
    public var replica: String
    /// When the report was made.
    public var generatedAt: Date
    /// Nil when no process ever registered the database (no `<db>-vfsrepl/state`).
    public var state: LocalReplicationState?
    /// Whether an uploader holds the database's lock now.
    public var uploader: UploaderPresence
    /// The uploader's status file, if one was written.
    public var record: UploaderRecord?
    /// The last `vfs-status --verify` result.
    public var verification: VerificationRecord?
    /// The lag threshold the report was judged with.
    public var maxLagSeconds: Double
    /// A restore put this database in place from its replica and no process has opened it
    /// since (`vfs-rebuild --all --if-db-not-exists` before the app boots): the file is exactly
    /// the replica's state at `restored.txid`, so it is protected while it waits.
    public var restored: RestoreMarker?
    /// Why the database is unhealthy; empty when it is healthy.
    public var problems: [String]
    /// Set when the database's current state is not in its replica (never shipped, or changed
    /// without the VFS while closed): the time that state was written. Nil when it is backed up
    /// or there is nothing to back up (no file, no table yet).
    public var notBackedUpSince: Date?
    /// Requests by billing class, bytes stored and estimated dollars (see `CostEstimate`).
    public var costs: CostEstimate

    public var healthy: Bool { problems.isEmpty }

    /// Seconds the oldest undurable commit has waited: from the spool, else from the uploader's
    /// last report; 0 when nothing waits, nil when unknown.
    public var lagSeconds: Double? {
        guard let state else { return nil }
        if let lag = state.lagSeconds(now: generatedAt) { return lag }
        if uploader.isRunning, let oldest = record?.oldestPendingCommit {
            return max(0, generatedAt.timeIntervalSince(oldest))
        }
        return nil
    }

    /// Requests made today (UTC) by kind.
    public var requestsToday: UploaderRecord.DailyRequests {
        record?.requests(on: generatedAt) ?? UploaderRecord.DailyRequests(day: UploaderRecord.day(generatedAt))
    }

    public init(
        database: String, replica: String, generatedAt: Date, state: LocalReplicationState?,
        uploader: UploaderPresence, record: UploaderRecord?, verification: VerificationRecord?, maxLagSeconds: Double,
        restored: RestoreMarker? = nil, notBackedUpSince: Date? = nil, prices: PriceList? = nil
    ) {
        self.database = database
        self.replica = replica
        self.generatedAt = generatedAt
        self.state = state
        self.uploader = uploader
        self.record = record
        self.verification = verification
        self.maxLagSeconds = maxLagSeconds
        self.restored = restored
        // A database restored from its own replica and untouched since is backed up.
        self.notBackedUpSince = restored != nil && state == nil ? nil : notBackedUpSince
        self.costs = CostEstimate.make(record: record, prices: prices, now: generatedAt)
        self.problems = []
        self.problems = evaluate()
    }

    /// Reports on every configured database, in config order.
    public static func collect(
        config: ReplicationConfig, policy: HealthPolicy = HealthPolicy(), now: Date = Date()
    ) -> [StatusReport] {
        config.databases.map { collect(database: $0, policy: policy, now: now) }
    }

    public static func collect(database db: DatabaseConfig, policy: HealthPolicy = HealthPolicy(), now: Date = Date())
        -> StatusReport
    {
        let files = ReplicationFiles(databasePath: db.path)
        var state: LocalReplicationState?
        var readError: String?
        do {
            state = try LocalReplicationState.read(files)
        } catch let e as ReplicationError {
            readError = e.message
        } catch {
            readError = "\(error)"
        }
        var report = StatusReport(
            database: db.path, replica: db.replica.url, generatedAt: now, state: state,
            uploader: state == nil ? .none : UploaderPresence.probe(files),
            record: UploaderRecord.load(path: files.statusFile),
            verification: VerificationRecord.load(path: files.verificationFile),
            maxLagSeconds: policy.maxLagSeconds(for: db),
            restored: RestoreMarker.load(forDatabase: files.databasePath).flatMap {
                // Protected only if it came from this database's own replica and is unchanged.
                $0.matches(databasePath: files.databasePath)
                    && $0.replica == (try? makeReplicaClient(db.replica))?.location ? $0 : nil
            },
            notBackedUpSince: BackupCoverage.notBackedUpSince(
                databasePath: files.databasePath, stateDirectory: files.stateDirectory),
            prices: db.replica.prices)
        if let readError, report.restored == nil { report.problems.insert(readError, at: 0) }
        return report
    }

    /// The health rules.
    func evaluate() -> [String] {
        if restored != nil && state == nil { return [] }  // restored, waiting for its first open
        var problems: [String] = backupProblems()
        guard let state else {
            return problems + [
                "no replication state: no process has registered this database (is the app or vfs-replicate running?)"
            ]
        }
        if let fenced = record?.fenced {
            problems.append("fenced since \(Self.format(fenced.at)): \(fenced.message)")
        }
        if let record, record.isErroring, uploader.isRunning, let e = record.lastError {
            problems.append("failing since \(Self.format(e.at)): \(e.message)")
        }
        if state.pendingTransactions > 0, case .none = uploader {
            problems.append("\(state.pendingTransactions) transactions wait and no uploader is running")
        }
        if let lag = lagSeconds, lag > maxLagSeconds {
            problems.append("lag \(Self.duration(lag)) exceeds \(Self.duration(maxLagSeconds))")
        }
        if state.pendingTransactions > 0, case .unknown(let why) = uploader {
            problems.append("cannot tell whether an uploader runs: \(why)")
        }
        if let v = verification, !v.passed {
            problems.append("last verification (\(Self.format(v.finishedAt))) failed: \(v.message)")
        }
        problems += state.disk?.problems() ?? []
        return problems
    }

    /// A database with content whose current state is not in the replica is never healthy,
    /// however quiet it is (a write may not come for days).
    private func backupProblems() -> [String] {
        guard let since = notBackedUpSince else { return [] }
        return ["not yet backed up since \(Self.format(since))"]
    }

    // MARK: - Text

    /// One line for `vfs-status`: health, TXIDs, lag, spool, uploads, today's requests, the
    /// last error.
    public func summaryLine() -> String {
        var parts: [String] = [database, healthy ? "ok" : "UNHEALTHY"]
        if let restored, state == nil {
            parts.append(restoredNote(restored))
        }
        if let state {
            parts.append("local \(state.localTXID) durable \(state.durableTXID)")
            let lag = lagSeconds.map { Self.duration($0) } ?? "?"
            parts.append("lag \(lag)/\(state.pendingTransactions) tx")
            parts.append("spool \(Self.bytes(state.pendingSpoolBytes))")
            if let disk = state.disk { parts.append(disk.summary()) }
        }
        // Without a status file (no uploader has written one yet) these are unknown, not "never".
        parts.append("uploaded \(record == nil ? "?" : Self.ago(record?.lastUpload, now: generatedAt))")
        parts.append("snapshot \(record == nil ? "?" : Self.ago(record?.lastSnapshot, now: generatedAt))")
        let today = requestsToday
        parts.append("today " + RequestKind.allCases.map { "\($0.rawValue) \(today[$0])" }.joined(separator: " "))
        switch uploader {
        case .running(let pid): parts.append("uploader " + (pid.map { "pid \($0)" } ?? "running"))
        case .none: parts.append("no uploader")
        case .unknown: parts.append("uploader ?")
        }
        if let v = verification {
            parts.append("verified \(v.passed ? "ok" : "FAILED") \(Self.ago(v.finishedAt, now: generatedAt))")
        }
        if let e = record?.lastError {
            let when = Self.ago(e.at, now: generatedAt)
            parts.append("last error \(when)\(e.resolvedAt == nil ? "" : " (resolved)"): \(e.message)")
        }
        var line = parts.joined(separator: "  ")
        if !healthy { line += "  [" + problems.joined(separator: "; ") + "]" }
        return line
    }

    /// The costs line `vfs-status` prints under the summary (see `CostEstimate.summary`).
    public func costLine() -> String { costs.summary() }

    /// `restored TXID 42 from file:///backups/app 3m ago, waiting for its first open`.
    public func restoredNote(_ marker: RestoreMarker) -> String {
        let when = marker.restoredAt.map { " " + Self.ago($0, now: generatedAt) } ?? ""
        return "restored TXID \(marker.txid) from \(marker.replica)\(when), waiting for its first open"
    }

    static func format(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: date)
    }

    /// `0.4s`, `42s`, `5m`, `3h`, `2d`.
    public static func duration(_ seconds: Double) -> String {
        if seconds < 10 { return String(format: "%.1fs", seconds) }
        if seconds < 120 { return "\(Int(seconds))s" }
        if seconds < 7200 { return "\(Int(seconds / 60))m" }
        if seconds < 172_800 { return "\(Int(seconds / 3600))h" }
        return "\(Int(seconds / 86400))d"
    }

    public static func ago(_ date: Date?, now: Date) -> String {
        guard let date else { return "never" }
        return duration(max(0, now.timeIntervalSince(date))) + " ago"
    }

    /// `512 B`, `48.0 KiB`, `3.2 MiB`, `1.1 GiB`.
    public static func bytes(_ n: UInt64) -> String {
        if n < 1024 { return "\(n) B" }
        let units = ["KiB", "MiB", "GiB", "TiB"]
        var value = Double(n) / 1024
        var i = 0
        while value >= 1024 && i < units.count - 1 {
            value /= 1024
            i += 1
        }
        return String(format: "%.1f %@", value, units[i])
    }

    // MARK: - JSON

    private enum Key: String, CodingKey {
        case database, replica, generatedAt, healthy, problems, localTXID, durableTXID, lagSeconds, lagTransactions
        case maxLagSeconds, pendingSpoolBytes, lastCommit, lastUpload, lastSnapshot, filesUploaded, bytesUploaded
        case requestsToday, lastError, fenced, uploader, verification, restored, disk, notBackedUpSince, costs
    }

    private struct RestoredJSON: Encodable {
        var txid: UInt64
        var replica: String
        var restoredAt: Date?
        var waitingForFirstOpen = true
    }

    private struct UploaderJSON: Encodable {
        var running: Bool
        var pid: Int32?
        var probeError: String?
    }

    /// A flat object for machines (`vfs-status --json`, the dashboard's `/status.json`); dates
    /// in ISO 8601 with `UploaderRecord.makeEncoder()`.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: Key.self)
        try c.encode(database, forKey: .database)
        try c.encode(replica, forKey: .replica)
        try c.encode(generatedAt, forKey: .generatedAt)
        try c.encode(healthy, forKey: .healthy)
        try c.encode(problems, forKey: .problems)
        try c.encodeIfPresent(state?.localTXID, forKey: .localTXID)
        try c.encodeIfPresent(state?.durableTXID, forKey: .durableTXID)
        try c.encodeIfPresent(lagSeconds, forKey: .lagSeconds)
        try c.encodeIfPresent(state?.pendingTransactions, forKey: .lagTransactions)
        try c.encode(maxLagSeconds, forKey: .maxLagSeconds)
        try c.encodeIfPresent(state?.pendingSpoolBytes, forKey: .pendingSpoolBytes)
        try c.encodeIfPresent(state?.lastCommit, forKey: .lastCommit)
        try c.encodeIfPresent(record?.lastUpload, forKey: .lastUpload)
        try c.encodeIfPresent(record?.lastSnapshot, forKey: .lastSnapshot)
        try c.encode(record?.filesUploaded ?? 0, forKey: .filesUploaded)
        try c.encode(record?.bytesUploaded ?? 0, forKey: .bytesUploaded)
        try c.encode(requestsToday, forKey: .requestsToday)
        try c.encodeIfPresent(record?.lastError, forKey: .lastError)
        try c.encodeIfPresent(record?.fenced, forKey: .fenced)
        switch uploader {
        case .running(let pid): try c.encode(UploaderJSON(running: true, pid: pid), forKey: .uploader)
        case .none: try c.encode(UploaderJSON(running: false), forKey: .uploader)
        case .unknown(let why): try c.encode(UploaderJSON(running: false, probeError: why), forKey: .uploader)
        }
        try c.encodeIfPresent(verification, forKey: .verification)
        if let restored, state == nil {
            try c.encode(
                RestoredJSON(txid: restored.txid, replica: restored.replica, restoredAt: restored.restoredAt),
                forKey: .restored)
        }
        try c.encodeIfPresent(state?.disk, forKey: .disk)
        try c.encodeIfPresent(notBackedUpSince, forKey: .notBackedUpSince)
        try c.encode(costs, forKey: .costs)
    }
}

/// Every database's report in one JSON document (`vfs-status --json`, the dashboard's
/// `/status.json`).
public struct StatusDocument: Sendable, Equatable, Encodable {
    public var generatedAt: Date
    public var healthy: Bool
    public var databases: [StatusReport]
    /// Every database's estimated dollars together, the free tiers applied once (`CostTotals`).
    public var costs: CostTotals

    public init(reports: [StatusReport], generatedAt: Date = Date()) {
        self.generatedAt = generatedAt
        self.healthy = reports.allSatisfy(\.healthy)
        self.databases = reports
        self.costs = CostTotals(reports.map(\.costs))
    }

    /// Pretty-printed JSON, keys sorted, dates in ISO 8601.
    public func jsonData() throws -> Data {
        let encoder = UploaderRecord.makeEncoder()
        encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
        return try encoder.encode(self)
    }
}
