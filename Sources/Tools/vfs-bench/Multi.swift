import ArgumentParser
internal import CSQLite
import Foundation
import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// The four databases of a typical Rails app and how each is written.
struct AppDatabase: Sendable {
    var name: String
    var maxDelay: Duration
    var profile: String

    static let all = [
        AppDatabase(name: "primary", maxDelay: .seconds(1), profile: "steady: 20 tx/s, insert + update, 500 B rows"),
        AppDatabase(name: "queue", maxDelay: .seconds(1), profile: "bursts: 300 jobs enqueued then done every 10 s"),
        AppDatabase(name: "cache", maxDelay: .seconds(30), profile: "heavy: 200 upserts/s of 2 KiB over 20k keys"),
        AppDatabase(name: "cable", maxDelay: .seconds(1), profile: "tiny: 50 tx/s of 60 B messages, old ones trimmed"),
    ]

    /// Runs this database's workload until `deadline` (monotonic ns).
    func drive(path: String, replicated: Bool, deadline: UInt64) throws {
        let c = try BenchConnection(path: path, replicated: replicated)
        try c.exec("PRAGMA journal_mode=WAL")
        try c.exec("PRAGMA synchronous=NORMAL")
        var rng = SystemRandomNumberGenerator()
        func paced(_ rate: Double, _ body: (Int) throws -> Void) throws {
            let start = nowNs()
            var i = 0
            while true {
                let due = start + UInt64(Double(i) / rate * 1e9)
                if due >= deadline { return }
                let now = nowNs()
                if due > now { usleep(useconds_t((due - now) / 1000)) }
                try body(i)
                i += 1
            }
        }
        switch name {
        case "primary":
            try c.exec("CREATE TABLE IF NOT EXISTS orders(id INTEGER PRIMARY KEY, user INTEGER, state TEXT, body BLOB)")
            try c.exec("CREATE INDEX IF NOT EXISTS orders_user ON orders(user)")
            try paced(20) { i in
                try c.exec(
                    "BEGIN; INSERT INTO orders(user, state, body) VALUES (\(Int.random(in: 1...5000, using: &rng)), 'new', randomblob(500)); "
                        + "UPDATE orders SET state='paid' WHERE id = \(max(1, i - 10)); COMMIT")
            }
        case "queue":
            try c.exec("CREATE TABLE IF NOT EXISTS jobs(id INTEGER PRIMARY KEY, queue TEXT, args TEXT, done INTEGER DEFAULT 0)")
            try paced(0.1) { _ in
                for _ in 0..<300 { try c.exec("INSERT INTO jobs(queue, args) VALUES ('default', '{\"id\": 12345, \"kind\": \"mail\"}')") }
                for _ in 0..<30 { try c.exec("DELETE FROM jobs WHERE id IN (SELECT id FROM jobs ORDER BY id LIMIT 10)") }
            }
        case "cache":
            try c.exec("CREATE TABLE IF NOT EXISTS entries(key INTEGER PRIMARY KEY, value BLOB, expires INTEGER)")
            try paced(200) { _ in
                try c.exec(
                    "INSERT OR REPLACE INTO entries VALUES (\(Int.random(in: 1...20_000, using: &rng)), randomblob(2048), \(wallMs() + 3_600_000))")
            }
        default:
            try c.exec("CREATE TABLE IF NOT EXISTS messages(id INTEGER PRIMARY KEY, channel TEXT, payload TEXT)")
            try paced(50) { i in
                try c.exec("INSERT INTO messages(channel, payload) VALUES ('room:\(i % 16)', '{\"type\":\"ping\",\"n\":\(i)}')")
                if i % 500 == 499 { try c.exec("DELETE FROM messages WHERE id <= \(i - 250)") }
            }
        }
    }
}

/// `vfs-bench multi`: the four-database app profile, requests per day and their price on R2.
struct Multi: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Four-database app profile (primary, queue, cache, cable): requests per day and R2 cost.")

    @OptionGroup var common: CommonOptions
    @Option(help: "Seconds per run (default 30, 15 with --quick).") var seconds: Double?
    @Flag(help: "Skip the Litestream run.") var noLitestream = false

    struct Result: Codable {
        var configuration: String
        var database: String
        var windowSeconds: Double
        var requests: RequestCounts
        var perDay: Double { Double(requests.total) * 86400 / windowSeconds }
        var classAPerDay: Double { Double(requests.classA) * 86400 / windowSeconds }
        var classBPerDay: Double { Double(requests.classB) * 86400 / windowSeconds }
        /// 30 days at R2's published prices (Class A $4.50 / million, Class B $0.36 / million),
        /// before the free tier.
        var dollarsPerMonth: Double { (classAPerDay * 4.50 + classBPerDay * 0.36) * 30 / 1e6 }
    }

    func run() throws {
        let window = seconds ?? (common.quick ? 15 : 30)
        let server = try BenchServer.fromEnvironment()
        var results: [Result] = []
        for mode in noLitestream ? [ReplicationMode.vfs] : [.vfs, .litestream] {
            progress("multi: \(mode.label), \(Int(window)) s")
            let dir = try common.scratch("multi-\(mode.rawValue)")
            var dbs: [(db: AppDatabase, path: String, bucket: String)] = []
            for db in AppDatabase.all {
                dbs.append((db, dir + "/\(db.name).sqlite3", try server.makeBucket("multi-\(mode.rawValue)-\(db.name)")))
            }
            var replicator: Replicator?
            var litestream: LitestreamProcess?
            if mode == .vfs {
                replicator = try startReplicator(
                    server: server, databases: dbs.map { ($0.path, $0.bucket, $0.db.name, $0.db.maxDelay) })
            }
            // Create every database (WAL) before anything replicates it.
            for d in dbs {
                let c = try BenchConnection(path: d.path, replicated: mode == .vfs)
                try c.exec("PRAGMA journal_mode=WAL")
                try c.exec("CREATE TABLE IF NOT EXISTS seed(x)")
                try c.exec("INSERT INTO seed VALUES (1)")
            }
            if mode == .litestream {
                let ls = try LitestreamProcess(
                    server: server, databases: dbs.map { ($0.path, $0.bucket, $0.db.name) }, directory: dir)
                litestream = ls
                for d in dbs { try ls.waitForFirstUpload(server: server, bucket: d.bucket, prefix: d.db.name) }
            } else {
                try replicator?.flush()
            }
            var before: [String: RequestCounts] = [:]
            for d in dbs { before[d.bucket] = try server.requestCounts(bucket: d.bucket) }
            let deadline = nowNs() + UInt64(window * 1e9)
            let box = LatencyBox()
            var threads: [Thread] = []
            for d in dbs {
                let (db, path) = (d.db, d.path)
                let replicated = mode == .vfs
                let t = Thread {
                    do { try db.drive(path: path, replicated: replicated, deadline: deadline) } catch { box.fail("\(error)") }
                }
                threads.append(t)
            }
            let start = nowNs()
            for t in threads { t.start() }
            for t in threads { while !t.isFinished { usleep(10_000) } }
            let elapsed = Double(nowNs() - start) / 1e9
            if let e = box.errors.first { throw BenchError("multi \(mode.label): \(e)") }
            for d in dbs {
                results.append(
                    Result(
                        configuration: mode.label, database: d.db.name, windowSeconds: elapsed,
                        requests: try server.requestCounts(bucket: d.bucket) - before[d.bucket]!))
            }
            litestream?.stop()
            replicator?.shutdown()
            try? FileManager.default.removeItem(atPath: dir)
        }
        if common.json {
            try printJSON(results)
            return
        }
        var table = Table(
            title: "multi: four-database app profile (\(Int(window)) s, requests extrapolated to a day)",
            header: [
                "configuration", "database", "max-delay", "PUT", "GET", "LIST", "DELETE", "requests/day",
                "Class A/day", "Class B/day", "R2 $/month",
            ])
        for mode in [ReplicationMode.vfs, .litestream] {
            let rows = results.filter { $0.configuration == mode.label }
            guard !rows.isEmpty else { continue }
            for r in rows {
                let db = AppDatabase.all.first { $0.name == r.database }!
                table.rows.append([
                    r.configuration, r.database, mode == .vfs ? "\(db.maxDelay.components.seconds) s" : "(1 s sync)",
                    "\(r.requests["PUT"])", "\(r.requests["GET"] + r.requests["HEAD"])", "\(r.requests["LIST"])",
                    "\(r.requests["DELETE"])", formatNumber(r.perDay, 0), formatNumber(r.classAPerDay, 0),
                    formatNumber(r.classBPerDay, 0), String(format: "%.2f", r.dollarsPerMonth),
                ])
            }
            table.rows.append([
                "**\(mode.label)**", "**all four**", "", "", "", "", "",
                "**" + formatNumber(rows.reduce(0) { $0 + $1.perDay }, 0) + "**",
                formatNumber(rows.reduce(0) { $0 + $1.classAPerDay }, 0),
                formatNumber(rows.reduce(0) { $0 + $1.classBPerDay }, 0),
                "**" + String(format: "%.2f", rows.reduce(0) { $0 + $1.dollarsPerMonth }) + "**",
            ])
        }
        table.notes = AppDatabase.all.map { "\($0.name): \($0.profile)." } + [
            "Requests counted by SeaweedFS per bucket over the window; PUT/LIST/POST are R2 Class A ($4.50 per million), "
                + "GET/HEAD Class B ($0.36 per million); DELETE is free. $/month = 30 days, before R2's free tier "
                + "(1 M Class A and 10 M Class B a month per account).",
            "The window includes the first minute's compactions (level 1 every 30 s); longer levels (5 m, 1 h) are not "
                + "in a \(Int(window)) s window, so a day has somewhat more requests than this extrapolation.",
        ]
        print(table.markdown())
    }
}
