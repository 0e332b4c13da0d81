import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// An uploader with nothing to do sleeps until a commit wakes it, instead of polling the spool.
@Suite("Idle uploader", .serialized)
struct IdleUploaderTests {
    /// Context switches of this test's uploader thread ("vfs-upload idle": its database is
    /// idle.db, and the kernel keeps 15 bytes of a name; other tests run uploaders of their own in
    /// this process), voluntary and not: every wake-up is one.
    static func uploaderSwitches() -> Int? {
        var total: Int?
        let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
        for tid in tasks {
            let base = "/proc/self/task/" + tid
            guard let comm = try? String(contentsOfFile: base + "/comm", encoding: .utf8), comm.hasPrefix("vfs-upload idle")
            else { continue }
            guard let status = try? String(contentsOfFile: base + "/status", encoding: .utf8) else { continue }
            for line in status.split(separator: "\n") where line.contains("ctxt_switches") {
                total = (total ?? 0) + (Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0)
            }
        }
        return total
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
