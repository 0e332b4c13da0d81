import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// One small pool of threads ships every database of a replicator (UploaderPool): many
/// databases, few threads, no wake-ups while idle, commits of other processes wake it, and
/// databases come and go while it runs.
@Suite("Uploader pool", .serialized)
struct UploaderPoolTests {
    /// Writes `dir/replication.yml` for `count` databases `dir/<prefix>N.db`, each replicated to
    /// `dir/replica-<prefix>N`, and loads it.
    static func config(dir: String, prefix: String, count: Int, threads: Int?, maxDelay: String = "100ms") throws
        -> ReplicationConfig
    {
        var yaml = threads.map { "uploader-threads: \($0)\n" } ?? ""
        yaml += "defaults:\n  max-delay: \(maxDelay)\n  levels:\n    - interval: 1s\ndatabases:\n"
        for i in 0..<count {
            yaml += "  - path: \(prefix)\(i).db\n    replica:\n      url: file://\(dir)/replica-\(prefix)\(i)\n"
        }
        let path = dir + "/replication-\(prefix).yml"
        try yaml.write(toFile: path, atomically: true, encoding: .utf8)
        return try ReplicationConfig.load(path: path)
    }

    static func write(_ path: String, rows: Int) throws {
        let c = try Conn(path)
        try c.exec("PRAGMA journal_mode=WAL")
        try c.exec("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, x BLOB)")
        try c.insertBlobs(rows, bytes: 100)
    }

    static func restoredDump(_ replica: String, _ out: String) throws -> String {
        _ = try ReplicaRestorer.restore(
            from: FileReplicaClient(directory: replica), to: out, options: RestoreOptions(force: true))
        return try TestSupport.dump(out)
    }

    @Test func manyDatabasesShareAFewThreadsThatSleepWhileIdle() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let count = 24
        let config = try Self.config(dir: dir, prefix: "many", count: count, threads: 2)
        let replicator = try Replicator(config: config)
        replicator.start()
        defer { replicator.shutdown(timeout: .seconds(20)) }
        for i in 0..<count { try Self.write(dir + "/many\(i).db", rows: 3) }
        try replicator.flush(timeout: .seconds(60))
        for i in [0, count / 2, count - 1] {
            #expect(
                try Self.restoredDump(dir + "/replica-many\(i)", dir + "/check\(i).db") == TestSupport.dump(dir + "/many\(i).db"))
        }
        let running = replicator.uploaderThreads
        #expect(running.max == 2 && running.running <= 2, "\(running)")
        #expect(TestSupport.threads(named: "vfs-upload many0.db").count <= 2)

        // Idle: each database parked, the threads asleep on one bell. A thread per database
        // polling every 10 ms (a tenth of max-delay) would switch thousands of times here.
        // The level-1 compactions of what was written (1 s level) run first.
        Thread.sleep(forTimeInterval: 2.5)
        let before = TestSupport.threads(named: "vfs-upload many0.db").switches
        Thread.sleep(forTimeInterval: 2)
        let idle = TestSupport.threads(named: "vfs-upload many0.db").switches - before
        #expect(idle <= 10, "the pool's threads woke \(idle) times in 2 s with \(count) idle databases")

        // A commit to any of them wakes the pool: shipped without a flush.
        try Self.write(dir + "/many\(count - 2).db", rows: 1)
        let spool = try ReplicatedVFS.registerDatabase(path: dir + "/many\(count - 2).db")
        let target = spool.state().lastTxid
        #expect(TestSupport.waitUntil(timeout: 10) { spool.state().shippedTxid >= target })
    }

    @Test func aCommitInAnotherProcessWakesTheParkedDatabase() throws {
        guard let bench = TestSupport.builtProduct("vfs-bench") else {
            Issue.record("vfs-bench is not built next to the tests")
            return
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try Self.config(dir: dir, prefix: "cross", count: 3, threads: 1)
        let replicator = try Replicator(config: config)
        replicator.start()
        defer { replicator.shutdown(timeout: .seconds(20)) }
        for i in 0..<3 { try Self.write(dir + "/cross\(i).db", rows: 2) }
        try replicator.flush(timeout: .seconds(60))
        Thread.sleep(forTimeInterval: 0.5)  // parked: nothing would look again for 30 s

        // A capture-only writer in another process commits to a database that is not the pool's
        // home: its commit has to open and ring the home's bell.
        let r = try TestSupport.run(
            bench,
            ["write", "--config", config.sourcePath!, "--database", dir + "/cross2.db", "--transactions", "5", "--no-upload"])
        #expect(r.status == 0, "\(r)")
        let spool = try ReplicatedVFS.registerDatabase(path: dir + "/cross2.db")
        let target = spool.state().lastTxid
        let started = Date()
        #expect(TestSupport.waitUntil(timeout: 10) { spool.state().shippedTxid >= target })
        #expect(Date().timeIntervalSince(started) < 5, "picked up only after \(Date().timeIntervalSince(started)) s")
        #expect(try Self.restoredDump(dir + "/replica-cross2", dir + "/check.db") == TestSupport.dump(dir + "/cross2.db"))
    }

    @Test func databasesAreAddedAndRemovedWhileRunning() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let both = try Self.config(dir: dir, prefix: "dyn", count: 2, threads: nil)
        let replicator = try Replicator(config: ReplicationConfig(databases: [both.databases[0]]))
        replicator.start()
        defer { replicator.shutdown(timeout: .seconds(20)) }
        try Self.write(dir + "/dyn0.db", rows: 2)

        // Added while running: shipped by the same pool, without a restart.
        try replicator.addDatabase(both.databases[1])
        #expect(replicator.config.databases.count == 2)
        try Self.write(dir + "/dyn1.db", rows: 4)
        try replicator.flush(timeout: .seconds(60))
        #expect(try Self.restoredDump(dir + "/replica-dyn1", dir + "/check1.db") == TestSupport.dump(dir + "/dyn1.db"))

        // Twice, or onto another database's replica: a named error.
        #expect {
            try replicator.addDatabase(both.databases[1])
        } throws: { ($0 as? ReplicationError)?.message.contains("dyn1.db is already replicated") == true }
        var clash = both.databases[1]
        clash.path = dir + "/other.db"
        #expect {
            try replicator.addDatabase(clash)
        } throws: { ($0 as? ReplicationError)?.message.contains("already database") == true }

        // Removed: what it committed is shipped first, then nothing more is.
        try Self.write(dir + "/dyn1.db", rows: 1)
        let spool = try ReplicatedVFS.registerDatabase(path: dir + "/dyn1.db")
        let last = spool.state().lastTxid
        #expect(replicator.removeDatabase(path: dir + "/dyn1.db", timeout: .seconds(30)))
        #expect(spool.state().shippedTxid == last)
        #expect(!replicator.removeDatabase(path: dir + "/dyn1.db"))
        #expect(replicator.config.databases.map(\.path) == [both.databases[0].path])
        try Self.write(dir + "/dyn1.db", rows: 1)
        Thread.sleep(forTimeInterval: 0.5)
        #expect(spool.state().shippedTxid == last, "a removed database was still shipped")
        try replicator.flush(timeout: .seconds(30))  // the remaining one alone

        // Added again: continues where it stopped.
        try replicator.addDatabase(both.databases[1])
        try replicator.flush(timeout: .seconds(60))
        #expect(try Self.restoredDump(dir + "/replica-dyn1", dir + "/check2.db") == TestSupport.dump(dir + "/dyn1.db"))
    }
}
