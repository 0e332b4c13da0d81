import Foundation

/// How a replica is kept compact: compaction levels, snapshots and retention.
///
/// ```swift
/// let policy = MaintenancePolicy()                       // 30s / 5m / 1h levels, daily snapshots, 24h retention
/// let custom = MaintenancePolicy(compactionIntervals: [.seconds(10), .seconds(600)],
///                                snapshotInterval: .seconds(6 * 3600), retention: .seconds(7 * 86400))
/// let fromConfig = MaintenancePolicy(database)          // a `DatabaseConfig`'s levels, snapshot-interval, retention
/// ```
///
/// Level 0 holds the uploader's batches. Level L (1...n) merges the level L-1 files of each
/// wall-clock slot of `compactionIntervals[L-1]` (slots are aligned to the Unix epoch, so a 5m
/// level compacts at :00, :05, ...). Level 9 holds snapshots: one at the first
/// `snapshotInterval` boundary after new transactions arrive, and one as soon as the files after
/// the newest snapshot hold more bytes than it (and at least `snapshotMinLogBytes`).
///
/// Retention keeps every restore point a level offers for `keepDuration(level:)` — the interval
/// of the level two above, or `retention` for the two highest levels and snapshots — so that with
/// the defaults every shipped batch is a restore point for 5 minutes, every 30 s slot for an
/// hour and every 5 minute slot for the whole retention window. Older files are deleted once a
/// higher level covers them; files before the newest snapshot older than the window go too.
/// See Litestream 0.5's compaction_level.go and store.go for the scheme this follows.
public struct MaintenancePolicy: Sendable, Equatable {
    /// Intervals of compaction levels 1...n (n <= 8), each longer than the one below.
    public let compactionIntervals: [Duration]
    /// The longest a new transaction waits for a snapshot that includes it.
    public let snapshotInterval: Duration
    /// How far back a point-in-time restore reaches.
    public let retention: Duration
    /// Most files merged into one compacted file; a backlog becomes several files.
    public var maxInputsPerCompaction = 256
    /// A snapshot is taken early only if the files after the newest snapshot hold at least this
    /// many bytes (besides holding more than the snapshot itself).
    public var snapshotMinLogBytes: Int64 = 16 << 20
    /// Deletions wait for a multiple of this interval, so that they go out in batches.
    public var retentionCheckInterval: Duration
    /// Local copies of files the next compaction needs are kept up to this many bytes (saves GETs).
    public var cacheMaxBytes: Int64 = MaintenancePolicy.defaultCacheMaxBytes
    /// After a failed action, the first wait before trying again (doubling up to `maxRetryDelay`).
    public var retryDelay: Duration = .seconds(30)
    public var maxRetryDelay: Duration = .seconds(3600)

    public static let snapshotLevel = 9
    public static let defaultCompactionIntervals: [Duration] = [.seconds(30), .seconds(300), .seconds(3600)]
    public static let defaultSnapshotInterval: Duration = .seconds(24 * 3600)
    public static let defaultRetention: Duration = .seconds(24 * 3600)
    /// `compaction-cache-bytes` when not configured.
    public static let defaultCacheMaxBytes: Int64 = 64 << 20

    /// The intervals should be positive and increasing, at most 8 of them, and `snapshotInterval`
    /// and `retention` positive (the configuration parser reports such mistakes with their line).
    /// Values that are not are made usable rather than trapped on: non-positive intervals are
    /// dropped, the rest sorted without repeats and cut to 8; a non-positive snapshot interval or
    /// retention takes its default.
    public init(
        compactionIntervals: [Duration] = MaintenancePolicy.defaultCompactionIntervals,
        snapshotInterval: Duration = MaintenancePolicy.defaultSnapshotInterval,
        retention: Duration = MaintenancePolicy.defaultRetention
    ) {
        let compactionIntervals = Array(
            Set(compactionIntervals.filter { $0 > .zero }).sorted().prefix(MaintenancePolicy.snapshotLevel - 1))
        let snapshotInterval = snapshotInterval > .zero ? snapshotInterval : MaintenancePolicy.defaultSnapshotInterval
        let retention = retention > .zero ? retention : MaintenancePolicy.defaultRetention
        self.compactionIntervals = compactionIntervals
        self.snapshotInterval = snapshotInterval
        self.retention = retention
        // Deletions every level-2 slot (5 minutes by default), never less often than retention.
        let check = compactionIntervals.count >= 2 ? compactionIntervals[1] : compactionIntervals.first ?? retention
        self.retentionCheckInterval = min(check, retention)
    }

    /// The policy a database's configuration asks for.
    public init(_ database: DatabaseConfig) {
        self.init(
            compactionIntervals: database.compactionIntervals, snapshotInterval: database.snapshotInterval,
            retention: database.retention)
        self.cacheMaxBytes = max(0, database.compactionCacheBytes)
    }

    /// The highest compaction level (0 when there is no compaction).
    public var topLevel: Int { compactionIntervals.count }

    /// The compaction interval of `level` (1...topLevel).
    public func interval(level: Int) -> Duration { compactionIntervals[level - 1] }

    /// How long the files of `level` keep their own restore points: the interval of the level
    /// two above, or `retention` for the two highest levels and snapshots. Never decreases with
    /// the level and never exceeds `retention`.
    public func keepDuration(level: Int) -> Duration {
        if level >= topLevel - 1 || level == MaintenancePolicy.snapshotLevel { return retention }
        return min(retention, compactionIntervals[level + 1])
    }
}

/// Millisecond arithmetic on wall-clock times, for the planners (no Date rounding surprises).
enum MaintenanceClock {
    static func ms(_ date: Date) -> Int64 { Int64((date.timeIntervalSince1970 * 1000).rounded()) }

    static func ms(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }

    static func date(_ ms: Int64) -> Date { Date(timeIntervalSince1970: Double(ms) / 1000) }

    /// The last multiple of `interval` at or before `t` (an interval under 1 ms counts as 1 ms).
    static func boundary(atOrBefore t: Int64, interval: Int64) -> Int64 {
        let interval = max(1, interval)
        let q = t / interval
        return (t % interval < 0 ? q - 1 : q) * interval
    }

    /// The first multiple of `interval` strictly after `t`.
    static func boundary(after t: Int64, interval: Int64) -> Int64 {
        boundary(atOrBefore: t, interval: interval) + max(1, interval)
    }

    /// The first multiple of `interval` at or after `t`.
    static func roundUp(_ t: Int64, interval: Int64) -> Int64 {
        let floor = boundary(atOrBefore: t, interval: interval)
        return floor == t ? t : floor + max(1, interval)
    }
}
