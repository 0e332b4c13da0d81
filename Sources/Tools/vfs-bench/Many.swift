import ArgumentParser
import Foundation
import Logging
import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// `vfs-bench many`: what 1, 10, 100 and 1000 databases cost one process (a database per
/// tenant): memory, threads, CPU and requests while idle, and lag while written.
///
/// Each count runs in a child process of its own (`many --child`), so its memory and threads
/// are its own. The children run one after another until they are idle; then all stay idle
/// together for the idle window, so the window is real time for each, not an extrapolation.
struct Many: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Many databases in one process: RSS, threads, idle CPU and requests, lag under load.")

    @OptionGroup var common: CommonOptions
    @Option(help: "Database counts, one child process each.") var counts: String = "1,10,100,1000"
    @Option(help: "Idle window in seconds, after compactions settled (default 600, 60 with --quick).")
    var idleSeconds: Double?
    @Option(help: "Seconds of writing before the idle window (default 30, 10 with --quick).") var loadSeconds: Double?
    @Option(help: "Transactions per second across all databases while writing.") var rate: Double = 100
    @Option(help: "Uploader threads (default: the library's, min(4, cores)).") var uploaderThreads: Int?
    // Child mode (internal).
    @Flag(help: .hidden) var child = false
    @Option(help: .hidden) var count: Int = 1
    @Option(help: .hidden) var bucket: String = ""

    struct Result: Codable {
        var databases: Int
        var bareRSSMiB: Double
        var rssAboveBareMiB: Double
        /// The same after malloc_trim(0): what live allocations and mappings hold, without the
        /// free memory glibc kept (the closed connections' caches, the load's transient buffers).
        var rssAboveBareTrimmedMiB: Double?
        /// Where the RSS is, at the end (whole process, not above bare): anonymous memory, file
        /// pages mapped (the shared state pages, libraries), and malloc's view of its heap:
        /// bytes in use by live allocations and free bytes it holds without returning them.
        var rssAnonMiB: Double?
        var rssFileMiB: Double?
        var heapInUseMiB: Double?
        var heapFreeHeldMiB: Double?
        var uploaderThreads: Int
        var threads: Int
        var commits: Int
        var lagP50Ms: Double?
        var lagP99Ms: Double?
        var idleSeconds: Double
        var idleCPUSecondsPerMinute: Double
        var idleRequests: RequestCounts?
        var idleRequestsPerHour: Double?
    }

    /// The levels the children configure: short, so the compactions of what the load wrote are
    /// done before the idle window opens (with the defaults, 30 s / 5 min / 1 h, the last one
    /// would fall an hour later).
    static let levels: [Duration] = [.seconds(5), .seconds(15)]
    /// The last deletions of the load fall up to 2 level-2 slots after it (level-0 files are kept one
    /// slot once covered, and deletions wait for a slot boundary): 25 s let one batch of them
    /// into the idle window now and then, one request per database.
    static let settleSeconds: Double = 40

    func run() throws {
        if child { return try runChild() }
        let list = counts.split(separator: ",").compactMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !list.isEmpty, list.allSatisfy({ (1...10_000).contains($0) }) else {
            throw ValidationError("--counts must be a comma-separated list of 1 to 10000")
        }
        let window = idleSeconds ?? (common.quick ? 60 : 600)
        let load = loadSeconds ?? (common.quick ? 10 : 30)
        let server = try BenchServer.fromEnvironment()
        let dir = try common.scratch("many")
        var children: [(count: Int, bucket: String, process: Process, input: Pipe, output: Pipe, idleAt: Date, before: RequestCounts)] = []
        for n in list {
            let bucket = try server.makeBucket("many-\(n)")
            let process = Process()
            process.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
            var args = [
                "many", "--child", "--count", "\(n)", "--bucket", bucket, "--work-dir", dir,
                "--load-seconds", "\(load)", "--rate", "\(rate)",
            ]
            if let uploaderThreads { args += ["--uploader-threads", "\(uploaderThreads)"] }
            process.arguments = args
            let input = Pipe()
            let output = Pipe()
            process.standardInput = input
            process.standardOutput = output
            progress("many: \(n) databases: writing for \(Int(load)) s, then settling \(Int(Self.settleSeconds)) s")
            try process.run()
            // The child says "idle" once its databases are written, flushed and settled.
            var line = ""
            while !line.hasSuffix("\n") {
                let byte = output.fileHandleForReading.readData(ofLength: 1)
                guard !byte.isEmpty else { throw BenchError("many --child \(n) exited before it was idle") }
                line += String(decoding: byte, as: UTF8.self)
            }
            guard line == "idle\n" else { throw BenchError("many --child \(n): unexpected \(line)") }
            children.append((n, bucket, process, input, output, Date(), try server.requestCounts(bucket: bucket)))
        }
        let end = (children.last?.idleAt ?? Date()).addingTimeInterval(window)
        progress("many: all idle; watching for \(Int(window)) s")
        sleepSeconds(end.timeIntervalSinceNow)
        var results: [Result] = []
        for c in children {
            let requests = try server.requestCounts(bucket: c.bucket) - c.before
            try c.input.fileHandleForWriting.close()  // the child measures, prints and exits
            let data = c.output.fileHandleForReading.readDataToEndOfFile()
            c.process.waitUntilExit()
            var r = try JSONDecoder().decode(Result.self, from: data)
            r.idleRequests = requests
            r.idleRequestsPerHour = Double(requests.total) * 3600 / r.idleSeconds
            results.append(r)
        }
        if common.json {
            try printJSON(results)
            return
        }
        var table = Table(
            title: "many: databases in one process (each written at a low rate, then idle)",
            header: [
                "databases", "RSS above bare (MiB)", "after malloc_trim (MiB)", "anon / file RSS (MiB)", "heap in use / free held (MiB)",
                "uploader threads", "all threads", "commits", "lag p50 (ms)",
                "lag p99 (ms)", "idle CPU (s per min)", "idle requests", "idle requests per hour",
            ])
        for r in results {
            table.rows.append([
                "\(r.databases)", formatNumber(r.rssAboveBareMiB), formatNumber(r.rssAboveBareTrimmedMiB),
                "\(formatNumber(r.rssAnonMiB)) / \(formatNumber(r.rssFileMiB))",
                "\(formatNumber(r.heapInUseMiB)) / \(formatNumber(r.heapFreeHeldMiB))", "\(r.uploaderThreads)", "\(r.threads)", "\(r.commits)",
                formatNumber(r.lagP50Ms, 0), formatNumber(r.lagP99Ms, 0), formatNumber(r.idleCPUSecondsPerMinute, 3),
                "\(r.idleRequests?.total ?? 0)", formatNumber(r.idleRequestsPerHour, 0),
            ])
        }
        table.notes = [
            "Each count is its own child process; RSS is measured at the end of the idle window, with every connection"
                + " closed, minus the child's RSS before it built the replicator (SQLite and Swift already loaded)."
                + " Anon / file: the whole process's resident anonymous memory and mapped file pages (smaps_rollup);"
                + " heap: malloc's bytes allocated (the shim's copy buffers count in full, though untouched ones"
                + " are not resident) / free bytes it holds (malloc_info). After malloc_trim: the same RSS once"
                + " glibc has returned the free memory it held (the closed connections' caches among it).",
            "Writing: \(formatNumber(rate, 0)) tx/s across all databases for \(Int(load)) s (each database gets"
                + " rate / count), max-delay 1 s. Lag: commit to the upload that holds it acknowledged by SeaweedFS.",
            "Idle window: \(Int(window)) s of real time, opened \(Int(Self.settleSeconds)) s after the last flush;"
                + " levels 5 s and 15 s so the compactions of the load are done before it. Requests counted by"
                + " SeaweedFS per bucket. Targets: 1000 databases within 64 MiB, at most 4 uploader threads, 0 idle"
                + " requests, near-zero idle CPU, lag p99 at most 1.2 s.",
        ]
        print(table.markdown())
    }

    // MARK: - The child

    /// Records when each upload was acknowledged, per database.
    final class Acks: UploaderObserver, @unchecked Sendable {
        private let lock = NSLock()
        private var shipped: [String: [(txid: UInt64, atMs: Int64)]] = [:]
        func uploader(database: String, didReport event: UploaderEvent) {
            guard case .shipped(_, _, let maxTXID, _, _, _) = event else { return }
            let now = wallMs()
            lock.lock()
            shipped[database, default: []].append((maxTXID, now))
            lock.unlock()
        }
        /// When `txid` of `database` was first in an acknowledged upload.
        func ackMs(database: String, txid: UInt64) -> Int64? {
            lock.lock()
            defer { lock.unlock() }
            return shipped[database]?.first { $0.txid >= txid }?.atMs
        }
    }

    /// Anonymous and file-backed resident MiB (/proc/self/smaps_rollup).
    static func rssSplitMiB() -> (anon: Double, file: Double)? {
        guard let text = try? String(contentsOfFile: "/proc/self/smaps_rollup", encoding: .utf8) else { return nil }
        var rss = 0.0
        var anon = 0.0
        for line in text.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 2, let kb = Double(f[1]) else { continue }
            if f[0] == "Rss:" { rss = kb }
            if f[0] == "Anonymous:" { anon = kb }
        }
        return (anon / 1024, (rss - anon) / 1024)
    }

    /// malloc's heap: bytes in live allocations, and free bytes it keeps, from glibc's
    /// malloc_info report (its totals after the per-arena sections). malloc.h is not in Swift's
    /// Glibc module, so the function is looked up by name.
    static func heapMiB() -> (inUse: Double, freeHeld: Double)? {
        typealias MallocInfo = @convention(c) (Int32, UnsafeMutablePointer<FILE>?) -> Int32
        guard let symbol = glibcSymbol("malloc_info") else { return nil }
        let mallocInfo = unsafeBitCast(symbol, to: MallocInfo.self)
        var buffer: UnsafeMutablePointer<CChar>?
        var size = 0
        guard let stream = open_memstream(&buffer, &size) else { return nil }
        _ = mallocInfo(0, stream)
        fclose(stream)
        guard let buffer else { return nil }
        defer { free(buffer) }
        let text = String(cString: buffer)
        guard let end = text.range(of: "</heap>", options: .backwards) else { return nil }
        // <total type="fast|rest|mmap" count=".." size=".."/>, <system type="current" size=".."/>
        var free = 0.0, mmapped = 0.0, system = 0.0
        for line in text[end.upperBound...].split(separator: "\n") {
            func attribute(_ name: String) -> String? {
                guard let r = line.range(of: name + "=\"") else { return nil }
                return String(line[r.upperBound...].prefix { $0 != "\"" })
            }
            guard let size = attribute("size").flatMap(Double.init) else { continue }
            switch (line.contains("<total"), line.contains("<system"), attribute("type")) {
            case (true, _, "fast"), (true, _, "rest"): free += size
            case (true, _, "mmap"): mmapped += size
            case (_, true, "current"): system = size
            default: break
            }
        }
        return ((system - free + mmapped) / 1_048_576, free / 1_048_576)
    }

    /// A function of the process (glibc's malloc.h ones are not in Swift's Glibc module).
    static func glibcSymbol(_ name: String) -> UnsafeMutableRawPointer? {
        guard let process = dlopen(nil, RTLD_NOW) else { return nil }
        return dlsym(process, name)
    }

    /// glibc's malloc_trim(0): gives free heap memory back to the system (looked up by name, as
    /// malloc_info). False if it is not there.
    static func mallocTrim() -> Bool {
        typealias MallocTrim = @convention(c) (Int) -> Int32
        guard let symbol = glibcSymbol("malloc_trim") else { return false }
        _ = unsafeBitCast(symbol, to: MallocTrim.self)(0)
        return true
    }

    static func rssMiB() -> Double {
        let status = (try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) ?? ""
        for line in status.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            let kb = Double(line.split(separator: " ").dropFirst().first ?? "0") ?? 0
            return kb / 1024
        }
        return 0
    }

    static func threads() -> (all: Int, uploader: Int) {
        var all = 0
        var uploader = 0
        for tid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? [] {
            all += 1
            if let comm = try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8),
                comm.hasPrefix("vfs-upload")
            {
                uploader += 1
            }
        }
        return (all, uploader)
    }

    static func cpuSeconds() -> Double {
        var u = rusage()
        getrusage(RUSAGE_SELF.rawValue, &u)
        return Double(u.ru_utime.tv_sec) + Double(u.ru_utime.tv_usec) / 1e6 + Double(u.ru_stime.tv_sec)
            + Double(u.ru_stime.tv_usec) / 1e6
    }

    func runChild() throws {
        let server = try BenchServer.fromEnvironment()
        let load = loadSeconds ?? 30
        let dir = try common.scratch("many-\(count)")
        let bare = Self.rssMiB()
        var config = ReplicationConfig(
            databases: (0..<count).map { i in
                DatabaseConfig(
                    path: dir + "/tenant\(i).db", replica: server.replicaConfig(bucket: bucket, prefix: "tenant\(i)"),
                    maxDelay: .seconds(1), compactionIntervals: Self.levels)
            })
        config.uploaderThreads = uploaderThreads
        var logger = Logger(label: "vfs-bench")
        logger.logLevel = .warning
        let acks = Acks()
        let replicator = try Replicator(config: config, logger: logger, observers: [acks])
        replicator.start()
        var commits: [(db: Int, txid: UInt64, atMs: Int64)] = []
        do {
            var connections: [BenchConnection] = []
            for i in 0..<count {
                let c = try BenchConnection(path: dir + "/tenant\(i).db", replicated: true)
                try c.exec("PRAGMA journal_mode=WAL")
                try c.exec("CREATE TABLE IF NOT EXISTS notes(id INTEGER PRIMARY KEY, body BLOB)")
                connections.append(c)
            }
            try replicator.flush(timeout: .seconds(600))
            let start = nowNs()
            let deadline = start + UInt64(load * 1e9)
            var i = 0
            while true {
                let due = start + UInt64(Double(i) / rate * 1e9)
                if due >= deadline { break }
                let now = nowNs()
                if due > now { usleep(useconds_t((due - now) / 1000)) }
                let db = i % count
                let c = connections[db]
                try c.exec("INSERT INTO notes(body) VALUES (randomblob(200))")
                commits.append((db, c.lastCommitTXID(), wallMs()))
                i += 1
            }
            try replicator.flush(timeout: .seconds(600))
        }  // every connection closed
        var lags: [Double] = []
        for c in commits {
            if let ack = acks.ackMs(database: dir + "/tenant\(c.db).db", txid: c.txid) { lags.append(Double(ack - c.atMs)) }
        }
        lags.sort()
        sleepSeconds(Self.settleSeconds)
        print("idle")
        fflush(nil)
        let idleStart = Date()
        let cpu0 = Self.cpuSeconds()
        // Idle until the parent closes standard input.
        _ = FileHandle.standardInput.readDataToEndOfFile()
        let idle = Date().timeIntervalSince(idleStart)
        let cpu = Self.cpuSeconds() - cpu0
        let threads = Self.threads()
        let split = Self.rssSplitMiB()
        let heap = Self.heapMiB()
        let rss = Self.rssMiB()
        let trimmed = Self.mallocTrim() ? Self.rssMiB() : nil
        let result = Result(
            databases: count, bareRSSMiB: bare, rssAboveBareMiB: rss - bare,
            rssAboveBareTrimmedMiB: trimmed.map { $0 - bare }, rssAnonMiB: split?.anon,
            rssFileMiB: split?.file, heapInUseMiB: heap?.inUse, heapFreeHeldMiB: heap?.freeHeld,
            uploaderThreads: threads.uploader, threads: threads.all, commits: commits.count,
            lagP50Ms: quantile(lags, 0.5), lagP99Ms: quantile(lags, 0.99), idleSeconds: idle,
            idleCPUSecondsPerMinute: cpu / idle * 60)
        let data = try JSONEncoder().encode(result)
        FileHandle.standardOutput.write(data)
        replicator.shutdown(timeout: .seconds(30))
    }
}
