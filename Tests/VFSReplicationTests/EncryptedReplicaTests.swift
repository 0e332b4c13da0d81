import Foundation
import Logging
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// Encrypted replicas on real directories and on SeaweedFS: replication through the VFS,
/// compaction, snapshots and retention, restores (vfs-rebuild and the library), key rotation,
/// wrong and missing keys, tampered objects, and keys never written anywhere.
@Suite("Encrypted replicas", .serialized)
struct EncryptedReplicaTests {
    static func randomHex() -> String {
        (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
    }

    static func base64(ofHex hex: String) -> String {
        let bytes = stride(from: 0, to: hex.count, by: 2).map {
            UInt8(hex.dropFirst($0).prefix(2), radix: 16)!
        }
        return Data(bytes).base64EncodedString()
    }

    /// Every LTX object under `directory` (recursively).
    static func objects(under directory: String) -> [String] {
        let names = FileManager.default.enumerator(atPath: directory)?.compactMap { $0 as? String } ?? []
        return names.filter { $0.hasSuffix(".ltx") && !$0.contains("/.") }.map { directory + "/" + $0 }
    }

    /// No file under `directory` holds any of `secrets` (as text).
    static func expectNoSecrets(under directory: String, _ secrets: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        let names = FileManager.default.enumerator(atPath: directory)?.compactMap { $0 as? String } ?? []
        for name in names {
            let path = directory + "/" + name
            guard !LTXIO.isDirectory(path), let data = FileManager.default.contents(atPath: path) else { continue }
            let text = String(decoding: data, as: UTF8.self).lowercased()
            for secret in secrets {
                #expect(!text.contains(secret.lowercased()), "\(path) holds a key", sourceLocation: sourceLocation)
            }
        }
    }

    static func flipByte(_ path: String, at fraction: Double) throws {
        var bytes = try TestSupport.readFile(path)
        bytes[Int(Double(bytes.count) * fraction)] ^= 0x20
        try TestSupport.writeFile(path, bytes)
    }

    // MARK: Directory replica, through the VFS, restored by the vfs-rebuild binary

    @Test func directoryReplicaThroughTheVFSWithRotationWrongKeysAndTampering() throws {
        guard let rebuild = TestSupport.builtProduct("vfs-rebuild") else {
            Issue.record("vfs-rebuild is not built")
            return
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let k1 = Self.randomHex()
        let k2 = Self.randomHex()
        try (Self.base64(ofHex: k2) + "\n").write(toFile: dir + "/k2.key", atomically: true, encoding: .utf8)
        var env = TestSupport.childEnvironment()
        env["VFSREPL_TEST_K1"] = k1
        func config(current: String, keys: String) throws -> ReplicationConfig {
            try """
            databases:
              - path: app.db
                replica:
                  url: file://\(dir)/replica
                  encryption:
                    key-id: \(current)
                    keys:
            \(keys)
                max-delay: 50ms
                levels:
                  - interval: 1s
            """.write(toFile: dir + "/replication.yml", atomically: true, encoding: .utf8)
            return try ReplicationConfig.load(path: dir + "/replication.yml", environment: env)
        }

        // Phase 1: sealed with k1; level-1 compaction runs on the sealed objects.
        let first = try config(current: "k1", keys: "            k1: env:VFSREPL_TEST_K1")
        #expect(!"\(first.databases[0].replica)".contains(k1))
        var replicator = try Replicator(config: first)
        replicator.start()
        do {
            let c = try Conn(dir + "/app.db")
            try c.exec("PRAGMA journal_mode=WAL")
            try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
            for _ in 0..<30 { try c.insertBlobs(3, bytes: 900) }
            try replicator.flush(timeout: .seconds(60))
            let compacted = TestSupport.waitUntil(timeout: 20) {
                LTXIO.isDirectory(dir + "/replica/ltx/1") && !Self.objects(under: dir + "/replica/ltx/1").isEmpty
            }
            #expect(compacted, "no level-1 compaction on the encrypted replica")
            #expect(!"\(replicator.status())".contains(k1))
        }
        replicator.shutdown(timeout: .seconds(10))

        // Phase 2: k2 is current, k1 still opens what it sealed.
        let second = try config(
            current: "k2", keys: "            k2: file:\(dir)/k2.key\n            k1: env:VFSREPL_TEST_K1")
        replicator = try Replicator(config: second)
        replicator.start()
        do {
            let c = try Conn(dir + "/app.db")
            for _ in 0..<20 { try c.insertBlobs(2, bytes: 500) }
            try c.exec("DELETE FROM t WHERE id % 4 = 0")
            try replicator.flush(timeout: .seconds(60))
            // vfs-status --verify: rebuilds through the encrypted replica and compares.
            let record = try ReplicaVerifier.verify(
                database: second.databases[0], options: VerifyOptions(timeout: .seconds(60)))
            #expect(record.passed, "\(record)")
            #expect(!record.message.contains(k1) && !record.message.contains(k2))
        }
        replicator.shutdown(timeout: .seconds(10))

        // Every object is sealed; both keys were used.
        let objects = Self.objects(under: dir + "/replica")
        #expect(objects.count >= 3)
        var keyIDs = Set<String>()
        for path in objects {
            let bytes = try TestSupport.readFile(path)
            #expect(bytes.starts(with: SealedObject.magic), "\(path) is not sealed")
            keyIDs.insert(String(decoding: bytes[10..<(10 + Int(bytes[9]))], as: UTF8.self))
        }
        #expect(keyIDs == ["k1", "k2"])
        Self.expectNoSecrets(under: dir + "/app.db-vfsrepl", [k1, k2, Self.base64(ofHex: k2)])
        Self.expectNoSecrets(under: dir + "/replica", [k1, k2, Self.base64(ofHex: k2)])

        // vfs-rebuild with both keys: the same database; --list works too.
        let keyArguments = ["--encryption-key", "k2=file:\(dir)/k2.key", "--encryption-key", "k1=env:VFSREPL_TEST_K1"]
        let restored = dir + "/restored.db"
        let r = try TestSupport.run(
            rebuild, ["--replica", "file://\(dir)/replica", "-o", restored, "-q"] + keyArguments, environment: env)
        #expect(r.status == 0, "\(r)")
        #expect(try TestSupport.dump(restored) == TestSupport.dump(dir + "/app.db"))
        let list = try TestSupport.run(rebuild, ["--list", "--replica", "file://\(dir)/replica"] + keyArguments, environment: env)
        #expect(list.status == 0 && list.stdout.contains("restore points from TXID"), "\(list)")
        for output in [r, list] { #expect(!output.stdout.contains(k1) && !output.stderr.contains(k1)) }

        // Without k1 the old objects are named, with the key id they need.
        let missing = try TestSupport.run(
            rebuild, ["--replica", "file://\(dir)/replica", "-o", dir + "/x.db", "--encryption-key", "k2=file:\(dir)/k2.key"],
            environment: env)
        #expect(missing.status != 0)
        #expect(missing.stderr.contains("was sealed with key id 'k1', which the config does not have"), "\(missing)")
        #expect(missing.stderr.contains(dir + "/replica/ltx/"), "\(missing)")
        // Another key under the name k1.
        var wrongEnv = env
        wrongEnv["VFSREPL_TEST_K1"] = Self.randomHex()
        let wrong = try TestSupport.run(
            rebuild, ["--replica", "file://\(dir)/replica", "-o", dir + "/x.db"] + keyArguments, environment: wrongEnv)
        #expect(wrong.status != 0)
        #expect(wrong.stderr.contains("is a different key"), "\(wrong)")
        #expect(!LTXIO.exists(dir + "/x.db"))
        // A missing variable is named.
        var noEnv = env
        noEnv["VFSREPL_TEST_K1"] = nil
        let unset = try TestSupport.run(
            rebuild, ["--replica", "file://\(dir)/replica", "-o", dir + "/x.db"] + keyArguments, environment: noEnv)
        #expect(unset.status != 0 && unset.stderr.contains("'VFSREPL_TEST_K1' is not set"), "\(unset)")
        // No keys at all: the plain reader says the objects are encrypted.
        let none = try TestSupport.run(rebuild, ["--replica", "file://\(dir)/replica", "-o", dir + "/x.db"], environment: env)
        #expect(none.status != 0 && none.stderr.contains("encrypted"), "\(none)")

        // Tampering: every object with one byte changed. Nothing is applied; the error names one.
        try FileManager.default.copyItem(atPath: dir + "/replica", toPath: dir + "/tampered")
        for path in Self.objects(under: dir + "/tampered") { try Self.flipByte(path, at: 0.6) }
        let tampered = try TestSupport.run(
            rebuild, ["--replica", "file://\(dir)/tampered", "-o", dir + "/x.db"] + keyArguments, environment: env)
        #expect(tampered.status != 0)
        #expect(tampered.stderr.contains("failed authentication"), "\(tampered)")
        #expect(tampered.stderr.contains(dir + "/tampered/ltx/"), "\(tampered)")
        #expect(!LTXIO.exists(dir + "/x.db"))
    }

    // MARK: Compaction, snapshots and retention on a simulated clock

    @Test func compactionSnapshotsAndRetentionWorkOnSealedObjects() throws {
        try withFastTemporaryDirectory { dir in
            let key = try EncryptionKey(id: "k1", text: Self.randomHex(), source: "env:TEST")
            let encryption = try ReplicaEncryption(currentKeyID: "k1", keys: [key])
            let policy = MaintenancePolicy(
                compactionIntervals: [.seconds(10), .seconds(60)], snapshotInterval: .seconds(600),
                retention: .seconds(1200))
            var sim = try MaintenanceSimulation(
                directory: dir, policy: policy, seed: 3, start: Date(timeIntervalSince1970: 1_750_000_000.5),
                wrap: { EncryptedReplicaClient(inner: $0, encryption: encryption) })
            var random = SplitMix64(seed: 9)
            for _ in 0..<400 {
                try sim.advance(to: sim.now.addingTimeInterval(Double(random.next(in: 500...9000)) / 1000))
                try sim.batch(transactions: random.next(in: 1...3))
            }
            try sim.advance(to: sim.now.addingTimeInterval(30))
            #expect(sim.reports.flatMap(\.compacted).contains { $0.level == 2 })
            #expect(sim.reports.flatMap(\.snapshots).count >= 2)
            #expect(sim.reports.flatMap(\.deleted).count > 20)
            // Listing sizes are the plaintext sizes the maintainer noted.
            let listed = try ReplicaRestorer.listFiles(sim.client)
            #expect(listed.map { "\($0) \($0.size)" }.sorted() == sim.maintainer.files.map { "\($0) \($0.size)" }.sorted())
            for path in Self.objects(under: dir + "/replica") {
                #expect(try TestSupport.readFile(path).starts(with: SealedObject.magic), "\(path)")
            }
            // Restores through the wrapper are byte for byte the source at their TXID.
            let points = RestorePlanner.restorePoints(files: listed).sorted()
            var targets: [RestoreTarget] = [.latest, .timestamp(sim.now.addingTimeInterval(-300))]
            for _ in 0..<6 { targets.append(.txid(points[Int(random.next() % UInt64(points.count))])) }
            for target in targets {
                let out = dir + "/restored.db"
                let result = try ReplicaRestorer.restore(
                    from: sim.client, to: out, options: RestoreOptions(target: target, force: true, verify: false))
                #expect(try TestSupport.readFile(out) == sim.history.bytes(at: result.txid), "\(target)")
            }
        }
    }

    // MARK: SeaweedFS

    @Test func s3ReplicaThroughTheVFSWithCompactionTimeRestoresAndTampering() throws {
        guard let bench = TestSupport.builtProduct("vfs-bench") else {
            Issue.record("vfs-bench is not built")
            return
        }
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("enc")
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = Self.randomHex()
        var env = TestSupport.childEnvironment()
        env["VFSREPL_S3_KEY"] = key
        let path = try SeaweedFS.writeReplicationConfig(
            dir: dir, bucket: bucket, endpoint: server.endpoint, maxDelay: "50ms",
            extra: """
                      encryption:
                        key-id: s3key
                        keys:
                          s3key: env:VFSREPL_S3_KEY
                    levels:
                      - interval: 1s
                """)
        // A writer process (its log is checked for the key), then this process writes on.
        let writer = try TestSupport.BackgroundProcess(
            bench,
            ["write", "--config", path, "--database", dir + "/app.db", "--transactions", "60", "--rows-per-transaction", "2",
             "--payload-bytes", "400"],
            environment: env, logPath: dir + "/writer.log")
        writer.process.waitUntilExit()
        #expect(writer.process.terminationStatus == 0, "\(writer.log)")
        #expect(!writer.log.contains(key))

        let config = try ReplicationConfig.load(path: path, environment: env)
        let replicator = try Replicator(config: config)
        replicator.start()
        let c = try Conn(dir + "/app.db")
        try c.exec("PRAGMA journal_mode=WAL")
        try c.exec("CREATE TABLE IF NOT EXISTS extra(id INTEGER PRIMARY KEY, x BLOB)")
        for _ in 0..<20 { try c.insertBlobs(2, bytes: 300, table: "extra") }
        try replicator.flush(timeout: .seconds(60))
        let plainClient = try S3ReplicaClient(config: server.replicaConfig(bucket: bucket, prefix: "app"))
        let compacted = TestSupport.waitUntil(timeout: 20) { (try? plainClient.listFiles(level: 1).isEmpty) == false }
        #expect(compacted, "no level-1 compaction on the encrypted S3 replica")
        replicator.shutdown(timeout: .seconds(10))
        Self.expectNoSecrets(under: dir + "/app.db-vfsrepl", [key])

        // Every object is sealed.
        let levels = try plainClient.listLevels()
        for level in levels {
            for file in try plainClient.listFiles(level: level) {
                let bytes = try plainClient.readPrefix(file, length: 16)
                #expect(bytes.starts(with: SealedObject.magic), "\(file)")
            }
        }

        // Restores through the configured client: latest, and to a time (ranged header reads).
        let client = try makeReplicaClient(config.databases[0].replica)
        #expect(client is EncryptedReplicaClient)
        let out = dir + "/restored.db"
        try ReplicaRestorer.restore(from: client, to: out, options: RestoreOptions(force: true))
        #expect(try TestSupport.dump(out) == TestSupport.dump(dir + "/app.db"))
        let timed = try ReplicaRestorer.restore(
            from: client, to: out, options: RestoreOptions(target: .timestamp(Date()), force: true))
        #expect(timed.integrityChecked)

        // Litestream cannot read it (README says so): its restore fails and writes nothing.
        if let litestream = TestSupport.litestreamPath {
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
            let r = try TestSupport.run(
                litestream, ["restore", "-config", lsConfig, "-o", dir + "/ls.db", dir + "/unused.db"],
                environment: TestSupport.childEnvironment())
            #expect(r.status != 0, "litestream restored an encrypted replica: \(r)")
            #expect(r.stderr.contains("LTX"), "litestream failed for another reason: \(r)")  // "invalid LTX file"
            let restored = (try? TestSupport.dump(dir + "/ls.db")) ?? ""
            #expect(!restored.contains("CREATE TABLE extra"))
        }

        // The wrong key: named, with the object's URL.
        var wrongReplica = config.databases[0].replica
        wrongReplica.encryption = try ReplicaEncryption(
            currentKeyID: "s3key", keys: [EncryptionKey(id: "s3key", text: Self.randomHex(), source: "env:OTHER")])
        let wrong = try #require(throws: ReplicationError.self) {
            try ReplicaRestorer.restore(from: try makeReplicaClient(wrongReplica), to: dir + "/x.db")
        }
        #expect(wrong.code == .encryptionKey)
        #expect(wrong.message.contains("s3://\(bucket)/app/"), "\(wrong.message)")
        #expect(!wrong.message.contains(key))

        // Tampered: every snapshot rewritten with one byte changed. It is refused, named.
        let s3 = plainClient.client
        for file in try plainClient.listFiles(level: 9) {
            var bytes = try s3.getObjectBytes(key: plainClient.key(of: file)).bytes
            bytes[bytes.count / 2] ^= 1
            _ = try s3.putObject(key: plainClient.key(of: file), body: .bytes(bytes))
        }
        let tampered = try #require(throws: ReplicationError.self) {
            try ReplicaRestorer.restore(from: client, to: dir + "/x.db")
        }
        #expect(tampered.message.contains("failed authentication"), "\(tampered.message)")
        #expect(tampered.message.contains("s3://\(bucket)/app/0009/"), "\(tampered.message)")
        #expect(!LTXIO.exists(dir + "/x.db"))
    }
}
