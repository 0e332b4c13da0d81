import Foundation
import Testing

@testable import VFSReplication

/// The uploader's rules without I/O: what a start finds in the replica means, and what a turn
/// does next (see UploaderRules.swift).
@Suite("Uploader rules")
struct UploaderRulesTests {
    let t0 = ContinuousClock.now
    let pos = SpoolPosition(segment: 3, offset: 4096)

    // MARK: Start-up: continue, adopt, snapshot above the floor, fence, new lineage

    @Test func aReplicaThatEndsWhereTheSpoolShippedIsContinued() {
        #expect(StartupDecision.first(replicaMax: 42, shippedTXID: 42) == .continue(nextTXID: 43))
    }

    @Test func anEmptyReplicaOrOneBehindTheSpoolStartsANewLineageAboveBoth() {
        // Fresh: nothing anywhere; the snapshot is TXID 1.
        #expect(StartupDecision.first(replicaMax: 0, shippedTXID: 0) == .newLineage(snapshotMinTXID: 1, lostFiles: false))
        // The replica was emptied (a new bucket, a wiped prefix): never reuse a shipped TXID.
        #expect(StartupDecision.first(replicaMax: 0, shippedTXID: 17) == .newLineage(snapshotMinTXID: 18, lostFiles: false))
        // It lost files the spool shipped: say so, and go above both.
        #expect(StartupDecision.first(replicaMax: 9, shippedTXID: 17) == .newLineage(snapshotMinTXID: 18, lostFiles: true))
    }

    @Test func aReplicaAheadOfTheSpoolIsInspectedFirst() {
        #expect(StartupDecision.first(replicaMax: 20, shippedTXID: 17) == .inspectNewest)
        #expect(StartupDecision.first(replicaMax: 1, shippedTXID: 0) == .inspectNewest)
    }

    @Test func anotherWritersLineageIsFencedWhateverTheSpoolHolds() {
        #expect(StartupDecision.afterInspecting(replicaMax: 20, newestNodeID: 0xBEEF, lineageID: 0xCAFE, ownUpload: nil) == .fence)
        #expect(StartupDecision.afterInspecting(replicaMax: 20, newestNodeID: 0xBEEF, lineageID: 0xCAFE, ownUpload: pos) == .fence)
    }

    @Test func ourUnrecordedUploadIsAdoptedAndAPowerLossRollbackSnapshotsAboveTheFloor() {
        // Killed between the publish and recording it: the spool holds the record it came from.
        #expect(
            StartupDecision.afterInspecting(replicaMax: 20, newestNodeID: 7, lineageID: 7, ownUpload: pos)
                == .adopt(position: pos, txid: 20))
        // Ours, but the spool no longer holds it (a power cut rolled it back): above TXID 20.
        #expect(
            StartupDecision.afterInspecting(replicaMax: 20, newestNodeID: 7, lineageID: 7, ownUpload: nil)
                == .snapshotAboveReplica(floor: 20))
    }

    // MARK: Turns: back-off, group commit, the election, after a step

    @Test func backOffDoublesUpToThirtySeconds() {
        var d = TurnRules.firstBackoff
        var seen: [Duration] = []
        for _ in 0..<12 {
            seen.append(d)
            d = TurnRules.nextBackoff(after: d)
        }
        #expect(seen.prefix(4) == [.milliseconds(100), .milliseconds(200), .milliseconds(400), .milliseconds(800)])
        #expect(seen.last == .seconds(30))
    }

    @Test func aRemoteCommitterWaitsOneGroupCommitWindowUnlessAFlushWaits() {
        let window = Duration.milliseconds(2)
        // Opens the window.
        let first = TurnRules.groupCommit(now: t0, windowEnd: nil, window: window, flushing: false)
        #expect(first.wait == window && first.windowEnd == t0 + window)
        // Inside it: what is left.
        let inside = TurnRules.groupCommit(now: t0 + .milliseconds(1), windowEnd: first.windowEnd, window: window, flushing: false)
        #expect(inside.wait == .milliseconds(1))
        // Past it: ship now, the window forgotten.
        let past = TurnRules.groupCommit(now: t0 + .milliseconds(3), windowEnd: first.windowEnd, window: window, flushing: false)
        #expect(past.wait == nil && past.windowEnd == nil)
        // A flush ships at once.
        #expect(TurnRules.groupCommit(now: t0, windowEnd: nil, window: window, flushing: true).wait == nil)
    }

    @Test func aProcessThatLostTheElectionTriesOncePerSecondOrForAFlush() {
        #expect(!TurnRules.shouldTryElection(now: t0 + .milliseconds(500), lastAttempt: t0, flushing: false))
        #expect(TurnRules.shouldTryElection(now: t0 + .seconds(1), lastAttempt: t0, flushing: false))
        #expect(TurnRules.shouldTryElection(now: t0 + .milliseconds(1), lastAttempt: t0, flushing: true))
        // It sleeps until the next attempt (a kick wakes it), or polls every 10 ms for a flush.
        let wait = TurnRules.candidateWait(now: t0 + .milliseconds(300), lastAttempt: t0, flushing: false)
        #expect(wait.0 == .milliseconds(700) && wait.wakeOnWork)
        let flush = TurnRules.candidateWait(now: t0, lastAttempt: t0, flushing: true)
        #expect(flush.0 == .milliseconds(10) && !flush.wakeOnWork)
    }

    func facts(
        _ decision: ShipPolicy.Decision, startedUp: Bool = true, needSnapshot: Bool = false, batchEmpty: Bool = true,
        flushing: Bool = false, flushWaiting: Bool = false, reclaimDueMs: Int64? = nil, maintenanceInMs: Int64? = nil
    ) -> TurnRules.AfterStep {
        TurnRules.AfterStep(
            decision: decision, nowMs: 1_000_000, startedUp: startedUp, needSnapshot: needSnapshot, batchEmpty: batchEmpty,
            flushing: flushing, flushWaiting: flushWaiting, idleReclaimDueMs: reclaimDueMs, maintenanceInMs: maintenanceInMs,
            pollInterval: .milliseconds(20), idleCap: .seconds(30))
    }

    @Test func anIdleDatabaseIsParkedUntilItsIdleReclaimOrTheCap() {
        #expect(TurnRules.afterStep(facts(.wait(untilMs: nil))) == .park(.seconds(30)))
        #expect(TurnRules.afterStep(facts(.wait(untilMs: nil), reclaimDueMs: 1_004_000)) == .park(.seconds(4)))
        // Overdue reclaim: 1 ms, never a zero or negative sleep.
        #expect(TurnRules.afterStep(facts(.wait(untilMs: nil), reclaimDueMs: 999_000)) == .park(.milliseconds(1)))
    }

    @Test func aDatabaseWithWorkLeftIsNeverParked() {
        // Before its start-up, with a snapshot to take, with a batch open, or while flushing: it
        // polls instead.
        #expect(TurnRules.afterStep(facts(.wait(untilMs: nil), startedUp: false)) == .wait(.milliseconds(20)))
        #expect(TurnRules.afterStep(facts(.wait(untilMs: nil), needSnapshot: true)) == .wait(.milliseconds(20)))
        #expect(TurnRules.afterStep(facts(.wait(untilMs: 1_000_005), batchEmpty: false)) == .wait(.milliseconds(5)))
        #expect(TurnRules.afterStep(facts(.wait(untilMs: nil), flushing: true)) == .wait(.milliseconds(20)))
    }

    @Test func aDueBatchShipsAtOnceAndAWaitingFlushIsNeverMadeToWait() {
        #expect(TurnRules.afterStep(facts(.ship, batchEmpty: false)) == .again)
        #expect(TurnRules.afterStep(facts(.wait(untilMs: nil), flushWaiting: true)) == .again)
        #expect(TurnRules.afterStep(facts(.wait(untilMs: 1_000_500), batchEmpty: false, flushWaiting: true)) == .again)
    }

    @Test func maintenanceGetsASliceWhenDueAndShortensTheWaitOtherwise() {
        // Due now, idle: a slice of at least 200 ms and at most 2 s.
        #expect(TurnRules.afterStep(facts(.wait(untilMs: nil), maintenanceInMs: 0)) == .maintain(slice: .seconds(2)))
        // Due now with a batch due in 5 ms: the slice is at least 200 ms (maintenance is
        // bounded by its own deadline, the batch ships after it).
        #expect(
            TurnRules.afterStep(facts(.wait(untilMs: 1_000_005), batchEmpty: false, maintenanceInMs: 0))
                == .maintain(slice: .milliseconds(200)))
        // Due in 3 s while idle: parked until then.
        #expect(TurnRules.afterStep(facts(.wait(untilMs: nil), maintenanceInMs: 3_000)) == .park(.milliseconds(3_001)))
        // Never before the start-up or during a flush.
        #expect(TurnRules.afterStep(facts(.wait(untilMs: nil), startedUp: false, maintenanceInMs: 0)) == .wait(.milliseconds(20)))
        #expect(TurnRules.afterStep(facts(.wait(untilMs: nil), flushing: true, maintenanceInMs: 0)) == .wait(.milliseconds(20)))
    }
}
