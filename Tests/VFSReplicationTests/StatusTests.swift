import Foundation
import Metrics
import MetricsTestKit
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// One replicated database with a Replicator that carries the status observers (not started
/// unless asked: a process that only captures).
final class StatusFixture {
    let dir: String
    let dbPath: String
    let replicaDir: String
    let configPath: String
    let config: ReplicationConfig
    let statusObserver: StatusFileObserver
    let metrics: TestMetrics
    let metricsObserver: MetricsObserver
    let replicator: Replicator

    init(maxDelay: String = "20ms", start: Bool = true) throws {
        dir = try TestSupport.makeTemporaryDirectory()
        dbPath = dir + "/app.db"
        replicaDir = dir + "/replica"
        configPath = dir + "/replication.yml"
        try """
        databases:
          - path: app.db
            replica:
              url: file://\(replicaDir)
            max-delay: \(maxDelay)
        """.write(toFile: configPath, atomically: true, encoding: .utf8)
        config = try ReplicationConfig.load(path: configPath)
        statusObserver = StatusFileObserver(config: config, minimumInterval: .milliseconds(200))
        metrics = TestMetrics()
        metricsObserver = MetricsObserver(config: config, factory: metrics, refreshInterval: nil)
        replicator = try Replicator(config: config, observers: [statusObserver, metricsObserver])
        if start { replicator.start() }
    }

    deinit {
        replicator.shutdown(timeout: .seconds(10))
        try? FileManager.default.removeItem(atPath: dir)
    }

    var files: ReplicationFiles { ReplicationFiles(databasePath: dbPath) }

    func open() throws -> Conn {
        let c = try Conn(dbPath)
        try c.exec("PRAGMA journal_mode=WAL")
        return c
    }

    /// `count` transactions of one row each.
    func write(_ c: Conn, _ count: Int) throws {
        try c.exec("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, x BLOB)")
        for _ in 0..<count { try c.insertBlobs(1, bytes: 300) }
    }
}

@Suite("Status: records, status file, health")
struct StatusRecordTests {
    let t0 = Date(timeIntervalSince1970: 1_780_000_000)  // 2026-05-28, UTC

    @Test func recordTakesEveryEvent() {
        var r = UploaderRecord(database: "/db")
        r.apply(.elected(true), now: t0, pid: 7)
        r.apply(.request(.list, count: 2), now: t0, pid: 7)
        r.apply(.shipped(level: 9, minTXID: 1, maxTXID: 5, bytes: 4096, pages: 1, transactions: 0), now: t0, pid: 7)
        r.apply(.pending(oldestCommitMs: t0.epochMilliseconds - 500, transactions: 3, pageBytes: 8192), now: t0, pid: 7)
        r.apply(.request(.put, count: 1), now: t0 + 1, pid: 7)
        r.apply(.shipped(level: 0, minTXID: 6, maxTXID: 8, bytes: 100, pages: 2, transactions: 3), now: t0 + 2, pid: 7)
        r.apply(.error("PUT failed: 503"), now: t0 + 3, pid: 7)
        #expect(r.isErroring)
        r.apply(.error(nil), now: t0 + 4, pid: 7)
        #expect(!r.isErroring)
        #expect(r.lastError == .init(message: "PUT failed: 503", at: t0 + 3, resolvedAt: t0 + 4))
        #expect(r.uploading && r.pid == 7)
        #expect(r.filesUploaded == 2 && r.bytesUploaded == 4196 && r.snapshots == 1)
        #expect(r.lastSnapshot == t0 && r.lastUpload == t0 + 2)
        #expect(r.pendingTransactions == 3 && r.pendingPageBytes == 8192)
        #expect(r.requests(on: t0)[.list] == 2 && r.requests(on: t0)[.put] == 1 && r.requests(on: t0)[.get] == 0)
        r.apply(.fenced("another writer"), now: t0 + 5, pid: 7)
        #expect(r.fenced?.message == "another writer")
    }

    @Test func requestsAreKeptTwoMonths() {
        var r = UploaderRecord(database: "/db")
        let days = UploaderRecord.requestDays
        for day in 0..<(days + 3) {
            r.apply(.request(.put, count: day + 1), now: t0 + Double(day) * 86400, pid: 1)
        }
        #expect(r.requests.count == days)
        #expect(r.requests.first?.day == UploaderRecord.day(t0 + 3 * 86400))
        #expect(r.requests(on: t0 + Double(days + 2) * 86400)[.put] == days + 3)
        #expect(r.requests(on: t0)[.put] == 0)
        #expect(UploaderRecord.day(t0) == "2026-05-28")
    }

    @Test func aNewUploaderEndsWhatThePreviousOneReported() {
        var r = UploaderRecord(database: "/db")
        r.apply(.elected(true), now: t0, pid: 1)
        r.apply(.error("timeout"), now: t0, pid: 1)
        r.apply(.pending(oldestCommitMs: 1, transactions: 4, pageBytes: 1), now: t0, pid: 1)
        r.apply(.elected(true), now: t0 + 60, pid: 2)
        #expect(!r.isErroring && r.lastError?.resolvedAt == t0 + 60)
        #expect(r.pendingTransactions == 0 && r.oldestPendingCommit == nil && r.pid == 2)
    }

    @Test func recordJSONRoundTrips() throws {
        var r = UploaderRecord(database: "/db")
        r.apply(.elected(true), now: t0, pid: 42)
        r.apply(.request(.delete, count: 3), now: t0, pid: 42)
        r.apply(.error("x"), now: t0 + 0.25, pid: 42)
        let data = try UploaderRecord.makeEncoder().encode(r)
        let text = String(decoding: data, as: UTF8.self)
        #expect(text.contains(#""DELETE":3"#) && text.contains(#""day":"2026-05-28""#))
        #expect(text.contains(".250Z"))
        let decoded = try UploaderRecord.makeDecoder().decode(UploaderRecord.self, from: data)
        #expect(try UploaderRecord.makeEncoder().encode(decoded) == data)
        #expect(decoded.requests == r.requests && decoded.pid == 42 && decoded.lastError?.message == "x")
    }

    private func report(
        state: LocalReplicationState?, uploader: UploaderPresence = .running(pid: 1), record: UploaderRecord? = nil,
        verification: VerificationRecord? = nil, maxLag: Double = 60
    ) -> StatusReport {
        StatusReport(
            database: "/app/db", replica: "file:///r", generatedAt: t0, state: state, uploader: uploader,
            record: record,
            verification: verification, maxLagSeconds: maxLag)
    }

    @Test func healthRules() {
        let quiet = LocalReplicationState(localTXID: 10, durableTXID: 10)
        #expect(report(state: quiet).healthy)
        #expect(report(state: quiet, uploader: .none).healthy, "nothing waits: no uploader needed")
        #expect(!report(state: nil).healthy)

        var lagging = LocalReplicationState(localTXID: 12, durableTXID: 10, oldestPendingCommit: t0 - 90)
        #expect(report(state: lagging).problems == ["lag 90s exceeds 60s"])
        #expect(report(state: lagging, maxLag: 120).healthy)
        lagging.oldestPendingCommit = t0 - 5
        #expect(report(state: lagging, uploader: .none).problems == ["2 transactions wait and no uploader is running"])
        #expect(report(state: lagging).lagSeconds == 5)

        var failing = UploaderRecord(database: "/app/db")
        failing.apply(.error("S3 PUT: 403 Forbidden"), now: t0 - 30, pid: 1)
        #expect(report(state: quiet, record: failing).problems.first?.contains("403 Forbidden") == true)
        failing.apply(.error(nil), now: t0, pid: 1)
        #expect(report(state: quiet, record: failing).healthy)
        failing.apply(.fenced("another writer owns it"), now: t0, pid: 1)
        #expect(report(state: quiet, record: failing).problems.first?.contains("fenced") == true)

        let bad = VerificationRecord(
            passed: false, txid: 3, startedAt: t0, finishedAt: t0, pageSize: 4096, pageCount: 2, message: "pages differ"
        )
        #expect(report(state: quiet, verification: bad).problems.first?.contains("pages differ") == true)
    }

    @Test func summaryLineAndJSON() throws {
        var record = UploaderRecord(database: "/app/db")
        record.apply(.request(.put, count: 4), now: t0, pid: 1)
        record.apply(
            .shipped(level: 0, minTXID: 2, maxTXID: 3, bytes: 10, pages: 1, transactions: 2), now: t0 - 3, pid: 1)
        let r = report(
            state: LocalReplicationState(localTXID: 3, durableTXID: 3, pendingSpoolBytes: 0),
            uploader: .running(pid: 99),
            record: record)
        let line = r.summaryLine()
        #expect(
            line.hasPrefix("/app/db  ok  local 3 durable 3  lag 0.0s/0 tx  spool 0 B  uploaded 3.0s ago"), "\(line)")
        #expect(line.contains("today PUT 4 GET 0 LIST 0 DELETE 0") && line.contains("uploader pid 99"))
        let json =
            try JSONSerialization.jsonObject(with: StatusDocument(reports: [r], generatedAt: t0).jsonData())
            as! [String: Any]
        #expect(json["healthy"] as? Bool == true)
        let db = (json["databases"] as! [[String: Any]])[0]
        #expect(db["localTXID"] as? Int == 3 && db["lagTransactions"] as? Int == 0)
        #expect((db["requestsToday"] as? [String: Any])?["PUT"] as? Int == 4)
        #expect((db["uploader"] as? [String: Any])?["pid"] as? Int == 99)
    }

    @Test func statusFileIsWrittenAtMostOncePerIntervalAndNeverWhenIdle() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let config = ReplicationConfig(databases: [
                DatabaseConfig(path: dir + "/a.db", replica: ReplicaConfig(kind: .file(directory: dir + "/r")))
            ])
            let files = ReplicationFiles(databasePath: dir + "/a.db")
            try FileManager.default.createDirectory(atPath: files.stateDirectory, withIntermediateDirectories: true)
            let observer = StatusFileObserver(config: config, minimumInterval: .milliseconds(300))
            let start = Date()
            var events = 0
            while Date().timeIntervalSince(start) < 1.0 {
                observer.uploader(database: dir + "/a.db", didReport: .request(.put, count: 1))
                events += 1
                usleep(2_000)
            }
            // The last events are written within one interval (waiting longer on a busy machine).
            #expect(
                TestSupport.waitUntil(timeout: 10) {
                    UploaderRecord.load(path: files.statusFile)?.requests(on: Date())[.put] == events
                })
            let writes = observer.writeCount
            #expect(writes >= 1 && writes <= 6, "\(writes) writes for \(events) events over 1 s")
            Thread.sleep(forTimeInterval: 0.7)
            #expect(observer.writeCount == writes, "an idle database is never written")
            observer.uploader(database: dir + "/a.db", didReport: .elected(false))
            #expect(observer.writeCount == writes + 1, "resigning writes at once")
            #expect(UploaderRecord.load(path: files.statusFile)?.uploading == false)
        }
    }

    @Test func aTakeoverContinuesTheCounters() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let config = ReplicationConfig(databases: [
                DatabaseConfig(path: dir + "/a.db", replica: ReplicaConfig(kind: .file(directory: dir + "/r")))
            ])
            let files = ReplicationFiles(databasePath: dir + "/a.db")
            try FileManager.default.createDirectory(atPath: files.stateDirectory, withIntermediateDirectories: true)
            var old = UploaderRecord(database: files.databasePath)
            old.apply(.elected(true), now: t0, pid: 1)
            old.apply(
                .shipped(level: 9, minTXID: 1, maxTXID: 9, bytes: 1000, pages: 3, transactions: 0), now: t0, pid: 1)
            old.apply(.request(.put, count: 5), now: Date(), pid: 1)
            old.apply(.error("died with this"), now: t0, pid: 1)
            try old.write(path: files.statusFile)

            let observer = StatusFileObserver(config: config)
            observer.uploader(database: dir + "/a.db", didReport: .elected(true))
            observer.uploader(database: dir + "/a.db", didReport: .request(.put, count: 1))
            observer.flush()
            let now = try #require(UploaderRecord.load(path: files.statusFile))
            #expect(now.filesUploaded == 1 && now.lastSnapshot == t0 && now.requests(on: Date())[.put] == 6)
            #expect(now.pid == getpid() && !now.isErroring)
        }
    }
}

@Suite("Status: live databases, metrics, vfs-status", .serialized)
struct StatusLiveTests {
    @Test func captureOnlyProcessIsReportedAsWaiting() throws {
        let f = try StatusFixture(start: false)
        let c = try f.open()
        let before = Date()
        try f.write(c, 5)
        let state = try #require(try LocalReplicationState.read(f.files))
        #expect(state.localTXID >= 5 && state.durableTXID == 0)
        #expect(state.pendingSpoolBytes > 5 * 300)
        let oldest = try #require(state.oldestPendingCommit)
        #expect(oldest >= before.addingTimeInterval(-1) && oldest <= Date().addingTimeInterval(1))
        #expect(UploaderPresence.probe(f.files) == .none)
        let report = StatusReport.collect(config: f.config)[0]
        #expect(!report.healthy)
        #expect(report.problems.contains { $0.contains("no uploader is running") }, "\(report.problems)")

        f.replicator.start()
        try f.replicator.flush(timeout: .seconds(30))
        // The shipped event follows the durable TXID by a moment.
        #expect(
            TestSupport.waitUntil(timeout: 10) { (f.statusObserver.record(for: f.dbPath)?.filesUploaded ?? 0) >= 1 })
        f.statusObserver.flush()
        let after = try #require(try LocalReplicationState.read(f.files))
        #expect(after.durableTXID == after.localTXID && after.pendingSpoolBytes == 0)
        #expect(UploaderPresence.probe(f.files) == .running(pid: getpid()))
        let healthy = StatusReport.collect(config: f.config)[0]
        #expect(healthy.healthy, "\(healthy.problems)")
        let record = try #require(healthy.record)
        #expect(record.uploading && record.pid == getpid(), "\(record)")
        #expect(record.filesUploaded >= 1 && record.lastSnapshot != nil, "\(record)")
        #expect(healthy.requestsToday[.put] >= 1 && healthy.requestsToday[.list] >= 1)
    }

    @Test func metricsFollowCapturesAndUploads() throws {
        let f = try StatusFixture()
        let c = try f.open()
        try f.write(c, 3)
        try f.replicator.flush(timeout: .seconds(30))
        f.metricsObserver.refresh()
        let base = try f.metrics.expectCounter(MetricsObserver.Label.commits, [("database", f.dbPath)]).totalValue
        try f.write(c, 7)
        try f.replicator.flush(timeout: .seconds(30))
        f.metricsObserver.refresh()
        let d = [("database", f.dbPath)]
        #expect(try f.metrics.expectCounter(MetricsObserver.Label.commits, d).totalValue == base + 7)
        #expect(try f.metrics.expectCounter(MetricsObserver.Label.uploadedBytes, d).totalValue > 0)
        #expect(try f.metrics.expectCounter(MetricsObserver.Label.uploadedFiles, d).totalValue >= 2)
        #expect(try f.metrics.expectCounter(MetricsObserver.Label.snapshots, d).totalValue == 1)
        #expect(try f.metrics.expectCounter(MetricsObserver.Label.requests, d + [("kind", "PUT")]).totalValue >= 2)
        #expect(try f.metrics.expectGauge(MetricsObserver.Label.lagTransactions, d).lastValue == 0)
        #expect(try f.metrics.expectGauge(MetricsObserver.Label.lagSeconds, d).lastValue == 0)
        #expect(try f.metrics.expectGauge(MetricsObserver.Label.spoolPendingBytes, d).lastValue == 0)
        #expect(try f.metrics.expectGauge(MetricsObserver.Label.uploader, d).lastValue == 1)
        #expect(try f.metrics.expectCounter(MetricsObserver.Label.errors, d).totalValue == 0)
        // The replica's size, from the uploader's own listing: the files in the replica directory
        // (the event follows the durable TXID by a moment; a compaction may change both).
        func replicaDirectoryBytes() -> Double {
            let names = (try? FileManager.default.subpathsOfDirectory(atPath: f.replicaDir)) ?? []
            return names.filter { $0.hasSuffix(".ltx") }.reduce(0.0) {
                $0 + Double((try? FileManager.default.attributesOfItem(atPath: f.replicaDir + "/" + $1)[.size] as? Int) ?? 0)
            }
        }
        let sized = TestSupport.waitUntil(timeout: 10) {
            (try? f.metrics.expectGauge(MetricsObserver.Label.replicaBytes, d).lastValue) == replicaDirectoryBytes()
        }
        #expect(sized, "\((try? f.metrics.expectGauge(MetricsObserver.Label.replicaBytes, d).lastValue) as Any) vs \(replicaDirectoryBytes())")
        // Dimensions are fixed: one instrument per label (requests: per kind), never per event.
        #expect(f.metrics.counters(label: MetricsObserver.Label.requests).count == RequestKind.allCases.count)
        #expect(f.metrics.counters(label: MetricsObserver.Label.commits).count == 1)
    }

    @Test func metricsSeeLagWithoutAnUploader() throws {
        let f = try StatusFixture(start: false)
        let c = try f.open()
        try f.write(c, 4)
        Thread.sleep(forTimeInterval: 0.3)
        f.metricsObserver.refresh()
        let d = [("database", f.dbPath)]
        #expect(try f.metrics.expectGauge(MetricsObserver.Label.lagTransactions, d).lastValue ?? 0 >= 4)
        #expect(try f.metrics.expectGauge(MetricsObserver.Label.lagSeconds, d).lastValue ?? 0 >= 0.3)
        #expect(try f.metrics.expectGauge(MetricsObserver.Label.spoolPendingBytes, d).lastValue ?? 0 > 1200)
    }

    @Test func vfsStatusBinary() throws {
        guard let status = TestSupport.builtProduct("vfs-status") else {
            Issue.record("vfs-status is not built next to the tests")
            return
        }
        let f = try StatusFixture(start: false)
        let c = try f.open()
        try f.write(c, 3)
        var r = try TestSupport.run(status, ["--config", f.configPath])
        #expect(r.status == 1, "\(r)")
        #expect(r.stdout.contains("UNHEALTHY") && r.stdout.contains("no uploader is running"), "\(r)")

        f.replicator.start()
        try f.replicator.flush(timeout: .seconds(30))
        f.statusObserver.flush()
        r = try TestSupport.run(status, ["--config", f.configPath])
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.hasPrefix(f.dbPath + "  ok  local "), "\(r)")
        #expect(r.stdout.contains("uploader pid \(getpid())"), "\(r)")

        r = try TestSupport.run(status, ["--config", f.configPath, "--json"])
        #expect(r.status == 0, "\(r)")
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        let db = try #require((json?["databases"] as? [[String: Any]])?.first)
        #expect(db["database"] as? String == f.dbPath && db["healthy"] as? Bool == true)
        #expect(db["durableTXID"] as? Int == db["localTXID"] as? Int)

        r = try TestSupport.run(status, ["--config", f.configPath, "--max-lag", "0"])
        #expect(r.status != 0 && r.stderr.contains("--max-lag"), "\(r)")
        r = try TestSupport.run(status, ["--config", f.dir + "/missing.yml"])
        #expect(r.status != 0 && r.stderr.contains("does not exist"), "\(r)")
    }
}
