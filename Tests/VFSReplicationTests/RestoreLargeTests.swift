import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// A database over 1 GiB with more than 100,000 transactions behind it, restored by the built
/// `vfs-rebuild` in bounded memory. The history is written directly as LTX files (a snapshot,
/// compacted levels, then level-0 batches); pages carry their page number and version so the
/// result can be checked page by page. Set VFS_LARGE_TESTS=1 to run it (it writes about 1.1 GB);
/// VFS_REBUILD_BINARY=path measures another build of the tool (say, a release build).
@Suite(
    "Restore: large database",
    .enabled(if: ProcessInfo.processInfo.environment["VFS_LARGE_TESTS"] == "1", "set VFS_LARGE_TESTS=1"),
    .enabled(if: TestSupport.builtProduct("vfs-rebuild") != nil, "vfs-rebuild binary not built next to the tests")
)
struct RestoreLargeTests {
    static let pageSize = 4096
    /// 270,000 pages of 4 KiB: 1.03 GiB, past SQLite's lock page (262,145 at this page size).
    static let basePages: UInt32 = 270_000

    /// Page content: mostly one byte (cheap to make, compresses well) with the page number, the
    /// version and a mixed word at the front, and a varying tail.
    static func fill(_ page: UnsafeMutableRawBufferPointer, pgno: UInt32, version: UInt32) {
        memset(page.baseAddress!, Int32(truncatingIfNeeded: pgno &* 31 &+ version &* 7), page.count)
        page.storeBytes(of: pgno.bigEndian, toByteOffset: 0, as: UInt32.self)
        page.storeBytes(of: version.bigEndian, toByteOffset: 4, as: UInt32.self)
        page.storeBytes(of: (pgno ^ version &* 2_654_435_761).bigEndian, toByteOffset: 8, as: UInt32.self)
        page.storeBytes(
            of: UInt64(pgno) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(version), toByteOffset: page.count - 8, as: UInt64.self)
    }

    struct History {
        var versions: [UInt32]
        var lastTXID: UInt64
        var files = 0
    }

    /// Writes one LTX file with the given pages at their current version into `versions`.
    static func write(
        _ replica: FileReplicaClient, level: Int, minTXID: UInt64, maxTXID: UInt64, commit: UInt32,
        pages: [UInt32], history: inout History
    ) throws {
        let dir = replica.levelDirectory(level)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let header = LTXHeader(
            pageSize: UInt32(pageSize), commit: commit, minTXID: minTXID, maxTXID: maxTXID,
            timestamp: Date(timeIntervalSince1970: 1_750_000_000 + Double(maxTXID) / 10))
        let encoder = try LTXEncoder(
            path: replica.path(level: level, minTXID: minTXID, maxTXID: maxTXID), header: header)
        var page = [UInt8](repeating: 0, count: pageSize)
        let version = UInt32(truncatingIfNeeded: maxTXID)
        for pgno in pages {
            while history.versions.count < Int(pgno) { history.versions.append(0) }
            history.versions[Int(pgno) - 1] = version
            page.withUnsafeMutableBytes { fill($0, pgno: pgno, version: version) }
            try encoder.writePage(pgno, page)
        }
        try encoder.finish(sync: false)
        history.lastTXID = maxTXID
        history.files += 1
    }

    static func randomPages(_ count: Int, below limit: UInt32, _ random: inout SplitMix64) -> [UInt32] {
        let lock = LTX.lockPageNumber(pageSize: UInt32(pageSize))
        var set = Set<UInt32>()
        while set.count < count {
            let p = UInt32(random.next() % UInt64(limit)) + 1
            if p != lock { set.insert(p) }
        }
        return set.sorted()
    }

    /// Runs a program and returns its exit status and peak resident set size (KiB).
    static func runMeasured(_ executable: String, _ arguments: [String], stdout: String) throws -> (Int32, Int) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stdout + ".err", O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, nil, argv, environ)
        guard rc == 0 else { throw TestFailure("posix_spawn \(executable): \(rc)") }
        var status: Int32 = 0
        var usage = rusage()
        while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
        let exited = (status & 0x7f) == 0
        return (exited ? (status >> 8) & 0xff : -1, usage.ru_maxrss)
    }

    @Test func restoresOverAGibibyteInBoundedMemory() throws {
        try Self.restoreLargeHistory()
    }

    static func restoreLargeHistory() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let clock = Date()
            let replica = FileReplicaClient(directory: dir + "/replica")
            var random = SplitMix64(seed: 1)
            var history = History(versions: [], lastTXID: 0)
            let lock = LTX.lockPageNumber(pageSize: UInt32(pageSize))
            // The snapshot: TXID 1, every page.
            try write(
                replica, level: 9, minTXID: 1, maxTXID: 1, commit: basePages,
                pages: (1...basePages).filter { $0 != lock }, history: &history)
            // 80,000 transactions compacted into 8 level-2 files, 19,000 into 19 level-1 files.
            for i in 0..<8 {
                let minTXID = UInt64(2 + i * 10_000)
                try write(
                    replica, level: 2, minTXID: minTXID, maxTXID: minTXID + 9_999, commit: basePages,
                    pages: randomPages(3_000, below: basePages, &random), history: &history)
            }
            for i in 0..<19 {
                let minTXID = UInt64(80_002 + i * 1_000)
                try write(
                    replica, level: 1, minTXID: minTXID, maxTXID: minTXID + 999, commit: basePages,
                    pages: randomPages(500, below: basePages, &random), history: &history)
            }
            // 1,000 batches of one transaction; the last one grows the database by 100 pages.
            for txid in UInt64(99_002)...100_001 {
                let grow = txid == 100_001
                let commit = grow ? basePages + 100 : basePages
                var pages = randomPages(3, below: basePages, &random)
                if grow { pages = Array(Set(pages + ((basePages + 1)...(basePages + 100)))).sorted() }
                try write(
                    replica, level: 0, minTXID: txid, maxTXID: txid, commit: commit, pages: pages, history: &history)
            }
            let built = Date().timeIntervalSince(clock)

            // Restore with the built tool, measuring its peak memory.
            let out = dir + "/restored.db"
            let started = Date()
            let tool = ProcessInfo.processInfo.environment["VFS_REBUILD_BINARY"] ?? TestSupport.builtProduct("vfs-rebuild")!
            let (status, maxRSSKiB) = try runMeasured(
                tool,
                ["--replica", replica.location, "--output", out, "--no-verify", "--quiet", "--json"],
                stdout: dir + "/rebuild.json")
            let restoreSeconds = Date().timeIntervalSince(started)
            let output = (try? String(contentsOfFile: dir + "/rebuild.json", encoding: .utf8)) ?? ""
            let errors = (try? String(contentsOfFile: dir + "/rebuild.json.err", encoding: .utf8)) ?? ""
            try #require(status == 0, "vfs-rebuild failed: \(output) \(errors)")
            let result = try JSONSerialization.jsonObject(with: Data(output.utf8)) as? [String: Any]
            #expect(result?["txid"] as? Int == 100_001)
            #expect(result?["page_count"] as? Int == Int(basePages) + 100)
            let fileCount = (result?["files"] as? [Any])?.count ?? 0
            #expect(fileCount == 1_028)
            #expect(maxRSSKiB < 256 * 1024, "peak RSS \(maxRSSKiB / 1024) MiB")

            // Every page is the newest version written (the lock page stays zero).
            let fd = open(out, O_RDONLY)
            defer { close(fd) }
            let size = lseek(fd, 0, SEEK_END)
            #expect(Int64(size) == Int64(basePages + 100) * Int64(pageSize))
            let chunkPages = 1024
            var actual = [UInt8](repeating: 0, count: chunkPages * pageSize)
            var expected = [UInt8](repeating: 0, count: chunkPages * pageSize)
            var mismatches = 0
            var pgno: UInt32 = 1
            while pgno <= basePages + 100 {
                let count = min(chunkPages, Int(basePages + 100 - pgno + 1))
                let bytes = count * pageSize
                let n = actual.withUnsafeMutableBytes {
                    pread(fd, $0.baseAddress!, bytes, off_t(Int(pgno - 1) * pageSize))
                }
                #expect(n == bytes)
                expected.withUnsafeMutableBytes { buf in
                    for i in 0..<count {
                        let p = pgno + UInt32(i)
                        let slice = UnsafeMutableRawBufferPointer(rebasing: buf[(i * pageSize)..<((i + 1) * pageSize)])
                        if p == lock {
                            memset(slice.baseAddress!, 0, pageSize)
                        } else {
                            fill(slice, pgno: p, version: history.versions[Int(p) - 1])
                        }
                    }
                }
                let same = actual.withUnsafeBytes { a in
                    expected.withUnsafeBytes { e in memcmp(a.baseAddress!, e.baseAddress!, bytes) }
                }
                if same != 0 { mismatches += 1 }
                pgno += UInt32(count)
            }
            #expect(mismatches == 0, "\(mismatches) chunks differ")
            print(
                "large restore: built \(history.files) files in \(String(format: "%.1f", built)) s, "
                    + "restored \(String(format: "%.2f", Double(size) / Double(1 << 30))) GiB in "
                    + "\(String(format: "%.1f", restoreSeconds)) s, peak RSS \(maxRSSKiB / 1024) MiB")
        }
    }
}
