internal import CVFSShim
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// Replicates the databases named in a configuration: registers the `replicated` VFS, declares
/// each database to it and ships them all from one small pool of threads (`UploaderPool`,
/// `uploader-threads`). Databases can be added and removed while it runs.
///
/// ```swift
/// let config = try ReplicationConfig.load(path: "config/replication.yml")
/// let replicator = try Replicator(config: config)
/// replicator.start()
/// // open "file:storage/production.sqlite3?vfs=replicated" with any SQLite client ...
/// try replicator.flush()          // everything committed so far is in the replica
/// replicator.shutdown()           // flushes, then stops the uploaders
/// ```
///
/// Forking servers (Puma, Unicorn, Gunicorn --preload, Solid Queue, Resque) create it, then fork:
/// a child has none of the parent's threads, and the parent's uploader objects may be locked
/// forever there. So the child never touches them: the first call in the child (or its first
/// open or write through the VFS) builds fresh uploaders for the new process, which take part in
/// the normal election (the parent, while alive, stays the uploader).
public final class Replicator: @unchecked Sendable {
    // Guarded by the shim's process lock (vr_process_lock), which stays usable in a forked child:
    private var currentConfig: ReplicationConfig
    private let logger: Logger
    private var spools: [SpoolHandle]
    private var uploaders: [DatabaseUploader]
    private var pool: UploaderPool
    private var forkGeneration: UInt32
    private var started = false
    private let observers: [any UploaderObserver]

    /// The databases replicated now (the configuration given, with those added and removed since).
    public var config: ReplicationConfig { Self.withProcessLock { currentConfig } }

    /// - Parameter observers: receive every uploader's events (status file, metrics, dashboards),
    ///   in the process that creates the replicator. A forked child reports to a new status-file
    ///   observer only: the given ones may hold the parent's locks and queues.
    public init(
        config: ReplicationConfig, logger: Logger = Logger(label: "vfs-replication"),
        observers: [any UploaderObserver] = []
    ) throws {
        self.currentConfig = config
        self.logger = logger
        // status.json beside each database, for vfs-status and the dashboard (unless the caller
        // brings its own observer of that kind).
        let observers =
            observers.contains { $0 is StatusFileObserver }
            ? observers : [StatusFileObserver(config: config, logger: logger) as any UploaderObserver] + observers
        self.observers = observers
        try ReplicatedVFS.register()
        self.forkGeneration = vr_fork_generation()
        self.pool = UploaderPool(threads: config.uploaderThreads ?? UploaderPool.defaultThreads())
        var uploaders: [DatabaseUploader] = []
        var spools: [SpoolHandle] = []
        for db in config.databases {
            let (spool, uploader) = try Self.prepare(db, logger: logger, observers: observers)
            spools.append(spool)
            uploaders.append(uploader)
        }
        self.uploaders = uploaders
        self.spools = spools
        Self.register(self)
        logger.info(
            "replicator ready",
            metadata: [
                "databases": "\(config.databases.count)",
                "uploader-threads": "\(pool.maxThreads)",
                "io": "\(ReplicatedVFS.ioUringAvailable ? "io_uring" : "pwrite+fsync (io_uring refused)")",
            ])
    }

    /// Declares a database to the VFS and builds its uploader (not started).
    private static func prepare(
        _ db: DatabaseConfig, logger: Logger, observers: [any UploaderObserver]
    ) throws -> (SpoolHandle, DatabaseUploader) {
        let spool = try ReplicatedVFS.registerDatabase(path: db.path)
        let client = try makeDatabaseReplica(db, logger: logger) { [spool] in spool.state().shippedTxid }
        spool.setSpoolLimit(db.spoolMaxBytes, grow: db.spoolGrows)
        spool.setDurability(remote: db.durability == .remote, timeout: db.durabilityTimeout)
        if let marker = RestoreMarker.load(forDatabase: spool.databasePath) {
            // A restore from any of the database's replicas continues its lineage.
            let locations = try db.replicas.map { try makeReplicaClient($0).location }
            if locations.contains(marker.replica), spool.adopt(marker) {
                logger.info(
                    "continuing the lineage of a restore",
                    metadata: ["db.path": "\(db.path)", "txid": "\(marker.txid)"])
            }
            RestoreMarker.remove(forDatabase: spool.databasePath)
        }
        return (spool, DatabaseUploader(config: db, spool: spool, replica: client, logger: logger, observers: observers))
    }

    /// Starts replicating one more database while running (a tenant's new database, say): it is
    /// declared to the VFS, and shipped by the pool from now on if the replicator is started.
    /// Throws `.invalidArgument` if it is already replicated, or its replica is another
    /// database's; `.invalidConfig` if its replica cannot be built.
    public func addDatabase(_ db: DatabaseConfig) throws {
        try Self.withProcessLock {
            let canonical = ConfigPaths.canonical(db.path)
            if let other = currentConfig.databases.first(where: { ConfigPaths.canonical($0.path) == canonical }) {
                throw ReplicationError(.invalidArgument, "database \(db.path) is already replicated (as \(other.path))")
            }
            for replica in db.replicas {
                if let other = currentConfig.databases.first(where: { $0.replicas.contains { $0.url == replica.url } }) {
                    throw ReplicationError(
                        .invalidArgument,
                        "database \(db.path): replica \(replica.url) is already database \(other.path)'s; each database needs its own replica location"
                    )
                }
            }
            let list = current()
            for case let status as StatusFileObserver in observers { status.track(db) }
            let (spool, uploader) = try Self.prepare(db, logger: logger, observers: observers)
            currentConfig.databases.append(db)
            spools.append(spool)
            uploaders = list + [uploader]
            if started { uploader.start(in: pool) }
        }
    }

    /// Stops replicating a database while running: what it committed so far is shipped first
    /// (bounded by `timeout`), then the pool forgets it. Its spool stays beside it, so adding it
    /// again (or the next process) continues where this stopped. Returns false if it was not
    /// replicated.
    @discardableResult
    public func removeDatabase(path: String, timeout: Duration = .seconds(60)) -> Bool {
        let canonical = ConfigPaths.canonical(path)
        let found: DatabaseUploader? = Self.withProcessLock {
            let list = current()
            guard
                let i = currentConfig.databases.indices.first(where: {
                    ConfigPaths.canonical(currentConfig.databases[$0].path) == canonical
                        || spools[$0].databasePath == path
                })
            else { return nil }
            let u = list[i]
            currentConfig.databases.remove(at: i)
            spools.remove(at: i)
            uploaders = Array(list[..<i] + list[(i + 1)...])
            return u
        }
        guard let found else { return false }
        found.stop(timeout: timeout)
        return true
    }

    /// Starts shipping. Only one process ships a given database at a time; the others capture
    /// and take over if it dies.
    public func start() {
        let (list, pool) = Self.withProcessLock {
            started = true
            return (current(), self.pool)
        }
        for u in list { u.start(in: pool) }
    }

    /// Threads shipping this replicator's databases now, and the most it runs.
    public var uploaderThreads: (running: Int, max: Int) {
        let pool = Self.withProcessLock { current(); return self.pool }
        return (pool.counts.threads, pool.maxThreads)
    }

    /// Waits until every transaction committed before this call is durable in its replica.
    /// Throws `.fenced` if another writer owns a replica, `.timeout` (with the last error) if
    /// the replica cannot be reached in time.
    public func flush(timeout: Duration = .seconds(60)) throws {
        for u in Self.withProcessLock({ current() }) { try u.flush(timeout: timeout) }
    }

    /// Flushes every database side by side within one `timeout`, and says for each whether all
    /// it committed before the call is durable in its replica (nil) or why not. One database
    /// that cannot reach its replica does not use up the others' time, as `flush` (one after
    /// the other) would.
    public func flushEach(timeout: Duration = .seconds(60)) -> [(database: String, error: ReplicationError?)] {
        let (list, paths) = Self.withProcessLock { (current(), currentConfig.databases.map(\.path)) }
        let results = FlushResults(count: list.count)
        let group = DispatchGroup()
        for (i, u) in list.enumerated() {
            group.enter()
            // A thread each, not the dispatch pool: every flush mostly sleeps polling the shared
            // state, and a pool as wide as the cores would run them a few at a time.
            let thread = Thread {
                do {
                    try u.flush(timeout: timeout)
                } catch let error as ReplicationError {
                    results.set(i, error)
                } catch {
                    results.set(i, ReplicationError(.io, "database \(paths[i]): \(error)"))
                }
                group.leave()
            }
            thread.name = "vfs-flush"
            thread.start()
        }
        group.wait()
        return zip(paths, results.errors).map { ($0, $1) }
    }

    private final class FlushResults: @unchecked Sendable {
        private let lock = NSLock()
        private var values: [ReplicationError?]
        init(count: Int) { values = Array(repeating: nil, count: count) }
        func set(_ i: Int, _ error: ReplicationError) { lock.withLock { values[i] = error } }
        var errors: [ReplicationError?] { lock.withLock { values } }
    }

    /// Flushes what is pending and stops the uploaders.
    public func shutdown(timeout: Duration = .seconds(60)) {
        let list = Self.withProcessLock({ current() })
        // Ask them all first, so the pool's threads stop the databases side by side.
        for u in list { u.requestStop() }
        let deadline = ContinuousClock.now + timeout
        for u in list { u.stop(timeout: max(.zero, deadline - .now)) }
    }

    /// Sets `durability: remote` (or back to local) for one configured database, in this process:
    /// its commits then wait until they are durable in the replica (or `timeout`).
    public func setDurability(database path: String, remote: Bool, timeout: Duration = .seconds(10)) throws {
        let spool: SpoolHandle? = Self.withProcessLock {
            currentConfig.databases.indices.first(where: {
                currentConfig.databases[$0].path == path || spools[$0].databasePath == path
            }).map { spools[$0] }
        }
        guard let spool else {
            throw ReplicationError(.invalidArgument, "database \(path) is not in the replication config")
        }
        spool.setDurability(remote: remote, timeout: timeout)
    }

    /// Bytes the uploader of `path` holds for reading its spool (nil if it is not configured):
    /// an idle database holds none.
    func spoolReadBufferBytes(database path: String) -> Int? {
        Self.withProcessLock { current() }.first { $0.config.path == path }?.spoolReadBufferBytes
    }

    /// One entry per configured database.
    public func status() -> [DatabaseStatus] { Self.withProcessLock { current() }.map { $0.status() } }

    /// Runs `body` under the process-wide lock that stays consistent across fork() (a Foundation
    /// lock held by another thread at the fork stays locked forever in the child).
    public static func withProcessLock<T>(_ body: () throws -> T) rethrows -> T {
        vr_process_lock()
        defer { vr_process_unlock() }
        return try body()
    }

    // MARK: - fork()

    /// This process's uploaders; in a forked child, new ones (the caller holds the process lock).
    private func current() -> [DatabaseUploader] {
        let generation = vr_fork_generation()
        guard generation != forkGeneration else { return uploaders }
        // The parent's uploaders have no thread here and their locks may have been held at the
        // fork: never call them, never release them (a deinit could touch those locks).
        Self.abandoned.append(contentsOf: uploaders)
        Self.abandonedPools.append(pool)
        pool = UploaderPool(threads: pool.maxThreads)
        let status = StatusFileObserver(config: currentConfig, logger: logger)
        var fresh: [DatabaseUploader] = []
        for (db, spool) in zip(currentConfig.databases, spools) {
            do {
                let client = try makeDatabaseReplica(db, logger: logger) { [spool] in spool.state().shippedTxid }
                fresh.append(DatabaseUploader(config: db, spool: spool, replica: client, logger: logger, observers: [status]))
            } catch {
                logger.error(
                    "forked process: cannot reach the replica; this process will not ship the database",
                    metadata: ["db.path": "\(db.path)", "error": "\((error as? ReplicationError)?.message ?? "\(error)")"])
            }
        }
        uploaders = fresh
        forkGeneration = generation
        if started { for u in fresh { u.start(in: pool) } }
        logger.info("forked: uploaders restarted in the new process", metadata: ["pid": "\(getpid())"])
        return fresh
    }

    /// Replicators of this process, for the shim's fork hook (guarded by the process lock).
    nonisolated(unsafe) private static var live: [Weak] = []
    nonisolated(unsafe) private static var abandoned: [DatabaseUploader] = []
    nonisolated(unsafe) private static var abandonedPools: [UploaderPool] = []
    private struct Weak { weak var replicator: Replicator? }

    private static func register(_ r: Replicator) {
        withProcessLock {
            live.removeAll { $0.replicator == nil }
            live.append(Weak(replicator: r))
            vr_set_fork_hook(forkHook)
        }
    }

    /// Called by the shim in a forked child at its first open or write through the VFS.
    private static let forkHook: @convention(c) () -> Void = {
        Replicator.withProcessLock {
            for w in Replicator.live { _ = w.replicator?.current() }
        }
    }
}
