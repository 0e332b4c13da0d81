import ArgumentParser
internal import CSQLite
import Foundation
import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// A digest of a database's logical content: every row of every table in rowid order
/// (FNV-1a 64 over column types and bytes), with the row count. SQLite's and Litestream's own
/// tables (`_litestream_seq`, `_litestream_lock`) are left out.
struct ContentDigest: Codable, Equatable, CustomStringConvertible {
    var rows: Int
    var hash: UInt64
    var description: String { "\(rows) rows, \(String(hash, radix: 16))" }

    static func of(_ c: BenchConnection) throws -> ContentDigest {
        var tables: [String] = []
        let list = try c.prepare("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' AND name NOT LIKE '\\_litestream%' ESCAPE '\\' ORDER BY name")
        while sqlite3_step(list) == SQLITE_ROW { tables.append(String(cString: sqlite3_column_text(list, 0))) }
        sqlite3_finalize(list)
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        var rows = 0
        @inline(__always) func mix(_ p: UnsafeRawBufferPointer) {
            for b in p { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        }
        for t in tables {
            mix(UnsafeRawBufferPointer(start: t, count: t.utf8.count))
            let stmt = try c.prepare("SELECT * FROM \"\(t)\" ORDER BY rowid")
            defer { sqlite3_finalize(stmt) }
            let n = sqlite3_column_count(stmt)
            while sqlite3_step(stmt) == SQLITE_ROW {
                rows += 1
                for i in 0..<n {
                    var type = UInt8(sqlite3_column_type(stmt, i))
                    withUnsafeBytes(of: &type) { mix($0) }
                    switch Int32(type) {
                    case SQLITE_INTEGER:
                        var v = sqlite3_column_int64(stmt, i)
                        withUnsafeBytes(of: &v) { mix($0) }
                    case SQLITE_FLOAT:
                        var v = sqlite3_column_double(stmt, i)
                        withUnsafeBytes(of: &v) { mix($0) }
                    case SQLITE_NULL: break
                    default:
                        let p = sqlite3_column_blob(stmt, i)
                        let len = Int(sqlite3_column_bytes(stmt, i))
                        if let p, len > 0 { mix(UnsafeRawBufferPointer(start: p, count: len)) }
                    }
                }
            }
        }
        return ContentDigest(rows: rows, hash: h)
    }
}

/// Runs a program, output to `log`, and returns its exit status, wall seconds and peak RSS
/// (`wait4`'s ru_maxrss: the child alone).
func runMeasured(_ path: String, _ arguments: [String], environment: [String: String], log: String) throws -> (
    status: Int32, seconds: Double, peakRSSMiB: Double
) {
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    posix_spawn_file_actions_adddup2(&actions, 1, 2)
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
        for p in argv { free(p) }
        for p in envp { free(p) }
    }
    var pid: pid_t = 0
    let start = nowNs()
    let rc = posix_spawn(&pid, path, &actions, nil, argv, envp)
    guard rc == 0 else { throw BenchError("cannot start \(path): errno \(rc)") }
    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
    let seconds = Double(nowNs() - start) / 1e9
    let exit = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return (exit, seconds, Double(usage.ru_maxrss) / 1024)
}

/// `vfs-bench restore`: build databases with a mixed workload while both tools replicate them,
/// then restore each to latest and to a mid-point time with each tool, timed and verified.
struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore speed and memory: vfs-rebuild vs litestream restore, same data, same server.")

    @OptionGroup var common: CommonOptions
    @Option(parsing: .upToNextOption, help: "Database sizes in MiB (default 200 1024; 16 with --quick).")
    var sizes: [Int] = []
    @Option(help: "vfs-rebuild binary (default: next to vfs-bench).") var rebuild: String?
    @Flag(help: "Do not run Litestream (ours alone replicates the database).") var noLitestream = false

    struct Result: Codable {
        var sizeMiB: Double
        var tool: String
        var target: String
        var seconds: Double
        var mibPerSecond: Double
        var peakRSSMiB: Double
        var verified: Bool
        var status: Int32
        /// vfs-rebuild only: its own split of the time (from `--json`), and the machine's limit
        /// for the same work (`RestoreLimit`).
        var downloadApplySeconds: Double?
        var verifySeconds: Double?
        var limit: RestoreLimit?
    }

    func run() throws {
        let sizes = self.sizes.isEmpty ? (common.quick ? [16] : [200, 1024]) : self.sizes
        let server = try BenchServer.fromEnvironment()
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
        let rebuild = self.rebuild ?? URL(fileURLWithPath: exe).deletingLastPathComponent().path + "/vfs-rebuild"
        guard FileManager.default.isExecutableFile(atPath: rebuild) else {
            throw BenchError("vfs-rebuild not found at \(rebuild) (build it, or pass --rebuild)")
        }
        var results: [Result] = []
        var builds: [String] = []
        // vfs-rebuild's default --downloads: the limit fetches as many at once.
        let downloads = RebuildTool.Invocation(source: .replica(url: "")).downloads
        for size in sizes {
            let dir = try common.scratch("restore-\(size)")
            let path = dir + "/app.db"
            let twin = dir + "/litestream/app.db"
            try FileManager.default.createDirectory(atPath: dir + "/litestream", withIntermediateDirectories: true)
            let ourBucket = try server.makeBucket("restore-vfs")
            let theirBucket = try server.makeBucket("restore-litestream")

            // Ours: the workload through the replicated VFS, until the file reaches `size`.
            progress("restore: building \(size) MiB with a mixed workload through the replicated VFS")
            let replicator = try startReplicator(server: server, databases: [(path, ourBucket, "app", .seconds(1))])
            let ours = try build(
                path: path, replicated: true, target: Int64(size) << 20, plan: nil,
                settle: { try replicator.flush() })
            replicator.shutdown()

            // Litestream: the same transactions (same seed) on a plain twin that it replicates.
            // (Not the same file: Litestream's own checkpoints would bypass our capture.)
            var litestream: LitestreamProcess?
            var theirs: Build?
            if !noLitestream {
                progress("restore: building the same \(ours.transactions) transactions while Litestream replicates")
                let ls = try LitestreamProcess(server: server, databases: [(twin, theirBucket, "app")], directory: dir)
                litestream = ls
                theirs = try build(
                    path: twin, replicated: false, target: nil, plan: (ours.midTransactions, ours.transactions),
                    settle: { sleepSeconds(2.5) },
                    started: { try ls.waitForFirstUpload(server: server, bucket: theirBucket, prefix: "app") })
                ls.stop()
            }
            let fileMiB = Double(ours.bytes) / 1_048_576
            builds.append(
                String(
                    format: "%d MiB: built through the replicated VFS in %.0f s%@ (%d transactions of 40 statements); %@ at the end, %@ at the mid-point",
                    size, ours.seconds, theirs.map { String(format: ", the Litestream twin in %.0f s", $0.seconds) } ?? "",
                    ours.transactions, ours.final.description, ours.mid.description))
            if let theirs, theirs.final != ours.final || theirs.mid != ours.mid {
                progress("restore: the twin databases differ (\(theirs.final) vs \(ours.final))")
            }
            let midTime = ours.midTime
            let midDigest = ours.mid
            let finalDigest = ours.final

            let ourConfig = dir + "/replication.yml"
            try writeReplicationConfig(server: server, path: ourConfig, databases: [(path, ourBucket, "app")])
            let iso = ISO8601DateFormatter()
            iso.formatOptions = [.withInternetDateTime]
            let mid = iso.string(from: midTime)
            let theirMid = theirs.map { iso.string(from: $0.midTime) } ?? mid
            for (targetName, expected) in [("latest", finalDigest), ("mid-point", midDigest)] {
                for tool in noLitestream ? ["vfs-rebuild"] : ["vfs-rebuild", "litestream restore"] {
                    let out = dir + "/restored-\(tool.prefix(3))-\(targetName).db"
                    try? FileManager.default.removeItem(atPath: out)
                    let run: (status: Int32, seconds: Double, peakRSSMiB: Double)
                    var report: RebuildReport?
                    var limit: RestoreLimit?
                    progress("restore: \(size) MiB, \(tool), \(targetName)")
                    if tool == "vfs-rebuild" {
                        var args = ["--config", ourConfig, "--database", path, "--output", out, "--quiet", "--json"]
                        if targetName != "latest" { args += ["--timestamp", mid] }
                        run = try runMeasured(
                            rebuild, args, environment: ProcessInfo.processInfo.environment, log: out + ".log")
                        if run.status == 0 {
                            // The same objects from the same server, and the same bytes to the same disk.
                            let rebuilt = try RebuildReport(log: String(contentsOfFile: out + ".log", encoding: .utf8))
                            report = rebuilt
                            progress("restore: \(size) MiB, the machine's limit for the same \(rebuilt.files.count) files")
                            limit = try RestoreLimit.measure(
                                client: RebuildTool.replicaClient(.config(path: ourConfig, database: path)).0,
                                files: rebuilt.files, concurrency: downloads,
                                bytes: rebuilt.databaseBytes, directory: dir)
                        }
                    } else {
                        var args = ["restore", "-config", litestream!.configPath, "-o", out]
                        if targetName != "latest" { args += ["-timestamp", theirMid] }
                        args.append(twin)
                        run = try runMeasured(
                            server.litestream, args, environment: LitestreamProcess.environment(), log: out + ".log")
                    }
                    var verified = false
                    if run.status == 0 {
                        let restored = try BenchConnection(path: out, replicated: false)
                        let digest = try ContentDigest.of(restored)
                        let want = tool == "vfs-rebuild" ? expected : (targetName == "latest" ? theirs!.final : theirs!.mid)
                        verified = digest == want
                        if !verified {
                            let log = (try? String(contentsOfFile: out + ".log", encoding: .utf8)) ?? ""
                            progress("restore: \(tool) \(targetName): \(digest) != expected \(expected); its output: \(log.suffix(1500))")
                        }
                    } else {
                        let log = (try? String(contentsOfFile: out + ".log", encoding: .utf8)) ?? ""
                        progress("restore: \(tool) \(targetName) exited \(run.status): \(log.suffix(1500))")
                    }
                    results.append(
                        Result(
                            sizeMiB: fileMiB, tool: tool, target: targetName, seconds: run.seconds,
                            mibPerSecond: fileMiB / run.seconds, peakRSSMiB: run.peakRSSMiB, verified: verified,
                            status: run.status, downloadApplySeconds: report?.downloadApplySeconds,
                            verifySeconds: report?.verifySeconds, limit: limit))
                    try? FileManager.default.removeItem(atPath: out)
                }
            }
            try? FileManager.default.removeItem(atPath: dir)
        }
        if common.json {
            try printJSON(results)
            return
        }
        var table = Table(
            title: "restore: from the same SeaweedFS, same database history",
            header: [
                "database", "target", "tool", "seconds", "download+apply s", "verify s", "limit s (download, write)",
                "% of limit", "MiB/s", "ratio to Litestream", "peak RSS MiB", "equal to source",
            ])
        for r in results {
            let theirs = results.first {
                $0.tool == "litestream restore" && $0.target == r.target && $0.sizeMiB == r.sizeMiB
            }
            table.rows.append([
                formatNumber(r.sizeMiB, 0) + " MiB", r.target, r.tool, formatNumber(r.seconds, 2),
                r.downloadApplySeconds.map { formatNumber($0, 2) } ?? "–", r.verifySeconds.map { formatNumber($0, 2) } ?? "–",
                r.limit.map {
                    formatNumber($0.seconds, 2) + " (" + formatNumber($0.downloadSeconds, 2) + ", "
                        + formatNumber($0.writeSeconds, 2) + ")"
                } ?? "–",
                r.limit.map { formatNumber(100 * $0.seconds / r.seconds, 0) + "%" } ?? "–",
                formatNumber(r.mibPerSecond, 1),
                formatRatio(theirs.map { r.mibPerSecond / $0.mibPerSecond }), formatNumber(r.peakRSSMiB, 0),
                r.status != 0 ? "failed (exit \(r.status))" : r.verified ? "yes" : "**no**",
            ])
        }
        table.notes = builds + [
            "A mixed workload (users, orders, events; inserts, updates, deletes; four indexes; 40 statements per "
                + "transaction, seeded) wrote the database through the replicated VFS, then the same transactions wrote a "
                + "plain twin that Litestream replicated: same content, same history, each tool's own replica.",
            "vfs-rebuild runs with its default verification (LTX checksums, database checksum, integrity_check).",
            "MiB/s = restored database size / wall seconds of the restore command; peak RSS is the command's own (wait4).",
            "download+apply s and verify s: vfs-rebuild's own split (`--json` timings): from the first download to the "
                + "rebuilt file's fsync, then its database checksum and integrity_check; the rest of `seconds` is "
                + "start-up, listing and planning, and the rename.",
            "Limit: the machine's own time for the same work, measured right after each vfs-rebuild run: the files that "
                + "restore applied, fetched from the same SeaweedFS as many at once as vfs-rebuild downloads (4), each "
                + "into a temporary file and dropped undecoded (download), and the restored database's size written "
                + "sequentially to the same disk with one fsync (write). Limit s = max(download, write), not their sum: "
                + "the restore downloads ahead of the file it applies, so the two overlap and the best restore is as "
                + "slow as the slower one. % of limit = limit s / vfs-rebuild seconds (verification included).",
            "Equal to source: every row of every table hashed in rowid order, compared with the source at that moment.",
            "Targets: vfs-rebuild ≥ 2× Litestream's MiB/s and ≥ 70% of the limit, peak RSS < 256 MiB.",
        ]
        print(table.markdown())
    }
    struct Build {
        var transactions: Int
        var midTransactions: Int
        var seconds: Double
        var bytes: Int64
        var final: ContentDigest
        var mid: ContentDigest
        var midTime: Date
    }

    /// Runs the workload until the file reaches `target` bytes (or the `plan`'s transaction
    /// counts), pausing at the mid-point: `settle` ships everything, then the content digest and
    /// the mid-point time (a whole second, 1.5 s before the next write) are taken.
    func build(
        path: String, replicated: Bool, target: Int64?, plan: (mid: Int, end: Int)?, settle: () throws -> Void,
        started: () throws -> Void = {}
    ) throws -> Build {
        let c = try BenchConnection(path: path, replicated: replicated)
        let workload = try MixedWorkload(connection: c)
        _ = try workload.step(transactions: 1)
        try started()
        let start = nowNs()
        var mid: (Int, ContentDigest, Date)?
        while true {
            let bytes = try workload.step(transactions: 10)
            let n = workload.transactions
            let atMid = plan.map { n >= $0.mid } ?? (bytes >= target! / 2)
            if mid == nil && atMid {
                try settle()
                sleepSeconds(0.5)
                let t = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.up))
                sleepSeconds(t.timeIntervalSinceNow)
                mid = (n, try ContentDigest.of(c), t)
                sleepSeconds(max(0, t.timeIntervalSinceNow + 1.5))
            }
            if plan.map({ n >= $0.end }) ?? (bytes >= target!) { break }
        }
        let seconds = Double(nowNs() - start) / 1e9
        try settle()
        return Build(
            transactions: workload.transactions, midTransactions: mid!.0, seconds: seconds, bytes: try workload.sizeBytes(),
            final: try ContentDigest.of(c), mid: mid!.1, midTime: mid!.2)
    }
}

/// SplitMix64: the same seed gives the same workload, so twin databases get the same content.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9e37_79b9_7f4a_7c15
        var z = state
        z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
        z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
        return z ^ (z >> 31)
    }
}

/// A realistic app workload: users, orders and events, with inserts, updates, deletes and
/// secondary indexes. Deterministic for a seed (twin databases end equal).
final class MixedWorkload {
    let c: BenchConnection
    private(set) var transactions = 0
    private var rng: SeededGenerator
    private var nextUser = 1
    private var nextOrder = 1
    private var nextEvent = 1
    private var blob = [UInt8](repeating: 0, count: 4096)
    private let statements: [OpaquePointer]

    init(connection: BenchConnection, seed: UInt64 = 42) throws {
        c = connection
        rng = SeededGenerator(state: seed)
        try c.exec("PRAGMA journal_mode=WAL")
        try c.exec("PRAGMA synchronous=NORMAL")
        try c.exec(
            """
            CREATE TABLE IF NOT EXISTS users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE, created INTEGER);
            CREATE TABLE IF NOT EXISTS orders(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, total INTEGER, status TEXT, note BLOB, created INTEGER);
            CREATE INDEX IF NOT EXISTS orders_user ON orders(user_id);
            CREATE INDEX IF NOT EXISTS orders_status ON orders(status, created);
            CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, kind TEXT, payload BLOB, at INTEGER);
            CREATE INDEX IF NOT EXISTS events_at ON events(at);
            """)
        statements = try [
            "BEGIN", "COMMIT",
            "INSERT INTO users(id, name, email, created) VALUES (?1, 'user ' || ?1, 'u' || ?1 || '@example.com', ?1)",
            "INSERT INTO orders(id, user_id, total, status, note, created) VALUES (?1, ?2, ?3, 'new', ?4, ?1)",
            "INSERT INTO events(id, kind, payload, at) VALUES (?1, 'view', ?2, ?1)",
            "UPDATE orders SET status = 'paid', total = total + 1 WHERE id = ?1",
            "DELETE FROM events WHERE id = ?1",
        ].map { try connection.prepare($0) }
    }

    deinit { for s in statements { sqlite3_finalize(s) } }

    func sizeBytes() throws -> Int64 {
        let pages = Int64(try c.scalar("PRAGMA page_count") ?? "0") ?? 0
        let size = Int64(try c.scalar("PRAGMA page_size") ?? "4096") ?? 4096
        return pages * size
    }

    private func fill(_ n: Int) {
        var i = 0
        while i < n {
            var x = rng.next()
            withUnsafeBytes(of: &x) { w in for j in 0..<min(8, n - i) { blob[i + j] = w[j] } }
            i += 8
        }
    }

    private func bindBlob(_ stmt: OpaquePointer, _ index: Int32, _ n: Int) {
        fill(n)
        _ = blob.withUnsafeBytes { sqlite3_bind_blob(stmt, index, $0.baseAddress, Int32(n), SQLITE_TRANSIENT) }
    }

    /// Runs `transactions` transactions of 40 statements; returns the database size in bytes.
    func step(transactions count: Int) throws -> Int64 {
        let (begin, commit, user, order, event, update, delete) =
            (statements[0], statements[1], statements[2], statements[3], statements[4], statements[5], statements[6])
        for _ in 0..<count {
            try c.step(begin)
            for _ in 0..<2 {
                sqlite3_bind_int64(user, 1, Int64(nextUser))
                try c.step(user)
                nextUser += 1
            }
            for _ in 0..<8 {
                sqlite3_bind_int64(order, 1, Int64(nextOrder))
                sqlite3_bind_int64(order, 2, Int64.random(in: 1..<Int64(nextUser), using: &rng))
                sqlite3_bind_int64(order, 3, Int64.random(in: 100...99_999, using: &rng))
                bindBlob(order, 4, 60)
                try c.step(order)
                nextOrder += 1
            }
            for _ in 0..<20 {
                sqlite3_bind_int64(event, 1, Int64(nextEvent))
                bindBlob(event, 2, Int.random(in: 200...3000, using: &rng))
                try c.step(event)
                nextEvent += 1
            }
            for _ in 0..<6 {
                sqlite3_bind_int64(update, 1, Int64.random(in: 1..<Int64(nextOrder), using: &rng))
                try c.step(update)
            }
            for _ in 0..<4 {
                sqlite3_bind_int64(delete, 1, Int64.random(in: 1..<Int64(nextEvent), using: &rng))
                try c.step(delete)
            }
            try c.step(commit)
            transactions += 1
        }
        return try sizeBytes()
    }
}

/// SQLite's SQLITE_TRANSIENT (copy the bytes before returning).
let SQLITE_TRANSIENT = unsafeBitCast(OpaquePointer(bitPattern: -1), to: sqlite3_destructor_type.self)
