import Foundation
import GRDB
import Testing
import VFSReplication

/// GRDB (another SQLite client in the same process) opens databases through the `replicated` VFS
/// by URI. GRDB opens without SQLITE_OPEN_URI, so this relies on SQLite's USE_URI build option
/// (set by Debian); the test also covers what GRDB does with the path (DatabasePool opens
/// several connections; the file must exist or be creatable).
@Suite("GRDB", .serialized)
struct GRDBTests {
    private func fixture() throws -> (dir: String, replicator: Replicator) {
        let dir = NSTemporaryDirectory() + "vfsrepl-grdb-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try """
        databases:
          - path: queue.db
            replica:
              url: file://\(dir)/replica-queue
            max-delay: 20ms
          - path: pool.db
            replica:
              url: file://\(dir)/replica-pool
            max-delay: 20ms
        """.write(toFile: dir + "/replication.yml", atomically: true, encoding: .utf8)
        let replicator = try Replicator(config: try ReplicationConfig.load(path: dir + "/replication.yml"))
        replicator.start()
        return (dir, replicator)
    }

    private func rebuildEqual(_ dir: String, _ name: String, replicator: Replicator) throws {
        try replicator.flush(timeout: .seconds(30))
        let out = dir + "/restored-\(name)"
        let result = try ReplicaRestorer.restore(
            from: FileReplicaClient(directory: dir + "/replica-\(name.replacingOccurrences(of: ".db", with: ""))"),
            to: out, options: RestoreOptions(force: true))
        #expect(result.integrityChecked)
        let source = try DatabaseQueue(path: dir + "/\(name)")
        let restored = try DatabaseQueue(path: out)
        let a = try source.read { try Row.fetchAll($0, sql: "SELECT * FROM player ORDER BY id") }
        let b = try restored.read { try Row.fetchAll($0, sql: "SELECT * FROM player ORDER BY id") }
        #expect(a == b)
        #expect(!a.isEmpty)
    }

    @Test func databaseQueueThroughTheVFS() throws {
        let (dir, replicator) = try fixture()
        defer {
            replicator.shutdown(timeout: .seconds(5))
            try? FileManager.default.removeItem(atPath: dir)
        }
        var config = Configuration()
        // DatabaseQueue's default is no busy handler; the uploader's own connections need one
        // (README: "Give every connection of the app a busy timeout").
        config.busyMode = .timeout(10)
        config.prepareDatabase { db in try db.execute(sql: "PRAGMA journal_mode=WAL") }
        let queue = try DatabaseQueue(path: "file:\(dir)/queue.db?vfs=replicated", configuration: config)
        try queue.write { db in
            try db.execute(sql: "CREATE TABLE player(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score INT)")
            for i in 0..<200 { try db.execute(sql: "INSERT INTO player(name, score) VALUES (?, ?)", arguments: ["p\(i)", i]) }
        }
        for i in 0..<20 {
            try queue.write { db in try db.execute(sql: "UPDATE player SET score = score + 1 WHERE id = ?", arguments: [i]) }
        }
        try queue.close()
        try rebuildEqual(dir, "queue.db", replicator: replicator)
    }

    @Test func databasePoolWritesAndConcurrentReads() throws {
        let (dir, replicator) = try fixture()
        defer {
            replicator.shutdown(timeout: .seconds(5))
            try? FileManager.default.removeItem(atPath: dir)
        }
        var config = Configuration()
        config.busyMode = .timeout(10)  // as the README asks of every connection
        let pool = try DatabasePool(path: "file:\(dir)/pool.db?vfs=replicated", configuration: config)
        try pool.write { db in
            try db.execute(sql: "CREATE TABLE player(id INTEGER PRIMARY KEY, name TEXT NOT NULL, score INT)")
        }
        for i in 0..<100 {
            try pool.write { db in try db.execute(sql: "INSERT INTO player(name, score) VALUES (?, ?)", arguments: ["p\(i)", i]) }
            _ = try pool.read { try Int.fetchOne($0, sql: "SELECT count(*) FROM player") }
        }
        try pool.close()
        // GRDB used the URI as the path: no stray file named after it.
        #expect(!FileManager.default.fileExists(atPath: "file:\(dir)/pool.db?vfs=replicated"))
        try rebuildEqual(dir, "pool.db", replicator: replicator)
    }

    @Test func unconfiguredDatabaseIsRefusedAtOpen() throws {
        let (dir, replicator) = try fixture()
        defer {
            replicator.shutdown(timeout: .seconds(5))
            try? FileManager.default.removeItem(atPath: dir)
        }
        #expect(throws: DatabaseError.self) {
            let q = try DatabaseQueue(path: "file:\(dir)/other.db?vfs=replicated")
            try q.write { try $0.execute(sql: "CREATE TABLE x(a)") }
        }
    }
}
