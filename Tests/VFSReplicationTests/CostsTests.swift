import Foundation
import Testing
@testable import VFSReplicationStatusPage

@testable import VFSReplication

/// Costs against a real S3 server (SeaweedFS): the requests status.json and /metrics count are
/// the requests the server saw, the replica's size is the sum of its objects, and dollars follow
/// the configured price list.
@Suite("Costs on S3", .serialized)
struct CostsTests {
    /// A price list for the test server: round numbers, so the dollars are easy to check.
    static let prices = """
        prices:
          seaweed:
            based-on: r2
            as-of: 2026-12-01
            class-a-per-million: 1000
            class-b-per-million: 100
            storage-per-gb-month: 2000
            egress-per-gb: 50

        """

    static func config(_ server: SeaweedFS, bucket: String, dir: String) throws -> String {
        let path = dir + "/replication.yml"
        // Level 1 every second and no compaction cache: compaction GETs what it merges (Class B,
        // egress); retention deletes what it replaced (free).
        try (prices + """
            databases:
              - path: app.db
                max-delay: 20ms
                compaction-cache-bytes: 0
                levels:
                  - interval: 1s
                replica:
                  url: s3://\(bucket)/app
                  endpoint: \(server.endpoint)
                  region: us-east-1
                  force-path-style: true
                  access-key-id: \(SeaweedFS.accessKeyID)
                  secret-access-key: \(SeaweedFS.secretAccessKey)
                  price-list: seaweed
            """).write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    @Test func statusAndMetricsCountTheRequestsTheServerSaw() throws {
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("cost")
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let configPath = try Self.config(server, bucket: bucket, dir: dir)
        let config = try ReplicationConfig.load(path: configPath)
        let db = config.databases[0]
        #expect(db.replica.prices?.name == "seaweed" && db.replica.prices?.classAPerMillion == 1000)

        let before = try server.requestCounts(bucket: bucket)
        let status = StatusFileObserver(config: config, minimumInterval: .milliseconds(100))
        let replicator = try Replicator(config: config, observers: [status])
        replicator.start()
        let c = try Conn(db.path)
        try c.exec("PRAGMA journal_mode=WAL")
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        for _ in 0..<6 {
            try c.insertBlobs(3, bytes: 2000)
            try replicator.flush(timeout: .seconds(30))
            Thread.sleep(forTimeInterval: 0.4)
        }
        // Let a level-1 compaction run over what was written (its GETs are the egress).
        let counted = TestSupport.waitUntil(timeout: 20) {
            (status.record(for: db.path)?.requests(on: Date())[.get] ?? 0) > 0
        }
        #expect(counted, "no compaction GET within 20 s")

        replicator.shutdown(timeout: .seconds(10))
        status.flush()
        let after = try server.requestCounts(bucket: bucket)
        func made(_ type: String) -> Int { (after[type] ?? 0) - (before[type] ?? 0) }

        // The record on disk (what vfs-status and the dashboard read) against the server's count.
        let report = StatusReport.collect(database: db)
        let today = report.requestsToday
        #expect(today[.put] == made("PUT"), "server \(before) -> \(after), record \(today)")
        #expect(today[.get] == made("GET"), "server \(before) -> \(after), record \(today)")
        #expect(today[.list] == made("LIST"), "server \(before) -> \(after), record \(today)")
        #expect(today[.delete] == made("DELETE"), "server \(before) -> \(after), record \(today)")
        let usage = report.costs.today.usage
        #expect(usage.classA == made("PUT") + made("LIST") && usage.classB == made("GET") && usage.free == made("DELETE"))
        #expect(report.costs.month.usage == usage, "the month so far is today here")

        // Stored bytes: the sum of the objects in the replica, as the test lists it itself.
        let replica = try S3ReplicaClient(config: server.replicaConfig(bucket: bucket, prefix: "app"))
        var objects: [LTXFileInfo] = []
        for level in try replica.listLevels() { objects += try replica.listFiles(level: level) }
        #expect(report.costs.replicaBytes == objects.reduce(0) { $0 + $1.size }, "\(objects)")
        #expect(report.costs.replicaFiles == objects.count)
        #expect(usage.egressBytes > 0, "compaction fetched files")

        // Dollars from the configured prices.
        let dollars = try #require(report.costs.today.dollars)
        let gib = 1_073_741_824.0
        #expect(abs(dollars.requests - (Double(usage.classA) * 1000 + Double(usage.classB) * 100) / 1e6) < 1e-12)
        #expect(abs(dollars.egress - Double(usage.egressBytes) / gib * 50) < 1e-12)
        #expect(abs(dollars.storage - report.costs.today.storageGBMonths * 2000) < 1e-12 && dollars.storage > 0)
        let projected = try #require(report.costs.projectedMonth.dollars)
        #expect(projected.total >= dollars.total)

        // /metrics (the status page renders the same reports).
        let metrics = PrometheusText.render([report])
        let d = "database=\"\(db.path)\""
        #expect(metrics.contains("vfsreplication_billed_requests{\(d),class=\"A\",window=\"today\"} \(usage.classA)\n"), "\(metrics)")
        #expect(metrics.contains("vfsreplication_billed_requests{\(d),class=\"B\",window=\"today\"} \(usage.classB)\n"), "\(metrics)")
        #expect(metrics.contains("vfsreplication_replica_bytes{\(d)} \(report.costs.replicaBytes ?? -1)\n"), "\(metrics)")
        #expect(metrics.contains("vfsreplication_estimated_dollars{\(d),window=\"today\"} \(PrometheusText.format(dollars.total))\n"), "\(metrics)")
        #expect(metrics.contains("vfsreplication_price_list_info{\(d),price_list=\"seaweed\",as_of=\"2026-12-01\"} 1\n"), "\(metrics)")

        // status.json (vfs-status --json and the dashboard's document).
        let json = try JSONSerialization.jsonObject(with: StatusDocument(reports: [report]).jsonData()) as? [String: Any]
        let costs = try #require((json?["databases"] as? [[String: Any]])?.first?["costs"] as? [String: Any])
        let todayJSON = try #require(costs["today"] as? [String: Any])
        #expect((todayJSON["usage"] as? [String: Any])?["classA"] as? Int == usage.classA)
        #expect(((todayJSON["dollars"] as? [String: Any])?["total"] as? Double).map { abs($0 - dollars.total) < 1e-12 } == true)
        #expect((costs["priceList"] as? [String: Any])?["name"] as? String == "seaweed")
        #expect(costs["estimated"] as? Bool == true)
        #expect((json?["costs"] as? [String: Any])?["projectedMonth"] is Double)

        // vfs-status text: a costs line per database and a total.
        if let tool = TestSupport.builtProduct("vfs-status") {
            let r = try TestSupport.run(tool, ["--config", configPath])
            #expect(r.stdout.contains("\n  costs: seaweed (2026-12-01)  today \(CostCalculator.format(dollars.total))"), "\(r)")
            #expect(r.stdout.contains("(A \(usage.classA) B \(usage.classB) DELETE \(usage.free))"), "\(r)")
            #expect(r.stdout.contains("\ntotal costs: today "), "\(r)")
        } else {
            Issue.record("vfs-status is not built next to the tests")
        }
    }

    @Test func countsSurviveARestart() throws {
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("cost-restart")
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try ReplicationConfig.load(path: try Self.config(server, bucket: bucket, dir: dir))
        let db = config.databases[0]
        var first = 0
        for round in 0..<2 {
            let status = StatusFileObserver(config: config, minimumInterval: .milliseconds(100))
            let replicator = try Replicator(config: config, observers: [status])
            replicator.start()
            let c = try Conn(db.path)
            try c.exec("PRAGMA journal_mode=WAL")
            try c.exec("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, x BLOB)")
            try c.insertBlobs(2, bytes: 500)
            try replicator.flush(timeout: .seconds(30))

            replicator.shutdown(timeout: .seconds(10))
            status.flush()
            let report = StatusReport.collect(database: db)
            if round == 0 {
                first = report.costs.today.usage.classA
                #expect(first > 0)
            } else {
                #expect(report.costs.today.usage.classA > first, "the second process continued the count")
                #expect(report.costs.replicaBytes ?? 0 > 0)
            }
        }
    }

    @Test func aTypoInPricesIsNamedByTheTools() throws {
        guard let tool = TestSupport.builtProduct("vfs-status") else {
            Issue.record("vfs-status is not built next to the tests")
            return
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
        prices:
          r2:
            storage-per-gb-mnth: 0.02
        databases:
          - path: app.db
            replica: {url: file://\(dir)/replica}
        """.write(toFile: dir + "/replication.yml", atomically: true, encoding: .utf8)
        let r = try TestSupport.run(tool, ["--config", dir + "/replication.yml"])
        #expect(r.status != 0, "\(r)")
        #expect(r.stderr.contains("replication.yml:3:"), "\(r)")
        #expect(r.stderr.contains("unknown key 'storage-per-gb-mnth' in price list 'r2' (did you mean 'storage-per-gb-month'?)"), "\(r)")
    }
}
