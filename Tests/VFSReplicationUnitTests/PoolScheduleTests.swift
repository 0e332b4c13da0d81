import Foundation
import Testing

@testable import VFSReplication

/// The uploader pool's two decisions: which waiting database runs a turn, and how long a worker
/// with nothing to run sleeps (pure rules, no threads).
@Suite("Pool schedule")
struct PoolScheduleTests {
    let t0 = ContinuousClock.now

    @Test func aTaskRunsWhenItsDeadlinePasses() {
        let due = t0 + .milliseconds(50)
        #expect(!PoolSchedule.isReady(due: due, now: t0, forced: false, wakeOnWork: false, generationAtTurn: 1, generationNow: 1))
        #expect(PoolSchedule.isReady(due: due, now: due, forced: false, wakeOnWork: false, generationAtTurn: 1, generationNow: 1))
    }

    @Test func aMovedWorkGenerationWakesOnlyTasksThatWaitForWork() {
        let due = t0 + .seconds(30)
        // Parked or waiting for a batch's deadline: a commit, kick or flush moved the generation.
        #expect(PoolSchedule.isReady(due: due, now: t0, forced: false, wakeOnWork: true, generationAtTurn: 7, generationNow: 8))
        // Backing off after an error: only the deadline (or a stop) ends it, whatever moves.
        #expect(!PoolSchedule.isReady(due: due, now: t0, forced: false, wakeOnWork: false, generationAtTurn: 7, generationNow: 8))
        // Nothing moved.
        #expect(!PoolSchedule.isReady(due: due, now: t0, forced: false, wakeOnWork: true, generationAtTurn: 7, generationNow: 7))
        // The generation wraps around.
        #expect(PoolSchedule.isReady(due: due, now: t0, forced: false, wakeOnWork: true, generationAtTurn: .max, generationNow: 0))
    }

    @Test func aStopOrFlushInThisProcessRunsATurnAtOnce() {
        #expect(PoolSchedule.isReady(due: t0 + .seconds(30), now: t0, forced: true, wakeOnWork: false, generationAtTurn: 1, generationNow: 1))
    }

    @Test func aWorkerSleepsUntilTheEarliestDeadline() {
        let dues = [t0 + .seconds(3), t0 + .milliseconds(40), t0 + .seconds(30)]
        #expect(PoolSchedule.sleep(until: dues, now: t0, cap: .seconds(60)) == .milliseconds(40))
        // No task: the cap.
        #expect(PoolSchedule.sleep(until: [ContinuousClock.Instant](), now: t0, cap: .seconds(60)) == .seconds(60))
        // Past deadlines (a task another worker is about to take) and sub-millisecond ones: 1 ms.
        #expect(PoolSchedule.sleep(until: [t0 - .seconds(1)], now: t0, cap: .seconds(60)) == .milliseconds(1))
        #expect(PoolSchedule.sleep(until: [t0 + .microseconds(200)], now: t0, cap: .seconds(60)) == .milliseconds(1))
        // Never longer than the cap.
        #expect(PoolSchedule.sleep(until: [t0 + .seconds(600)], now: t0, cap: .seconds(60)) == .seconds(60))
    }
}
