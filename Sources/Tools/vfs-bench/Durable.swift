import ArgumentParser
import Foundation
import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// Latencies gathered from several writer threads.
final class LatencyBox: @unchecked Sendable {
    private let lock = NSLock()
    private(set) var values: [Double] = []
    private(set) var notDurable = 0
    private(set) var errors: [String] = []

    func add(_ v: [Double], notDurable n: Int) {
        lock.lock()
        values += v
        notDurable += n
        lock.unlock()
    }

    func fail(_ message: String) {
        lock.lock()
        errors.append(message)
        lock.unlock()
    }
}

/// `vfs-bench durable`: commit latency and throughput with `durability: remote`.
struct Durable: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Commit latency and throughput with durability: remote, 1, 4 and 16 concurrent writers.")

    @OptionGroup var common: CommonOptions
    @Option(help: "Seconds per configuration (default 5, 2 with --quick).") var seconds: Double?
    @Option(parsing: .upToNextOption, help: "Concurrent writers.") var writers: [Int] = [1, 4, 16]

    struct Result: Codable {
        var writers: Int
        var remote: Bool
        var transactions: Int
        var seconds: Double
        var latencyMs: LatencySummary
        var notDurable: Int
        var transactionsPerSecond: Double { Double(transactions) / seconds }
    }

    func run() throws {
        let seconds = self.seconds ?? (common.quick ? 2 : 5)
        let server = try BenchServer.fromEnvironment()
        let dir = try common.scratch("durable")
        let bucket = try server.makeBucket("durable")
        var runs: [(path: String, writers: Int, remote: Bool)] = []
        for n in writers {
            for remote in [false, true] { runs.append((dir + "/w\(n)-\(remote ? "remote" : "local").db", n, remote)) }
        }
        let replicator = try startReplicator(
            server: server,
            databases: runs.map { ($0.path, bucket, URL(fileURLWithPath: $0.path).lastPathComponent, .seconds(1)) })
        defer { replicator.shutdown() }
        var results: [Result] = []
        for run in runs {
            progress("durable: \(run.writers) writers, durability \(run.remote ? "remote" : "local")")
            try replicator.setDurability(database: run.path, remote: run.remote, timeout: .seconds(10))
            let setup = try InsertLoad(
                connection: BenchConnection(path: run.path, replicated: true), payloadBytes: 100, synchronous: "normal")
            _ = try setup.transaction()
            let box = LatencyBox()
            let deadline = nowNs() + UInt64(seconds * 1e9)
            let path = run.path
            let remote = run.remote
            var threads: [Thread] = []
            for _ in 0..<run.writers {
                let t = Thread {
                    do {
                        let load = try InsertLoad(
                            connection: BenchConnection(path: path, replicated: true), payloadBytes: 100,
                            synchronous: "normal")
                        var mine: [Double] = []
                        var notDurable = 0
                        while nowNs() < deadline {
                            mine.append(Double(try load.transaction()) / 1e6)
                            if remote, (try? load.connection.scalar("PRAGMA replicated_last_commit"))?
                                .hasSuffix(" durable") != true
                            {
                                notDurable += 1
                            }
                        }
                        box.add(mine, notDurable: notDurable)
                    } catch {
                        box.fail("\(error)")
                    }
                }
                t.stackSize = 1 << 20
                threads.append(t)
            }
            let start = nowNs()
            for t in threads { t.start() }
            for t in threads { while !t.isFinished { usleep(2_000) } }
            let elapsed = Double(nowNs() - start) / 1e9
            if let e = box.errors.first { throw BenchError("durable \(run.writers) writers: \(e)") }
            results.append(
                Result(
                    writers: run.writers, remote: run.remote, transactions: box.values.count, seconds: elapsed,
                    latencyMs: LatencySummary(milliseconds: box.values), notDurable: box.notDurable))
            try replicator.setDurability(database: run.path, remote: false)
        }
        if common.json {
            try printJSON(results)
            return
        }
        var table = Table(
            title: "durable: single-row INSERTs through the replicated VFS, \(Int(seconds)) s per row, synchronous NORMAL",
            header: ["writers", "durability", "tx/s", "p50 ms", "p90 ms", "p99 ms", "max ms", "commits not confirmed durable"])
        for r in results {
            table.rows.append([
                "\(r.writers)", r.remote ? "remote" : "local", formatNumber(r.transactionsPerSecond, 0),
                formatNumber(r.latencyMs.p50, 2), formatNumber(r.latencyMs.p90, 2), formatNumber(r.latencyMs.p99, 2),
                formatNumber(r.latencyMs.max, 2), r.remote ? "\(r.notDurable)" : "–",
            ])
        }
        table.notes = [
            "Each writer is a thread with its own connection (busy timeout 30 s) to the same database.",
            "remote: COMMIT returns once the transaction is in the S3 replica (`Replicator.setDurability`); "
                + "the last column counts commits whose `PRAGMA replicated_last_commit` did not say durable.",
        ]
        print(table.markdown())
    }
}
