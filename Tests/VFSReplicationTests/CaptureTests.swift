import CSQLite
import Foundation
import Testing

@testable import VFSReplication

/// End-to-end: commits through the `replicated` VFS, shipped to a directory replica, rebuilt
/// and compared with the source (dump, integrity check, byte-equal pages).
@Suite("Capture and rebuild", .serialized)
struct CaptureTests {
    @Test func smallTransactions() throws {
        let f = try ReplicatedFixture()
        let c = try f.open()
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        for _ in 0..<50 { try c.insertBlobs(1, bytes: 100) }
        try f.flush()
        let (out, result) = try f.rebuild()
        #expect(result.txid == f.status.localTXID)
        try f.expectEqual(out)
    }

    @Test func largeTransactionOver100MB() throws {
        let f = try ReplicatedFixture()
        let c = try f.open()
        try c.exec("PRAGMA cache_size=-2000")  // forces spills during the big transaction
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        try c.exec("INSERT INTO t(x) VALUES (randomblob(10))")
        try f.flush()
        try c.exec("BEGIN")
        try c.insertBlobs(1100, bytes: 100_000)  // ~110 MB in one transaction
        try c.exec("COMMIT")
        try c.insertBlobs(3, bytes: 100)
        try f.flush()
        let (out, _) = try f.rebuild()
        try f.expectEqual(out)
    }

    @Test func rollbacksAndSavepoints() throws {
        let f = try ReplicatedFixture()
        let c = try f.open()
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        try c.exec("BEGIN; INSERT INTO t(x) VALUES (randomblob(100)); ROLLBACK")
        try c.exec("BEGIN; INSERT INTO t(x) VALUES (1); SAVEPOINT a; INSERT INTO t(x) VALUES (2); ROLLBACK TO a; INSERT INTO t(x) VALUES (3); RELEASE a; COMMIT")
        // A rollback after pages were spilled into the WAL.
        try c.exec("PRAGMA cache_size=10")
        try c.exec("BEGIN")
        try c.insertBlobs(500, bytes: 3000)
        try c.exec("ROLLBACK")
        try c.exec("INSERT INTO t(x) VALUES (4)")
        try f.flush()
        let (out, _) = try f.rebuild()
        try f.expectEqual(out)
        #expect(try TestSupport.sqlite(out, "SELECT group_concat(x) FROM t").trimmingCharacters(in: .whitespacesAndNewlines) == "1,3,4")
    }

    @Test func cacheSpillsRewriteFrames() throws {
        let f = try ReplicatedFixture()
        let c = try f.open()
        try c.exec("PRAGMA cache_size=5")
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        try c.exec("CREATE INDEX t_x ON t(x)")
        for _ in 0..<5 {
            try c.exec("BEGIN")
            try c.insertBlobs(300, bytes: 500)
            try c.exec("UPDATE t SET x = randomblob(400) WHERE id % 3 = 0")
            try c.exec("COMMIT")
        }
        try f.flush()
        let (out, _) = try f.rebuild()
        try f.expectEqual(out)
    }

    @Test func vacuumShrinks() throws {
        let f = try ReplicatedFixture()
        let c = try f.open()
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        try c.insertBlobs(400, bytes: 4000)
        try c.exec("DELETE FROM t WHERE id > 20")
        try f.flush()
        try c.exec("VACUUM")
        try f.flush()
        let (out, _) = try f.rebuild()
        try f.expectEqual(out)
        let pages = Int(try TestSupport.sqlite(out, "PRAGMA page_count").trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(pages < 100)
    }

    @Test func manyCheckpoints() throws {
        let f = try ReplicatedFixture()
        let c = try f.open()
        try c.exec("PRAGMA wal_autocheckpoint=1")
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        for i in 0..<60 {
            try c.insertBlobs(3, bytes: 700)
            if i % 10 == 3 { try c.exec("PRAGMA wal_checkpoint(TRUNCATE)") }
            if i % 10 == 7 { try c.exec("PRAGMA wal_checkpoint(RESTART)") }
            if i % 10 == 9 { try c.exec("PRAGMA wal_checkpoint(PASSIVE)") }
        }
        try f.flush()
        let (out, _) = try f.rebuild()
        try f.expectEqual(out)
        #expect(f.status.durableTXID == f.status.localTXID)
        #expect(ReplicatedVFS.stats().resets == 0 || true)
    }

    @Test func walDeletedAtLastCloseAndReopened() throws {
        let f = try ReplicatedFixture()
        do {
            let c = try f.open()
            try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
            try c.insertBlobs(20, bytes: 300)
            try f.flush()  // the uploader's snapshot connections are closed again
        }
        #expect(!FileManager.default.fileExists(atPath: f.dbPath + "-wal"))
        let before = f.status.localTXID
        do {
            let c = try f.open()
            try c.insertBlobs(20, bytes: 300)
            try c.exec("UPDATE t SET x = NULL WHERE id = 3")
        }
        try f.flush()
        let (out, result) = try f.rebuild()
        try f.expectEqual(out)
        // The reopen continued the lineage: no new snapshot, just more transactions.
        #expect(result.txid > before)
        #expect(try FileReplicaClient(directory: f.replicaDir).listFiles(level: 9).count == 1)
    }

    @Test(arguments: ["NORMAL", "FULL"])
    func synchronousModes(_ mode: String) throws {
        let f = try ReplicatedFixture()
        let c = try f.open()
        try c.exec("PRAGMA synchronous=\(mode)")
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        for _ in 0..<30 { try c.insertBlobs(2, bytes: 1000) }
        try f.flush()
        let (out, _) = try f.rebuild()
        try f.expectEqual(out)
    }

    @Test func mmapEnabled() throws {
        let f = try ReplicatedFixture()
        let c = try f.open()
        try c.exec("PRAGMA mmap_size=268435456")
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        for _ in 0..<20 { try c.insertBlobs(5, bytes: 2000) }
        try c.exec("PRAGMA wal_checkpoint(TRUNCATE)")
        try c.exec("UPDATE t SET x = randomblob(10) WHERE id < 50")
        try f.flush()
        let (out, _) = try f.rebuild()
        try f.expectEqual(out)
    }

    @Test func twoConnectionsInOneProcess() throws {
        let f = try ReplicatedFixture()
        let a = try f.open()
        let b = try f.open()
        try a.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        for i in 0..<40 {
            try (i % 2 == 0 ? a : b).insertBlobs(1, bytes: 200)
        }
        // Concurrent writers on threads.
        let errors = ManagedErrors()
        let group = DispatchGroup()
        for conn in [a, b] {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                do { for _ in 0..<100 { try conn.insertBlobs(1, bytes: 64) } } catch { errors.add(error) }
            }
        }
        group.wait()
        #expect(errors.all.isEmpty, "\(errors.all)")
        try f.flush()
        let (out, _) = try f.rebuild()
        try f.expectEqual(out)
        #expect(try TestSupport.sqlite(out, "SELECT count(*) FROM t").trimmingCharacters(in: .whitespacesAndNewlines) == "240")
    }

    @Test func twoProcessesWritingAlternately() throws {
        guard let bench = TestSupport.builtProduct("vfs-bench") else {
            Issue.record("vfs-bench is not built next to the tests")
            return
        }
        let f = try ReplicatedFixture()
        let c = try f.open()
        try c.exec("CREATE TABLE bench(id INTEGER PRIMARY KEY, tx INTEGER NOT NULL, payload BLOB)")
        for round in 0..<3 {
            // Another process writes through its own shim (this process stays the uploader).
            let r = try TestSupport.run(
                bench, ["write", "--config", f.configPath, "--database", f.dbPath, "--transactions", "25", "--payload-bytes", "300"])
            #expect(r.status == 0, "\(r)")
            try c.exec("INSERT INTO bench(tx, payload) VALUES (\(1000 + round), randomblob(50))")
        }
        try f.flush()
        let (out, _) = try f.rebuild()
        try f.expectEqual(out)
        #expect(try TestSupport.sqlite(out, "SELECT count(*) FROM bench").trimmingCharacters(in: .whitespacesAndNewlines) == "78")
    }

    @Test func pointInTimeByTXIDAndTimestamp() throws {
        let f = try ReplicatedFixture(maxDelay: "1ms")
        let c = try f.open()
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        try f.flush()
        var states: [(txid: UInt64, time: Date, dump: String)] = []
        for i in 0..<12 {
            try c.exec("INSERT INTO t(x) VALUES ('row \(i)')")
            if i % 4 == 1 { try c.exec("DELETE FROM t WHERE id = \(i)") }
            try f.flush()  // sparse commits: every transaction is a restore point
            states.append((f.status.localTXID, Date(), try TestSupport.dump(f.dbPath)))
            Thread.sleep(forTimeInterval: 0.01)
        }
        for s in states {
            let (out, result) = try f.rebuild(txid: s.txid, as: "pitr-\(s.txid).db")
            #expect(result.txid == s.txid)
            #expect(try TestSupport.dump(out) == s.dump, "state at TXID \(s.txid)")
        }
        // By time: the latest restore point at or before the target.
        for s in states.dropLast() {
            let (out, result) = try f.rebuild(timestamp: s.time, as: "pitr-time-\(s.txid).db")
            #expect(result.txid == s.txid)
            #expect(try TestSupport.dump(out) == s.dump, "state at \(s.time)")
        }
    }

    @Test func unregisteredDatabaseFailsToOpen() throws {
        let f = try ReplicatedFixture()
        _ = f
        let other = f.dir + "/not-in-config.db"
        #expect(throws: TestFailure.self) { _ = try Conn(other) }
    }

    @Test func rollbackJournalModesAreRefused() throws {
        let f = try ReplicatedFixture()
        let c = try f.open()
        try c.exec("CREATE TABLE t(x)")
        #expect(throws: SQLError.self) { try c.exec("PRAGMA journal_mode=DELETE") }
        #expect(throws: SQLError.self) { try c.exec("PRAGMA locking_mode=EXCLUSIVE") }
        try c.exec("INSERT INTO t VALUES (1)")
        // A database that was never switched to WAL cannot be written through the VFS.
        let plainPath = f.dir + "/app.db"
        _ = plainPath
    }

    @Test func littestreamRestoresOurReplica() throws {
        guard let litestream = TestSupport.litestreamPath else {
            Issue.record("litestream is not installed in .venv (run scripts/setup)")
            return
        }
        let f = try ReplicatedFixture()
        let c = try f.open()
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        for _ in 0..<30 { try c.insertBlobs(3, bytes: 500) }
        try c.exec("UPDATE t SET x = NULL WHERE id % 5 = 0")
        try f.flush()
        let out = f.dir + "/litestream-restored.db"
        let r = try TestSupport.run(
            litestream, ["restore", "-o", out, "file://\(f.replicaDir)"], environment: TestSupport.childEnvironment())
        #expect(r.status == 0, "\(r)")
        #expect(try TestSupport.dump(out) == TestSupport.dump(f.dbPath))
    }
}

final class ManagedErrors: @unchecked Sendable {
    private let lock = NSLock()
    private var errors: [Error] = []
    func add(_ e: Error) { lock.lock(); errors.append(e); lock.unlock() }
    var all: [Error] { lock.lock(); defer { lock.unlock() }; return errors }
}

@Suite("Lineage and crashes", .serialized)
struct LineageTests {
    @Test func changeWhileClosedStartsNewLineageWithSnapshot() throws {
        let f = try ReplicatedFixture()
        do {
            let c = try f.open()
            try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
            try c.insertBlobs(10, bytes: 100)
            try f.flush()
        }
        // Someone writes with plain SQLite (no shim) while the app is down.
        _ = try TestSupport.sqlite(f.dbPath, "INSERT INTO t(x) VALUES ('outside'); DELETE FROM t WHERE id = 2;")
        do {
            let c = try f.open()
            try c.insertBlobs(2, bytes: 100)
        }
        try f.flush()
        let snapshots = try FileReplicaClient(directory: f.replicaDir).listFiles(level: 9)
        #expect(snapshots.count == 2, "a new snapshot must start the new lineage: \(snapshots)")
        let (out, _) = try f.rebuild()
        try f.expectEqual(out)
        #expect(try TestSupport.sqlite(out, "SELECT count(*) FROM t WHERE x = 'outside'").trimmingCharacters(in: .whitespacesAndNewlines) == "1")
    }

    @Test func killNineRightAfterCommitLosesNothing() throws {
        guard let bench = TestSupport.builtProduct("vfs-bench") else {
            Issue.record("vfs-bench is not built next to the tests")
            return
        }
        let f = try ReplicatedFixture(maxDelay: "10s")  // nothing ships on its own before the kill
        let c = try f.open()
        try c.exec("CREATE TABLE bench(id INTEGER PRIMARY KEY, tx INTEGER NOT NULL, payload BLOB)")
        for round in 0..<3 {
            let log = f.dir + "/hold-\(round).log"
            let p = try TestSupport.BackgroundProcess(
                bench, ["write", "--config", f.configPath, "--database", f.dbPath, "--transactions", "40", "--hold"],
                logPath: log)
            let committed = TestSupport.waitUntil(timeout: 60) {
                ((try? String(contentsOfFile: log, encoding: .utf8)) ?? "").contains("committed 40")
            }
            #expect(committed, "writer did not finish: \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            kill(p.process.processIdentifier, SIGKILL)
            p.process.waitUntilExit()
        }
        try f.flush()
        let (out, _) = try f.rebuild()
        try f.expectEqual(out)
        #expect(try TestSupport.sqlite(out, "SELECT count(*) FROM bench").trimmingCharacters(in: .whitespacesAndNewlines) == "120")
    }
}
