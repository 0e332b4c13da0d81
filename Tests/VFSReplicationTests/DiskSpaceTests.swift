import CSQLite
import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// The local footprint beside a database: the spool bound counts bytes on disk, shipped spool is
/// reclaimed, and a spool whose filesystem is full (a small tmpfs mounted on `<db>-vfsrepl`)
/// never loses a commit silently: `spool-full: block` holds writers before they commit,
/// `spool-full: grow` commits and spools later; growing the tmpfs drains everything.
@Suite("Disk space", .serialized)
struct DiskSpaceTests {
    /// Whether this process may mount a tmpfs (root; CI runs as root).
    static let canMount: Bool = {
        guard let dir = try? TestSupport.makeTemporaryDirectory() else { return false }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard (try? TestSupport.run("/bin/mount", ["-t", "tmpfs", "-o", "size=1m", "tmpfs", dir]))?.status == 0 else {
            return false
        }
        _ = try? TestSupport.run("/bin/umount", [dir])
        return true
    }()

    /// Bytes the spool's segment files hold on disk (allocated blocks, not apparent sizes).
    static func spoolBytesOnDisk(_ dbPath: String) -> UInt64 {
        let dir = dbPath + "-vfsrepl/spool"
        var total: UInt64 = 0
        for name in (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? [] {
            var st = stat()
            if stat(dir + "/" + name, &st) == 0 { total += UInt64(st.st_blocks) * 512 }
        }
        return total
    }

    static func writeConfig(dir: String, extra: String) throws -> ReplicationConfig {
        try TestSupport.fileReplicaConfig(dir: dir, maxDelay: "20ms", extra: extra)
    }

    static func rebuildAndCompare(dir: String, dbPath: String) throws {
        let out = dir + "/restored.db"
        _ = try ReplicaRestorer.restore(
            from: FileReplicaClient(directory: dir + "/replica"), to: out,
            options: RestoreOptions(force: true, verify: true))
        #expect(try TestSupport.dump(out) == TestSupport.dump(dbPath), "the rebuilt replica equals the database")
    }

    @Test func spoolBoundCountsBytesOnDiskAndShippedSpoolIsReclaimed() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try Self.writeConfig(dir: dir, extra: "    spool-max-bytes: 1MiB")
        let replicator = try Replicator(config: config)
        replicator.start()
        defer { replicator.shutdown(timeout: .seconds(10)) }
        let dbPath = dir + "/app.db"
        let c = try Conn(dbPath)
        try c.exec("PRAGMA journal_mode=WAL")
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        var most: UInt64 = 0
        for i in 0..<1500 {
            try c.insertBlobs(1, bytes: 8000)
            if i % 10 == 0 { most = max(most, Self.spoolBytesOnDisk(dbPath)) }
        }
        // The bound plus the margin README states: one transaction and one reserve chunk
        // (an eighth of the bound) beyond it, a block per segment file.
        #expect(most <= (1 << 20) + (512 << 10), "spool on disk peaked at \(most) bytes with a 1 MiB bound")
        try replicator.flush(timeout: .seconds(60))
        let reclaimed = TestSupport.waitUntil(timeout: 10) { Self.spoolBytesOnDisk(dbPath) <= 256 << 10 }
        #expect(reclaimed, "everything is shipped but the spool still holds \(Self.spoolBytesOnDisk(dbPath)) bytes on disk")
        try Self.rebuildAndCompare(dir: dir, dbPath: dbPath)
    }

    /// Fills a 1 MiB tmpfs mounted on `<db>-vfsrepl` with no uploader running; returns the
    /// number of commits that succeeded and the error that stopped the writer (if any).
    static func fillSpool(_ c: Conn, attempts: Int) -> (commits: Int, error: SQLError?) {
        var commits = 0
        for _ in 0..<attempts {
            do {
                try c.insertBlobs(1, bytes: 8000)
                commits += 1
            } catch let e as SQLError {
                return (commits, e)
            } catch {
                return (commits, SQLError(code: -1, message: "\(error)"))
            }
        }
        return (commits, nil)
    }

    static func mountTmpfs(_ dir: String, size: String) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let r = try TestSupport.run("/bin/mount", ["-t", "tmpfs", "-o", "size=\(size)", "tmpfs", dir])
        guard r.status == 0 else { throw TestFailure("mount tmpfs on \(dir): \(r)") }
    }

    static func growTmpfs(_ dir: String, size: String) throws {
        let r = try TestSupport.run("/bin/mount", ["-o", "remount,size=\(size)", dir])
        guard r.status == 0 else { throw TestFailure("remount \(dir): \(r)") }
    }

    static func unmount(_ dir: String) {
        _ = try? TestSupport.run("/bin/umount", ["-l", dir])
    }

    @Test(.enabled(if: canMount, "needs to mount a tmpfs (run as root)"))
    func fullSpoolDiskBlocksWritersBeforeTheyCommit() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let dbPath = dir + "/app.db"
        let stateDir = dbPath + "-vfsrepl"
        try Self.mountTmpfs(stateDir, size: "1m")
        defer { Self.unmount(stateDir) }
        let config = try Self.writeConfig(dir: dir, extra: "    spool-full: block")
        let replicator = try Replicator(config: config)  // not started: nothing drains the spool
        defer { replicator.shutdown(timeout: .seconds(10)) }
        do {
            let c = try Conn(dbPath)
            sqlite3_busy_timeout(c.db, 200)
            try c.exec("PRAGMA journal_mode=WAL")
            try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
            let files = ReplicationFiles(databasePath: dbPath)
            let before = try #require(try LocalReplicationState.read(files)).localTXID
            let (commits, error) = Self.fillSpool(c, attempts: 400)
            // The writer is held (busy) or its transaction fails (full) before it commits ...
            let code = try #require(error, "400 commits of 8 KB succeeded with a 1 MiB spool disk").code
            #expect(code == SQLITE_BUSY || code == SQLITE_FULL, "\(error!)")
            // ... and every commit that succeeded is in the spool, each its own restore point.
            let after = try #require(try LocalReplicationState.read(files)).localTXID
            #expect(after - before == UInt64(commits), "\(commits) commits, \(after - before) captured")
            #expect(try c.scalar("SELECT count(*) FROM t") == "\(commits)", "reads go on")
            let report = StatusReport.collect(database: config.databases[0])
            #expect(report.problems.contains { $0.contains("spool") && $0.contains("cannot be written") },
                    "\(report.problems)")
            // Space returns: writers go on, the uploader drains everything.
            try Self.growTmpfs(stateDir, size: "64m")
            try c.insertBlobs(20, bytes: 8000)
            replicator.start()
            try replicator.flush(timeout: .seconds(60))
            try Self.rebuildAndCompare(dir: dir, dbPath: dbPath)
            let ok = TestSupport.waitUntil(timeout: 10) { StatusReport.collect(database: config.databases[0]).healthy }
            #expect(ok, "\(StatusReport.collect(database: config.databases[0]).problems)")
        }
    }

    @Test(.enabled(if: canMount, "needs to mount a tmpfs (run as root)"))
    func fullSpoolDiskWithGrowCommitsAndSpoolsLater() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let dbPath = dir + "/app.db"
        let stateDir = dbPath + "-vfsrepl"
        try Self.mountTmpfs(stateDir, size: "1m")
        defer { Self.unmount(stateDir) }
        let config = try Self.writeConfig(dir: dir, extra: "    spool-full: grow")
        let replicator = try Replicator(config: config)  // not started: nothing drains the spool
        defer { replicator.shutdown(timeout: .seconds(10)) }
        do {
            let c = try Conn(dbPath)
            try c.exec("PRAGMA journal_mode=WAL")
            try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
            let files = ReplicationFiles(databasePath: dbPath)
            let before = try #require(try LocalReplicationState.read(files)).localTXID
            let (commits, error) = Self.fillSpool(c, attempts: 300)
            #expect(error == nil, "grow keeps commits going: \(String(describing: error))")
            let report = StatusReport.collect(database: config.databases[0])
            #expect(report.problems.contains { $0.contains("spool") && $0.contains("cannot be written") },
                    "loud, not silent: \(report.problems)")
            // Space returns: the frames still in the WAL are spooled, each commit its own TXID.
            try Self.growTmpfs(stateDir, size: "64m")
            try c.insertBlobs(1, bytes: 8000)
            let after = try #require(try LocalReplicationState.read(files)).localTXID
            #expect(after - before == UInt64(commits + 1), "\(commits + 1) commits, \(after - before) captured")
            replicator.start()
            try replicator.flush(timeout: .seconds(60))
            try Self.rebuildAndCompare(dir: dir, dbPath: dbPath)
            let ok = TestSupport.waitUntil(timeout: 10) { StatusReport.collect(database: config.databases[0]).healthy }
            #expect(ok, "\(StatusReport.collect(database: config.databases[0]).problems)")
        }
    }
}
