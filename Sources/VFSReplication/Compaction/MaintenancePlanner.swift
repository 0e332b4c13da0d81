import Foundation

/// One step of replica maintenance, decided by `MaintenancePlanner`.
public enum MaintenanceAction: Sendable, Equatable {
    /// Merge `inputs` (files of level-1, contiguous, in TXID order) into one file at `level`.
    case compact(level: Int, inputs: [LTXFileInfo])
    /// Merge a snapshot and the files after it (a restore chain) into a new level-9 snapshot.
    case snapshot(inputs: [LTXFileInfo])
    /// Delete files whose restore points are outside the window or covered by a higher level.
    case delete([LTXFileInfo])

    public var task: MaintenanceTask {
        switch self {
        case .compact(let level, _): return .compaction(level: level)
        case .snapshot: return .snapshot
        case .delete: return .retention
        }
    }
}

/// The kinds of work, each retried on its own schedule after a failure.
public enum MaintenanceTask: Hashable, Sendable, CustomStringConvertible {
    case compaction(level: Int)
    case snapshot
    case retention
    /// Listing the replica to (re)load the index.
    case listing

    public var description: String {
        switch self {
        case .listing: return "listing the replica"
        case .compaction(let level): return "compaction into level \(level)"
        case .snapshot: return "snapshot"
        case .retention: return "retention"
        }
    }
}

/// Decides what replica maintenance is due, from the index alone: pure, no I/O, no clock.
///
/// ```swift
/// let planner = MaintenancePlanner(policy: MaintenancePolicy())
/// while let action = planner.nextAction(index, now: now) { ...perform, then update index... }
/// let wake = planner.nextDue(index, now: now)      // nil: nothing to do until a new file arrives
/// ```
///
/// - Compaction into level L runs at the end of each wall-clock slot of L's interval and takes
///   the level L-1 files past what L (or a level above) already covers, stamped before the
///   slot's end, in TXID order. A gap or a restart at TXID 1 (a lineage change) ends a merge, so
///   a compacted file never spans two histories; at most `maxInputsPerCompaction` files per merge.
/// - A snapshot merges the cheapest restore chain to the latest TXID (the previous snapshot and
///   what follows), at the first `snapshotInterval` boundary after the oldest file it would
///   absorb, or at the next level-1 boundary once that chain outweighs the snapshot. One per
///   interval: a file committed before the previous snapshot was written but shipped after it
///   counts from when that snapshot was written (`ReplicaIndex.snapshotWritten`).
/// - Retention deletes a file once it is covered by a file of a higher compaction level stamped
///   more than `keepDuration(level:)` ago, or once it lies entirely before a snapshot older than
///   the window (the restore base for every point inside it) and is itself older than the
///   window; snapshots older than that base go too. The newest file of each level always stays.
///   Deletions due within one `retentionCheckInterval` go together.
public struct MaintenancePlanner: Sendable {
    public let policy: MaintenancePolicy

    public init(policy: MaintenancePolicy) {
        self.policy = policy
    }

    private static let snapshotLevel = MaintenancePolicy.snapshotLevel

    private static func created(_ file: LTXFileInfo) -> Int64 {
        MaintenanceClock.ms(file.createdAt ?? Date(timeIntervalSince1970: 0))
    }

    // MARK: - Schedule

    /// The next action due at `now`: compactions from level 1 up, then a snapshot, then
    /// retention. Tasks in `paused` (waiting after a failure) are skipped.
    public func nextAction(_ index: ReplicaIndex, now: Date, paused: Set<MaintenanceTask> = []) -> MaintenanceAction? {
        let nowMs = MaintenanceClock.ms(now)
        if policy.topLevel > 0 {
            for level in 1...policy.topLevel where !paused.contains(.compaction(level: level)) {
                if let inputs = compaction(level: level, index, nowMs: nowMs) {
                    return .compact(level: level, inputs: inputs)
                }
            }
        }
        if !paused.contains(.snapshot), let snapshot = snapshotPlan(index), snapshot.dueMs <= nowMs {
            return .snapshot(inputs: snapshot.inputs)
        }
        if !paused.contains(.retention) {
            let deletions = self.deletions(index, nowMs: nowMs)
            if !deletions.isEmpty { return .delete(deletions) }
        }
        return nil
    }

    /// When the earliest task falls due (at or before `now`: due already); `resume` holds a
    /// task back until a time. Nil when nothing is due until a new file arrives.
    public func nextDue(_ index: ReplicaIndex, now: Date, resume: [MaintenanceTask: Date] = [:]) -> Date? {
        var due: [(MaintenanceTask, Int64)] = []
        if policy.topLevel > 0 {
            for level in 1...policy.topLevel {
                if let ms = compactionDue(level: level, index) { due.append((.compaction(level: level), ms)) }
            }
        }
        if let snapshot = snapshotPlan(index) { due.append((.snapshot, snapshot.dueMs)) }
        if let ms = retentionDue(index) { due.append((.retention, ms)) }
        let times = due.map { task, ms in max(ms, resume[task].map(MaintenanceClock.ms) ?? ms) }
        return times.min().map(MaintenanceClock.date)
    }

    // MARK: - Compaction

    /// Files of `level - 1` not yet compacted into `level`, in TXID order.
    func pending(level: Int, _ index: ReplicaIndex) -> [LTXFileInfo] {
        let through = index.compactedThrough(level: level, topLevel: policy.topLevel)
        return index.files(level: level - 1).filter { $0.minTXID > through }
    }

    /// End of the slot of the first pending file: when compaction into `level` is due.
    func compactionDue(level: Int, _ index: ReplicaIndex) -> Int64? {
        guard let first = pending(level: level, index).first else { return nil }
        let interval = MaintenanceClock.ms(policy.interval(level: level))
        return MaintenanceClock.boundary(after: Self.created(first), interval: interval)
    }

    /// The files to merge into `level` now (one contiguous run), or nil.
    func compaction(level: Int, _ index: ReplicaIndex, nowMs: Int64) -> [LTXFileInfo]? {
        let interval = MaintenanceClock.ms(policy.interval(level: level))
        let slotEnd = MaintenanceClock.boundary(atOrBefore: nowMs, interval: interval)
        let ready = pending(level: level, index).prefix { Self.created($0) < slotEnd }
        guard var previous = ready.first else { return nil }
        var run = [previous]
        for file in ready.dropFirst() {
            guard run.count < policy.maxInputsPerCompaction, file.minTXID != 1, file.minTXID == previous.maxTXID + 1
            else { break }
            run.append(file)
            previous = file
        }
        return run
    }

    // MARK: - Snapshots

    /// The chain a new snapshot would merge, and when it is due; nil when the newest snapshot
    /// is current or no chain reaches the latest TXID.
    func snapshotPlan(_ index: ReplicaIndex) -> (dueMs: Int64, inputs: [LTXFileInfo])? {
        let base = index.newestSnapshot
        if let base, index.latestTXID <= base.maxTXID { return nil }
        guard let plan = try? RestorePlanner.plan(files: index.allFiles, target: .latest),
            plan.txid > (base?.maxTXID ?? 0), let start = plan.files.first
        else { return nil }
        let absorbed = start.level == Self.snapshotLevel ? Array(plan.files.dropFirst()) : plan.files
        guard var oldest = absorbed.map(Self.created).min(), var newest = absorbed.map(Self.created).max() else {
            return nil
        }
        let soon = MaintenanceClock.ms(policy.compactionIntervals.first ?? policy.snapshotInterval)
        let interval = MaintenanceClock.ms(policy.snapshotInterval)
        if let base, let written = index.snapshotWritten, written.txid == base.maxTXID {
            // A batch committed before the base snapshot was written but shipped after it (across
            // the boundary, by the uploader's max-delay) belongs to the interval that snapshot
            // served. Counted from its commit time it would make the next snapshot due at once:
            // a second full-database PUT, one TXID later, in the same interval.
            let writtenMs = MaintenanceClock.ms(written.at)
            oldest = max(oldest, writtenMs)
            newest = max(newest, writtenMs)
        }
        var due = MaintenanceClock.boundary(after: oldest, interval: interval)
        let logBytes = absorbed.reduce(Int64(0)) { $0 + $1.size }
        if base == nil || logBytes > max(base!.size, policy.snapshotMinLogBytes) {
            due = min(due, MaintenanceClock.boundary(after: newest, interval: soon))
        }
        return (due, plan.files)
    }

    // MARK: - Retention

    /// For every file retention could delete, the time (ms) from which it may go.
    func retentionSchedule(_ index: ReplicaIndex) -> [(file: LTXFileInfo, eligibleMs: Int64)] {
        let retention = MaintenanceClock.ms(policy.retention)
        let snapshots = index.files(level: Self.snapshotLevel).sorted { $0.maxTXID < $1.maxTXID }
        // earliestFrom[i]: the earliest creation time among snapshots[i...].
        var earliestFrom = [Int64](repeating: .max, count: snapshots.count + 1)
        for i in stride(from: snapshots.count - 1, through: 0, by: -1) {
            earliestFrom[i] = min(earliestFrom[i + 1], Self.created(snapshots[i]))
        }
        /// When a snapshot reaching `txid` (strictly past it if `beyond`) is old enough to be
        /// the base of every restore in the window.
        func baseTime(reaching txid: UInt64, beyond: Bool) -> Int64 {
            var low = 0
            var high = snapshots.count
            while low < high {
                let mid = (low + high) / 2
                let reaches = beyond ? snapshots[mid].maxTXID > txid : snapshots[mid].maxTXID >= txid
                if reaches { high = mid } else { low = mid + 1 }
            }
            return earliestFrom[low]
        }

        var schedule: [(LTXFileInfo, Int64)] = []
        for (level, files) in index.levels {
            guard let newest = files.max(by: { $0.maxTXID < $1.maxTXID }) else { continue }
            for file in files where file != newest {
                let created = Self.created(file)
                var eligible = Int64.max
                let base = baseTime(reaching: file.maxTXID, beyond: level == Self.snapshotLevel)
                if base != .max { eligible = max(base, created) + retention }
                if level != Self.snapshotLevel {
                    let keep = MaintenanceClock.ms(policy.keepDuration(level: level))
                    for coverer in index.coverers(of: file, topLevel: policy.topLevel) {
                        eligible = min(eligible, Self.created(coverer) + keep)
                    }
                }
                if eligible != .max { schedule.append((file, eligible)) }
            }
        }
        return schedule
    }

    /// When the next deletions are due (rounded up to the retention check interval), or nil.
    func retentionDue(_ index: ReplicaIndex) -> Int64? {
        guard let earliest = retentionSchedule(index).map(\.eligibleMs).min() else { return nil }
        return MaintenanceClock.roundUp(earliest, interval: MaintenanceClock.ms(policy.retentionCheckInterval))
    }

    /// The files to delete now: none before the retention due time, then all that may go.
    func deletions(_ index: ReplicaIndex, nowMs: Int64) -> [LTXFileInfo] {
        let schedule = retentionSchedule(index)
        guard let earliest = schedule.map(\.eligibleMs).min(),
            MaintenanceClock.roundUp(earliest, interval: MaintenanceClock.ms(policy.retentionCheckInterval)) <= nowMs
        else { return [] }
        return schedule.filter { $0.eligibleMs <= nowMs }.map(\.file).sorted {
            ($0.level, $0.minTXID, $0.maxTXID) < ($1.level, $1.minTXID, $1.maxTXID)
        }
    }
}
