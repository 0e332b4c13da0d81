import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// An uploader with nothing to do sleeps until a commit wakes it, instead of polling the spool.
@Suite("Idle uploader", .serialized)
struct IdleUploaderTests {
    /// Context switches of this test's uploader thread (its database is idle.db, the pool's
    /// home; other tests run uploaders of their own in this process): every wake-up is one.
    static func uploaderSwitches() -> Int? {
        let t = TestSupport.threads(named: "vfs-upload idle.db")
        return t.count > 0 ? t.switches : nil
    }

    @Test func anIdleUploaderSleepsUntilACommitWakesIt() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let replicator = try Replicator(
            config: try TestSupport.fileReplicaConfig(
                dir: dir, database: "idle.db", maxDelay: "200ms", extra: "    levels:\n      - interval: 1s"))
        replicator.start()
        defer { replicator.shutdown(timeout: .seconds(10)) }
        let dbPath = dir + "/idle.db"
        let c = try Conn(dbPath)
        try c.exec("PRAGMA journal_mode=WAL")
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        try c.insertBlobs(5, bytes: 100)
        try replicator.flush(timeout: .seconds(30))
        // The level-1 compaction of what was written (1 s level) runs first; then nothing is new.
        Thread.sleep(forTimeInterval: 2)

        // Idle: a polling uploader (every 20 ms at this max-delay) switched about 100 times in 2 s.
        let before = try #require(Self.uploaderSwitches(), "no uploader thread found in /proc/self/task")
        Thread.sleep(forTimeInterval: 2)
        let idleSwitches = try #require(Self.uploaderSwitches()) - before
        #expect(idleSwitches <= 10, "the idle uploader woke \(idleSwitches) times in 2 s")

        // A commit wakes it: shipped within max-delay and a margin, without a flush (which kicks).
        let spool = try ReplicatedVFS.registerDatabase(path: dbPath)
        try c.insertBlobs(1, bytes: 100)
        let target = spool.state().lastTxid
        let shipped = TestSupport.waitUntil(timeout: 10) { spool.state().shippedTxid >= target }
        #expect(shipped, "transaction \(target) was not shipped after an idle period")
    }
}
