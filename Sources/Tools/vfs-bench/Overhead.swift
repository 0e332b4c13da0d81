import ArgumentParser
import Foundation
import VFSReplication

/// How a trial's database is replicated.
enum ReplicationMode: String, Codable, CaseIterable, ExpressibleByArgument {
    /// Plain SQLite, default VFS, nothing replicating: the baseline.
    case plain
    /// Our `replicated` VFS, uploader in the same process, S3 replica.
    case vfs
    /// Plain SQLite while `litestream replicate` ships the same database to the same server.
    case litestream

    var label: String {
        switch self {
        case .plain: "plain SQLite"
        case .vfs: "replicated VFS"
        case .litestream: "Litestream 0.5.17"
        }
    }
}

/// One timed run of single-row INSERT transactions, in its own process.
struct TrialResult: Codable {
    var mode: ReplicationMode
    var transactions: Int
    var seconds: Double
    var cpuSeconds: Double
    var latencyMs: LatencySummary
    var transactionsPerSecond: Double { Double(transactions) / seconds }
    var cpuPerThousand: Double { cpuSeconds / Double(max(transactions, 1)) * 1000 }
}

/// `vfs-bench _trial`: one run of the overhead loop (a child of `overhead`).
struct Trial: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "_trial", abstract: "One timed overhead trial (used by `overhead`).", shouldDisplay: false)

    @Option var mode: ReplicationMode
    @Option var directory: String
    @Option var seconds: Double
    @Option var synchronous: String
    @Option var payloadBytes: Int
    @Option var bucket: String?

    func run() throws {
        let server = mode == .plain ? nil : try BenchServer.fromEnvironment()
        let path = directory + "/bench.db"
        var replicator: Replicator?
        if mode == .vfs, let server, let bucket {
            replicator = try startReplicator(
                server: server, databases: [(path, bucket, "overhead/\(UUID().uuidString)", .seconds(1))])
        }
        let connection = try BenchConnection(path: path, replicated: mode == .vfs)
        let load = try InsertLoad(connection: connection, payloadBytes: payloadBytes, synchronous: synchronous)
        var litestream: LitestreamProcess?
        if mode == .litestream, let server, let bucket {
            let prefix = "overhead/\(UUID().uuidString)"
            _ = try load.transaction()
            let ls = try LitestreamProcess(server: server, databases: [(path, bucket, prefix)], directory: directory)
            litestream = ls
            try ls.waitForFirstUpload(server: server, bucket: bucket, prefix: prefix)
        }
        // Warm up (page cache, statement caches, first uploads), then the timed window.
        for _ in 0..<200 { _ = try load.transaction() }
        var latencies: [UInt64] = []
        latencies.reserveCapacity(Int(seconds * 100_000))
        let cpu0 = MachineCPU.read()
        let start = nowNs()
        let end = start + UInt64(seconds * 1e9)
        var now = start
        while now < end {
            latencies.append(try load.transaction())
            now = nowNs()
        }
        let cpu1 = MachineCPU.read()
        let elapsed = Double(now - start) / 1e9
        litestream?.stop()
        replicator?.shutdown()
        try emitChildResult(
            TrialResult(
                mode: mode, transactions: latencies.count, seconds: elapsed, cpuSeconds: cpu0.busySeconds(until: cpu1),
                latencyMs: LatencySummary(milliseconds: latencies.map { Double($0) / 1e6 })))
    }
}

/// `vfs-bench overhead`: commit throughput, latency and machine CPU of plain SQLite, our VFS and
/// Litestream, interleaved A B C A B C so that noise from the shared machine hits all three.
struct Overhead: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write overhead: single-row INSERT transactions, plain SQLite vs replicated VFS vs Litestream.")

    @OptionGroup var common: CommonOptions
    @Option(help: "Seconds per trial (default 3, 1 with --quick).") var seconds: Double?
    @Option(help: "Rounds of A B C (default 3, 1 with --quick).") var rounds: Int?
    @Option(parsing: .upToNextOption, help: "synchronous settings.") var synchronous: [String] = ["normal", "full"]
    @Option(parsing: .upToNextOption, help: "Payload sizes in bytes.") var payloads: [Int] = [100, 4096]
    @Option(parsing: .upToNextOption, help: "Configurations to compare.")
    var modes: [ReplicationMode] = ReplicationMode.allCases

    struct Row: Codable {
        var synchronous: String
        var payloadBytes: Int
        var mode: ReplicationMode
        var trials: [TrialResult]
        var medianTPS: Double
        var ratioToPlain: Double?
        var p50: Double?
        var p99: Double?
        var p999: Double?
        var cpuPerThousand: Double?
    }

    func run() throws {
        let seconds = self.seconds ?? (common.quick ? 1 : 3)
        let rounds = self.rounds ?? (common.quick ? 1 : 3)
        let server = try BenchServer.fromEnvironment()
        var buckets: [ReplicationMode: String] = [:]
        for mode in modes where mode != .plain { buckets[mode] = try server.makeBucket("overhead-\(mode.rawValue)") }
        var rows: [Row] = []
        var index = 0
        for sync in synchronous {
            for payload in payloads {
                var results: [ReplicationMode: [TrialResult]] = [:]
                for round in 1...rounds {
                    for mode in modes {
                        index += 1
                        let dir = try common.scratch("overhead-\(index)")
                        progress("overhead \(sync) \(payload) B round \(round): \(mode.label)")
                        var args = [
                            "_trial", "--mode", mode.rawValue, "--directory", dir, "--seconds", "\(seconds)",
                            "--synchronous", sync, "--payload-bytes", "\(payload)",
                        ]
                        if let b = buckets[mode] { args += ["--bucket", b] }
                        results[mode, default: []].append(try runChild(TrialResult.self, args))
                        try? FileManager.default.removeItem(atPath: dir)
                    }
                }
                let plainTPS = results[.plain].flatMap { median($0.map(\.transactionsPerSecond)) }
                for mode in modes {
                    let trials = results[mode] ?? []
                    let tps = median(trials.map(\.transactionsPerSecond)) ?? 0
                    rows.append(
                        Row(
                            synchronous: sync, payloadBytes: payload, mode: mode, trials: trials, medianTPS: tps,
                            ratioToPlain: plainTPS.map { tps / $0 },
                            p50: median(trials.compactMap(\.latencyMs.p50)),
                            p99: median(trials.compactMap(\.latencyMs.p99)),
                            p999: median(trials.compactMap(\.latencyMs.p999)),
                            cpuPerThousand: median(trials.map(\.cpuPerThousand))))
                }
            }
        }
        if common.json {
            try printJSON(rows)
            return
        }
        var table = Table(
            title: "overhead: single-row INSERT transactions (\(Int(seconds)) s per trial, median of \(rounds) interleaved rounds)",
            header: [
                "synchronous", "payload", "configuration", "tx/s", "ratio to plain", "p50 ms", "p99 ms", "p99.9 ms",
                "machine CPU s / 1k tx",
            ])
        for r in rows {
            table.rows.append([
                r.synchronous.uppercased(), r.payloadBytes >= 1024 ? "\(r.payloadBytes / 1024) KiB" : "\(r.payloadBytes) B",
                r.mode.label, formatNumber(r.medianTPS, 0), formatRatio(r.ratioToPlain), formatNumber(r.p50, 3),
                formatNumber(r.p99, 3), formatNumber(r.p999, 3), formatNumber(r.cpuPerThousand, 3),
            ])
        }
        table.notes = [
            "Latency: BEGIN IMMEDIATE to COMMIT returned, one row per transaction, WAL mode.",
            "replicated VFS: uploader in the same process, max-delay 1s, S3 replica on the local SeaweedFS.",
            "Litestream: `litestream replicate` (default intervals) on the same database file, same server.",
            "CPU: busy jiffies of the whole machine (/proc/stat) during the timed window, SeaweedFS and Litestream included.",
            "Targets: replicated VFS ≥ 0.95× plain with FULL, ≥ 0.85× with NORMAL, and above Litestream's ratio.",
        ]
        print(table.markdown())
    }
}
