import Foundation

/// The uploader's decisions, without I/O (unit-tested in VFSReplicationUnitTests): what a start
/// finds in the replica means (`StartupDecision`), and what a turn does next and when it looks
/// again (`TurnRules`). `DatabaseUploader` gathers the facts, asks, and does what they say.

/// What the replica's newest TXID means for this spool when an uploader starts (see
/// docs/ARCHITECTURE.md, "Election and fencing" and "When a lineage breaks").
enum StartupDecision: Equatable {
    /// The replica ends exactly where this spool says it shipped: continue with the next TXID.
    case `continue`(nextTXID: UInt64)
    /// The replica holds TXIDs this spool did not record as shipped: read the newest file's
    /// header to learn whose they are (`afterInspecting`).
    case inspectNewest
    /// The replica is behind what this spool shipped, or empty: start a new lineage with a
    /// snapshot above every TXID either side has used. `lostFiles`: the replica had files but
    /// lost some this database shipped (say so).
    case newLineage(snapshotMinTXID: UInt64, lostFiles: Bool)
    /// Another writer's lineage: stop shipping for good, keep the spool.
    case fence
    /// Our own last upload, published before the uploader could record it: take it as shipped
    /// and continue after the spool record `position` ends.
    case adopt(position: SpoolPosition, txid: UInt64)
    /// Our lineage, but the spool is behind it (a power loss rolled it back): continue above
    /// the replica's TXIDs with a new snapshot, never a delta on a history the database may no
    /// longer have.
    case snapshotAboveReplica(floor: UInt64)

    /// The first look: the replica's newest TXID (0: empty) against the spool's shipped TXID.
    static func first(replicaMax: UInt64, shippedTXID: UInt64) -> StartupDecision {
        if replicaMax > 0 && replicaMax == shippedTXID { return .continue(nextTXID: shippedTXID + 1) }
        if replicaMax > shippedTXID { return .inspectNewest }
        return .newLineage(snapshotMinTXID: max(replicaMax, shippedTXID) + 1, lostFiles: replicaMax > 0)
    }

    /// After reading the newest file's header: whose it is, and whether the spool holds the
    /// record it was made from (`ownUpload`, only looked for when it is ours).
    static func afterInspecting(
        replicaMax: UInt64, newestNodeID: UInt64, lineageID: UInt64, ownUpload: SpoolPosition?
    ) -> StartupDecision {
        guard newestNodeID == lineageID else { return .fence }
        if let ownUpload { return .adopt(position: ownUpload, txid: replicaMax) }
        return .snapshotAboveReplica(floor: replicaMax)
    }
}

/// What one turn of `DatabaseUploader` does with the facts it read, and when the pool runs the
/// next one (`DatabaseUploader.TurnResult`).
enum TurnRules {
    /// The first wait after an upload error; it doubles up to `maxBackoff`.
    static let firstBackoff: Duration = .milliseconds(100)
    static let maxBackoff: Duration = .seconds(30)
    /// How often a process that is not the uploader tries the election.
    static let electionInterval: Duration = .seconds(1)
    /// How long a fenced database waits between looks (only a stop ends it).
    static let fencedWait: Duration = .milliseconds(500)
    /// How often a flush waiting in a process that is not the uploader polls the election.
    static let candidateFlushPoll: Duration = .milliseconds(10)

    static func nextBackoff(after d: Duration) -> Duration { min(d * 2, maxBackoff) }

    /// durability: remote — a committer waits for its transaction. Without a flush, the turn
    /// first gathers the others that commit within the group-commit window: `wait` is how long
    /// is left of it (nil: ship now, as a flush), `until` the window's end to remember.
    static func groupCommit(
        now: ContinuousClock.Instant, windowEnd: ContinuousClock.Instant?, window: Duration, flushing: Bool
    ) -> (wait: Duration?, windowEnd: ContinuousClock.Instant?) {
        if flushing { return (nil, nil) }
        guard let end = windowEnd else { return (window, now + window) }
        return now < end ? (end - now, end) : (nil, nil)
    }

    /// Whether a process that is not the uploader tries the election in this turn.
    static func shouldTryElection(now: ContinuousClock.Instant, lastAttempt: ContinuousClock.Instant, flushing: Bool)
        -> Bool
    {
        flushing || now - lastAttempt >= electionInterval
    }

    /// When a process that lost the election looks again: soon while a flush waits (another
    /// process ships it), else at its next election attempt, earlier on a kick.
    static func candidateWait(now: ContinuousClock.Instant, lastAttempt: ContinuousClock.Instant, flushing: Bool)
        -> (Duration, wakeOnWork: Bool)
    {
        if flushing { return (candidateFlushPoll, false) }
        return (max(lastAttempt + electionInterval - now, .milliseconds(10)), true)
    }

    /// The facts a turn has after reading the spool and shipping what was due.
    struct AfterStep: Equatable {
        var decision: ShipPolicy.Decision
        var nowMs: Int64
        /// The start-up comparison with the replica is done.
        var startedUp: Bool
        var needSnapshot: Bool
        var batchEmpty: Bool
        var flushing: Bool
        /// A stop or flush waits in this process (a wait would only be cut short at once).
        var flushWaiting: Bool
        /// Milliseconds since the epoch when idle reclaim of the spool is due (nil: not due).
        var idleReclaimDueMs: Int64?
        /// Compaction, snapshot or retention work is due in this many milliseconds (nil:
        /// none; 0 or less: now).
        var maintenanceInMs: Int64?
        /// The poll interval while a batch is open (max-delay / 10, 2-50 ms).
        var pollInterval: Duration
        /// The longest an idle database stays parked (a writer of an older version, which
        /// rings no bell, is still picked up within it).
        var idleCap: Duration
    }

    enum Next: Equatable {
        case again
        /// Run maintenance for at most this long, then look again at once.
        case maintain(slice: Duration)
        /// Park the database (nothing to do) for at most this long.
        case park(Duration)
        /// Look again after this long, earlier when the work generation moves.
        case wait(Duration)
    }

    /// After a step that neither failed nor stopped: ship again at once, give maintenance a
    /// slice, park an idle database, or wait for the batch's deadline.
    static func afterStep(_ f: AfterStep) -> Next {
        let untilMs: Int64?
        switch f.decision {
        case .ship: return .again
        case .wait(let u): untilMs = u
        }
        let idle = untilMs == nil && f.batchEmpty && f.startedUp && !f.needSnapshot && !f.flushing
        var d = f.pollInterval
        if idle {
            d = f.idleCap
            if let due = f.idleReclaimDueMs { d = min(d, .milliseconds(max(1, due - f.nowMs))) }
        }
        if let untilMs { d = min(d, .milliseconds(max(0, untilMs - f.nowMs))) }
        if f.startedUp, !f.flushing, let inMs = f.maintenanceInMs {
            if inMs <= 0 { return .maintain(slice: min(max(d, .milliseconds(200)), .seconds(2))) }
            d = min(d, .milliseconds(inMs + 1))
        }
        if f.flushWaiting { return .again }
        return idle ? .park(d) : .wait(d)
    }
}

/// Why the uploader's next shipment is a snapshot of the database instead of a delta.
enum SnapshotReason: String, Equatable, Sendable {
    /// The replica is empty, or behind what this spool shipped: a new lineage starts.
    case newLineage = "a new lineage (the replica is empty or lost files)"
    /// The replica holds our TXIDs the spool no longer has (a power loss rolled it back).
    case replicaAhead = "the replica is ahead of the spool"
    /// The database has content no capture holds (an existing database, or one changed while
    /// closed).
    case neverCaptured = "the database's current state was never captured"
    /// The spool is torn or corrupt: nothing of it can be trusted.
    case corruptSpool = "the spool was corrupt"
    /// The spool recorded a lineage break (a RESET: the WAL was replaced, a restore, a
    /// rollback-journal episode).
    case lineageBreak = "a lineage break in the spool"
    /// The replica's per-page checksums before the batch were unknown, so the next file could
    /// not be proven to apply on top of it.
    case unknownReplicaState = "the replica's page checksums were unknown"
}
