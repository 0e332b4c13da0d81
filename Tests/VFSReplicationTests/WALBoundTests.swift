import CSQLite
import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// The WAL stays bounded while the replica cannot take what the app commits (Litestream's issue
/// #1536: its WAL grew without bound when replication stalled, because it keeps a read
/// transaction open that stops SQLite from restarting the WAL). Here every commit is copied into
/// the spool when it is made, so nothing needs the WAL after a checkpoint: the spool grows
/// instead, or, with `spool-max-bytes` and `spool-full: block`, the writer gets SQLITE_BUSY.
/// Real SQLite through the replicated VFS, the uploader in this process, an S3 replica on
/// SeaweedFS behind the fault proxy (an outage, or snapshot uploads held as long as needed).
@Suite("WAL bound", .serialized)
struct WALBoundTests {
    /// Rows of 8,000 random bytes (two pages each at 4 KiB), eight per transaction.
    static let rowBytes = 8000
    static let rowsPerTransaction = 8

    /// The most bytes the -wal file may reach. SQLite runs a PASSIVE checkpoint after a commit
    /// that leaves `wal_autocheckpoint` frames or more in the WAL, and the next writer restarts
    /// the WAL at its beginning once the checkpoint backfilled every frame and no reader still
    /// uses a WAL snapshot. So the file holds `wal_autocheckpoint` frames, plus the transaction
    /// that crossed the threshold, plus what commits while a short read transaction (the
    /// uploader's snapshot reader copying pages, a checkpoint racing a reader) keeps the
    /// checkpoint from completing. Three times the threshold is generous for that; a WAL that
    /// nothing lets restart grows past it within the first few thousand frames, and the tests
    /// write several times more than the bound. The file never shrinks (no journal_size_limit),
    /// so its size after each commit is its high-water mark.
    static func walBound(_ c: Conn) throws -> Int64 {
        let frames = Int64(try c.scalar("PRAGMA wal_autocheckpoint")) ?? 0
        let pageSize = Int64(try c.scalar("PRAGMA page_size")) ?? 0
        try #require(frames > 0 && pageSize > 0, "wal_autocheckpoint \(frames), page_size \(pageSize)")
        return 3 * frames * (pageSize + 24) + 32
    }

    static func walSize(_ dbPath: String) -> Int64 {
        var st = stat()
        return stat(dbPath + "-wal", &st) == 0 ? Int64(st.st_size) : 0
    }

    /// The -wal file's high-water mark and the bytes committed by a run of transactions.
    struct WriteRun {
        var walMax: Int64 = 0
        var transactions = 0
        var bytes = 0
        var busy: SQLError?
    }

    /// Commits transactions of `rowsPerTransaction` rows until `bytes` have been written (or the
    /// writer gets SQLITE_BUSY), sampling the -wal file's size after every commit.
    static func write(_ c: Conn, bytes: Int, into run: inout WriteRun) throws {
        let dbPath = c.path
        let goal = run.bytes + bytes
        while run.bytes < goal {
            do {
                try c.exec("BEGIN")
                try c.insertBlobs(rowsPerTransaction, bytes: rowBytes)
                try c.exec("COMMIT")
            } catch let e as SQLError where e.code == SQLITE_BUSY {
                try? c.exec("ROLLBACK")
                run.busy = e
                return
            }
            run.transactions += 1
            run.bytes += rowsPerTransaction * rowBytes
            run.walMax = max(run.walMax, walSize(dbPath))
        }
    }

    static func expectRestoredEqual(
        _ server: SeaweedFS, bucket: String, dir: String, sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let out = dir + "/restored.db"
        let result = try ReplicaRestorer.restore(
            from: try S3ReplicaClient(config: server.replicaConfig(bucket: bucket, prefix: "app")), to: out,
            options: RestoreOptions(force: true, verify: true))
        #expect(result.integrityChecked, sourceLocation: sourceLocation)
        #expect(
            try TestSupport.dump(out) == TestSupport.dump(dir + "/app.db"), "the restored database equals the source",
            sourceLocation: sourceLocation)
    }

    /// Steady replication, then an outage: 40 MiB in about 650 transactions while every request to
    /// the replica is reset. The WAL stays within its bound, the spool takes it all; when the
    /// replica is back everything ships and restores equal.
    @Test func walStaysBoundedWhileTheReplicaIsUnreachable() throws {
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("walbound")
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let outage = dir + "/outage"
        let proxy = try FaultProxy(server, dir: dir, arguments: ["--outage-file", outage])
        let config = try SeaweedFS.writeReplicationConfig(
            dir: dir, bucket: bucket, endpoint: proxy.endpoint, maxDelay: "50ms")
        let replicator = try Replicator(config: try ReplicationConfig.load(path: config))
        replicator.start()
        defer { replicator.shutdown(timeout: .seconds(10)) }
        let dbPath = dir + "/app.db"
        let c = try Conn(dbPath)
        try c.exec("PRAGMA journal_mode=WAL")
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        let bound = try Self.walBound(c)
        var run = WriteRun()
        try Self.write(c, bytes: 2 << 20, into: &run)
        try replicator.flush(timeout: .seconds(60))
        let shippedBefore = replicator.status()[0].durableTXID

        FileManager.default.createFile(atPath: outage, contents: nil)
        #expect(
            TestSupport.waitUntil(timeout: 30) {
                (try? c.insertBlobs(1, bytes: 100)) != nil && replicator.status()[0].lastError != nil
            }, "the outage is reported")
        // Unshipped spool bytes from the shared state (bytes on disk would also count spare
        // segments, written before the outage and reused during it).
        let files = ReplicationFiles(databasePath: dbPath)
        let spoolBefore = try #require(try LocalReplicationState.read(files)).pendingSpoolBytes
        var outageRun = WriteRun()
        try Self.write(c, bytes: 40 << 20, into: &outageRun)
        #expect(outageRun.busy == nil, "no spool bound: commits go on (\(String(describing: outageRun.busy)))")
        let status = replicator.status()[0]
        let spoolGrowth = Int64(try #require(try LocalReplicationState.read(files)).pendingSpoolBytes) - Int64(spoolBefore)
        print(
            "WAL bound \(bound) B; WAL peaked at \(run.walMax) B before and \(outageRun.walMax) B during the outage "
                + "(\(outageRun.transactions) transactions, \(outageRun.bytes) B); spool grew \(spoolGrowth) B; "
                + "durable TXID \(status.durableTXID) of \(status.localTXID); proxy \(proxy.stats())")
        #expect(run.walMax <= bound, "the WAL reached \(run.walMax) bytes (bound \(bound)) while the replica was up")
        #expect(
            outageRun.walMax <= bound, "the WAL reached \(outageRun.walMax) bytes (bound \(bound)) during the outage")
        #expect(status.durableTXID == shippedBefore, "nothing reached the replica during the outage")
        #expect(spoolGrowth >= Int64(outageRun.bytes), "the spool holds what the outage kept from the replica")
        #expect((proxy.stats()["outage"] ?? 0) > 0, "the proxy reset the uploader's requests")

        try FileManager.default.removeItem(atPath: outage)
        try Self.write(c, bytes: 1 << 20, into: &run)
        try replicator.flush(timeout: .seconds(180))
        #expect(run.walMax <= bound, "the WAL reached \(run.walMax) bytes (bound \(bound)) after the outage")
        try Self.expectRestoredEqual(server, bucket: bucket, dir: dir)
    }

    /// A database with 8 MB in it and no replica files yet: the uploader's first upload is the
    /// base snapshot, and the replica holds every object upload (the fault proxy's hold file)
    /// from the start. While that upload waits the app commits 40 MB: the snapshot's read
    /// transaction must be over by then, or SQLite could not restart the WAL behind it.
    @Test func walStaysBoundedWhileTheBaseSnapshotWaitsForTheReplica() throws {
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("walsnap")
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let dbPath = dir + "/app.db"
        do {
            // Existing data, written without the VFS: the uploader has nothing of it in a spool.
            let plain = try Conn(dbPath, vfs: nil)
            try plain.exec("PRAGMA journal_mode=WAL")
            try plain.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
            var seed = WriteRun()
            try Self.write(plain, bytes: 8 << 20, into: &seed)
            try plain.exec("PRAGMA wal_checkpoint(TRUNCATE)")
        }
        let hold = dir + "/hold"
        FileManager.default.createFile(atPath: hold, contents: nil)
        let proxy = try FaultProxy(server, dir: dir, arguments: ["--match", "put", "--hold-file", hold])
        let config = try SeaweedFS.writeReplicationConfig(
            dir: dir, bucket: bucket, endpoint: proxy.endpoint, maxDelay: "50ms")
        let replicator = try Replicator(config: try ReplicationConfig.load(path: config))
        replicator.start()
        defer { replicator.shutdown(timeout: .seconds(10)) }
        let c = try Conn(dbPath)
        let bound = try Self.walBound(c)
        var run = WriteRun()
        try Self.write(c, bytes: 256 << 10, into: &run)
        // The snapshot is read and its upload waits in the proxy.
        let snapshotPut = "request PUT /\(bucket)/app/0009/"
        #expect(
            TestSupport.waitUntil(timeout: 60) { proxy.process.log.contains(snapshotPut) },
            "the base snapshot's upload reaches the proxy: \(proxy.process.log)")
        try Self.write(c, bytes: 40 << 20, into: &run)
        let status = replicator.status()[0]
        print(
            "WAL bound \(bound) B; WAL peaked at \(run.walMax) B (\(run.transactions) transactions, \(run.bytes) B) "
                + "while the snapshot upload waited; files uploaded \(status.filesUploaded); proxy \(proxy.stats())")
        #expect(status.filesUploaded == 0, "the snapshot upload was held while the app wrote")
        #expect(run.walMax <= bound, "the WAL reached \(run.walMax) bytes (bound \(bound)) while the snapshot waited")

        try FileManager.default.removeItem(atPath: hold)
        try replicator.flush(timeout: .seconds(180))
        #expect(replicator.status()[0].lastSnapshot != nil, "the base snapshot shipped")
        try Self.expectRestoredEqual(server, bucket: bucket, dir: dir)
    }

    /// With `spool-max-bytes` (16 MiB, four times the WAL's bound) and `spool-full: block`, an
    /// outage ends with the writer getting SQLITE_BUSY at the bound, and the WAL has stayed
    /// bounded all the way there; once the replica is back the writer goes on. (OutageTests
    /// holds writers at a 256 KiB bound of a directory replica; this is the WAL's side of it.)
    @Test func boundedSpoolGivesTheWriterBusyRatherThanGrowingTheWAL() throws {
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("walbusy")
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let outage = dir + "/outage"
        FileManager.default.createFile(atPath: outage, contents: nil)
        let proxy = try FaultProxy(server, dir: dir, arguments: ["--outage-file", outage])
        let config = try SeaweedFS.writeReplicationConfig(
            dir: dir, bucket: bucket, endpoint: proxy.endpoint, maxDelay: "50ms",
            extra: "    spool-max-bytes: 16MiB\n    spool-full: block")
        let replicator = try Replicator(config: try ReplicationConfig.load(path: config))
        replicator.start()
        defer { replicator.shutdown(timeout: .seconds(10)) }
        let dbPath = dir + "/app.db"
        let c = try Conn(dbPath)
        try c.exec("PRAGMA journal_mode=WAL")
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        let bound = try Self.walBound(c)
        sqlite3_busy_timeout(c.db, 0)  // held at the bound: SQLITE_BUSY at once
        var run = WriteRun()
        try Self.write(c, bytes: 40 << 20, into: &run)
        print(
            "WAL bound \(bound) B; WAL peaked at \(run.walMax) B; \(run.transactions) transactions (\(run.bytes) B) "
                + "before \(String(describing: run.busy)); spool \(DiskSpaceTests.spoolBytesOnDisk(dbPath)) B")
        let busy = try #require(run.busy, "40 MB committed during an outage with a 16 MiB spool bound")
        #expect(busy.code == SQLITE_BUSY)
        #expect(run.bytes >= 8 << 20, "the writer was held only near the bound (after \(run.bytes) bytes)")
        #expect(run.walMax <= bound, "the WAL reached \(run.walMax) bytes (bound \(bound)) before the writer was held")
        #expect(try c.scalar("SELECT count(*) FROM t") == "\(run.transactions * Self.rowsPerTransaction)", "reads go on")

        try FileManager.default.removeItem(atPath: outage)
        sqlite3_busy_timeout(c.db, 120_000)
        run.busy = nil
        try Self.write(c, bytes: 1 << 20, into: &run)
        #expect(run.busy == nil)
        try replicator.flush(timeout: .seconds(180))
        #expect(run.walMax <= bound, "the WAL reached \(run.walMax) bytes (bound \(bound)) after the outage")
        try Self.expectRestoredEqual(server, bucket: bucket, dir: dir)
    }
}
