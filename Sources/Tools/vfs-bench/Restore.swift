import ArgumentParser
internal import CSQLite
import Foundation
import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// A digest of a database's logical content: every row of every table in rowid order
/// (FNV-1a 64 over column types and bytes), with the row count.
struct ContentDigest: Codable, Equatable, CustomStringConvertible {
    var rows: Int
    var hash: UInt64
    var description: String { "\(rows) rows, \(String(hash, radix: 16))" }

    static func of(_ c: BenchConnection) throws -> ContentDigest {
        var tables: [String] = []
        let list = try c.prepare("SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' ORDER BY name")
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

    struct Result: Codable {
        var sizeMiB: Double
        var tool: String
        var target: String
        var seconds: Double
        var mibPerSecond: Double
        var peakRSSMiB: Double
        var verified: Bool
        var status: Int32
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
        for size in sizes {
            let dir = try common.scratch("restore-\(size)")
            let path = dir + "/app.db"
            let ourBucket = try server.makeBucket("restore-vfs")
            let theirBucket = try server.makeBucket("restore-litestream")
            let replicator = try startReplicator(server: server, databases: [(path, ourBucket, "app", .seconds(1))])
            let c = try BenchConnection(path: path, replicated: true)
            let workload = try MixedWorkload(connection: c)
            let litestream = try LitestreamProcess(
                server: server, databases: [(path, theirBucket, "app")], directory: dir)
            try litestream.waitForFirstUpload(server: server, bucket: theirBucket, prefix: "app")
            progress("restore: building \(size) MiB with a mixed workload")
            let buildStart = nowNs()
            let target = Int64(size) << 20
            var midTime: Date?
            var midDigest: ContentDigest?
            while true {
                let bytes = try workload.step(transactions: 50)
                if midTime == nil && bytes >= target / 2 {
                    try replicator.flush()
                    sleepSeconds(3)  // Litestream ships once a second
                    let t = Date(timeIntervalSince1970: Date().timeIntervalSince1970.rounded(.down))
                    midDigest = try ContentDigest.of(c)
                    midTime = t
                    sleepSeconds(max(0, t.timeIntervalSinceNow + 1.5))
                }
                if bytes >= target { break }
            }
            let buildSeconds = Double(nowNs() - buildStart) / 1e9
            try replicator.flush()
            sleepSeconds(3)
            let finalDigest = try ContentDigest.of(c)
            let fileMiB = Double(try workload.sizeBytes()) / 1_048_576
            litestream.stop()
            replicator.shutdown()
            builds.append(
                String(
                    format: "%d MiB: built in %.0f s (%d transactions of 50 statements), %@ at the end, %@ at the mid-point",
                    size, buildSeconds, workload.transactions, finalDigest.description, midDigest!.description))

            let ourConfig = dir + "/replication.yml"
            try writeReplicationConfig(server: server, path: ourConfig, databases: [(path, ourBucket, "app")])
            let iso = ISO8601DateFormatter()
            iso.formatOptions = [.withInternetDateTime]
            let mid = iso.string(from: midTime!)
            for (targetName, expected) in [("latest", finalDigest), ("mid-point", midDigest!)] {
                for tool in ["vfs-rebuild", "litestream restore"] {
                    let out = dir + "/restored-\(tool.prefix(3))-\(targetName).db"
                    try? FileManager.default.removeItem(atPath: out)
                    let run: (status: Int32, seconds: Double, peakRSSMiB: Double)
                    progress("restore: \(size) MiB, \(tool), \(targetName)")
                    if tool == "vfs-rebuild" {
                        var args = ["--config", ourConfig, "--database", path, "--output", out, "--quiet"]
                        if targetName != "latest" { args += ["--timestamp", mid] }
                        run = try runMeasured(
                            rebuild, args, environment: ProcessInfo.processInfo.environment, log: out + ".log")
                    } else {
                        var args = ["restore", "-config", litestream.configPath, "-o", out]
                        if targetName != "latest" { args += ["-timestamp", mid] }
                        args.append(path)
                        run = try runMeasured(
                            server.litestream, args, environment: LitestreamProcess.environment(), log: out + ".log")
                    }
                    var verified = false
                    if run.status == 0 {
                        let restored = try BenchConnection(path: out, replicated: false)
                        let digest = try ContentDigest.of(restored)
                        verified = digest == expected
                        if !verified { progress("restore: \(tool) \(targetName): \(digest) != expected \(expected)") }
                    } else {
                        let log = (try? String(contentsOfFile: out + ".log", encoding: .utf8)) ?? ""
                        progress("restore: \(tool) \(targetName) exited \(run.status): \(log.suffix(1500))")
                    }
                    results.append(
                        Result(
                            sizeMiB: fileMiB, tool: tool, target: targetName, seconds: run.seconds,
                            mibPerSecond: fileMiB / run.seconds, peakRSSMiB: run.peakRSSMiB, verified: verified,
                            status: run.status))
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
            header: ["database", "target", "tool", "seconds", "MiB/s", "ratio to Litestream", "peak RSS MiB", "equal to source"])
        for r in results {
            let theirs = results.first {
                $0.tool == "litestream restore" && $0.target == r.target && $0.sizeMiB == r.sizeMiB
            }
            table.rows.append([
                formatNumber(r.sizeMiB, 0) + " MiB", r.target, r.tool, formatNumber(r.seconds, 2),
                formatNumber(r.mibPerSecond, 1),
                formatRatio(theirs.map { r.mibPerSecond / $0.mibPerSecond }), formatNumber(r.peakRSSMiB, 0),
                r.status != 0 ? "failed (exit \(r.status))" : r.verified ? "yes" : "**no**",
            ])
        }
        table.notes = builds + [
            "Both tools replicated the same database file while a mixed workload (users, orders, events; inserts, "
                + "updates, deletes; four indexes; 50 statements per transaction) wrote it through the replicated VFS.",
            "vfs-rebuild runs with its default verification (LTX checksums, database checksum, integrity_check).",
            "MiB/s = restored database size / wall seconds of the restore command; peak RSS is the command's own (wait4).",
            "Equal to source: every row of every table hashed in rowid order, compared with the source at that moment.",
            "Targets: vfs-rebuild ≥ 2× Litestream's MiB/s, peak RSS < 256 MiB.",
        ]
        print(table.markdown())
    }
}

/// A realistic app workload: users, orders and events, with inserts, updates, deletes and
/// secondary indexes.
final class MixedWorkload {
    let c: BenchConnection
    private(set) var transactions = 0
    private var rng = SystemRandomNumberGenerator()
    private var nextUser = 1
    private var nextOrder = 1
    private var nextEvent = 1

    init(connection: BenchConnection) throws {
        c = connection
        try c.exec("PRAGMA journal_mode=WAL")
        try c.exec("PRAGMA synchronous=NORMAL")
        try c.exec(
            """
            CREATE TABLE IF NOT EXISTS users(id INTEGER PRIMARY KEY, name TEXT NOT NULL, email TEXT NOT NULL UNIQUE, created INTEGER);
            CREATE TABLE IF NOT EXISTS orders(id INTEGER PRIMARY KEY, user_id INTEGER NOT NULL, total INTEGER, status TEXT, note TEXT, created INTEGER);
            CREATE INDEX IF NOT EXISTS orders_user ON orders(user_id);
            CREATE INDEX IF NOT EXISTS orders_status ON orders(status, created);
            CREATE TABLE IF NOT EXISTS events(id INTEGER PRIMARY KEY, kind TEXT, payload BLOB, at INTEGER);
            CREATE INDEX IF NOT EXISTS events_at ON events(at);
            """)
    }

    func sizeBytes() throws -> Int64 {
        let pages = Int64(try c.scalar("PRAGMA page_count") ?? "0") ?? 0
        let size = Int64(try c.scalar("PRAGMA page_size") ?? "4096") ?? 4096
        return pages * size
    }

    /// Runs `transactions` transactions of 50 statements; returns the database size in bytes.
    func step(transactions count: Int) throws -> Int64 {
        let now = wallMs()
        for _ in 0..<count {
            var sql = "BEGIN;"
            for _ in 0..<2 {
                sql += "INSERT INTO users(name, email, created) VALUES ('user \(nextUser)', 'u\(nextUser)@example.com', \(now));"
                nextUser += 1
            }
            for _ in 0..<10 {
                let u = Int.random(in: 1..<nextUser, using: &rng)
                sql += "INSERT INTO orders(user_id, total, status, note, created) VALUES (\(u), \(Int.random(in: 100...99_999, using: &rng)), 'new', hex(randomblob(60)), \(now));"
                nextOrder += 1
            }
            for _ in 0..<28 {
                sql += "INSERT INTO events(kind, payload, at) VALUES ('view', randomblob(\(Int.random(in: 300...900, using: &rng))), \(now));"
                nextEvent += 1
            }
            for _ in 0..<6 {
                sql += "UPDATE orders SET status = 'paid', total = total + 1 WHERE id = \(Int.random(in: 1..<nextOrder, using: &rng));"
            }
            for _ in 0..<4 {
                sql += "DELETE FROM events WHERE id = \(Int.random(in: 1..<nextEvent, using: &rng));"
            }
            sql += "COMMIT;"
            try c.exec(sql)
            transactions += 1
        }
        return try sizeBytes()
    }
}
