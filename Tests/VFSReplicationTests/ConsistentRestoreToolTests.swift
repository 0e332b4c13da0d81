import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// `vfs-rebuild --config FILE --all --timestamp T`: an app's four databases, written through the
/// replicated VFS at different times, come back to one instant T between their writes, each to
/// its newest restore point at or before T (exact contents), with the skew reported; nothing is
/// written when one of them cannot be. Directory replicas and SeaweedFS (S3); the built tool.
@Suite(
    "vfs-rebuild --all --timestamp",
    .serialized,
    .enabled(if: TestSupport.builtProduct("vfs-rebuild") != nil, "vfs-rebuild binary not built next to the tests"),
    .enabled(if: TestSupport.sqlite3Path != nil, "sqlite3 CLI not found")
)
struct ConsistentRestoreToolTests {
    static let names = ["primary", "cache", "queue", "cable"]

    /// Four databases replicated by a Replicator in this process; `replica(name)` is each one's
    /// replica block (indented YAML lines).
    final class App {
        let dir: String
        let config: String
        let replicator: Replicator
        var connections: [String: Conn] = [:]

        init(dir: String, replica: (String) -> String) throws {
            self.dir = dir
            config = dir + "/replication.yml"
            var yaml = "databases:\n"
            for name in ConsistentRestoreToolTests.names {
                yaml += "  - path: \(name).sqlite3\n    max-delay: 10ms\n    replica:\n" + replica(name) + "\n"
            }
            try yaml.write(toFile: config, atomically: true, encoding: .utf8)
            replicator = try Replicator(config: try ReplicationConfig.load(path: config))
            replicator.start()
        }

        func path(_ name: String) -> String { dir + "/\(name).sqlite3" }

        /// Commits a few rows to one database and waits until they are in its replica; returns
        /// its .dump at that point.
        func write(_ name: String, _ label: String) throws -> String {
            // Created at its first write: the database has no restore point before it.
            let c =
                try connections[name]
                ?? {
                    let c = try Conn(path(name))
                    try c.exec("PRAGMA journal_mode=WAL")
                    try c.exec("CREATE TABLE events(id INTEGER PRIMARY KEY, what TEXT)")
                    connections[name] = c
                    return c
                }()
            for i in 0..<3 { try c.exec("INSERT INTO events(what) VALUES ('\(name) \(label) \(i)')") }
            try replicator.flush(timeout: .seconds(60))
            return try TestSupport.dump(path(name))
        }

        func stop() {
            connections = [:]
            replicator.shutdown(timeout: .seconds(10))
        }
    }

    /// The history: primary, cache, queue and cable written 150 ms apart (state A), then T, then
    /// all but the cache written again (state B). Returns the A dumps, T, and a time between
    /// primary's and cache's A (when only primary had a restore point).
    static func writeHistory(_ app: App) throws -> (atT: [String: String], t: Date, early: Date) {
        var atT: [String: String] = [:]
        var early = Date()
        for (i, name) in names.enumerated() {
            atT[name] = try app.write(name, "A")
            usleep(150_000)
            if i == 0 { early = Date() }
        }
        let t = Date()
        usleep(150_000)
        for name in names where name != "cache" { _ = try app.write(name, "B") }
        return (atT, t, early)
    }

    static func rebuild(_ arguments: [String]) throws -> TestSupport.ProcessResult {
        try TestSupport.run(
            TestSupport.builtProduct("vfs-rebuild")!, arguments, environment: TestSupport.childEnvironment())
    }

    static func iso(_ date: Date) -> String { RestorePlanner.format(date) }

    /// The skew the tool must report: the spread of each replica's own plan to T.
    static func expectedSkew(_ app: App, _ t: Date) throws -> Double {
        let config = try ReplicationConfig.load(path: app.config)
        var times: [Date] = []
        for db in config.databases {
            times.append(try ReplicaRestorer.plan(try makeReplicaClient(db.replica), target: .timestamp(t)).timestamp!)
        }
        return times.max()!.timeIntervalSince(times.min()!)
    }

    static func contents(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
    }

    /// The checks shared by both kinds of replica.
    static func checkRestoreToOneInstant(_ app: App, _ history: (atT: [String: String], t: Date, early: Date)) throws {
        let out = app.dir + "/restored"
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let t = iso(history.t)

        // The plan only: every database, its TXID and time, the skew; nothing written.
        var r = try rebuild([
            "--config", app.config, "--all", "--timestamp", t, "--dry-run", "--json", "--output-dir", out,
        ])
        #expect(r.status == 0, "\(r)")
        #expect(contents(out).isEmpty, "a dry run writes nothing")
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        let skew = json?["skew_seconds"] as? Double
        let expected = try expectedSkew(app, history.t)
        #expect(skew != nil && abs(skew! - expected) < 0.0005, "skew \(String(describing: skew)) != \(expected): \(r)")
        // Primary's A was written 450 ms before cable's: the skew is that spread, not zero.
        #expect(expected > 0.3, "\(expected)")
        let databases = (json?["databases"] as? [[String: Any]]) ?? []
        #expect(databases.count == 4, "\(r)")
        for db in databases {
            #expect(db["status"] as? String == "planned")
            #expect((db["seconds_before_target"] as? Double ?? -1) >= 0, "\(db)")
            #expect(db["txid_hex"] as? String != nil && db["timestamp"] as? String != nil, "\(db)")
        }

        // The restore: each database exactly as it was at T.
        r = try rebuild(["--config", app.config, "--all", "--timestamp", t, "--output-dir", out, "-q"])
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.contains("plan: 4 databases to time \(t); skew "), "\(r)")
        #expect(r.stdout.contains("4 restored to time \(t), 0 skipped"), "\(r)")
        for name in names {
            #expect(r.stdout.contains("  \(app.path(name)): TXID "), "\(r)")
            #expect(try TestSupport.dump(out + "/\(name).sqlite3") == history.atT[name], "\(name) at T")
        }
        // Written again (same outputs): refused without --force, before any is touched.
        let before = try TestSupport.readFile(out + "/primary.sqlite3")
        r = try rebuild(["--config", app.config, "--all", "--timestamp", t, "--output-dir", out, "-q"])
        #expect(r.status != 0, "\(r)")
        #expect(r.stderr.contains("4 of 4 cannot be written; nothing was written"), "\(r)")
        #expect(r.stderr.contains("output \(out)/cable.sqlite3 already exists"), "\(r)")
        #expect(try TestSupport.readFile(out + "/primary.sqlite3") == before)

        // Only primary had a restore point at `early`: the three others are named, nothing written.
        let empty = app.dir + "/early"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        r = try rebuild(["--config", app.config, "--all", "--timestamp", iso(history.early), "--output-dir", empty])
        #expect(r.status != 0, "\(r)")
        #expect(r.stderr.contains("3 of 4 cannot be; nothing was written"), "\(r)")
        for name in ["cache", "queue", "cable"] {
            #expect(r.stderr.contains("\(app.path(name)): "), "\(name): \(r)")
        }
        #expect(r.stderr.contains("no restore point at or before \(iso(history.early))"), "\(r)")
        #expect(contents(empty).isEmpty)
    }

    @Test func directoryReplicas() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let app = try App(dir: dir) { "      url: file://\(dir)/replicas/\($0)" }
            defer { app.stop() }
            let history = try Self.writeHistory(app)
            try Self.checkRestoreToOneInstant(app, history)

            // In place while the app runs: refused, naming the live database; nothing replaced.
            let live = try TestSupport.dump(app.path("primary"))
            let r = try Self.rebuild(["--config", app.config, "--all", "--timestamp", Self.iso(history.t), "--force"])
            #expect(r.status != 0, "\(r)")
            #expect(r.stderr.contains("\(app.path("primary")): database \(app.path("primary")) is in use"), "\(r)")
            #expect(try TestSupport.dump(app.path("primary")) == live)
            // --all (latest) into a folder while the app runs: each database as it is now.
            let now = dir + "/now"
            try FileManager.default.createDirectory(atPath: now, withIntermediateDirectories: true)
            let latest = try Self.rebuild(["--config", app.config, "--all", "--output-dir", now, "-q"])
            #expect(latest.status == 0, "\(latest)")
            for name in Self.names {
                #expect(try TestSupport.dump(now + "/\(name).sqlite3") == TestSupport.dump(app.path(name)), "\(name)")
            }
            // A dry run in place shows the plan, and says the real run would be refused.
            let dry = try Self.rebuild([
                "--config", app.config, "--all", "--timestamp", Self.iso(history.t), "--dry-run",
            ])
            #expect(dry.status != 0, "\(dry)")
            #expect(dry.stdout.hasPrefix("plan: 4 databases to time "), "\(dry)")
            #expect(dry.stderr.contains("4 of 4 cannot be written; nothing was written"), "\(dry)")
        }
    }

    @Test func s3Replicas() throws {
        guard SeaweedFS.weedPath != nil else { return }
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("instant")
        try TestSupport.withTemporaryDirectory { dir in
            let app = try App(dir: dir) { name in
                """
                      url: s3://\(bucket)/\(name)
                      endpoint: \(server.endpoint)
                      region: us-east-1
                      force-path-style: true
                      access-key-id: \(SeaweedFS.accessKeyID)
                      secret-access-key: \(SeaweedFS.secretAccessKey)
                """
            }
            defer { app.stop() }
            try Self.checkRestoreToOneInstant(app, try Self.writeHistory(app))
        }
    }
}
