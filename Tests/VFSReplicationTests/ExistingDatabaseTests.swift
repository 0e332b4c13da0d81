import Foundation
import Testing
import VFSReplicationStatusPage

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// A database that already has data when replication is added to the app (issue 10, item 1): it
/// is backed up when an uploader starts, without waiting for a write, and until then it is
/// never reported healthy.
@Suite("Existing databases", .serialized)
struct ExistingDatabaseTests {
    /// A WAL database with rows, written by plain sqlite3 (never through the VFS).
    private func makeExistingDatabase(_ dir: String) throws -> String {
        let db = dir + "/app.db"
        try TestSupport.sqlite(
            db,
            """
            PRAGMA journal_mode=WAL;
            CREATE TABLE settings(key TEXT PRIMARY KEY, value TEXT);
            INSERT INTO settings SELECT 'key ' || value, hex(randomblob(100)) FROM generate_series(1, 300);
            CREATE INDEX settings_value ON settings(value);
            """)
        return db
    }

    @Test func onceShipsAnExistingDatabase() throws {
        guard let replicate = TestSupport.builtProduct("vfs-replicate"),
            let status = TestSupport.builtProduct("vfs-status"),
            let rebuild = TestSupport.builtProduct("vfs-rebuild")
        else {
            Issue.record("vfs-replicate, vfs-status and vfs-rebuild must be built next to the tests")
            return
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try makeExistingDatabase(dir)
        let config = try writeReplicationConfig(dir: dir)

        // Added to the config, nothing shipped yet: not ok, in text and JSON.
        var r = try TestSupport.run(status, ["--config", config])
        #expect(r.status == 1, "\(r)")
        #expect(r.stdout.contains("not yet backed up since"), "\(r)")
        r = try TestSupport.run(status, ["--config", config, "--json"])
        #expect(r.status == 1, "\(r)")
        #expect(r.stdout.contains("\"healthy\" : false"), "\(r)")
        #expect(r.stdout.contains("notBackedUpSince"), "\(r)")

        r = try TestSupport.run(replicate, ["--config", config, "--once"])
        #expect(r.status == 0, "\(r)")
        #expect(!r.stdout.contains("durable TXID 0 of 0"), "\(r)")
        #expect(r.stdout.contains("1 files uploaded"), "\(r)")

        let out = dir + "/restored.db"
        r = try TestSupport.run(rebuild, ["--replica", "file://\(dir)/replica", "--output", out])
        #expect(r.status == 0, "\(r)")
        #expect(try TestSupport.dump(out) == TestSupport.dump(db))

        r = try TestSupport.run(status, ["--config", config])
        #expect(r.status == 0, "\(r)")
        #expect(!r.stdout.contains("not yet backed up"), "\(r)")
    }

    @Test func startedReplicatorShipsAnExistingDatabaseWithoutAWrite() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = try makeExistingDatabase(dir)
        let config = try ReplicationConfig.load(path: try writeReplicationConfig(dir: dir))

        let before = StatusReport.collect(config: config)[0]
        #expect(!before.healthy)
        #expect(before.notBackedUpSince != nil)
        #expect(before.problems.contains { $0.hasPrefix("not yet backed up since") }, "\(before.problems)")
        #expect(PrometheusText.render([before]).contains("vfsreplication_backed_up{database=\"\(before.database)\"} 0"))

        let replicator = try Replicator(config: config)
        replicator.start()
        defer { replicator.shutdown(timeout: .seconds(10)) }
        let replica = FileReplicaClient(directory: dir + "/replica")
        #expect(TestSupport.waitUntil(timeout: 30) { ((try? replica.listFiles(level: 9)) ?? []).count == 1 })
        try replicator.flush(timeout: .seconds(30))

        let out = dir + "/restored.db"
        _ = try ReplicaRestorer.restore(from: replica, to: out, options: RestoreOptions(force: true, verify: true))
        #expect(try TestSupport.dump(out) == TestSupport.dump(db))
        let after = StatusReport.collect(config: config)[0]
        #expect(after.healthy, "\(after.problems)")
        #expect(after.notBackedUpSince == nil)
        #expect(PrometheusText.render([after]).contains("vfsreplication_backed_up{database=\"\(after.database)\"} 1"))
    }

    @Test func databaseChangedWhileClosedIsShippedAtStart() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/app.db"
        let config = try ReplicationConfig.load(path: try writeReplicationConfig(dir: dir))
        do {
            let replicator = try Replicator(config: config)
            replicator.start()
            let c = try Conn(db)
            try c.exec("PRAGMA journal_mode=WAL")
            try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
            try c.insertBlobs(10, bytes: 100)
            try replicator.flush(timeout: .seconds(30))
            replicator.shutdown(timeout: .seconds(10))
        }
        #expect(StatusReport.collect(config: config)[0].healthy)
        // Another tool writes it while the app is down.
        try TestSupport.sqlite(db, "INSERT INTO t(x) SELECT randomblob(100) FROM generate_series(1, 20);")
        let changed = StatusReport.collect(config: config)[0]
        #expect(changed.problems.contains { $0.hasPrefix("not yet backed up since") }, "\(changed.problems)")

        let replicator = try Replicator(config: config)
        replicator.start()
        defer { replicator.shutdown(timeout: .seconds(10)) }
        let replica = FileReplicaClient(directory: dir + "/replica")
        #expect(TestSupport.waitUntil(timeout: 30) { ((try? replica.listFiles(level: 9)) ?? []).count == 2 })
        try replicator.flush(timeout: .seconds(30))
        let out = dir + "/restored.db"
        _ = try ReplicaRestorer.restore(from: replica, to: out, options: RestoreOptions(force: true, verify: true))
        #expect(try TestSupport.dump(out) == TestSupport.dump(db))
        #expect(StatusReport.collect(config: config)[0].healthy)
    }

    @Test func missingOrEmptyDatabaseIsNotUnprotected() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try ReplicationConfig.load(path: try writeReplicationConfig(dir: dir))
        // Nothing to back up: no file at all.
        #expect(StatusReport.collect(config: config)[0].notBackedUpSince == nil)
        // A new database opened through the VFS with no table yet: nothing to back up either.
        let replicator = try Replicator(config: config)
        replicator.start()
        defer { replicator.shutdown(timeout: .seconds(10)) }
        let c = try Conn(dir + "/app.db")
        _ = try c.scalar("SELECT count(*) FROM sqlite_schema")
        try replicator.flush(timeout: .seconds(30))
        #expect(StatusReport.collect(config: config)[0].notBackedUpSince == nil)
        #expect(StatusReport.collect(config: config)[0].healthy)
    }
}
