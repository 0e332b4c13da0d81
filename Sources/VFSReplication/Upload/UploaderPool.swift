internal import CVFSShim
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A few threads that serve every database of a `Replicator` (docs/ARCHITECTURE.md, "Uploader
/// pool"). Each database is a task whose turns (`DatabaseUploader.turn`) one worker runs at a
/// time; between turns a task waits for a deadline, for its work generation to move, or, when
/// idle, parked until a commit. Workers sleep on one futex, the bell of the pool's home database
/// (its first), which every commit that wakes a parked database rings, in any process
/// (`vr_db_set_bell`). An idle database costs no thread and no timer shorter than the idle cap.
///
/// Locks: `lock` guards the task list and is never held while a turn runs or while taking an
/// uploader's lock. A forked child never touches its parent's pool (its lock may be held
/// there): `Replicator` builds a new one.
final class UploaderPool: @unchecked Sendable {
    /// Most threads the pool runs.
    let maxThreads: Int

    private let lock = NSLock()
    // Guarded by lock:
    private var tasks: [PoolTask] = []
    private var liveWorkers = 0
    private var cursor = 0
    // Guarded by homeLock (taken alone, by any thread, under any other lock):
    private let homeLock = NSLock()
    private var homeSpool: SpoolHandle?

    /// The default size: a few threads, never more than the cores.
    static func defaultThreads() -> Int {
        min(4, max(1, ProcessInfo.processInfo.activeProcessorCount))
    }

    init(threads: Int) {
        self.maxThreads = max(1, threads)
    }

    /// The database whose state holds the bell the workers sleep on (the first one added).
    var home: SpoolHandle? {
        homeLock.lock()
        defer { homeLock.unlock() }
        return homeSpool
    }

    /// Starts serving `uploader`: its first turn runs at once.
    func add(_ uploader: DatabaseUploader) {
        homeLock.lock()
        if homeSpool == nil { homeSpool = uploader.spool }
        homeLock.unlock()
        lock.lock()
        tasks.append(PoolTask(uploader))
        let wanted = min(maxThreads, tasks.count)
        let starts = max(0, wanted - liveWorkers)
        liveWorkers += starts
        lock.unlock()
        // Named after the home database, for `top -H` and /proc (the kernel keeps 15 bytes).
        let name = "vfs-upload " + URL(fileURLWithPath: home?.databasePath ?? "").lastPathComponent
        for _ in 0..<starts {
            // Named by the thread itself: on Linux Foundation does not apply a name set before
            // start (the thread would keep its creator's).
            let t = Thread { [self] in self.work(name: name) }
            t.stackSize = 512 << 10
            t.start()
        }
        ring()
    }

    /// Runs `uploader`'s next turn as soon as a worker is free (a stop or flush in this process).
    func wake(_ uploader: DatabaseUploader) {
        lock.lock()
        for t in tasks where t.uploader === uploader { t.forced = true }
        lock.unlock()
        ring()
    }

    /// Wakes sleeping workers to look at every task again.
    func ring() { home?.ringBell() }

    /// Databases served now, threads running now (for tests and the benchmark).
    var counts: (databases: Int, threads: Int) {
        lock.lock()
        defer { lock.unlock() }
        return (tasks.count, liveWorkers)
    }

    // MARK: - Workers

    private func work(name: String) {
        vr_thread_set_name(name)
        guard let home else { return }
        lock.lock()
        while true {
            if tasks.count < liveWorkers && liveWorkers > 1 || tasks.isEmpty {
                // More workers than databases (some stopped): this one is not needed.
                liveWorkers -= 1
                lock.unlock()
                return
            }
            // Read the bell before looking, so a ring in between cuts the sleep short.
            let bell = home.bellGeneration()
            let now = ContinuousClock.now
            if let task = nextReady(now: now) {
                task.running = true
                task.forced = false
                lock.unlock()
                let result = task.uploader.turn()
                lock.lock()
                task.running = false
                apply(result, to: task, now: ContinuousClock.now)
                continue
            }
            let sleep = PoolSchedule.sleep(
                until: tasks.lazy.filter { !$0.running }.map(\.due), now: now, cap: Self.sleepCap)
            lock.unlock()
            home.waitForBell(generation: bell, timeout: sleep)
            lock.lock()
        }
    }

    /// The next task to run, round-robin from where the last search stopped.
    private func nextReady(now: ContinuousClock.Instant) -> PoolTask? {
        let n = tasks.count
        for k in 0..<n {
            let i = (cursor + k) % n
            let t = tasks[i]
            guard !t.running else { continue }
            let generation = t.wakeOnWork ? t.uploader.spool.workGeneration() : t.generation
            if PoolSchedule.isReady(
                due: t.due, now: now, forced: t.forced, wakeOnWork: t.wakeOnWork,
                generationAtTurn: t.generation, generationNow: generation)
            {
                cursor = (i + 1) % n
                return t
            }
        }
        return nil
    }

    private func apply(_ result: DatabaseUploader.TurnResult, to task: PoolTask, now: ContinuousClock.Instant) {
        task.generation = task.uploader.turnGeneration
        switch result {
        case .again:
            task.due = now
            task.wakeOnWork = false
        case .wait(let d, let onWork):
            task.due = now + d
            task.wakeOnWork = onWork
        case .park(let d):
            task.due = now + d
            task.wakeOnWork = true
        case .finished:
            tasks.removeAll { $0 === task }
            cursor = 0
        }
    }

    /// The longest a worker sleeps without a deadline (none is longer than the idle cap anyway).
    static let sleepCap: Duration = .seconds(60)
}

/// One database in the pool (guarded by the pool's lock).
private final class PoolTask {
    let uploader: DatabaseUploader
    var due = ContinuousClock.now
    var wakeOnWork = false
    var generation: UInt32 = 0
    var running = false
    var forced = false
    init(_ uploader: DatabaseUploader) { self.uploader = uploader }
}

/// The pool's decisions, apart from its threads and futexes (unit-tested alone).
enum PoolSchedule {
    /// Whether a task that is not running should run a turn now: its deadline passed, this
    /// process asked (a stop or flush), or it waits for work and its work generation moved.
    static func isReady(
        due: ContinuousClock.Instant, now: ContinuousClock.Instant, forced: Bool, wakeOnWork: Bool,
        generationAtTurn: UInt32, generationNow: UInt32
    ) -> Bool {
        forced || now >= due || (wakeOnWork && generationNow != generationAtTurn)
    }

    /// How long a worker with nothing ready sleeps: until the earliest deadline of the tasks it
    /// could run, at least 1 ms (futex timeouts are in milliseconds), at most `cap`.
    static func sleep<S: Sequence>(until dues: S, now: ContinuousClock.Instant, cap: Duration) -> Duration
    where S.Element == ContinuousClock.Instant {
        var d = cap
        for due in dues { d = min(d, due - now) }
        return max(d, .milliseconds(1))
    }
}
