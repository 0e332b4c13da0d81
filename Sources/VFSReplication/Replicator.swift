import Foundation
import Logging

/// Replicates the databases named in a configuration: registers the `replicated` VFS, declares
/// each database to it and runs one uploader per database in this process.
///
/// ```swift
/// let config = try ReplicationConfig.load(path: "config/replication.yml")
/// let replicator = try Replicator(config: config)
/// replicator.start()
/// // open "file:storage/production.sqlite3?vfs=replicated" with any SQLite client ...
/// try replicator.flush()          // everything committed so far is in the replica
/// replicator.shutdown()           // flushes, then stops the uploaders
/// ```
public final class Replicator: @unchecked Sendable {
    public let config: ReplicationConfig
    private let uploaders: [DatabaseUploader]
    private let logger: Logger

    /// - Parameter observers: receive every uploader's events (status file, metrics, dashboards).
    public init(
        config: ReplicationConfig, logger: Logger = Logger(label: "vfs-replication"),
        observers: [any UploaderObserver] = []
    ) throws {
        self.config = config
        self.logger = logger
        // status.json beside each database, for vfs-status and the dashboard (unless the caller
        // brings its own observer of that kind).
        let observers =
            observers.contains { $0 is StatusFileObserver }
            ? observers : [StatusFileObserver(config: config, logger: logger) as any UploaderObserver] + observers
        try ReplicatedVFS.register()
        var uploaders: [DatabaseUploader] = []
        for db in config.databases {
            let spool = try ReplicatedVFS.registerDatabase(path: db.path)
            let client = try makeReplicaClient(db.replica)
            spool.setSpoolLimit(db.spoolMaxBytes, grow: db.spoolGrows)
            spool.setDurability(remote: db.durability == .remote, timeout: db.durabilityTimeout)
            if let marker = RestoreMarker.load(forDatabase: spool.databasePath) {
                if marker.replica == client.location, spool.adopt(marker) {
                    logger.info(
                        "continuing the lineage of a restore",
                        metadata: ["db.path": "\(db.path)", "txid": "\(marker.txid)"])
                }
                RestoreMarker.remove(forDatabase: spool.databasePath)
            }
            uploaders.append(
                DatabaseUploader(config: db, spool: spool, replica: client, logger: logger, observers: observers))
        }
        self.uploaders = uploaders
        logger.info(
            "replicator ready",
            metadata: [
                "databases": "\(config.databases.count)",
                "io": "\(ReplicatedVFS.ioUringAvailable ? "io_uring" : "pwrite+fsync (io_uring refused)")",
            ])
    }

    /// Starts the uploader threads. Only one process ships a given database at a time; the
    /// others capture and take over if it dies.
    public func start() {
        for u in uploaders { u.start() }
    }

    /// Waits until every transaction committed before this call is durable in its replica.
    /// Throws `.fenced` if another writer owns a replica, `.timeout` (with the last error) if
    /// the replica cannot be reached in time.
    public func flush(timeout: Duration = .seconds(60)) throws {
        for u in uploaders { try u.flush(timeout: timeout) }
    }

    /// Flushes what is pending and stops the uploaders.
    public func shutdown(timeout: Duration = .seconds(60)) {
        for u in uploaders { u.stop(timeout: timeout) }
    }

    /// Sets `durability: remote` (or back to local) for one configured database, in this process:
    /// its commits then wait until they are durable in the replica (or `timeout`).
    public func setDurability(database path: String, remote: Bool, timeout: Duration = .seconds(10)) throws {
        guard let u = uploaders.first(where: { $0.config.path == path || $0.spool.databasePath == path }) else {
            throw ReplicationError(.invalidArgument, "database \(path) is not in the replication config")
        }
        u.spool.setDurability(remote: remote, timeout: timeout)
    }

    /// One entry per configured database.
    public func status() -> [DatabaseStatus] { uploaders.map { $0.status() } }
}
