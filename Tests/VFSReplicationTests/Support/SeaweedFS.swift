import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// A real S3 server for the integration tests: SeaweedFS `weed mini` (from `.venv/bin/weed`,
/// installed by scripts/setup) on 127.0.0.1, with SigV4 authentication enforced.
///
/// ```swift
/// let server = try SeaweedFS.shared()           // started once per test process, lazily
/// let bucket = try server.makeBucket()          // a fresh bucket for this test
/// let s3 = try server.client(bucket: bucket)    // an S3Client with the server's keys
/// ```
///
/// Every port is picked free on loopback; data lives in a temporary directory; statistics
/// reporting is off (`-master.telemetry=false`, and its URL points at a closed loopback port),
/// so nothing leaves the machine. `weed mini` takes seconds to stop, so the shared servers
/// (plain HTTP, and HTTPS with a self-signed certificate) are stopped once, when the test
/// process exits (SIGTERM, then waiting for the exit); a watchdog shell stops them if the test
/// process dies without running its exit handlers.
final class SeaweedFS: @unchecked Sendable {
    static let accessKeyID = "VFSREPLTESTKEY"
    static let secretAccessKey = "vfsrepl-test-secret-key-0123456789"
    /// Created at startup from S3_BUCKET.
    static let defaultBucket = "vfsrepl-default"

    let directory: String
    /// `http://127.0.0.1:<port>`.
    let endpoint: String
    /// `https://127.0.0.1:<port>` when started with TLS.
    let httpsEndpoint: String?
    /// The self-signed certificate the HTTPS port serves (trust it as a CA file).
    let certificateFile: String?
    let metricsPort: Int
    let logPath: String
    private let process: Process
    private let watchdog: Process?
    private let lock = NSLock()
    private var stopped = false

    static var weedPath: String? {
        let path = TestSupport.packageRoot + "/.venv/bin/weed"
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }

    // MARK: Shared servers

    private static let sharedHTTP = Shared(https: false)
    private static let sharedTLS = Shared(https: true)

    /// The process-wide plain-HTTP server, started on first use.
    static func shared() throws -> SeaweedFS { try sharedHTTP.get() }

    /// The process-wide server that also serves HTTPS with a self-signed certificate.
    static func sharedHTTPS() throws -> SeaweedFS { try sharedTLS.get() }

    private final class Shared: @unchecked Sendable {
        let https: Bool
        let lock = NSLock()
        var server: SeaweedFS?
        var failure: String?

        init(https: Bool) { self.https = https }

        func get() throws -> SeaweedFS {
            lock.lock()
            defer { lock.unlock() }
            if let server { return server }
            if let failure { throw TestFailure(failure) }
            do {
                let server = try SeaweedFS(https: https)
                self.server = server
                SeaweedFS.registerExitHandler()
                return server
            } catch {
                failure = "SeaweedFS did not start: \(error)"
                throw TestFailure(failure!)
            }
        }

        func stop() {
            lock.lock()
            let server = self.server
            lock.unlock()
            server?.stop()
        }
    }

    private static let exitHandler: Void = {
        atexit {
            // Stop both at once: each takes seconds.
            let http = Thread { SeaweedFS.sharedHTTP.stop() }
            http.start()
            SeaweedFS.sharedTLS.stop()
            while !http.isFinished { usleep(50_000) }
        }
    }()

    private static func registerExitHandler() { _ = exitHandler }

    // MARK: Starting and stopping

    /// Starts a server and waits until its S3 API answers signed requests (up to 90 s).
    init(https: Bool = false) throws {
        guard let weed = SeaweedFS.weedPath else {
            throw TestFailure("SeaweedFS not found at .venv/bin/weed: run scripts/setup")
        }
        directory = try TestSupport.makeTemporaryDirectory()
        let reservation = PortReservation()
        // weed's plugin worker dials the admin port + 10000 whatever -admin.port.grpc says: keep
        // that pair free and consistent.
        let admin = try reservation.reservePair(offset: 10000)
        let adminGRPC = admin + 10000
        let ports = try (0..<(https ? 11 : 10)).map { _ in try reservation.reserve(0) }
        reservation.release()
        let (master, masterGRPC, volume, volumeGRPC, filer, filerGRPC) =
            (ports[0], ports[1], ports[2], ports[3], ports[4], ports[5])
        let (s3, s3GRPC, metrics, closed) = (ports[6], ports[7], ports[8], ports[9])
        metricsPort = metrics
        endpoint = "http://127.0.0.1:\(s3)"
        logPath = directory + "/weed.log"

        var arguments = [
            "mini", "-dir=\(directory)/data", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            "-master.telemetry=false", "-master.telemetry.url=http://127.0.0.1:\(closed)/",
            "-master.port=\(master)", "-master.port.grpc=\(masterGRPC)",
            "-volume.port=\(volume)", "-volume.port.grpc=\(volumeGRPC)",
            "-filer.port=\(filer)", "-filer.port.grpc=\(filerGRPC)",
            "-s3.port=\(s3)", "-s3.port.grpc=\(s3GRPC)", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-admin.port=\(admin)", "-admin.port.grpc=\(adminGRPC)", "-admin.ui=false",
            "-webdav=false", "-metricsPort=\(metrics)", "-metricsIp=127.0.0.1",
            // Virtual-host addressing as `<bucket>.localhost` (libcurl resolves *.localhost to
            // loopback itself); path-style requests to 127.0.0.1 keep working.
            "-s3.domainName=localhost",
        ]
        if https {
            let cert = directory + "/cert.pem"
            let key = directory + "/key.pem"
            let made = try TestSupport.run(
                "/usr/bin/openssl",
                [
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                    "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
                ])
            guard made.status == 0 else { throw TestFailure("openssl req -x509 failed: \(made)") }
            arguments += ["-s3.port.https=\(ports[10])", "-s3.cert.file=\(cert)", "-s3.key.file=\(key)"]
            httpsEndpoint = "https://127.0.0.1:\(ports[10])"
            certificateFile = cert
        } else {
            httpsEndpoint = nil
            certificateFile = nil
        }
        try FileManager.default.createDirectory(atPath: directory + "/data", withIntermediateDirectories: true)

        process = Process()
        process.executableURL = URL(fileURLWithPath: weed)
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        // A minimal environment: the keys and bucket it should create, nothing else of ours.
        process.environment = [
            "PATH": "/usr/bin:/bin", "HOME": directory, "TMPDIR": directory,
            "AWS_ACCESS_KEY_ID": SeaweedFS.accessKeyID, "AWS_SECRET_ACCESS_KEY": SeaweedFS.secretAccessKey,
            "S3_BUCKET": SeaweedFS.defaultBucket,
        ]
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? log.close()

        // Stops the server if this test process dies without running exit handlers.
        let guardian = Process()
        guardian.executableURL = URL(fileURLWithPath: "/bin/sh")
        guardian.arguments = [
            "-c",
            "while kill -0 \(getpid()) 2>/dev/null; do sleep 1; done; "
                + "kill -TERM \(process.processIdentifier) 2>/dev/null",
        ]
        guardian.standardInput = FileHandle.nullDevice
        guardian.standardOutput = FileHandle.nullDevice
        guardian.standardError = FileHandle.nullDevice
        try? guardian.run()
        watchdog = guardian.isRunning ? guardian : nil

        do {
            try waitUntilReady(timeout: 90)
        } catch {
            stop()
            throw error
        }
    }

    private func waitUntilReady(timeout: Double) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var last = "no answer yet"
        var endpoints = [endpoint]
        if let httpsEndpoint { endpoints.append(httpsEndpoint) }
        for url in endpoints {
            while true {
                guard process.isRunning else {
                    throw TestFailure(
                        "weed mini exited (status \(process.terminationStatus)); log:\n\(log.suffix(4000))")
                }
                do {
                    var options = S3ClientOptions(endpoint: url, region: "us-east-1", forcePathStyle: true)
                    options.caFile = certificateFile
                    options.retry = S3RetryPolicy(maxAttempts: 1)
                    options.connectTimeout = .seconds(2)
                    options.lowSpeedTime = .seconds(5)
                    let probe = try S3Client(
                        bucket: SeaweedFS.defaultBucket, credentials: SeaweedFS.credentials, options: options)
                    _ = try probe.listObjects(prefix: "", maxKeys: 1)
                    break
                } catch {
                    last = "\(error)"
                }
                if Date() >= deadline {
                    throw TestFailure(
                        "SeaweedFS at \(url) not ready after \(Int(timeout)) s: \(last)\nlog:\n\(log.suffix(4000))")
                }
                usleep(200_000)
            }
        }
    }

    /// SIGTERM, then waits for the exit (SIGKILL after 60 s). Idempotent.
    func stop() {
        lock.lock()
        defer { lock.unlock() }
        guard !stopped else { return }
        stopped = true
        if let watchdog, watchdog.isRunning {
            kill(watchdog.processIdentifier, SIGTERM)
            watchdog.waitUntilExit()
        }
        if process.isRunning {
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(60)
            while process.isRunning && Date() < deadline { usleep(50_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }
        try? FileManager.default.removeItem(atPath: directory)
    }

    var isRunning: Bool { process.isRunning }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    // MARK: Using it

    static var credentials: S3Credentials {
        S3Credentials(accessKeyID: accessKeyID, secretAccessKey: secretAccessKey)
    }

    /// Creates a bucket with a unique name (`<hint>-<random>`) and returns its name.
    func makeBucket(_ hint: String = "t") throws -> String {
        let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
        var name = "\(hint.lowercased())-\(suffix)"
        if name.count > 63 { name = String(name.prefix(63)) }
        try client(bucket: name).createBucket()
        return name
    }

    /// Options for this server (path-style, region us-east-1, quick retries), HTTPS when asked.
    func options(https: Bool = false) -> S3ClientOptions {
        var options = S3ClientOptions(
            endpoint: https ? httpsEndpoint : endpoint, region: "us-east-1", forcePathStyle: true,
            caFile: https ? certificateFile : nil)
        options.retry = S3RetryPolicy(maxAttempts: 4, baseDelay: .milliseconds(50), maxDelay: .milliseconds(500))
        return options
    }

    func client(
        bucket: String, https: Bool = false, credentials: S3Credentials = SeaweedFS.credentials,
        adjust: (inout S3ClientOptions) -> Void = { _ in }
    ) throws -> S3Client {
        var options = options(https: https)
        adjust(&options)
        return try S3Client(bucket: bucket, credentials: credentials, options: options)
    }

    /// Writes `dir/replication.yml`: database `app.db`, replicated to `s3://bucket/app` at
    /// `endpoint` (this server, or a proxy in front of it) with the test credentials.
    static func writeReplicationConfig(
        dir: String, bucket: String, endpoint: String, maxDelay: String? = nil, extra: String = ""
    ) throws -> String {
        let path = dir + "/replication.yml"
        try """
        databases:
          - path: app.db
        \(maxDelay.map { "    max-delay: \($0)\n" } ?? "")    replica:
              url: s3://\(bucket)/app
              endpoint: \(endpoint)
              region: us-east-1
              force-path-style: true
              access-key-id: \(SeaweedFS.accessKeyID)
              secret-access-key: \(SeaweedFS.secretAccessKey)
        \(extra)
        """.write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// A replica configuration for `s3://bucket/prefix` on this server.
    func replicaConfig(bucket: String, prefix: String, https: Bool = false) -> ReplicaConfig {
        ReplicaConfig(
            kind: .s3(bucket: bucket, prefix: prefix), endpoint: https ? httpsEndpoint : endpoint, region: "us-east-1",
            forcePathStyle: true, accessKeyID: SeaweedFS.accessKeyID, secretAccessKey: SeaweedFS.secretAccessKey,
            caFile: https ? certificateFile : nil)
    }

    /// The server's Prometheus metrics (request counts by type and bucket), read with curl.
    func metrics() throws -> String {
        let result = try TestSupport.run(
            "/usr/bin/curl", ["-sS", "--max-time", "5", "--noproxy", "*", "http://127.0.0.1:\(metricsPort)/metrics"])
        guard result.status == 0 else { throw TestFailure("metrics: \(result)") }
        return result.stdout
    }

    /// Requests the server counted for `bucket`, by its type (PUT, GET, LIST, DELETE; HEAD
    /// counts as GET, DeleteObjects as DELETE), all status codes together.
    func requestCounts(bucket: String) throws -> [String: Int] {
        var counts: [String: Int] = [:]
        for line in try metrics().split(separator: "\n")
        where line.hasPrefix("SeaweedFS_s3_request_total{") && line.contains("bucket=\"\(bucket)\"") {
            guard let typeStart = line.range(of: "type=\""), let close = line.lastIndex(of: "}"),
                let value = Int(line[line.index(after: close)...].trimmingCharacters(in: .whitespaces))
            else { continue }
            let type = line[typeStart.upperBound...].prefix { $0 != "\"" }
            counts[String(type), default: 0] += value
        }
        return counts
    }

    // MARK: Ports

    /// `count` distinct ports that are free on 127.0.0.1 right now (all bound at once, then
    /// released, so they differ from each other).
    static func freePorts(_ count: Int) throws -> [Int] {
        let reservation = PortReservation()
        defer { reservation.release() }
        return try (0..<count).map { _ in try reservation.reserve(0) }
    }

    /// Holds bound sockets so that the ports picked differ from each other until released.
    final class PortReservation {
        private var sockets: [Int32] = []

        /// Binds `port` (0: any free port) on 127.0.0.1 and returns the port, or throws.
        func reserve(_ port: Int) throws -> Int {
            let s = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            guard s >= 0 else { throw TestFailure("socket: errno \(errno)") }
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            address.sin_port = UInt16(port).bigEndian
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(s, $0, length) }
            }
            guard bound == 0 else {
                close(s)
                throw TestFailure("bind 127.0.0.1:\(port): errno \(errno)")
            }
            sockets.append(s)
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &length) }
            }
            return Int(UInt16(bigEndian: address.sin_port))
        }

        /// A free port `p` (below the ephemeral range) with `p + offset` free too.
        func reservePair(offset: Int) throws -> Int {
            for _ in 0..<200 {
                let port = Int.random(in: 20000..<(32768 - offset))
                guard (try? reserve(port)) != nil else { continue }
                if (try? reserve(port + offset)) != nil { return port }
            }
            throw TestFailure("no free pair of ports \(offset) apart")
        }

        func release() {
            for s in sockets { close(s) }
            sockets = []
        }
    }
}
