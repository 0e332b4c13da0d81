import ArgumentParser
internal import CSQLite
import Foundation
import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// Counts the WAL frames each commit appends (= pages it changed), through `sqlite3_wal_hook`.
/// Installing a hook replaces SQLite's auto-checkpoint, so it checkpoints at 1,000 frames
/// itself, as the default hook does.
final class ChangedPages {
    private(set) var frames: Int64 = 0
    private var last: Int32 = 0

    func install(on db: OpaquePointer) {
        let context = Unmanaged.passUnretained(self).toOpaque()
        sqlite3_wal_hook(
            db,
            { context, db, name, frames in
                let me = Unmanaged<ChangedPages>.fromOpaque(context!).takeUnretainedValue()
                me.frames += Int64(frames >= me.last ? frames - me.last : frames)
                me.last = frames
                if frames >= 1000 { sqlite3_wal_checkpoint(db, name) }
                return SQLITE_OK
            }, context)
    }
}

/// Records the uploader's acknowledgments (wall time of each shipped file's max TXID).
final class ShipLog: UploaderObserver, @unchecked Sendable {
    private let lock = NSLock()
    private var shipped: [(ms: Double, maxTXID: UInt64)] = []

    func uploader(database: String, didReport event: UploaderEvent) {
        if case .shipped(_, _, let maxTXID, _, _, _) = event {
            let t = preciseWallMs()
            lock.lock()
            shipped.append((t, maxTXID))
            lock.unlock()
        }
    }

    var entries: [(ms: Double, maxTXID: UInt64)] {
        lock.lock()
        defer { lock.unlock() }
        return shipped
    }
}

func preciseWallMs() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) * 1000 + Double(ts.tv_nsec) / 1e6
}

/// Polls a replica's level-0 keys and notes when each new file first appears. For Litestream
/// files it also reads the LTX header's timestamp (the time Litestream cut the file).
final class BucketPoller: @unchecked Sendable {
    struct Seen { var observedMs: Double; var maxTXID: UInt64; var headerMs: Double }
    private let client: S3Client
    private let prefix: String
    private let readHeaders: Bool
    private let interval: Double
    private let lock = NSLock()
    private var seen: [String: Seen] = [:]
    private var running = true
    private var thread: Thread?

    init(client: S3Client, prefix: String, readHeaders: Bool, interval: Double) {
        self.client = client
        self.prefix = prefix + "/0000/"
        self.readHeaders = readHeaders
        self.interval = interval
    }

    func start() {
        let t = Thread { [self] in
            while isRunning {
                poll()
                sleepSeconds(interval)
            }
        }
        thread = t
        t.start()
    }

    private var isRunning: Bool {
        lock.lock()
        defer { lock.unlock() }
        return running
    }

    func stop() {
        lock.lock()
        running = false
        lock.unlock()
        while let t = thread, !t.isFinished { usleep(5_000) }
    }

    private let pollLock = NSLock()

    /// Runs `body` between two polls, so that counters read in it are not torn by one.
    func paused<T>(_ body: () throws -> T) rethrows -> T {
        pollLock.lock()
        defer { pollLock.unlock() }
        return try body()
    }

    private func poll() {
        pollLock.lock()
        defer { pollLock.unlock() }
        guard let listed = try? client.listAllObjects(prefix: prefix) else { return }
        let now = preciseWallMs()
        for object in listed.objects {
            lock.lock()
            let known = seen[object.key] != nil
            lock.unlock()
            if known { continue }
            let name = object.key.split(separator: "/").last ?? ""
            let parts = name.replacingOccurrences(of: ".ltx", with: "").split(separator: "-")
            let maxTXID = parts.count == 2 ? UInt64(parts[1], radix: 16) ?? 0 : 0
            var headerMs = 0.0
            if readHeaders, let header = try? client.getObjectBytes(key: object.key, range: 0..<48).bytes,
                header.count >= 40
            {
                var ms: UInt64 = 0
                for i in 32..<40 { ms = ms << 8 | UInt64(header[i]) }
                headerMs = Double(ms)
            }
            lock.lock()
            seen[object.key] = Seen(observedMs: now, maxTXID: maxTXID, headerMs: headerMs)
            lock.unlock()
        }
    }

    var files: [Seen] {
        lock.lock()
        defer { lock.unlock() }
        return seen.values.sorted { $0.observedMs < $1.observedMs }
    }
}

struct LagResult: Codable {
    var mode: ReplicationMode
    var rate: Int
    var maxDelayMs: Int?
    var transactions: Int
    var seconds: Double
    /// From the uploader's acknowledgment (ours only).
    var ackLagMs: LatencySummary?
    /// From polling the bucket's level-0 keys.
    var pollLagMs: LatencySummary
    var neverSeen: Int
    var requests: RequestCounts
    var requestsPerMinute: [String: Double]
    var changedPageBytes: Int64
    var uploadedBytes: Int64
    var pollIntervalMs: Int
}

/// `vfs-bench _lag-run`: one configuration of `lag`, in its own process.
struct LagRun: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "_lag-run", shouldDisplay: false)

    @Option var mode: ReplicationMode
    @Option var directory: String
    @Option var bucket: String
    @Option var rate: Int
    @Option var seconds: Double
    @Option var maxDelayMs: Int = 1000
    @Option var pollMs: Int = 20

    func run() throws {
        let server = try BenchServer.fromEnvironment()
        let path = directory + "/lag.db"
        let prefix = "lag"
        let ships = ShipLog()
        var replicator: Replicator?
        if mode == .vfs {
            replicator = try startReplicator(
                server: server, databases: [(path, bucket, prefix, .milliseconds(maxDelayMs))], observers: [ships])
        }
        let connection = try BenchConnection(path: path, replicated: mode == .vfs)
        let pages = ChangedPages()
        let load = try InsertLoad(connection: connection, payloadBytes: 100, synchronous: "normal")
        var litestream: LitestreamProcess?
        for _ in 0..<20 { _ = try load.transaction() }
        if mode == .litestream {
            let ls = try LitestreamProcess(server: server, databases: [(path, bucket, prefix)], directory: directory)
            litestream = ls
            try ls.waitForFirstUpload(server: server, bucket: bucket, prefix: prefix)
            sleepSeconds(2)
        } else {
            try replicator?.flush()
        }
        pages.install(on: connection.db)
        let pollClient = try server.client(bucket: bucket)
        let before = try server.storedBytes(bucket: bucket, prefix: prefix + "/")
        let poller = BucketPoller(
            client: pollClient, prefix: prefix, readHeaders: mode == .litestream, interval: Double(pollMs) / 1000)
        poller.start()
        sleepSeconds(0.2)
        let (pollBefore, counts0) = try poller.paused { (pollClient.requestCounts, try server.requestCounts(bucket: bucket)) }

        // Commits at a fixed rate.
        let total = Int(Double(rate) * seconds)
        var commits: [(ms: Double, txid: UInt64)] = []
        commits.reserveCapacity(total)
        let start = nowNs()
        for i in 0..<total {
            let due = start + UInt64(Double(i) / Double(rate) * 1e9)
            let now = nowNs()
            if due > now { usleep(useconds_t((due - now) / 1000)) }
            _ = try load.transaction()
            let t = preciseWallMs()
            commits.append((t, mode == .vfs ? connection.lastCommitTXID() : 0))
        }
        let elapsed = Double(nowNs() - start) / 1e9
        let (pollAfter, counts1) = try poller.paused { (pollClient.requestCounts, try server.requestCounts(bucket: bucket)) }

        // Let the last commits arrive, then stop everything.
        let lastCommitMs = commits.last?.ms ?? 0
        let drainDeadline = Date().addingTimeInterval(Double(maxDelayMs) / 1000 * 3 + 8)
        while Date() < drainDeadline {
            let files = poller.files
            let done =
                mode == .vfs
                ? files.contains { $0.maxTXID >= (commits.last?.txid ?? 0) }
                : files.contains { $0.headerMs >= lastCommitMs }
            if done { break }
            usleep(50_000)
        }
        poller.stop()
        litestream?.stop()
        replicator?.shutdown()
        let after = try server.storedBytes(bucket: bucket, prefix: prefix + "/")

        // Lags.
        let files = poller.files
        var pollLags: [Double] = []
        var never = 0
        for c in commits {
            let hit =
                mode == .vfs
                ? files.first { $0.maxTXID >= c.txid }
                : files.first { $0.headerMs >= c.ms.rounded(.down) }
            if let hit { pollLags.append(max(0, hit.observedMs - c.ms)) } else { never += 1 }
        }
        var ackLags: [Double]?
        if mode == .vfs {
            let acks = ships.entries.sorted { $0.ms < $1.ms }
            ackLags = commits.compactMap { c in acks.first { $0.maxTXID >= c.txid }.map { max(0, $0.ms - c.ms) } }
        }
        var requests = counts1 - counts0
        // Our own polling is not the replicator's cost.
        requests.byType["LIST"] = requests["LIST"] - (pollAfter.list - pollBefore.list)
        requests.byType["GET"] = requests["GET"] - (pollAfter.get - pollBefore.get)
        var perMinute: [String: Double] = [:]
        for (k, v) in requests.byType { perMinute[k] = Double(v) / (elapsed / 60) }
        try emitChildResult(
            LagResult(
                mode: mode, rate: rate, maxDelayMs: mode == .vfs ? maxDelayMs : nil, transactions: commits.count,
                seconds: elapsed, ackLagMs: ackLags.map { LatencySummary(milliseconds: $0) },
                pollLagMs: LatencySummary(milliseconds: pollLags), neverSeen: never, requests: requests,
                requestsPerMinute: perMinute, changedPageBytes: pages.frames * 4096,
                uploadedBytes: after.bytes - before.bytes, pollIntervalMs: pollMs))
    }
}

/// `vfs-bench lag`: time from commit to durable in the bucket at fixed commit rates.
struct Lag: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Replication lag and request cost at fixed commit rates, replicated VFS vs Litestream.")

    @OptionGroup var common: CommonOptions
    @Option(help: "Seconds per configuration (default 10, 5 with --quick).") var seconds: Double?
    @Option(parsing: .upToNextOption, help: "Commit rates, transactions per second.") var rates: [Int] = []

    struct Config { var mode: ReplicationMode; var rate: Int; var maxDelayMs: Int }

    func run() throws {
        let seconds = self.seconds ?? (common.quick ? 5 : 10)
        let rates = self.rates.isEmpty ? (common.quick ? [100] : [10, 100, 1000]) : self.rates
        let server = try BenchServer.fromEnvironment()
        var configs: [Config] = []
        for rate in rates {
            configs.append(Config(mode: .vfs, rate: rate, maxDelayMs: 1000))
            configs.append(Config(mode: .vfs, rate: rate, maxDelayMs: 50))
            configs.append(Config(mode: .litestream, rate: rate, maxDelayMs: 1000))
        }
        var results: [LagResult] = []
        for (i, c) in configs.enumerated() {
            progress("lag \(c.mode.label) \(c.rate) tx/s" + (c.mode == .vfs ? " max-delay \(c.maxDelayMs) ms" : ""))
            let dir = try common.scratch("lag-\(i)")
            let bucket = try server.makeBucket("lag-\(c.mode.rawValue)")
            results.append(
                try runChild(
                    LagResult.self,
                    [
                        "_lag-run", "--mode", c.mode.rawValue, "--directory", dir, "--bucket", bucket, "--rate",
                        "\(c.rate)", "--seconds", "\(seconds)", "--max-delay-ms", "\(c.maxDelayMs)",
                    ]))
            try? FileManager.default.removeItem(atPath: dir)
        }
        if common.json {
            try printJSON(results)
            return
        }
        var table = Table(
            title: "lag: commit to durable in the bucket (\(Int(seconds)) s per configuration, 100 B rows, synchronous NORMAL)",
            header: [
                "configuration", "tx/s", "source", "p50 ms", "p90 ms", "p99 ms", "max ms", "PUT/min", "GET/min",
                "LIST/min", "DELETE/min", "bytes uploaded per MiB changed",
            ])
        for r in results {
            let name = r.mode == .vfs ? "replicated VFS, max-delay \(r.maxDelayMs ?? 0) ms" : r.mode.label
            let perMin = { (k: String) in formatNumber(r.requestsPerMinute[k] ?? 0, 1) }
            let ratio =
                r.changedPageBytes > 0
                ? formatNumber(Double(r.uploadedBytes) / Double(r.changedPageBytes), 3) + " MiB"
                : "–"
            var sources: [(String, LatencySummary)] = []
            if let ack = r.ackLagMs { sources.append(("uploader ack", ack)) }
            sources.append(("bucket poll" + (r.neverSeen > 0 ? " (\(r.neverSeen) never seen)" : ""), r.pollLagMs))
            for (j, (source, s)) in sources.enumerated() {
                table.rows.append(
                    [
                        j == 0 ? name : "", j == 0 ? "\(r.rate)" : "", source, formatNumber(s.p50, 0),
                        formatNumber(s.p90, 0), formatNumber(s.p99, 0), formatNumber(s.max, 0),
                    ]
                        + (j == 0 ? [perMin("PUT"), perMin("GET"), perMin("LIST"), perMin("DELETE"), ratio] : ["", "", "", "", ""]))
            }
        }
        table.notes = [
            "uploader ack: time from COMMIT returning to the uploader reporting the LTX file durable (our own event).",
            "bucket poll: an independent poller lists the level-0 keys every \(results.first?.pollIntervalMs ?? 20) ms; "
                + "ours map by TXID in the key, Litestream's by the timestamp in each new file's LTX header.",
            "Requests: counted by SeaweedFS per bucket during the timed window (Prometheus), minus the poller's own.",
            "Bytes: growth of the bucket (all levels) per MiB of pages the commits changed (WAL frames × 4 KiB); rows are random bytes "
                + "(incompressible). A page changed by many commits of one batch is shipped once, so this can be far below 1.",
            "Targets at 100 tx/s: max-delay 1s p99 < 1200 ms with ≤ 60 PUT/min; max-delay 50ms p99 < 150 ms.",
        ]
        print(table.markdown())
    }
}
