import CSQLite
import CVFSShim
import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

@Suite("Status: verify", .serialized)
struct StatusVerifyTests {
    /// The backup copy differs from its source only where the comparison looks away (page 1's
    /// rewritten header fields); any other byte is reported with its page.
    @Test func comparisonSkipsOnlyTheHeaderFieldsTheBackupRewrites() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let db = dir + "/a.db"
            try TestSupport.sqlite(
                db,
                """
                PRAGMA journal_mode=WAL;
                CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
                WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 500)
                INSERT INTO t SELECT i, printf('%0300d', i) FROM n;
                UPDATE t SET v = 'x' WHERE id % 3 = 0;
                PRAGMA wal_checkpoint(TRUNCATE);
                """)
            let source = try Conn(db, vfs: nil, flags: SQLITE_OPEN_READONLY)
            var err = [CChar](repeating: 0, count: 256)
            #expect(vr_status_backup(source.db, dir + "/copy.db", &err, err.count) == SQLITE_OK)
            let original = try TestSupport.readFile(db)
            var copy = try TestSupport.readFile(dir + "/copy.db")
            #expect(original.count == copy.count)
            #expect(original != copy, "the backup rewrites some header fields")
            var c = try ReplicaVerifier.compare(live: dir + "/copy.db", replica: db, pageSize: 4096)
            #expect(c.differing.isEmpty && c.livePages == original.count / 4096 && c.replicaPages == c.livePages)

            copy[3 * 4096 + 100] ^= 0xFF
            copy[60] ^= 0x01  // page 1, a header field the backup keeps (user version)
            try TestSupport.writeFile(dir + "/copy.db", copy)
            c = try ReplicaVerifier.compare(live: dir + "/copy.db", replica: db, pageSize: 4096)
            #expect(c.differing == [1, 4])
        }
    }

    @Test func verifyPassesWhileTheAppWrites() throws {
        let f = try StatusFixture(maxDelay: "30ms")
        let c = try f.open()
        try f.write(c, 20)
        try f.replicator.flush(timeout: .seconds(30))
        let stop = ManagedFlag()
        let path = f.dbPath
        let writer = Thread {
            guard let w = try? Conn(path) else { return }
            while !stop.value {
                try? w.insertBlobs(1, bytes: 2000)
                usleep(3_000)
            }
        }
        writer.start()
        defer { stop.set() }
        let record = try ReplicaVerifier.verify(
            database: f.config.databases[0], options: VerifyOptions(timeout: .seconds(60)))
        stop.set()
        #expect(record.passed, "\(record)")
        #expect(record.txid > 20 && record.pageCount >= 3 && record.replicaFiles >= 1, "\(record)")
        let stored = try #require(VerificationRecord.load(path: f.files.verificationFile))
        #expect(stored.passed && stored.txid == record.txid && stored.message == record.message)
        #expect(StatusReport.collect(config: f.config)[0].verification?.txid == record.txid)
        // Nothing was left behind in the state folder.
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: f.files.stateDirectory).filter {
            $0.hasPrefix("verify-")
        }
        #expect(leftovers.isEmpty)
    }

    @Test func verifyWithoutAnUploaderSaysSo() throws {
        let f = try StatusFixture(start: false)
        let c = try f.open()
        try f.write(c, 2)
        #expect {
            try ReplicaVerifier.verify(database: f.config.databases[0], options: VerifyOptions(timeout: .seconds(20)))
        } throws: { error in
            (error as? ReplicationError)?.message.contains("no uploader is running") == true
        }
    }

    @Test func verifyBinaryAgainstAnotherProcess() throws {
        guard let status = TestSupport.builtProduct("vfs-status") else {
            Issue.record("vfs-status is not built next to the tests")
            return
        }
        let f = try StatusFixture()
        let c = try f.open()
        try f.write(c, 10)
        var r = try TestSupport.run(status, ["--config", f.configPath, "--verify", f.dbPath])
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.contains("verified: the replica at TXID"), "\(r)")
        r = try TestSupport.run(status, ["--config", f.configPath])
        #expect(r.status == 0 && r.stdout.contains("verified ok"), "\(r)")
        r = try TestSupport.run(status, ["--config", f.configPath, "--verify", f.dir + "/other.db"])
        #expect(r.status != 0 && r.stderr.contains("is not a database of"), "\(r)")
    }
}

/// A flag shared with a thread.
final class ManagedFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var raised = false
    var value: Bool {
        lock.lock()
        defer { lock.unlock() }
        return raised
    }
    func set() {
        lock.lock()
        raised = true
        lock.unlock()
    }
}
