import CVFSShim
import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// Shipped spool segments are kept as spares and reused as later segments (appends then
/// overwrite written blocks instead of allocating fresh pages), and what a reused file still
/// holds of its earlier life is never taken for records of the segment it has become.
@Suite("Spool recycling", .serialized)
struct SpoolRecyclingTests {
    static func inode(_ path: String) -> UInt64? {
        var st = stat()
        return stat(path, &st) == 0 ? UInt64(st.st_ino) : nil
    }

    static func header(_ path: String, at offset: UInt64) throws -> vr_rec_header {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw TestFailure("open \(path): errno \(errno)") }
        defer { close(fd) }
        var h = vr_rec_header()
        let size = MemoryLayout<vr_rec_header>.size
        let n = withUnsafeMutableBytes(of: &h) { pread(fd, $0.baseAddress, size, off_t(offset)) }
        guard n == size else { throw TestFailure("short read of \(path) at \(offset)") }
        return h
    }

    @Test func shippedSegmentsAreReusedAndTheirOldRecordsAreNeverRead() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // max-delay 10s: the uploader ships when the test flushes, so each round fills one segment.
        let replicator = try Replicator(config: try TestSupport.fileReplicaConfig(dir: dir, maxDelay: "10s"))
        replicator.start()
        defer { replicator.shutdown(timeout: .seconds(10)) }
        let dbPath = dir + "/app.db"
        let spoolDir = dbPath + "-vfsrepl/spool"
        let c = try Conn(dbPath)
        try c.exec("PRAGMA journal_mode=WAL")
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        let spool = try ReplicatedVFS.registerDatabase(path: dbPath)

        // Rounds of 1.2 to 3.2 MiB of spool each, shipped in between: a writer that finds its
        // segment shipped and past 1 MiB rotates, and the uploader keeps shipped segments as spares.
        // About 4 MB/s, below SparePolicy's pre-touching rate: every spare is a former segment.
        var segmentInodes: Set<UInt64> = []
        var spareInodes: Set<UInt64> = []
        var reused: (segment: UInt64, inode: UInt64)?
        // Later rounds are smaller than the first ones, so a reused file keeps a tail of its past.
        for round in 0..<12 {
            for _ in 0..<(round < 4 ? 40 : 15) {
                try c.insertBlobs(10, bytes: 8000)
                Thread.sleep(forTimeInterval: 0.02)
            }
            try replicator.flush(timeout: .seconds(60))
            let st = spool.state()
            let current = Self.inode(spool.segmentPath(st.appendSeg))
            var size = stat()
            let hasTail = stat(spool.segmentPath(st.appendSeg), &size) == 0 && UInt64(size.st_size) > st.appendOff + (64 << 10)
            if round >= 4, let ino = current, spareInodes.contains(ino), segmentInodes.contains(ino), hasTail {
                reused = (st.appendSeg, ino)
                break
            }
            if let ino = current { segmentInodes.insert(ino) }
            for k in 1...4 {
                if let ino = Self.inode(spoolDir + "/spare-\(k).seg") { spareInodes.insert(ino) }
            }
        }
        #expect(!spareInodes.isEmpty, "no shipped segment was kept as a spare")
        let found = try #require(reused, "no segment reused the file of an earlier, shipped segment")

        // The reused file still holds its earlier records past the committed end: each is
        // sealed with the number of the segment it was written in, so it is no record of this one.
        let st = spool.state()
        let current = spool.segmentPath(st.appendSeg)
        let first = try Self.header(current, at: 0)
        #expect(first.magic == VR_REC_MAGIC2)
        var firstHeader = first
        #expect(vr_rec_valid(&firstHeader, st.appendSeg) == 1, "a record is sound in its own segment")
        #expect(vr_rec_valid(&firstHeader, st.appendSeg + 1) == 0, "and in no other")
        // Find a record of the file's earlier life past the committed end, and read from it as a
        // spool whose shared state ran ahead of its data (a power cut) would.
        #expect(found.segment == st.appendSeg, "the last rounds wrote into a reused file")
        let bytes = try TestSupport.readFile(current)
        var stale: (offset: UInt64, segment: UInt64)?
        var off = Int(st.appendOff + 7) & ~7
        while stale == nil, off + 64 <= bytes.count {
            var h = vr_rec_header()
            withUnsafeMutableBytes(of: &h) { $0.copyBytes(from: bytes[off..<off + 64]) }
            if h.magic == VR_REC_MAGIC2, let seg = (1..<st.appendSeg).first(where: { vr_rec_valid(&h, $0) == 1 }) {
                stale = (UInt64(off), seg)
            }
            off += 8
        }
        let old = try #require(stale, "the reused file holds no record of its earlier life past the end (size \(bytes.count), committed end \(st.appendOff), segment \(st.appendSeg), found \(found))")
        var h = try Self.header(current, at: old.offset)
        #expect(vr_rec_valid(&h, st.appendSeg) == 0, "a record of segment \(old.segment) passes for one of \(st.appendSeg)")
        let reader = SpoolReader(spool: spool)
        var visited = 0
        #expect(throws: ReplicationError.self) {
            try reader.scan(
                from: SpoolPosition(segment: st.appendSeg, offset: old.offset),
                to: SpoolPosition(segment: st.appendSeg, offset: UInt64(bytes.count))
            ) { _, _ in visited += 1 }
        }
        #expect(visited == 0, "a stale record was read as one of segment \(st.appendSeg)")

        try DiskSpaceTests.rebuildAndCompare(dir: dir, dbPath: dbPath)
    }
}
