import ArgumentParser
internal import CSQLite
import Foundation
import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

// Shared pieces of the benchmark subcommands: clocks, statistics, CPU accounting, SQLite
// helpers, and running this binary again as a child for one isolated trial.

/// Monotonic nanoseconds.
@inline(__always) func nowNs() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) * 1_000_000_000 + UInt64(ts.tv_nsec)
}

/// Wall-clock milliseconds since the epoch (what LTX headers and commit times use).
func wallMs() -> Int64 {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Int64(ts.tv_sec) * 1000 + Int64(ts.tv_nsec) / 1_000_000
}

func sleepSeconds(_ s: Double) { if s > 0 { usleep(useconds_t(s * 1_000_000)) } }

struct BenchError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}

/// The q-quantile (0...1) of `values` by nearest rank; nil when empty.
func quantile(_ sorted: [Double], _ q: Double) -> Double? {
    guard !sorted.isEmpty else { return nil }
    let rank = Int((q * Double(sorted.count)).rounded(.up)) - 1
    return sorted[min(max(rank, 0), sorted.count - 1)]
}

func median(_ values: [Double]) -> Double? {
    let s = values.sorted()
    guard !s.isEmpty else { return nil }
    return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
}

/// p50 / p90 / p99 / p99.9 / max of a latency sample, in milliseconds.
struct LatencySummary: Codable {
    var count: Int
    var p50: Double?
    var p90: Double?
    var p99: Double?
    var p999: Double?
    var max: Double?

    init(milliseconds values: [Double]) {
        let s = values.sorted()
        count = s.count
        p50 = quantile(s, 0.5)
        p90 = quantile(s, 0.9)
        p99 = quantile(s, 0.99)
        p999 = quantile(s, 0.999)
        max = s.last
    }
}

/// Busy and total jiffies of the whole machine (first line of /proc/stat).
struct MachineCPU {
    var busy: UInt64
    var total: UInt64

    static func read() -> MachineCPU {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = text.split(separator: "\n").first
        else { return MachineCPU(busy: 0, total: 0) }
        let fields = line.split(separator: " ").dropFirst().compactMap { UInt64($0) }
        // user nice system idle iowait irq softirq steal guest guest_nice; guest is inside user.
        let total = fields.prefix(8).reduce(0, +)
        let idle = (fields.count > 3 ? fields[3] : 0) + (fields.count > 4 ? fields[4] : 0)
        return MachineCPU(busy: total - idle, total: total)
    }

    /// CPU seconds spent by every process of the machine between `self` and `later`.
    func busySeconds(until later: MachineCPU) -> Double {
        Double(later.busy &- busy) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

func formatNumber(_ v: Double?, _ digits: Int = 1) -> String {
    guard let v, v.isFinite else { return "–" }
    return String(format: "%.\(digits)f", v)
}

func formatRatio(_ v: Double?) -> String {
    guard let v, v.isFinite else { return "–" }
    return String(format: "%.2f×", v)
}

/// A Markdown table.
struct Table {
    var title: String
    var header: [String]
    var rows: [[String]] = []
    var notes: [String] = []

    func markdown() -> String {
        var out = "### \(title)\n\n"
        out += "| " + header.joined(separator: " | ") + " |\n"
        out += "|" + header.map { _ in "---" }.joined(separator: "|") + "|\n"
        for r in rows { out += "| " + r.joined(separator: " | ") + " |\n" }
        if !notes.isEmpty { out += "\n" + notes.map { "- \($0)" }.joined(separator: "\n") + "\n" }
        return out
    }
}

func progress(_ message: String) {
    FileHandle.standardError.write(Data("vfs-bench: \(message)\n".utf8))
}

func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

// MARK: SQLite

/// One SQLite connection for the load generators.
final class BenchConnection {
    let db: OpaquePointer
    let path: String

    init(path: String, replicated: Bool, busyTimeoutMs: Int32 = 30_000) throws {
        var handle: OpaquePointer?
        let rc = sqlite3_open_v2(
            path, &handle, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
            replicated ? ReplicatedVFS.name : nil)
        guard rc == SQLITE_OK, let handle else {
            let message = handle.map { String(cString: sqlite3_errmsg($0)) } ?? "code \(rc)"
            if let handle { sqlite3_close_v2(handle) }
            throw BenchError("cannot open \(path): \(message)")
        }
        db = handle
        self.path = path
        sqlite3_busy_timeout(db, busyTimeoutMs)
    }

    deinit { sqlite3_close_v2(db) }

    func exec(_ sql: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        guard sqlite3_exec(db, sql, nil, nil, &err) == SQLITE_OK else {
            let message = err.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(db))
            sqlite3_free(err)
            throw BenchError("\(path): \(sql): \(message)")
        }
    }

    /// The first column of the first row, as text.
    func scalar(_ sql: String) throws -> String? {
        let stmt = try prepare(sql)
        defer { sqlite3_finalize(stmt) }
        let rc = sqlite3_step(stmt)
        guard rc == SQLITE_ROW else {
            if rc == SQLITE_DONE { return nil }
            throw BenchError("\(path): \(sql): \(String(cString: sqlite3_errmsg(db)))")
        }
        return sqlite3_column_text(stmt, 0).map { String(cString: $0) }
    }

    func prepare(_ sql: String) throws -> OpaquePointer {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &stmt, nil) == SQLITE_OK, let stmt else {
            throw BenchError("\(path): prepare \(sql): \(String(cString: sqlite3_errmsg(db)))")
        }
        return stmt
    }

    /// Runs a prepared statement to completion and resets it.
    func step(_ stmt: OpaquePointer) throws {
        let rc = sqlite3_step(stmt)
        sqlite3_reset(stmt)
        guard rc == SQLITE_DONE || rc == SQLITE_ROW else {
            throw BenchError("\(path): step: \(String(cString: sqlite3_errmsg(db)))")
        }
    }

    /// This connection's last commit TXID (`PRAGMA replicated_last_commit`), 0 without one.
    func lastCommitTXID() -> UInt64 {
        guard let text = try? scalar("PRAGMA replicated_last_commit") else { return 0 }
        return UInt64(text.split(separator: " ").first ?? "") ?? 0
    }
}

/// The single-row insert loop used by `overhead`, `lag` and `durable`.
final class InsertLoad {
    let connection: BenchConnection
    private let insert: OpaquePointer
    private let begin: OpaquePointer
    private let commit: OpaquePointer
    let payloadBytes: Int
    private var payload: [UInt8]
    private var counter: Int64 = 0
    private var rngState = UInt64.random(in: 1...UInt64.max)

    init(connection: BenchConnection, payloadBytes: Int, synchronous: String) throws {
        self.connection = connection
        self.payloadBytes = payloadBytes
        try connection.exec("PRAGMA journal_mode=WAL")
        try connection.exec("PRAGMA synchronous=\(synchronous.uppercased())")
        try connection.exec(
            "CREATE TABLE IF NOT EXISTS bench(id INTEGER PRIMARY KEY, tx INTEGER NOT NULL, payload BLOB)")
        insert = try connection.prepare("INSERT INTO bench(tx, payload) VALUES (?, ?)")
        begin = try connection.prepare("BEGIN IMMEDIATE")
        commit = try connection.prepare("COMMIT")
        var rng = SystemRandomNumberGenerator()
        payload = (0..<max(payloadBytes, 1)).map { _ in UInt8.random(in: 0...255, using: &rng) }
    }

    deinit {
        sqlite3_finalize(insert)
        sqlite3_finalize(begin)
        sqlite3_finalize(commit)
    }

    /// One transaction of one row; returns its latency in nanoseconds (BEGIN to COMMIT done).
    @inline(__always) func transaction() throws -> UInt64 {
        counter += 1
        // Fresh incompressible bytes for every row (xorshift, outside the timed part).
        payload.withUnsafeMutableBytes { buffer in
            var x = rngState
            var i = 0
            while i < buffer.count {
                x ^= x << 13
                x ^= x >> 7
                x ^= x << 17
                withUnsafeBytes(of: x) { word in
                    for j in 0..<min(8, buffer.count - i) { buffer[i + j] = word[j] }
                }
                i += 8
            }
            rngState = x
        }
        let start = nowNs()
        try connection.step(begin)
        sqlite3_bind_int64(insert, 1, counter)
        _ = payload.withUnsafeBytes { sqlite3_bind_blob(insert, 2, $0.baseAddress, Int32(payloadBytes), nil) }
        try connection.step(insert)
        try connection.step(commit)
        return nowNs() - start
    }
}

// MARK: Children

/// Runs this executable again with `arguments` (a hidden subcommand) and decodes the JSON
/// document it prints last on standard output. Standard error passes through.
func runChild<T: Decodable>(_ type: T.Type, _ arguments: [String], environment: [String: String]? = nil) throws -> T {
    let process = Process()
    let executable = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe"))
        ?? CommandLine.arguments[0]
    process.executableURL = URL(fileURLWithPath: executable)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else {
        throw BenchError("child \(arguments.first ?? "") exited with status \(process.terminationStatus)")
    }
    let text = String(decoding: data, as: UTF8.self)
    guard let start = text.range(of: "\n{", options: .backwards)?.lowerBound ?? (text.hasPrefix("{") ? text.startIndex : nil)
    else { throw BenchError("child \(arguments.first ?? "") printed no JSON: \(text.suffix(500))") }
    return try JSONDecoder().decode(T.self, from: Data(text[start...].utf8))
}

/// Prints a child's result as one compact JSON document.
func emitChildResult<T: Encodable>(_ value: T) throws {
    let data = try JSONEncoder().encode(value)
    print("\n" + String(decoding: data, as: UTF8.self))
    fflush(nil)
}

/// A fresh empty directory under `base`.
func makeScratchDirectory(_ base: String, _ name: String) throws -> String {
    let path = base + "/" + name
    try? FileManager.default.removeItem(atPath: path)
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

/// Options every S3-backed subcommand shares.
struct CommonOptions: ParsableArguments {
    @Option(help: "Scratch directory for databases and configs (default: a temporary directory).")
    var workDir: String?

    @Flag(help: "Short smoke run (about a minute or two in all).")
    var quick = false

    @Flag(help: "Print one JSON document instead of tables.")
    var json = false

    func scratch(_ name: String) throws -> String {
        let base = workDir ?? (NSTemporaryDirectory() + "/vfs-bench-\(getpid())")
        try FileManager.default.createDirectory(atPath: base, withIntermediateDirectories: true)
        return try makeScratchDirectory(base, name)
    }
}
