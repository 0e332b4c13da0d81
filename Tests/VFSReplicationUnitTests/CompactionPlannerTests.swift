import Foundation
import Testing

@testable import VFSReplication

/// The maintenance planner is pure: these tests feed it indexes and times only.
@Suite("Compaction planner")
struct CompactionPlannerTests {
    /// A day boundary (UTC), so slots of 30 s, 5 min, 1 h and 24 h all start here.
    static let t0 = Date(timeIntervalSince1970: 1_749_945_600)
    static let planner = MaintenancePlanner(policy: MaintenancePolicy())

    static func f(_ level: Int, _ minTXID: UInt64, _ maxTXID: UInt64, at seconds: Double, size: Int64 = 1000)
        -> LTXFileInfo
    {
        LTXFileInfo(
            level: level, minTXID: minTXID, maxTXID: maxTXID, size: size, createdAt: t0.addingTimeInterval(seconds))
    }

    static func at(_ seconds: Double) -> Date { t0.addingTimeInterval(seconds) }

    static func names(_ files: [LTXFileInfo]) -> [String] { files.map { "L\($0.level):\($0.minTXID)-\($0.maxTXID)" } }

    static func action(_ index: ReplicaIndex, _ seconds: Double, paused: Set<MaintenanceTask> = []) -> String? {
        switch planner.nextAction(index, now: at(seconds), paused: paused) {
        case nil: return nil
        case .compact(let level, let inputs)?: return "compact L\(level) " + names(inputs).joined(separator: " ")
        case .snapshot(let inputs)?: return "snapshot " + names(inputs).joined(separator: " ")
        case .delete(let files)?: return "delete " + names(files).joined(separator: " ")
        }
    }

    @Test func keepDurationsGrowWithTheLevel() {
        let policy = MaintenancePolicy()
        #expect(policy.keepDuration(level: 0) == .seconds(300))
        #expect(policy.keepDuration(level: 1) == .seconds(3600))
        #expect(policy.keepDuration(level: 2) == .seconds(86400))
        #expect(policy.keepDuration(level: 3) == .seconds(86400))
        #expect(policy.keepDuration(level: 9) == .seconds(86400))
        let one = MaintenancePolicy(compactionIntervals: [.seconds(30)])
        #expect(one.keepDuration(level: 0) == .seconds(86400))
        let short = MaintenancePolicy(retention: .seconds(600))
        #expect(short.keepDuration(level: 1) == .seconds(600))
        #expect(short.retentionCheckInterval == .seconds(300))
    }

    @Test func unusableSettingsAreMadeUsable() {
        let policy = MaintenancePolicy(
            compactionIntervals: [.seconds(300), .zero, .seconds(30), .seconds(30)], snapshotInterval: .zero,
            retention: .seconds(-1))
        #expect(policy.compactionIntervals == [.seconds(30), .seconds(300)])
        #expect(policy.snapshotInterval == MaintenancePolicy.defaultSnapshotInterval)
        #expect(policy.retention == MaintenancePolicy.defaultRetention)
        var zero = MaintenancePolicy()
        zero.retentionCheckInterval = .zero
        #expect(MaintenancePlanner(policy: zero).nextDue(ReplicaIndex(files: [Self.f(9, 1, 2, at: 0)]), now: Self.t0) == nil)
    }

    @Test func compactionWaitsForTheEndOfItsSlot() {
        let index = ReplicaIndex(files: [
            Self.f(9, 1, 10, at: -100), Self.f(0, 11, 11, at: 1), Self.f(0, 12, 13, at: 12), Self.f(0, 14, 14, at: 29),
            Self.f(0, 15, 15, at: 31),
        ])
        #expect(Self.planner.nextDue(index, now: Self.at(29)) == Self.at(30))
        #expect(Self.action(index, 29.9) == nil)
        // The slot [0, 30) is done; the file stamped at 31 waits for the next one.
        #expect(Self.action(index, 30) == "compact L1 L0:11-11 L0:12-13 L0:14-14")
        #expect(Self.action(index, 75) == "compact L1 L0:11-11 L0:12-13 L0:14-14 L0:15-15")
    }

    @Test func levelsCascadeAndEachCoversWhatItMerged() {
        var index = ReplicaIndex(files: [
            Self.f(9, 1, 10, at: -100), Self.f(0, 11, 11, at: 250), Self.f(0, 12, 12, at: 280),
        ])
        #expect(Self.action(index, 300) == "compact L1 L0:11-11 L0:12-12")
        index.insert(Self.f(1, 11, 12, at: 280))
        // Level 2's slot [0, 300) is over too, level 3's is not.
        #expect(Self.action(index, 300) == "compact L2 L1:11-12")
        index.insert(Self.f(2, 11, 12, at: 280))
        #expect(Self.action(index, 300) == nil)
        // Next: L0:11-11 may go at 580 (covered since 280, level 0 keeps 5 minutes), batched at 600.
        #expect(Self.planner.nextDue(index, now: Self.at(300)) == Self.at(600))
        #expect(Self.planner.compactionDue(level: 3, index) == MaintenanceClock.ms(Self.at(3600)))
        #expect(Self.action(index, 3600) == "compact L3 L2:11-12")
        index.insert(Self.f(3, 11, 12, at: 280))
        // Once level 1 is gone (retention), the levels above still record what was compacted.
        index.remove([Self.f(1, 11, 12, at: 280)])
        #expect(Self.planner.pending(level: 1, index).isEmpty)
        #expect(Self.planner.pending(level: 2, index).isEmpty)
    }

    @Test func aMergeStopsAtAGapOrARestart() {
        var index = ReplicaIndex(files: [
            Self.f(9, 1, 9, at: -100), Self.f(0, 10, 11, at: 1), Self.f(0, 12, 12, at: 2),
            // TXIDs 13-14 went into a new lineage's snapshot: a different history follows.
            Self.f(9, 1, 14, at: 3), Self.f(0, 15, 16, at: 4), Self.f(0, 17, 17, at: 5),
        ])
        #expect(Self.action(index, 30) == "compact L1 L0:10-11 L0:12-12")
        index.insert(Self.f(1, 10, 12, at: 2))
        #expect(Self.action(index, 30) == "compact L1 L0:15-16 L0:17-17")
        // A level-0 file starting at TXID 1 (a snapshot, as Litestream's first file) ends a merge.
        let restart = ReplicaIndex(files: [Self.f(0, 1, 3, at: 1), Self.f(0, 4, 4, at: 2), Self.f(0, 1, 5, at: 3)])
        #expect(Self.action(restart, 30) == "compact L1 L0:1-3")
    }

    @Test func aBacklogIsMergedInBoundedPieces() {
        var policy = MaintenancePolicy()
        policy.maxInputsPerCompaction = 4
        let planner = MaintenancePlanner(policy: policy)
        let index = ReplicaIndex(
            files: [Self.f(9, 1, 1, at: 0)] + (2...11).map { Self.f(0, UInt64($0), UInt64($0), at: Double($0)) })
        guard case .compact(1, let inputs)? = planner.nextAction(index, now: Self.at(60)) else {
            Issue.record("no compaction")
            return
        }
        #expect(Self.names(inputs) == ["L0:2-2", "L0:3-3", "L0:4-4", "L0:5-5"])
    }

    @Test func snapshotsFollowTheIntervalAndTheLogSize() throws {
        // A snapshot of 1 MB and a little log: due at the next day boundary after the oldest change.
        var index = ReplicaIndex(files: [
            Self.f(9, 1, 10, at: 0, size: 1 << 20), Self.f(3, 11, 20, at: 3000), Self.f(0, 21, 21, at: 3700),
        ])
        let plan = try #require(Self.planner.snapshotPlan(index))
        #expect(plan.dueMs == MaintenanceClock.ms(Self.at(86400)))
        #expect(Self.names(plan.inputs) == ["L9:1-10", "L3:11-20", "L0:21-21"])
        #expect(Self.action(index, 86400, paused: [.compaction(level: 1)]) == "snapshot L9:1-10 L3:11-20 L0:21-21")

        // The log outweighs the snapshot (and 16 MiB): due at the next level-1 boundary.
        index.insert(Self.f(2, 21, 30, at: 3710, size: 40 << 20))
        let early = try #require(Self.planner.snapshotPlan(index))
        #expect(early.dueMs == MaintenanceClock.ms(Self.at(3720)))

        // Current snapshot: nothing to do.
        let current = ReplicaIndex(files: [Self.f(9, 1, 10, at: 0), Self.f(0, 5, 10, at: 0)])
        #expect(Self.planner.snapshotPlan(current) == nil)
        // No level-9 snapshot yet (a level-0 file from TXID 1): soon.
        let none = ReplicaIndex(files: [Self.f(0, 1, 4, at: 5), Self.f(1, 1, 4, at: 5)])
        #expect(Self.planner.snapshotPlan(none)?.dueMs == MaintenanceClock.ms(Self.at(30)))
    }

    @Test func aBatchCommittedJustBeforeTheBoundaryWaitsForTheNextSnapshot() throws {
        // The day's snapshot was written at the boundary (its newest input is from 0.3 s before);
        // a batch committed 50 ms before the boundary was shipped after it. That batch belongs to
        // the interval the snapshot just served: the next snapshot is due a day later, not now
        // (a second full-database PUT 200 ms after the first).
        let day = 86400.0
        var index = ReplicaIndex(files: [Self.f(9, 1, 10, at: day - 0.3, size: 1 << 20), Self.f(0, 11, 11, at: day - 0.05)])
        index.noteSnapshotWritten(Self.f(9, 1, 10, at: day - 0.3), at: Self.at(day + 0.01))
        let plan = try #require(Self.planner.snapshotPlan(index))
        #expect(plan.dueMs == MaintenanceClock.ms(Self.at(2 * day)))
        let compactions: Set<MaintenanceTask> = [.compaction(level: 1), .compaction(level: 2), .compaction(level: 3)]
        #expect(Self.action(index, day + 0.2, paused: compactions) == nil)
        #expect(Self.action(index, 2 * day, paused: compactions) == "snapshot L9:1-10 L0:11-11")
        // Batches after the boundary do not change that.
        index.insert(Self.f(0, 12, 12, at: day + 0.5))
        #expect(Self.planner.snapshotPlan(index)?.dueMs == MaintenanceClock.ms(Self.at(2 * day)))
    }

    @Test func nothingIsDueWhenEverythingIsSettled() {
        let index = ReplicaIndex(files: [Self.f(9, 1, 10, at: 0), Self.f(3, 5, 10, at: 0)])
        #expect(Self.planner.nextDue(index, now: Self.at(999_999)) == nil)
        #expect(Self.action(index, 999_999) == nil)
    }

    @Test func retentionDeletesCoveredFilesOnceTheirLevelNoLongerKeepsThem() {
        let index = ReplicaIndex(files: [
            Self.f(9, 1, 10, at: 0),
            Self.f(0, 11, 11, at: 100), Self.f(0, 12, 12, at: 110), Self.f(0, 13, 13, at: 125),
            Self.f(0, 14, 14, at: 140),
            Self.f(1, 11, 12, at: 110), Self.f(1, 13, 13, at: 125),
        ])
        let schedule = Dictionary(
            uniqueKeysWithValues: Self.planner.retentionSchedule(index).map { ("\($0.file)", $0.eligibleMs) })
        // Covered by L1:11-12 (stamped 110) for 5 minutes: from 410. The newest file of each level stays.
        #expect(schedule["L0/000000000000000b-000000000000000b.ltx"] == MaintenanceClock.ms(Self.at(410)))
        #expect(schedule["L0/000000000000000c-000000000000000c.ltx"] == MaintenanceClock.ms(Self.at(410)))
        #expect(schedule["L0/000000000000000d-000000000000000d.ltx"] == MaintenanceClock.ms(Self.at(425)))
        #expect(schedule["L0/000000000000000e-000000000000000e.ltx"] == nil)
        #expect(schedule["L1/000000000000000d-000000000000000d.ltx"] == nil)
        #expect(schedule.count == 3)
        // Deletions go in batches at 5-minute boundaries: at 600 both files covered since 410 and 425.
        #expect(Self.planner.retentionDue(index) == MaintenanceClock.ms(Self.at(600)))
        #expect(Self.planner.deletions(index, nowMs: MaintenanceClock.ms(Self.at(599))).isEmpty)
        #expect(
            Self.names(Self.planner.deletions(index, nowMs: MaintenanceClock.ms(Self.at(600))))
                == ["L0:11-11", "L0:12-12", "L0:13-13"])
    }

    @Test func retentionDropsWhatLiesBeforeTheWindowsBaseSnapshot() {
        let day = 86400.0
        let index = ReplicaIndex(files: [
            Self.f(9, 1, 10, at: 0), Self.f(9, 1, 30, at: day), Self.f(9, 1, 50, at: 2 * day),
            Self.f(3, 11, 20, at: 3600), Self.f(3, 21, 30, at: day - 10), Self.f(3, 31, 40, at: day + 3600),
            Self.f(3, 41, 50, at: 2 * day - 10), Self.f(3, 51, 55, at: 2 * day + 3600),
        ])
        // At 2 days + 1 hour the window starts at 1 day + 1 hour: the base is the snapshot of day 1.
        let deletions = Self.planner.deletions(index, nowMs: MaintenanceClock.ms(Self.at(2 * day + 3600)))
        #expect(Self.names(deletions) == ["L3:11-20", "L3:21-30", "L9:1-10"])
        // Files after the base stay until the next snapshot is older than the window.
        let schedule = Dictionary(
            uniqueKeysWithValues: Self.planner.retentionSchedule(index).map { ("\($0.file)", $0.eligibleMs) })
        #expect(schedule["L3/000000000000001f-0000000000000028.ltx"] == MaintenanceClock.ms(Self.at(3 * day)))
        #expect(schedule["L9/0000000000000001-000000000000001e.ltx"] == MaintenanceClock.ms(Self.at(3 * day)))
        #expect(schedule["L9/0000000000000001-0000000000000032.ltx"] == nil)
    }

    @Test func compactionComesFirstThenSnapshotThenRetention() {
        let index = ReplicaIndex(files: [
            Self.f(9, 1, 10, at: 0), Self.f(0, 11, 11, at: 10), Self.f(0, 12, 12, at: 20), Self.f(1, 11, 11, at: 10),
        ])
        // At a day later everything is due: level 1 first.
        #expect(Self.action(index, 86400)?.hasPrefix("compact L1 L0:12-12") == true)
        #expect(
            Self.action(index, 86400, paused: [.compaction(level: 1), .compaction(level: 2), .compaction(level: 3)])?
                .hasPrefix("snapshot") == true)
        #expect(
            Self.action(
                index, 86400, paused: [.compaction(level: 1), .compaction(level: 2), .compaction(level: 3), .snapshot])
                == "delete L0:11-11")
        // A paused task delays what nextDue reports.
        let resume = [MaintenanceTask.compaction(level: 1): Self.at(100)]
        let due = Self.planner.nextDue(index, now: Self.at(31), resume: resume)
        #expect(due == Self.at(100))
    }
}
