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

    /// Memory per idle database: a thousand tenants in one process must not hold a MiB each for
    /// reads they are not doing. Small transactions are read with a buffer of their size, and a
    /// parked database frees it (before, each uploader kept a zero-filled 1 MiB buffer for ever).
    @Test func anIdleDatabaseHoldsNoSpoolReadBuffer() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let replicator = try Replicator(
            config: try TestSupport.fileReplicaConfig(
                dir: dir, database: "tenant.db", maxDelay: "100ms", extra: "    levels:\n      - interval: 1s"))
        replicator.start()
        defer { replicator.shutdown(timeout: .seconds(10)) }
        let dbPath = dir + "/tenant.db"
        let c = try Conn(dbPath)
        try c.exec("PRAGMA journal_mode=WAL")
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        var largest = 0
        for _ in 0..<20 {
            try c.insertBlobs(1, bytes: 100)
            try replicator.flush(timeout: .seconds(30))
            largest = max(largest, replicator.spoolReadBufferBytes(database: dbPath) ?? -1)
        }
        // One-page transactions: a frame is 4120 bytes; a read of a few frames is what they need.
        #expect(largest >= 0 && largest <= 64 * 1024, "the spool reader held \(largest) bytes for one-page transactions")
        // Parked once compaction of what was written is done: nothing held.
        let released = TestSupport.waitUntil(timeout: 20) { replicator.spoolReadBufferBytes(database: dbPath) == 0 }
        #expect(released, "an idle database still holds \(replicator.spoolReadBufferBytes(database: dbPath) ?? -1) bytes of read buffer")
    }
}
