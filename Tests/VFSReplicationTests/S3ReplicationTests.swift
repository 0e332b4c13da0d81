import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// The whole path against a real S3 server (SeaweedFS, SigV4 enforced): four databases written
/// by four processes at once, Litestream restoring our bucket, fencing of a second writer on
/// one prefix, wrong credentials and a stopped server, idle databases making no requests, and
/// faults injected by a proxy.
@Suite("S3 replication", .serialized)
struct S3ReplicationTests {
    private func s3YAML(_ server: SeaweedFS, bucket: String, prefix: String, endpoint: String? = nil,
                        secret: String = SeaweedFS.secretAccessKey) -> String {
        """
            replica:
              url: s3://\(bucket)/\(prefix)
              endpoint: \(endpoint ?? server.endpoint)
              region: us-east-1
              force-path-style: true
              access-key-id: \(SeaweedFS.accessKeyID)
              secret-access-key: \(secret)
        """
    }

    private func s3Client(_ server: SeaweedFS, bucket: String, prefix: String) throws -> S3ReplicaClient {
        try S3ReplicaClient(config: server.replicaConfig(bucket: bucket, prefix: prefix))
    }

    @Test func fourDatabasesFromFourProcessesRebuildEqual() throws {
        guard let bench = TestSupport.builtProduct("vfs-bench") else { Issue.record("vfs-bench is not built"); return }
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("four")
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let names = ["primary", "cache", "queue", "cable"]
        var yaml = "databases:\n"
        for name in names {
            yaml += "  - path: \(name).sqlite3\n" + s3YAML(server, bucket: bucket, prefix: name) + "\n"
            yaml += "    max-delay: \(name == "cache" ? "2s" : "100ms")\n"
        }
        try yaml.write(toFile: dir + "/replication.yml", atomically: true, encoding: .utf8)
        let shapes = ["primary": ["400", "2", "200"], "cache": ["100", "10", "2000"], "queue": ["600", "1", "300"], "cable": ["800", "1", "40"]]
        let procs = try names.map { name in
            let s = shapes[name]!
            return try TestSupport.BackgroundProcess(
                bench,
                ["write", "--config", dir + "/replication.yml", "--database", dir + "/\(name).sqlite3",
                 "--transactions", s[0], "--rows-per-transaction", s[1], "--payload-bytes", s[2]],
                logPath: dir + "/\(name).log")
        }
        for (name, p) in zip(names, procs) {
            p.process.waitUntilExit()
            #expect(p.process.terminationStatus == 0, "\(name): \((try? String(contentsOfFile: p.logPath, encoding: .utf8)) ?? "")")
        }
        for name in names {
            let out = dir + "/restored-\(name).db"
            let result = try ReplicaRestorer.restore(
                from: try s3Client(server, bucket: bucket, prefix: name), to: out, options: RestoreOptions(force: true))
            #expect(result.integrityChecked)
            #expect(try TestSupport.dump(out) == TestSupport.dump(dir + "/\(name).sqlite3"), "\(name)")
        }
    }

    @Test func litestreamRestoresOurBucketAndIdleMakesNoRequests() throws {
        guard let litestream = TestSupport.litestreamPath else { Issue.record("litestream is not installed"); return }
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("ls")
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try ("databases:\n  - path: app.db\n" + s3YAML(server, bucket: bucket, prefix: "app") + "\n    max-delay: 50ms\n    levels:\n      - interval: 2s\n")
            .write(toFile: dir + "/replication.yml", atomically: true, encoding: .utf8)
        let replicator = try Replicator(config: try ReplicationConfig.load(path: dir + "/replication.yml"))
        replicator.start()
        defer { replicator.shutdown(timeout: .seconds(10)) }
        let c = try Conn(dir + "/app.db")
        try c.exec("PRAGMA journal_mode=WAL")
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        for _ in 0..<40 { try c.insertBlobs(2, bytes: 700) }
        try c.exec("UPDATE t SET x = NULL WHERE id % 3 = 0")
        try replicator.flush(timeout: .seconds(60))

        // Idle: no request reaches the server (counted by the server itself). First the level-1
        // compaction of what was just written runs (a 2 s level: work, not idleness); after it
        // every compaction slot finds nothing new.
        Thread.sleep(forTimeInterval: 3)
        let before = try server.requestCounts(bucket: bucket)
        Thread.sleep(forTimeInterval: 3)
        let after = try server.requestCounts(bucket: bucket)
        #expect(before == after, "an idle database made requests: \(before) -> \(after)")

        let lsConfig = dir + "/litestream.yml"
        try """
        dbs:
          - path: \(dir)/unused.db
            replicas:
              - type: s3
                bucket: \(bucket)
                path: app
                endpoint: \(server.endpoint)
                region: us-east-1
                force-path-style: true
                access-key-id: \(SeaweedFS.accessKeyID)
                secret-access-key: \(SeaweedFS.secretAccessKey)
        """.write(toFile: lsConfig, atomically: true, encoding: .utf8)
        var env = TestSupport.childEnvironment()
        env["AWS_ACCESS_KEY_ID"] = SeaweedFS.accessKeyID
        env["AWS_SECRET_ACCESS_KEY"] = SeaweedFS.secretAccessKey
        let out = dir + "/litestream-restored.db"
        let r = try TestSupport.run(
            litestream, ["restore", "-config", lsConfig, "-o", out, "-replica", "s3", dir + "/unused.db"], environment: env)
        if r.status != 0 {
            // Older flag form: restore straight from the replica URL with the endpoint in the environment.
            let r2 = try TestSupport.run(
                litestream,
                ["restore", "-o", out, "s3://\(bucket)/app?endpoint=\(server.endpoint)&region=us-east-1&forcePathStyle=true"],
                environment: env)
            #expect(r2.status == 0, "litestream restore failed:\n\(r)\n\(r2)")
        }
        #expect(try TestSupport.dump(out) == TestSupport.dump(dir + "/app.db"))
    }

    @Test func secondWriterOnOnePrefixIsFencedNothingInterleaved() throws {
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("fence")
        let dirs = try (0..<2).map { _ in try TestSupport.makeTemporaryDirectory() }
        defer { for d in dirs { try? FileManager.default.removeItem(atPath: d) } }
        var replicators: [Replicator] = []
        defer { for r in replicators { r.shutdown(timeout: .seconds(5)) } }
        var conns: [Conn] = []
        for d in dirs {
            try ("databases:\n  - path: app.db\n" + s3YAML(server, bucket: bucket, prefix: "shared") + "\n    max-delay: 20ms\n")
                .write(toFile: d + "/replication.yml", atomically: true, encoding: .utf8)
            let r = try Replicator(config: try ReplicationConfig.load(path: d + "/replication.yml"))
            r.start()
            replicators.append(r)
            let c = try Conn(d + "/app.db")
            try c.exec("PRAGMA journal_mode=WAL")
            try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT)")
            conns.append(c)
            try c.exec("INSERT INTO t(who) VALUES ('\(d)')")
            if replicators.count == 1 { try r.flush(timeout: .seconds(30)) }
        }
        do {
            try replicators[1].flush(timeout: .seconds(30))
            Issue.record("the second writer must be fenced")
        } catch let e as ReplicationError {
            #expect(e.code == .fenced, "\(e)")
        }
        #expect(replicators[1].status()[0].fenced)
        try conns[0].exec("INSERT INTO t(who) VALUES ('first again')")
        try replicators[0].flush(timeout: .seconds(30))
        let out = dirs[0] + "/restored.db"
        _ = try ReplicaRestorer.restore(
            from: try s3Client(server, bucket: bucket, prefix: "shared"), to: out, options: RestoreOptions(force: true))
        #expect(try TestSupport.dump(out) == TestSupport.dump(dirs[0] + "/app.db"))
    }

    @Test func wrongCredentialsAndStoppedServerAreClearAndDataArrivesLater() throws {
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("creds")
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Wrong secret: the status names the problem.
        try ("databases:\n  - path: app.db\n" + s3YAML(server, bucket: bucket, prefix: "app", secret: "not-the-secret") + "\n    max-delay: 20ms\n")
            .write(toFile: dir + "/replication.yml", atomically: true, encoding: .utf8)
        do {
            let r = try Replicator(config: try ReplicationConfig.load(path: dir + "/replication.yml"))
            r.start()
            let c = try Conn(dir + "/app.db")
            try c.exec("PRAGMA journal_mode=WAL")
            try c.exec("CREATE TABLE t(x)")
            try c.exec("INSERT INTO t VALUES (1)")
            #expect(TestSupport.waitUntil(timeout: 30) { r.status()[0].lastError != nil })
            let message = r.status()[0].lastError ?? ""
            #expect(message.contains("SignatureDoesNotMatch") || message.contains("InvalidAccessKeyId"), "\(message)")
            #expect(!message.contains("not-the-secret"), "secrets never appear in messages")
            r.shutdown(timeout: .seconds(2))
        }
        // An endpoint where nothing listens: connection refused, the app keeps committing.
        let dead = "http://127.0.0.1:\(try SeaweedFS.freePorts(1)[0])"
        try ("databases:\n  - path: app.db\n" + s3YAML(server, bucket: bucket, prefix: "app", endpoint: dead) + "\n    max-delay: 20ms\n")
            .write(toFile: dir + "/replication2.yml", atomically: true, encoding: .utf8)
        guard let bench = TestSupport.builtProduct("vfs-bench"), let replicate = TestSupport.builtProduct("vfs-replicate") else {
            Issue.record("tools not built")
            return
        }
        var r = try TestSupport.run(
            bench, ["write", "--config", dir + "/replication2.yml", "--database", dir + "/app.db", "--transactions", "20", "--no-upload"])
        #expect(r.status == 0, "\(r)")
        r = try TestSupport.run(replicate, ["--config", dir + "/replication2.yml", "--once", "--timeout", "3"])
        #expect(r.status != 0)
        #expect((r.stdout + r.stderr).lowercased().contains("refused") || (r.stdout + r.stderr).contains("connect"), "\(r)")
        // The right endpoint again: everything spooled arrives.
        try ("databases:\n  - path: app.db\n" + s3YAML(server, bucket: bucket, prefix: "app") + "\n    max-delay: 20ms\n")
            .write(toFile: dir + "/replication3.yml", atomically: true, encoding: .utf8)
        r = try TestSupport.run(replicate, ["--config", dir + "/replication3.yml", "--once", "--timeout", "60"])
        #expect(r.status == 0, "\(r)")
        let out = dir + "/restored.db"
        _ = try ReplicaRestorer.restore(
            from: try s3Client(server, bucket: bucket, prefix: "app"), to: out, options: RestoreOptions(force: true))
        #expect(try TestSupport.dump(out) == TestSupport.dump(dir + "/app.db"))
    }

    @Test func faultProxyInjectsErrorsResetsAndAnOutageNothingLost() throws {
        guard let bench = TestSupport.builtProduct("vfs-bench") else { Issue.record("vfs-bench is not built"); return }
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("faults")
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let upstream = server.endpoint.replacingOccurrences(of: "http://", with: "")
        let proxy = try TestSupport.BackgroundProcess(
            "/usr/bin/python3",
            [TestSupport.packageRoot + "/Tests/Fixtures/s3_fault_proxy.py", "--upstream", upstream,
             "--port-file", dir + "/port", "--stats", dir + "/stats.json", "--outage-file", dir + "/outage",
             "--error-rate", "0.15", "--reset-rate", "0.05", "--slow-rate", "0.05", "--slow-seconds", "1",
             "--truncate-rate", "0.05"],
            logPath: dir + "/proxy.log")
        defer { proxy.stop(timeout: 1) }  // it holds no state worth a graceful stop
        #expect(TestSupport.waitUntil(timeout: 10) { FileManager.default.fileExists(atPath: dir + "/port") })
        let port = try String(contentsOfFile: dir + "/port", encoding: .utf8)
        try ("databases:\n  - path: app.db\n" + s3YAML(server, bucket: bucket, prefix: "app", endpoint: "http://127.0.0.1:\(port)") + "\n    max-delay: 20ms\n")
            .write(toFile: dir + "/replication.yml", atomically: true, encoding: .utf8)
        let replicator = try Replicator(config: try ReplicationConfig.load(path: dir + "/replication.yml"))
        replicator.start()
        defer { replicator.shutdown(timeout: .seconds(5)) }
        let c = try Conn(dir + "/app.db")
        try c.exec("PRAGMA journal_mode=WAL")
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        for _ in 0..<150 { try c.insertBlobs(1, bytes: 300) }
        // An outage (2 minutes with VFS_SOAK_TRIALS set, else 10 s): the app keeps committing.
        let outage = ProcessInfo.processInfo.environment["VFS_SOAK_TRIALS"] != nil ? 120.0 : 10.0
        FileManager.default.createFile(atPath: dir + "/outage", contents: nil)
        let end = Date().addingTimeInterval(outage)
        var during = 0
        while Date() < end {
            try c.insertBlobs(1, bytes: 300)
            during += 1
            Thread.sleep(forTimeInterval: 0.02)
        }
        try FileManager.default.removeItem(atPath: dir + "/outage")
        for _ in 0..<50 { try c.insertBlobs(1, bytes: 300) }
        try replicator.flush(timeout: .seconds(120))
        let out = dir + "/restored.db"
        _ = try ReplicaRestorer.restore(
            from: try s3Client(server, bucket: bucket, prefix: "app"), to: out, options: RestoreOptions(force: true))
        #expect(try TestSupport.dump(out) == TestSupport.dump(dir + "/app.db"))
        #expect(try TestSupport.sqlite(out, "SELECT count(*) FROM t").trimmingCharacters(in: .whitespacesAndNewlines) == "\(200 + during)")
        let stats = (try? String(contentsOfFile: dir + "/stats.json", encoding: .utf8)) ?? ""
        print("fault proxy: \(stats); commits during the outage: \(during)")
        #expect(stats.contains("\"error\""))
    }
}
