internal import CVFSShim
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// Keeps each database's `UploaderRecord` and persists it to `<db>-vfsrepl/status.json`, where
/// `vfs-status` and the dashboard read it from any process.
///
/// ```swift
/// let status = StatusFileObserver(config: config)
/// let replicator = try Replicator(config: config, observers: [status])
/// ```
///
/// Events only update memory on the uploader's thread; the file is written on a private thread,
/// at most once per `minimumInterval` per database while events keep coming, and never while a
/// database is idle (an idle uploader reports nothing). A thread, not a Dispatch queue: in a
/// process forked from one that used Dispatch's worker threads, libdispatch aborts on any use. Losing the election (`.elected(false)`,
/// the last event of a shutdown) writes at once. A process that takes over a database continues
/// the counters of the record it finds.
public final class StatusFileObserver: UploaderObserver, @unchecked Sendable {
    private let minimumInterval: Duration
    private let logger: Logger
    private let now: @Sendable () -> Date
    private let pid = getpid()

    /// Held across taking a record and writing it, so a newer record is never overwritten by an
    /// older one written concurrently.
    private let writeLock = NSLock()
    private let lock = NSCondition()
    // Guarded by lock:
    private var entries: [String: Entry] = [:]
    private var writes = 0
    /// Delayed writes, for the writer thread (started at the first one).
    private var due: [String: ContinuousClock.Instant] = [:]
    private var writerStarted = false

    private struct Entry {
        var files: ReplicationFiles
        var record: UploaderRecord
        var dirty = false
        var scheduled = false
        var lastWrite: ContinuousClock.Instant?
        var warned = false
    }

    /// - Parameters:
    ///   - config: the databases to keep records for (events for others are ignored).
    ///   - minimumInterval: the shortest time between two writes of one database's file.
    ///   - now: the wall clock (tests).
    public init(
        config: ReplicationConfig, minimumInterval: Duration = .seconds(1),
        logger: Logger = Logger(label: "vfs-replication"), now: @escaping @Sendable () -> Date = { Date() }
    ) {
        self.minimumInterval = minimumInterval
        self.logger = logger
        self.now = now
        for db in config.databases {
            let files = ReplicationFiles(databasePath: db.path)
            entries[db.path] = Entry(files: files, record: UploaderRecord(database: files.databasePath))
        }
    }

    /// Keeps records for one more database (one added to a running `Replicator`).
    public func track(_ db: DatabaseConfig) {
        lock.lock()
        defer { lock.unlock() }
        guard entries[db.path] == nil else { return }
        let files = ReplicationFiles(databasePath: db.path)
        entries[db.path] = Entry(files: files, record: UploaderRecord(database: files.databasePath))
    }

    /// The record of `database` as this process knows it (nil if not configured).
    public func record(for database: String) -> UploaderRecord? {
        lock.lock()
        defer { lock.unlock() }
        return entries[database]?.record
    }

    public func uploader(database: String, didReport event: UploaderEvent) {
        let date = now()
        var writeNow = false
        var delay: Duration?
        lock.lock()
        guard var entry = entries[database] else {
            lock.unlock()
            return
        }
        if case .elected(true) = event, let stored = UploaderRecord.load(path: entry.files.statusFile),
            stored.database == entry.record.database
        {
            // Continue what the previous uploader (this process earlier, or another one) counted.
            entry.record = stored
        }
        entry.record.apply(event, now: date, pid: pid)
        entry.dirty = true
        if case .elected(false) = event {
            writeNow = true
        } else if !entry.scheduled {
            entry.scheduled = true
            let clock = ContinuousClock.now
            if let last = entry.lastWrite, clock - last < minimumInterval {
                delay = minimumInterval - (clock - last)
            } else {
                delay = .zero
            }
        }
        entries[database] = entry
        lock.unlock()

        if writeNow {
            write(database)
        } else if let delay {
            schedule(database, at: ContinuousClock.now + delay)
        }
    }

    private func schedule(_ database: String, at instant: ContinuousClock.Instant) {
        lock.lock()
        due[database] = min(due[database] ?? instant, instant)
        if !writerStarted {
            writerStarted = true
            // Named by the thread itself: on Linux a name set before start is not applied, and a
            // new thread otherwise inherits its creator's (an uploader thread's).
            let t = Thread { [self] in
                vr_thread_set_name("vfs-status-file")
                runWriter()
            }
            t.start()
        }
        lock.signal()
        lock.unlock()
    }

    /// The writer thread: writes each scheduled record when it is due. It lives as long as the
    /// process (one per observer; it holds the observer).
    private func runWriter() {
        lock.lock()
        while true {
            guard let next = due.min(by: { $0.value < $1.value }) else {
                lock.wait()
                continue
            }
            let now = ContinuousClock.now
            if next.value > now {
                _ = lock.wait(until: Date().addingTimeInterval((next.value - now).seconds))
                continue
            }
            due[next.key] = nil
            lock.unlock()
            write(next.key)
            lock.lock()
        }
    }

    /// Files written so far (tests).
    var writeCount: Int {
        lock.lock()
        defer { lock.unlock() }
        return writes
    }

    /// Writes every record that changed since its last write (at shutdown, or in tests).
    public func flush() {
        lock.lock()
        let names = entries.filter { $0.value.dirty }.map(\.key)
        lock.unlock()
        for name in names { write(name) }
    }

    private func write(_ database: String) {
        writeLock.lock()
        defer { writeLock.unlock() }
        lock.lock()
        guard var entry = entries[database] else {
            lock.unlock()
            return
        }
        entry.scheduled = false
        guard entry.dirty else {
            entries[database] = entry
            lock.unlock()
            return
        }
        entry.dirty = false
        entry.lastWrite = ContinuousClock.now
        writes += 1
        let record = entry.record
        let path = entry.files.statusFile
        entries[database] = entry
        lock.unlock()

        do {
            try record.write(path: path)
        } catch {
            lock.lock()
            let warned = entries[database]?.warned ?? true
            entries[database]?.warned = true
            lock.unlock()
            if !warned {
                logger.info(
                    "cannot write the status file",
                    metadata: [
                        "db.path": "\(database)", "error": "\((error as? ReplicationError)?.message ?? "\(error)")",
                    ])
            }
        }
    }
}
