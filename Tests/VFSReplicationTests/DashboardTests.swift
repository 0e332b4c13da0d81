import Foundation
import Hummingbird
import Testing
import VFSReplicationDashboard
import VFSReplicationStatusPage

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// Where tests leave files worth looking at (the dashboard screenshot): `$VFS_TEST_OUTPUT`, else
/// `.build/test-output` under the package root.
enum TestOutput {
    static var directory: String {
        let dir =
            ProcessInfo.processInfo.environment["VFS_TEST_OUTPUT"] ?? TestSupport.packageRoot + "/.build/test-output"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }
}

/// HTTP through the curl command-line client (a real client, outside this process).
enum Curl {
    struct Reply {
        var status: Int
        var headers: String
        var body: String
    }

    static func get(_ url: String, user: String? = nil, method: String = "GET") throws -> Reply {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var args = ["-s", "-S", "--max-time", "20", "-o", dir + "/body", "-D", dir + "/headers", "-w", "%{http_code}"]
        if method == "HEAD" { args.append("-I") } else if method != "GET" { args += ["-X", method] }
        if let user { args += ["-u", user] }
        args.append(url)
        let r = try TestSupport.run("/usr/bin/curl", args)
        guard r.status == 0 else { throw TestFailure("curl \(url): \(r)") }
        return Reply(
            status: Int(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0,
            headers: (try? String(contentsOfFile: dir + "/headers", encoding: .utf8)) ?? "",
            body: (try? String(contentsOfFile: dir + "/body", encoding: .utf8)) ?? "")
    }
}

/// Runs a Hummingbird service in the background until `stop()`.
final class RunningServer: @unchecked Sendable {
    private var task: Task<Void, Error>?
    private let portBox = PortBox()
    var port: Int { portBox.value }

    final class PortBox: @unchecked Sendable {
        private let lock = NSLock()
        private var port = 0
        var value: Int {
            lock.lock()
            defer { lock.unlock() }
            return port
        }
        func set(_ p: Int) {
            lock.lock()
            port = p
            lock.unlock()
        }
    }

    /// Starts what `make(onListening)` returns and waits until it listens.
    init(_ make: (@escaping @Sendable (Int) -> Void) throws -> @Sendable () async throws -> Void) throws {
        let box = portBox
        let run = try make { box.set($0) }
        task = Task { try await run() }
        guard TestSupport.waitUntil(timeout: 20, { box.value != 0 }) else {
            task?.cancel()
            throw TestFailure("the server did not start listening")
        }
    }

    func stop() {
        task?.cancel()
        task = nil
    }

    deinit { stop() }
}

/// A Hummingbird application reporting its port.
struct AppService: Sendable {
    let responder: RouterResponder<BasicRequestContext>
    let onListening: @Sendable (Int) -> Void

    init(router: Router<BasicRequestContext>, onListening: @escaping @Sendable (Int) -> Void) {
        responder = router.buildResponder()
        self.onListening = onListening
    }

    func run() async throws {
        let onListening = self.onListening
        let app = Application(
            responder: responder, configuration: ApplicationConfiguration(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { onListening($0.localAddress?.port ?? 0) })
        try await app.run()
    }
}

@Suite("Dashboard: status page, HTTP, Hummingbird, sidecar", .serialized)
struct DashboardTests {
    private func replicatedDatabase() throws -> StatusFixture {
        let f = try StatusFixture()
        let c = try f.open()
        try f.write(c, 5)
        try f.replicator.flush(timeout: .seconds(30))
        #expect(
            TestSupport.waitUntil(timeout: 10) { (f.statusObserver.record(for: f.dbPath)?.filesUploaded ?? 0) >= 1 })
        f.statusObserver.flush()
        return f
    }

    @Test func authRoutesAndFormats() throws {
        let f = try replicatedDatabase()
        let page = StatusPage(
            config: f.config,
            options: StatusPageOptions(auth: .basic(user: "ops", password: "s3cr:et"), mountPath: "/replication/"))
        let good = "Basic " + Data("ops:s3cr:et".utf8).base64EncodedString()
        let bad = "Basic " + Data("ops:nope".utf8).base64EncodedString()
        var r = page.respond(method: "GET", path: "/replication/", authorization: nil, clientIsLoopback: true)
        #expect(r.status == 401)
        #expect(r.headers.contains { $0.name == "WWW-Authenticate" && $0.value.hasPrefix("Basic realm=") })
        #expect(
            page.respond(method: "GET", path: "/replication", authorization: bad, clientIsLoopback: true).status == 401)
        #expect(
            page.respond(method: "GET", path: "/replication", authorization: "Bearer x", clientIsLoopback: true).status
                == 401)
        #expect(
            page.respond(method: "POST", path: "/replication", authorization: good, clientIsLoopback: true).status
                == 405)
        #expect(
            page.respond(method: "GET", path: "/elsewhere", authorization: good, clientIsLoopback: true).status == 404)

        r = page.respond(method: "GET", path: "/replication", authorization: good, clientIsLoopback: false)
        #expect(r.status == 200 && r.contentType == "text/html; charset=utf-8")
        let html = String(decoding: r.body, as: UTF8.self)
        #expect(html.contains(f.dbPath) && html.contains("The database is healthy"), "\(html)")
        #expect(html.contains("href=\"/replication/status.json\"") && html.contains("<svg"))
        #expect(!html.contains("<script"))
        // Costs: a directory replica is free, and says whose prices those are.
        #expect(html.contains("<dt>Costs (estimated)</dt><dd>today $0.00 · month $0.00 · projected $0.00/month"), "\(html)")
        #expect(html.contains("prices free as of \(ShippedPrices.asOf)") && html.contains("Estimated cost: today $0.00"))

        r = page.respond(
            method: "GET", path: "/replication/status.json?x=1", authorization: good, clientIsLoopback: false)
        #expect(r.status == 200 && r.contentType == "application/json")
        let json = try JSONSerialization.jsonObject(with: Data(r.body)) as? [String: Any]
        let db = try #require((json?["databases"] as? [[String: Any]])?.first)
        #expect(json?["healthy"] as? Bool == true && db["database"] as? String == f.dbPath)
        #expect((db["lastUpload"] as? String) != nil)
        let costs = try #require(db["costs"] as? [String: Any])
        let stored = try #require(costs["replicaBytes"] as? Int)
        #expect(stored > 0 && (costs["priceList"] as? [String: Any])?["name"] as? String == "free")
        #expect((json?["costs"] as? [String: Any])?["projectedMonthAfterFreeTier"] as? Double == 0)

        r = page.respond(method: "GET", path: "/replication/metrics", authorization: good, clientIsLoopback: false)
        let metrics = String(decoding: r.body, as: UTF8.self)
        #expect(r.contentType?.hasPrefix("text/plain; version=0.0.4") == true)
        #expect(metrics.contains("# TYPE vfsreplication_lag_seconds gauge"))
        #expect(metrics.contains("vfsreplication_healthy{database=\"\(f.dbPath)\"} 1"), "\(metrics)")
        #expect(metrics.contains("vfsreplication_requests_today{database=\"\(f.dbPath)\",kind=\"PUT\"}"))
        #expect(metrics.contains("vfsreplication_replica_bytes{database=\"\(f.dbPath)\"} \(stored)\n"), "\(metrics)")
        #expect(metrics.contains("vfsreplication_estimated_dollars{database=\"\(f.dbPath)\",window=\"month\"} 0\n"))
        #expect(metrics.contains("vfsreplication_billed_requests{database=\"\(f.dbPath)\",class=\"A\",window=\"today\"} "))
        #expect(metrics.contains("vfsreplication_estimated_dollars_total{window=\"projected_month_after_free_tier\"} 0\n"))
        #expect(
            page.respond(method: "HEAD", path: "/replication/metrics", authorization: good, clientIsLoopback: false)
                .body.isEmpty)

        let open = StatusPage(config: f.config, options: StatusPageOptions(auth: .disabled))
        #expect(open.respond(method: "GET", path: "/", authorization: nil, clientIsLoopback: false).status == 403)
        #expect(open.respond(method: "GET", path: "/", authorization: nil, clientIsLoopback: true).status == 200)
    }

    @Test func loopbackRulesAndEscaping() throws {
        for host in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost", "::ffff:127.0.0.1"] {
            #expect(StatusPage.isLoopback(host), "\(host)")
        }
        for host in ["0.0.0.0", "10.0.0.1", "::", "example.com", "127.0.0.1.evil", "", "1270.0.0.1"] {
            #expect(!StatusPage.isLoopback(host), "\(host)")
        }
        #expect(throws: ReplicationError.self) { try StatusPage.checkBinding(auth: .disabled, host: "0.0.0.0") }
        try StatusPage.checkBinding(auth: .disabled, host: "127.0.0.1")
        try StatusPage.checkBinding(auth: .basic(user: "a", password: "b"), host: "0.0.0.0")
        #expect(
            StatusPageAuth.environment(["VFS_STATUS_USER": "u", "VFS_STATUS_PASSWORD": "p"])
                == .basic(user: "u", password: "p"))
        #expect(StatusPageAuth.environment(["VFS_STATUS_USER": "u", "VFS_STATUS_PASSWORD": ""]) == nil)

        let report = StatusReport(
            database: "/a \"b\"\\c\n<x>.db", replica: "file:///r", generatedAt: Date(), state: nil, uploader: .none,
            record: nil, verification: nil, maxLagSeconds: 60)
        let text = PrometheusText.render([report])
        #expect(text.contains(#"vfsreplication_healthy{database="/a \"b\"\\c\n<x>.db"} 0"#), "\(text)")
        #expect(throws: ReplicationError.self) { try StatusPageServer.parse(address: "9090") }
        #expect(try StatusPageServer.parse(address: "[::1]:9090") == ("::1", 9090))
        #expect(try StatusPageServer.parse(address: "127.0.0.1:0") == ("127.0.0.1", 0))
    }

    @Test func servedOverHTTPWithBasicAuth() throws {
        let f = try replicatedDatabase()
        let page = StatusPage(config: f.config, options: StatusPageOptions(auth: .basic(user: "ops", password: "pw")))
        let server = try RunningServer { onListening in
            let server = try StatusPageServer(page: page, address: "127.0.0.1:0", onListening: onListening)
            return { try await server.run() }
        }
        defer { server.stop() }
        let base = "http://127.0.0.1:\(server.port)"
        #expect(try Curl.get(base + "/").status == 401)
        #expect(try Curl.get(base + "/", user: "ops:wrong").status == 401)
        let html = try Curl.get(base + "/", user: "ops:pw")
        #expect(html.status == 200 && html.body.contains(f.dbPath), "\(html)")
        #expect(html.headers.lowercased().contains("content-security-policy: default-src 'none'"))
        let json = try Curl.get(base + "/status.json", user: "ops:pw")
        let healthyText = #""healthy" : true"#
        #expect(json.status == 200 && json.body.contains(healthyText), "\(json.body)")
        let metrics = try Curl.get(base + "/metrics", user: "ops:pw")
        #expect(metrics.status == 200 && metrics.body.contains("vfsreplication_durable_txid{database="))
        #expect(try Curl.get(base + "/nothing", user: "ops:pw").status == 404)
    }

    @Test func mountedInAHummingbirdApp() throws {
        let f = try replicatedDatabase()
        let router = Router()
        router.get("/hello") { _, _ in "app route" }
        router.addReplicationStatusPage(
            StatusPage(config: f.config, options: StatusPageOptions(auth: .disabled, mountPath: "/ops/replication")))
        let server = try RunningServer { onListening in
            let app = AppService(router: router, onListening: onListening)
            return { try await app.run() }
        }
        defer { server.stop() }
        let base = "http://127.0.0.1:\(server.port)"
        #expect(try Curl.get(base + "/hello").body == "app route")
        // BasicRequestContext does not know the client's address: without credentials, refused.
        #expect(try Curl.get(base + "/ops/replication").status == 403)

        let authed = Router()
        authed.addReplicationStatusPage(
            StatusPage(
                config: f.config,
                options: StatusPageOptions(auth: .basic(user: "a", password: "b"), mountPath: "/ops/replication")))
        let server2 = try RunningServer { onListening in
            let app = AppService(router: authed, onListening: onListening)
            return { try await app.run() }
        }
        defer { server2.stop() }
        let base2 = "http://127.0.0.1:\(server2.port)"
        #expect(try Curl.get(base2 + "/ops/replication", user: "a:b").body.contains(f.dbPath))
        #expect(try Curl.get(base2 + "/ops/replication/status.json", user: "a:b").status == 200)
        #expect(try Curl.get(base2 + "/ops/replication/metrics", user: "a:b").body.contains("vfsreplication_healthy"))
    }

    @Test func sidecarServesTheStatusPage() throws {
        guard let replicate = TestSupport.builtProduct("vfs-replicate"),
            let bench = TestSupport.builtProduct("vfs-bench")
        else {
            Issue.record("vfs-replicate / vfs-bench are not built next to the tests")
            return
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = dir + "/replication.yml"
        try """
        databases:
          - path: app.db
            replica:
              url: file://\(dir)/replica
            max-delay: 50ms
        """.write(toFile: config, atomically: true, encoding: .utf8)
        var env = TestSupport.childEnvironment()
        env["VFS_STATUS_USER"] = "ops"
        env["VFS_STATUS_PASSWORD"] = "pw"
        let sidecar = try TestSupport.BackgroundProcess(
            replicate, ["--config", config, "--http", "127.0.0.1:0"], environment: env, logPath: dir + "/sidecar.log")
        defer { sidecar.stop() }
        var port = 0
        _ = TestSupport.waitUntil(timeout: 20) {
            port = Self.listeningPort(sidecar.log) ?? 0
            return port != 0
        }
        try #require(port != 0, "\(sidecar.log)")
        let r = try TestSupport.run(
            bench, ["write", "--config", config, "--database", dir + "/app.db", "--transactions", "20", "--no-upload"])
        #expect(r.status == 0, "\(r)")
        let base = "http://127.0.0.1:\(port)"
        var json = ""
        let shipped = TestSupport.waitUntil(timeout: 20) {
            json = (try? Curl.get(base + "/status.json", user: "ops:pw").body) ?? ""
            return json.contains("\"lagTransactions\" : 0") && json.contains("\"lastUpload\"")
        }
        #expect(shipped, "\(json)\n\(sidecar.log)")
        #expect(try Curl.get(base + "/status.json").status == 401)
        #expect(try Curl.get(base + "/", user: "ops:pw").body.contains("The database is healthy"))
        kill(sidecar.process.processIdentifier, SIGTERM)
        sidecar.process.waitUntilExit()
        #expect(sidecar.process.terminationStatus == 0, "\(sidecar.log)")
    }

    @Test func sidecarRefusesAnOpenPageOffLoopback() throws {
        guard let replicate = TestSupport.builtProduct("vfs-replicate") else {
            Issue.record("vfs-replicate is not built next to the tests")
            return
        }
        let f = try StatusFixture(start: false)
        var env = TestSupport.childEnvironment()
        env["VFS_STATUS_USER"] = nil
        env["VFS_STATUS_PASSWORD"] = nil
        var r = try TestSupport.run(
            replicate, ["--config", f.configPath, "--http", "0.0.0.0:0", "--http-no-auth"], environment: env)
        #expect(r.status != 0 && r.stderr.contains("loopback"), "\(r)")
        r = try TestSupport.run(replicate, ["--config", f.configPath, "--http", "127.0.0.1:0"], environment: env)
        #expect(r.status != 0 && r.stderr.contains("VFS_STATUS_USER"), "\(r)")
        r = try TestSupport.run(
            replicate, ["--config", f.configPath, "--once", "--http", "127.0.0.1:0"], environment: env)
        #expect(r.status != 0 && r.stderr.contains("--once"), "\(r)")
    }

    /// Debian's `chromium`, if installed (scripts/setup does not install it: 124 MB of packages).
    static let chromium = ["/usr/bin/chromium", "/usr/bin/chromium-browser", "/usr/bin/google-chrome"]
        .first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Renders the dashboard in headless Chromium and keeps the screenshot in the test output
    /// directory. Skipped where no Chromium is installed (`apt-get install chromium`).
    @Test(.enabled(if: chromium != nil, "no chromium binary (apt-get install chromium)"))
    func screenshotInHeadlessChromium() throws {
        let chromium = try #require(Self.chromium)
        // One database shipping, one only capturing (no uploader: lag grows, it is unhealthy).
        let shipping = try replicatedDatabase()
        let stuck = try StatusFixture(start: false)
        let config = ReplicationConfig(databases: shipping.config.databases + stuck.config.databases)
        let page = StatusPage(
            config: config, options: StatusPageOptions(auth: .disabled, historyInterval: .milliseconds(100)))
        let a = try shipping.open()
        let b = try stuck.open()
        for _ in 0..<20 {
            try shipping.write(a, 2)
            try stuck.write(b, 1)
            Thread.sleep(forTimeInterval: 0.1)
        }
        let server = try RunningServer { onListening in
            let server = try StatusPageServer(page: page, address: "127.0.0.1:0", onListening: onListening)
            return { try await server.run() }
        }
        defer { server.stop() }
        let out = TestOutput.directory + "/dashboard.png"
        unlink(out)
        let profile = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: profile) }
        let r = try TestSupport.run(
            chromium,
            [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--user-data-dir=\(profile)", "--window-size=1280,800", "--screenshot=\(out)",
                "http://127.0.0.1:\(server.port)/",
            ])
        #expect(FileManager.default.fileExists(atPath: out), "\(r)")
        let png = try TestSupport.readFile(out)
        #expect(png.count > 5000 && png.starts(with: [0x89, 0x50, 0x4E, 0x47]), "not a PNG screenshot")
        print("DashboardTests: screenshot at \(out)")
    }

    static func listeningPort(_ log: String) -> Int? {
        guard let range = log.range(of: "http.port=") else { return nil }
        return Int(log[range.upperBound...].prefix { $0.isNumber })
    }
}
