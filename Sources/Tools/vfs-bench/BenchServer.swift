import Foundation
import Logging
import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// The S3 server the suite runs against, taken from the environment `benchmarks/run` sets:
/// `VFS_BENCH_S3_ENDPOINT` (http://127.0.0.1:PORT), `VFS_BENCH_METRICS_URL` (SeaweedFS's
/// Prometheus endpoint, which counts requests per bucket and type on the server side),
/// `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY`, and `VFS_BENCH_LITESTREAM` (the litestream
/// binary, default `.venv/bin/litestream`).
struct BenchServer: Sendable {
    var endpoint: String
    var metricsURL: String
    var accessKeyID: String
    var secretAccessKey: String
    var litestream: String
    let region = "us-east-1"

    static func fromEnvironment() throws -> BenchServer {
        let env = ProcessInfo.processInfo.environment
        guard let endpoint = env["VFS_BENCH_S3_ENDPOINT"], let metrics = env["VFS_BENCH_METRICS_URL"],
            let key = env["AWS_ACCESS_KEY_ID"], let secret = env["AWS_SECRET_ACCESS_KEY"]
        else {
            throw BenchError(
                "set VFS_BENCH_S3_ENDPOINT, VFS_BENCH_METRICS_URL, AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                    + "(benchmarks/run starts a SeaweedFS and sets them)")
        }
        let litestream = env["VFS_BENCH_LITESTREAM"] ?? FileManager.default.currentDirectoryPath + "/.venv/bin/litestream"
        return BenchServer(
            endpoint: endpoint, metricsURL: metrics, accessKeyID: key, secretAccessKey: secret, litestream: litestream)
    }

    var credentials: S3Credentials { S3Credentials(accessKeyID: accessKeyID, secretAccessKey: secretAccessKey) }

    func client(bucket: String) throws -> S3Client {
        var options = S3ClientOptions(endpoint: endpoint, region: region, forcePathStyle: true)
        options.retry = S3RetryPolicy(maxAttempts: 3, baseDelay: .milliseconds(50), maxDelay: .milliseconds(500))
        return try S3Client(bucket: bucket, credentials: credentials, options: options)
    }

    /// Creates a bucket named `<hint>-<random>`: request counts are kept per bucket, so every
    /// configuration gets its own.
    func makeBucket(_ hint: String) throws -> String {
        let name = "\(hint.lowercased())-\(String(UInt64.random(in: 0...UInt64.max), radix: 36))"
        try client(bucket: name).createBucket()
        return name
    }

    func replicaConfig(bucket: String, prefix: String) -> ReplicaConfig {
        ReplicaConfig(
            kind: .s3(bucket: bucket, prefix: prefix), endpoint: endpoint, region: region, forcePathStyle: true,
            accessKeyID: accessKeyID, secretAccessKey: secretAccessKey)
    }

    /// Requests the server counted for `bucket` by type (PUT, GET, LIST, DELETE, ...), every
    /// status code included.
    func requestCounts(bucket: String) throws -> RequestCounts {
        let result = try runTool("/usr/bin/curl", ["-sS", "--max-time", "10", "--noproxy", "*", metricsURL])
        guard result.status == 0 else { throw BenchError("reading \(metricsURL): \(result.output)") }
        var counts = RequestCounts()
        for line in result.output.split(separator: "\n")
        where line.hasPrefix("SeaweedFS_s3_request_total{") && line.contains("bucket=\"\(bucket)\"") {
            guard let typeStart = line.range(of: "type=\""), let close = line.lastIndex(of: "}"),
                let value = Double(line[line.index(after: close)...].trimmingCharacters(in: .whitespaces))
            else { continue }
            let type = line[typeStart.upperBound...].prefix { $0 != "\"" }
            counts.byType[String(type), default: 0] += Int(value)
        }
        return counts
    }

    /// Sum of the sizes of every object under `prefix` in `bucket` (one or more LIST requests).
    func storedBytes(bucket: String, prefix: String) throws -> (objects: Int, bytes: Int64) {
        let listed = try client(bucket: bucket).listAllObjects(prefix: prefix)
        return (listed.objects.count, listed.objects.reduce(0) { $0 + $1.size })
    }
}

/// Server-side request counts by type.
struct RequestCounts: Codable, Sendable {
    var byType: [String: Int] = [:]

    subscript(_ type: String) -> Int { byType[type] ?? 0 }

    /// Class A on R2: writes and listings (PUT, POST multipart calls, LIST).
    var classA: Int { self["PUT"] + self["POST"] + self["LIST"] }
    /// Class B on R2: reads (GET, HEAD).
    var classB: Int { self["GET"] + self["HEAD"] }
    var total: Int { byType.values.reduce(0, +) }

    static func - (a: RequestCounts, b: RequestCounts) -> RequestCounts {
        var out = RequestCounts()
        for (k, v) in a.byType { out.byType[k] = v - (b.byType[k] ?? 0) }
        return out
    }
}

/// Runs a program to completion; output is standard output and error together.
func runTool(_ path: String, _ arguments: [String], environment: [String: String]? = nil) throws -> (
    status: Int32, output: String
) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    process.standardInput = FileHandle.nullDevice
    try process.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self))
}

/// Litestream 0.5 replicating databases to the bench server, as its users run it
/// (`litestream replicate -config FILE`, default intervals).
final class LitestreamProcess {
    let configPath: String
    let logPath: String
    private let process = Process()

    /// Writes the config (one S3 replica per database) and starts `litestream replicate`.
    init(server: BenchServer, databases: [(path: String, bucket: String, prefix: String)], directory: String) throws {
        guard FileManager.default.isExecutableFile(atPath: server.litestream) else {
            throw BenchError("litestream not found at \(server.litestream) (run scripts/setup, or set VFS_BENCH_LITESTREAM)")
        }
        configPath = directory + "/litestream.yml"
        logPath = directory + "/litestream.log"
        var yaml = "dbs:\n"
        for db in databases {
            yaml += """
                  - path: \(db.path)
                    replicas:
                      - type: s3
                        bucket: \(db.bucket)
                        path: \(db.prefix)
                        endpoint: \(server.endpoint)
                        region: \(server.region)
                        force-path-style: true
                        access-key-id: \(server.accessKeyID)
                        secret-access-key: \(server.secretAccessKey)

                """
        }
        try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
        process.executableURL = URL(fileURLWithPath: server.litestream)
        process.arguments = ["replicate", "-config", configPath]
        process.environment = LitestreamProcess.environment()
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        try process.run()
        try? log.close()
    }

    /// Our environment without AWS_CA_BUNDLE (Litestream refuses to start with it set).
    static func environment() -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["AWS_CA_BUNDLE"] = nil
        return env
    }

    /// Waits until Litestream has put something into `bucket` (its first snapshot), so timed
    /// windows do not include its start-up.
    func waitForFirstUpload(server: BenchServer, bucket: String, prefix: String, timeout: Double = 30) throws {
        let client = try server.client(bucket: bucket)
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            guard process.isRunning else { throw BenchError("litestream exited: \(log.suffix(2000))") }
            if let page = try? client.listObjects(prefix: prefix + "/", maxKeys: 1), !page.objects.isEmpty { return }
            usleep(100_000)
        }
        throw BenchError("litestream uploaded nothing to \(bucket)/\(prefix) in \(Int(timeout)) s: \(log.suffix(2000))")
    }

    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// SIGTERM (Litestream syncs what it has, then exits), SIGKILL after 20 s.
    func stop() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGTERM)
        let deadline = Date().addingTimeInterval(20)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}

/// Our replicator for one or more databases on the bench server.
func startReplicator(
    server: BenchServer, databases: [(path: String, bucket: String, prefix: String, maxDelay: Duration)],
    observers: [any UploaderObserver] = []
) throws -> Replicator {
    let config = ReplicationConfig(
        databases: databases.map {
            DatabaseConfig(
                path: $0.path, replica: server.replicaConfig(bucket: $0.bucket, prefix: $0.prefix), maxDelay: $0.maxDelay)
        })
    var logger = Logger(label: "vfs-bench")
    logger.logLevel = .warning  // the tables are the output; warnings and errors still show
    let replicator = try Replicator(config: config, logger: logger, observers: observers)
    replicator.start()
    return replicator
}

/// Writes a replication config file for `vfs-rebuild --config`.
func writeReplicationConfig(
    server: BenchServer, path: String, databases: [(path: String, bucket: String, prefix: String)]
) throws {
    var yaml = "databases:\n"
    for db in databases {
        yaml += """
              - path: \(db.path)
                replica:
                  url: s3://\(db.bucket)/\(db.prefix)
                  endpoint: \(server.endpoint)
                  region: \(server.region)
                  force-path-style: true
                  access-key-id: \(server.accessKeyID)
                  secret-access-key: \(server.secretAccessKey)

            """
    }
    try yaml.write(toFile: path, atomically: true, encoding: .utf8)
}
