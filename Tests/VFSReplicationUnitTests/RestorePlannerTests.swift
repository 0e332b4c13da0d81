import Foundation
import Testing

@testable import VFSReplication

/// The restore planner is pure: these tests feed it listings only.
@Suite("Restore planner")
struct RestorePlannerTests {
    static let t0 = Date(timeIntervalSince1970: 1_700_000_000)

    /// A file whose timestamp is t0 + maxTXID seconds (so later TXIDs are later in time).
    static func f(_ level: Int, _ minTXID: UInt64, _ maxTXID: UInt64, time: Double? = nil) -> LTXFileInfo {
        LTXFileInfo(
            level: level, minTXID: minTXID, maxTXID: maxTXID, size: 1000,
            createdAt: t0.addingTimeInterval(time ?? Double(maxTXID)))
    }

    static func ranges(_ plan: RestorePlan) -> [String] {
        plan.files.map { "L\($0.level):\($0.minTXID)-\($0.maxTXID)" }
    }

    static func level0(_ range: ClosedRange<UInt64>) -> [LTXFileInfo] {
        range.map { f(0, $0, $0) }
    }

    @Test func latestFollowsLevelZeroFromItsSnapshot() throws {
        let plan = try RestorePlanner.plan(files: Self.level0(1...4), target: .latest)
        #expect(Self.ranges(plan) == ["L0:1-1", "L0:2-2", "L0:3-3", "L0:4-4"])
        #expect(plan.txid == 4)
        #expect(plan.timestamp == Self.t0.addingTimeInterval(4))
    }

    @Test func startsFromTheNewestSnapshotAtOrBelowTheTarget() throws {
        let files = [Self.f(9, 1, 3), Self.f(9, 1, 6)] + Self.level0(1...8)
        #expect(Self.ranges(try RestorePlanner.plan(files: files, target: .latest)) == ["L9:1-6", "L0:7-7", "L0:8-8"])
        #expect(Self.ranges(try RestorePlanner.plan(files: files, target: .txid(5))) == ["L9:1-3", "L0:4-4", "L0:5-5"])
        #expect(Self.ranges(try RestorePlanner.plan(files: files, target: .txid(6))) == ["L9:1-6"])
    }

    @Test func prefersTheFileThatReachesFurthest() throws {
        let files = [Self.f(9, 1, 3), Self.f(1, 4, 8), Self.f(2, 4, 12)] + Self.level0(4...14)
        #expect(
            Self.ranges(try RestorePlanner.plan(files: files, target: .latest)) == [
                "L9:1-3", "L2:4-12", "L0:13-13", "L0:14-14",
            ])
        // Without passing the target.
        #expect(Self.ranges(try RestorePlanner.plan(files: files, target: .txid(9))) == ["L9:1-3", "L1:4-8", "L0:9-9"])
    }

    @Test func acceptsOverlappingCompactedFiles() throws {
        let files = [Self.f(9, 1, 5), Self.f(1, 3, 8), Self.f(0, 9, 9)]
        #expect(Self.ranges(try RestorePlanner.plan(files: files, target: .latest)) == ["L9:1-5", "L1:3-8", "L0:9-9"])
    }

    @Test func equalRangesPreferTheHigherLevel() throws {
        let files = [Self.f(0, 1, 1), Self.f(1, 2, 5), Self.f(2, 2, 5)]
        #expect(Self.ranges(try RestorePlanner.plan(files: files, target: .latest)) == ["L0:1-1", "L2:2-5"])
    }

    @Test func aLevelZeroSnapshotRestartsTheChain() throws {
        // Our replicas write a new full snapshot as a level-0 file with minTXID 1.
        let files = Self.level0(1...2) + [Self.f(0, 1, 3), Self.f(0, 4, 4)]
        #expect(Self.ranges(try RestorePlanner.plan(files: files, target: .latest)) == ["L0:1-3", "L0:4-4"])
        #expect(Self.ranges(try RestorePlanner.plan(files: files, target: .txid(2))) == ["L0:1-1", "L0:2-2"])
    }

    @Test func gapIsAnErrorNamingTheMissingRangeAndNeighbours() {
        let files = Self.level0(1...2) + Self.level0(6...7)
        let error = #expect(throws: ReplicationError.self) {
            try RestorePlanner.plan(files: files, target: .latest, location: "file:///r")
        }
        #expect(error?.code == .gap)
        let message = error?.message ?? ""
        #expect(message.contains("file:///r"))
        #expect(message.contains("TXID 0000000000000003-0000000000000005"))
        #expect(message.contains("L0/0000000000000002-0000000000000002.ltx"))
        #expect(message.contains("L0/0000000000000006-0000000000000006.ltx"))

        // A TXID target past the gap fails the same way; one before it is fine.
        #expect(throws: ReplicationError.self) { try RestorePlanner.plan(files: files, target: .txid(7)) }
        #expect(throws: ReplicationError.self) { try RestorePlanner.plan(files: files, target: .txid(4)) }
        #expect(Self.ranges(try! RestorePlanner.plan(files: files, target: .txid(2))) == ["L0:1-1", "L0:2-2"])
    }

    @Test func singleMissingTXIDIsNamedAlone() {
        let files = Self.level0(1...2) + Self.level0(4...4)
        let error = #expect(throws: ReplicationError.self) { try RestorePlanner.plan(files: files, target: .latest) }
        #expect(error?.message.contains("TXID 0000000000000003 missing") == true)
    }

    @Test func missingSnapshotIsAGap() {
        let error = #expect(throws: ReplicationError.self) {
            try RestorePlanner.plan(files: Self.level0(5...7), target: .latest)
        }
        #expect(error?.code == .gap)
        #expect(error?.message.contains("no snapshot") == true)
        #expect(error?.message.contains("0000000000000001-0000000000000004") == true)
    }

    @Test func emptyReplicaIsMissing() {
        let error = #expect(throws: ReplicationError.self) { try RestorePlanner.plan(files: [], target: .latest) }
        #expect(error?.code == .missingReplica)
    }

    @Test func txidInsideACompactedFileOrBeyondTheEnd() {
        let files = [Self.f(9, 1, 3), Self.f(1, 4, 8)]
        let inside = #expect(throws: ReplicationError.self) { try RestorePlanner.plan(files: files, target: .txid(6)) }
        #expect(inside?.code == .gap)
        #expect(inside?.message.contains("L1/0000000000000004-0000000000000008.ltx") == true)
        #expect(
            inside?.message.hasSuffix(
                "the nearest restore points are TXID 0000000000000003 and TXID 0000000000000008") == true)
        let beyond = #expect(throws: ReplicationError.self) { try RestorePlanner.plan(files: files, target: .txid(20)) }
        #expect(beyond?.code == .gap)
        #expect(beyond?.message.contains("beyond the end") == true)
        #expect(throws: ReplicationError.self) { try RestorePlanner.plan(files: files, target: .txid(0)) }
    }

    @Test func timestampTargetUsesFileTimes() throws {
        // L0 files 1...6 at t0+1...t0+6; a compaction of 4-6 stamped with its last input's time.
        let files = Self.level0(1...6) + [Self.f(1, 4, 6)]
        let plan = try RestorePlanner.plan(files: files, target: .timestamp(Self.t0.addingTimeInterval(4.5)))
        #expect(Self.ranges(plan) == ["L0:1-1", "L0:2-2", "L0:3-3", "L0:4-4"])
        #expect(plan.txid == 4)
        #expect(plan.timestamp == Self.t0.addingTimeInterval(4))
        // A file stamped exactly at the target is included.
        let exact = try RestorePlanner.plan(files: files, target: .timestamp(Self.t0.addingTimeInterval(6)))
        #expect(Self.ranges(exact) == ["L0:1-1", "L0:2-2", "L0:3-3", "L1:4-6"])
        // Before the first file: nothing to restore.
        let early = #expect(throws: ReplicationError.self) {
            try RestorePlanner.plan(files: files, target: .timestamp(Self.t0))
        }
        #expect(early?.code == .gap)
        #expect(early?.message.contains("no restore point") == true)
    }

    @Test func timestampTargetStillDetectsGaps() {
        let files = Self.level0(1...2) + Self.level0(5...6)
        #expect(throws: ReplicationError.self) {
            try RestorePlanner.plan(files: files, target: .timestamp(Self.t0.addingTimeInterval(10)))
        }
        #expect(
            Self.ranges(try! RestorePlanner.plan(files: files, target: .timestamp(Self.t0.addingTimeInterval(3))))
                == ["L0:1-1", "L0:2-2"])
    }

    @Test func timestampTargetNeedsTimes() {
        let files = [LTXFileInfo(level: 0, minTXID: 1, maxTXID: 1, size: 10, createdAt: nil)]
        let error = #expect(throws: ReplicationError.self) {
            try RestorePlanner.plan(files: files, target: .timestamp(Self.t0))
        }
        #expect(error?.code == .invalidArgument)
    }
}

/// The planner's cost model and fallback: bytes and requests, files left out.
@Suite("Restore planner: cost and fallback")
struct RestorePlannerCostTests {
    static let t0 = RestorePlannerTests.t0

    static func f(_ level: Int, _ minTXID: UInt64, _ maxTXID: UInt64, size: Int64) -> LTXFileInfo {
        LTXFileInfo(
            level: level, minTXID: minTXID, maxTXID: maxTXID, size: size,
            createdAt: t0.addingTimeInterval(Double(maxTXID)))
    }

    @Test func compactedFilesSaveBytesAndRequests() throws {
        // A typical compacted replica: the snapshot, an hour, a few 5-minute slots, then batches.
        let files =
            [
                Self.f(9, 1, 100, size: 10 << 20), Self.f(3, 101, 200, size: 2 << 20),
                Self.f(2, 201, 220, size: 400 << 10),
            ]
            + (101...230).map { Self.f(0, UInt64($0), UInt64($0), size: 30 << 10) }
            + (101...220).map { Self.f(1, UInt64($0), UInt64($0), size: 40 << 10) }
        let plan = try RestorePlanner.plan(files: files, target: .latest)
        #expect(
            RestorePlannerTests.ranges(plan)
                == ["L9:1-100", "L3:101-200", "L2:201-220"] + (221...230).map { "L0:\($0)-\($0)" })
        #expect(plan.requests == 13)
        #expect(plan.bytes == (10 << 20) + (2 << 20) + (400 << 10) + 10 * (30 << 10))
    }

    @Test func fewerBytesBeatFewerFilesWhenTheDifferenceIsLarge() throws {
        // One 50 MB compacted file or ten small batches for the same TXIDs: the batches.
        let files =
            [Self.f(9, 1, 10, size: 1000), Self.f(1, 11, 20, size: 50 << 20)]
            + (11...20).map { Self.f(0, UInt64($0), UInt64($0), size: 1000) }
        let plan = try RestorePlanner.plan(files: files, target: .latest)
        #expect(plan.files.count == 11)
        #expect(plan.files.allSatisfy { $0.level != 1 })
    }

    @Test func excludedFilesAreReplacedByLowerLevels() throws {
        let files =
            [Self.f(9, 1, 3, size: 100), Self.f(1, 4, 8, size: 100)]
            + (4...8).map { Self.f(0, UInt64($0), UInt64($0), size: 100) }
        let plan = try RestorePlanner.plan(files: files, target: .latest, excluding: [Self.f(1, 4, 8, size: 0)])
        #expect(RestorePlannerTests.ranges(plan) == ["L9:1-3", "L0:4-4", "L0:5-5", "L0:6-6", "L0:7-7", "L0:8-8"])
        // Without the lower levels, leaving the compacted file out is a gap.
        let error = #expect(throws: ReplicationError.self) {
            try RestorePlanner.plan(
                files: [Self.f(9, 1, 3, size: 100), Self.f(1, 4, 8, size: 100)], target: .latest,
                excluding: [Self.f(1, 4, 8, size: 100)])
        }
        #expect(error?.code == .gap)
    }

    @Test func restorePointsAreTheReachableFileEnds() {
        let files = [
            Self.f(9, 1, 3, size: 1), Self.f(1, 4, 8, size: 1), Self.f(0, 4, 4, size: 1), Self.f(0, 12, 12, size: 1),
        ]
        #expect(RestorePlanner.restorePoints(files: files) == [3, 4, 8])
    }
}
