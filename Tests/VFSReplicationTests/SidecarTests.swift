import CSQLite
import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// Fencing, restore-in-place continuation and the `vfs-replicate` sidecar, with real processes.
@Suite("Fencing and sidecar", .serialized)
struct SidecarTests {
    @Test func secondWriterOnOnePrefixIsFenced() throws {
        let a = try ReplicatedFixture()
        let ca = try a.open()
        try ca.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        try ca.insertBlobs(20, bytes: 100)
        try a.flush()

        // Another database (another app instance) configured with the same replica location.
        let b = try ReplicatedFixture(replicaDirectory: a.replicaDir)
        let cb = try b.open()
        try cb.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        try cb.insertBlobs(5, bytes: 100)
        #expect(throws: ReplicationError.self) { try b.flush() }
        do {
            try b.flush()
        } catch let e as ReplicationError {
            #expect(e.code == .fenced)
            #expect(e.message.contains("another writer"))
        }
        #expect(b.status.fenced)
        // The first writer goes on; nothing of the second is in the replica.
        try ca.insertBlobs(5, bytes: 100)
        try a.flush()
        let (out, _) = try a.rebuild()
        try a.expectEqual(out)
    }

    @Test func restoreInPlaceContinuesTheLineage() throws {
        guard let bench = TestSupport.builtProduct("vfs-bench") else {
            Issue.record("vfs-bench is not built next to the tests")
            return
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try writeReplicationConfig(dir: dir)
        var r = try TestSupport.run(bench, ["write", "--config", config, "--database", dir + "/app.db", "--transactions", "30"])
        #expect(r.status == 0, "\(r)")
        // The server is lost; a new one rebuilds the database in place, then the app writes on.
        for suffix in ["", "-wal", "-shm"] { unlink(dir + "/app.db" + suffix) }
        let replica = FileReplicaClient(directory: dir + "/replica")
        let restored = try ReplicaRestorer.restore(from: replica, to: dir + "/app.db", options: RestoreOptions(force: true))
        try RestoreMarker.record(databasePath: dir + "/app.db", replica: replica.location, txid: restored.txid)
        r = try TestSupport.run(bench, ["write", "--config", config, "--database", dir + "/app.db", "--transactions", "20"])
        #expect(r.status == 0, "\(r)")
        #expect(try replica.listFiles(level: 9).count == 1, "continuing must not start a new lineage")
        let out = dir + "/check.db"
        let result = try ReplicaRestorer.restore(from: replica, to: out, options: RestoreOptions(force: true))
        #expect(result.txid > restored.txid)
        #expect(try TestSupport.dump(out) == TestSupport.dump(dir + "/app.db"))
    }

    @Test func sidecarShipsForCaptureOnlyWritersAndFlushesOnSIGTERM() throws {
        guard let bench = TestSupport.builtProduct("vfs-bench"), let replicate = TestSupport.builtProduct("vfs-replicate")
        else {
            Issue.record("vfs-bench / vfs-replicate are not built next to the tests")
            return
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try writeReplicationConfig(dir: dir, maxDelay: "30s")
        // A writer that only captures (another language's process, in effect).
        var r = try TestSupport.run(
            bench, ["write", "--config", config, "--database", dir + "/app.db", "--transactions", "40", "--no-upload"])
        #expect(r.status == 0, "\(r)")
        #expect(try FileReplicaClient(directory: dir + "/replica").listLevels().isEmpty)
        // --once ships what is pending and exits.
        r = try TestSupport.run(replicate, ["--config", config, "--once"])
        #expect(r.status == 0, "\(r)")
        var out = dir + "/check.db"
        _ = try ReplicaRestorer.restore(from: FileReplicaClient(directory: dir + "/replica"), to: out, options: RestoreOptions(force: true))
        #expect(try TestSupport.dump(out) == TestSupport.dump(dir + "/app.db"))

        // Long-running sidecar; max-delay is 30 s, so only the SIGTERM flush can ship this in time.
        let sidecar = try TestSupport.BackgroundProcess(replicate, ["--config", config], logPath: dir + "/sidecar.log")
        Thread.sleep(forTimeInterval: 1.5)  // elected
        r = try TestSupport.run(
            bench, ["write", "--config", config, "--database", dir + "/app.db", "--transactions", "25", "--no-upload"])
        #expect(r.status == 0, "\(r)")
        kill(sidecar.process.processIdentifier, SIGTERM)
        sidecar.process.waitUntilExit()
        #expect(sidecar.process.terminationStatus == 0, "\((try? String(contentsOfFile: dir + "/sidecar.log", encoding: .utf8)) ?? "")")
        out = dir + "/check2.db"
        _ = try ReplicaRestorer.restore(from: FileReplicaClient(directory: dir + "/replica"), to: out, options: RestoreOptions(force: true))
        #expect(try TestSupport.dump(out) == TestSupport.dump(dir + "/app.db"))
    }

}

@Suite("Outage", .serialized)
struct OutageTests {
    @Test func boundedSpoolBlocksWritersDuringAnOutageAndDrainsAfter() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The replica's parent is a regular file: every upload fails (as when a bucket is down).
        let blocker = dir + "/backups"
        FileManager.default.createFile(atPath: blocker, contents: Data("not a directory".utf8))
        let config = dir + "/replication.yml"
        try """
        databases:
          - path: app.db
            replica:
              url: file://\(blocker)/app
            max-delay: 10ms
            spool-max-bytes: 256KiB
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let replicator = try Replicator(config: try ReplicationConfig.load(path: config))
        replicator.start()
        defer { replicator.shutdown(timeout: .seconds(5)) }
        let c = try Conn(dir + "/app.db")
        try c.exec("PRAGMA journal_mode=WAL")
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        // From here on a writer held at the bound must see SQLITE_BUSY at once.
        sqlite3_busy_timeout(c.db, 0)
        var committed = 0
        var refused = false
        for _ in 0..<200 {
            do {
                try c.insertBlobs(1, bytes: 8000)
                committed += 1
            } catch let e as SQLError where e.code == SQLITE_BUSY {
                refused = true
                break
            }
        }
        #expect(refused, "writers must be held at the spool bound")
        #expect(committed > 10)
        #expect(TestSupport.waitUntil(timeout: 30) { replicator.status()[0].lastError != nil }, "the outage is reported")
        let status = replicator.status()[0]
        #expect(status.durableTXID < status.localTXID)
        // The store is back: the spool drains and writers go on.
        try FileManager.default.removeItem(atPath: blocker)
        sqlite3_busy_timeout(c.db, 60_000)
        try c.insertBlobs(20, bytes: 8000)
        try replicator.flush(timeout: .seconds(90))
        let out = dir + "/check.db"
        _ = try ReplicaRestorer.restore(from: FileReplicaClient(directory: blocker + "/app"), to: out, options: RestoreOptions(force: true))
        #expect(try TestSupport.dump(out) == TestSupport.dump(dir + "/app.db"))
        #expect(try TestSupport.sqlite(out, "SELECT count(*) FROM t").trimmingCharacters(in: .whitespacesAndNewlines) == "\(committed + 20)")
    }
}
