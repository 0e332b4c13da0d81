import Foundation
import Testing

@testable import VFSReplication

/// The S3 replica client against SeaweedFS: Litestream 0.5's S3 layout, fencing by conditional
/// writes, listing, fetching, deleting; restores of what it wrote (ours and Litestream's).
@Suite(
    "S3 replica client (SeaweedFS)",
    .enabled(if: SeaweedFS.weedPath != nil, "SeaweedFS not installed: run scripts/setup"))
struct S3ReplicaClientTests {
    func makeReplica(prefix: String = "app/db") throws -> (SeaweedFS, S3ReplicaClient) {
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("replica")
        let replica = try S3ReplicaClient(
            config: server.replicaConfig(bucket: bucket, prefix: prefix), environment: [:])
        return (server, replica)
    }

    @Test func publishListFetchDeleteWithTheExactKeyLayout() throws {
        let (_, replica) = try makeReplica()
        let s3 = replica.client
        try TestSupport.withTemporaryDirectory { dir in
            let files: [(level: Int, min: UInt64, max: UInt64, bytes: [UInt8])] = [
                (0, 1, 1, TestSupport.pageBytes(seed: 1, count: 500)),
                (0, 2, 0x1f, TestSupport.pageBytes(seed: 2, count: 700)),
                (1, 1, 0x1f, TestSupport.pageBytes(seed: 3, count: 900)),
                (9, 1, 1, TestSupport.pageBytes(seed: 4, count: 300)),
            ]
            let timestamp = Date(timeIntervalSince1970: 1_750_000_000.25)
            let before = s3.requestCounts
            for (i, f) in files.enumerated() {
                let path = dir + "/f\(i).ltx"
                try TestSupport.writeFile(path, f.bytes)
                try replica.publish(
                    level: f.level, minTXID: f.min, maxTXID: f.max, localPath: path, timestamp: timestamp)
            }
            #expect((s3.requestCounts - before).put == 4)

            let keys = try s3.listAllObjects(prefix: "").objects.map(\.key).sorted()
            #expect(
                keys == [
                    "app/db/0000/0000000000000001-0000000000000001.ltx",
                    "app/db/0000/0000000000000002-000000000000001f.ltx",
                    "app/db/0001/0000000000000001-000000000000001f.ltx",
                    "app/db/0009/0000000000000001-0000000000000001.ltx",
                ])
            let head = try #require(try s3.headObject(key: keys[0]))
            #expect(head.metadata["litestream-timestamp"] == "2025-06-15T15:06:40.25Z")

            // A stray object is ignored by listings.
            try s3.putObject(key: "app/db/0000/notes.txt", body: .bytes([1]))

            // What the uploader's status reports (ReplicaRequestCounting): wire requests by kind.
            let reported = replica.requestCounts()
            #expect(reported[.put] == s3.requestCounts.put + s3.requestCounts.multipart)
            #expect(reported[.get] == s3.requestCounts.get + s3.requestCounts.head)

            let listBefore = s3.requestCounts
            #expect(try replica.listLevels() == [0, 1, 9])
            let level0 = try replica.listFiles(level: 0)
            #expect((s3.requestCounts - listBefore).list == 2)
            #expect(
                level0.map(\.description) == [
                    "L0/0000000000000001-0000000000000001.ltx", "L0/0000000000000002-000000000000001f.ltx",
                ])
            #expect(level0.map(\.size) == [500, 700])
            #expect(level0.allSatisfy { $0.createdAt.map { abs($0.timeIntervalSinceNow) < 300 } == true })
            #expect(try replica.listFiles(level: 5).isEmpty)

            let local = try replica.fetch(level0[1])
            #expect(local.isTemporary)
            #expect(try TestSupport.readFile(local.path) == files[1].bytes)
            local.release()
            #expect(!FileManager.default.fileExists(atPath: local.path))

            let missing = LTXFileInfo(level: 0, minTXID: 0x20, maxTXID: 0x20, size: 0)
            let error = try #require(throws: ReplicationError.self) { try replica.fetch(missing) }
            #expect(error.code == .missingReplica)
            #expect(error.message.contains("app/db/0000/0000000000000020-0000000000000020.ltx"))

            try replica.delete(level0 + [missing])
            #expect(try replica.listFiles(level: 0).isEmpty)
            #expect(try replica.listLevels() == [0, 1, 9])  // notes.txt still there
            try replica.delete(try replica.listFiles(level: 1) + replica.listFiles(level: 9))
            #expect(try replica.listFiles(level: 1).isEmpty && replica.listFiles(level: 9).isEmpty)
            // SeaweedFS keeps emptied "directories" as common prefixes (S3 and R2 do not), so
            // levels 1 and 9 may still be listed, with no files.
            #expect(try Set(replica.listLevels()).isSubset(of: [0, 1, 9]))
            #expect(try replica.listLevels().contains(0))
        }
    }

    @Test func aSecondWriterIsFenced() throws {
        let (_, replica) = try makeReplica()
        try TestSupport.withTemporaryDirectory { dir in
            try TestSupport.writeFile(dir + "/ours.ltx", Array("ours".utf8))
            try TestSupport.writeFile(dir + "/theirs.ltx", Array("theirs".utf8))
            try replica.publish(level: 0, minTXID: 5, maxTXID: 5, localPath: dir + "/ours.ltx", timestamp: Date())
            // The same bytes again (a retried upload): not a conflict.
            try replica.publish(level: 0, minTXID: 5, maxTXID: 5, localPath: dir + "/ours.ltx", timestamp: Date())
            let error = try #require(throws: ReplicationError.self) {
                try replica.publish(level: 0, minTXID: 5, maxTXID: 5, localPath: dir + "/theirs.ltx", timestamp: Date())
            }
            #expect(error.code == .fenced)
            #expect(
                error.message.contains(
                    "another writer owns this lineage: s3://\(replica.client.bucket)/"
                        + "app/db/0000/0000000000000005-0000000000000005.ltx already exists"
                ))
            let fetched = try replica.fetch(LTXFileInfo(level: 0, minTXID: 5, maxTXID: 5, size: 4))
            defer { fetched.release() }
            #expect(try TestSupport.readFile(fetched.path) == Array("ours".utf8))
        }
    }

    @Test func missingBucketOnList() throws {
        let server = try SeaweedFS.shared()
        let replica = try S3ReplicaClient(
            config: server.replicaConfig(bucket: "absent-\(UInt32.random(in: 0...UInt32.max))", prefix: "db"),
            environment: [:])
        let error = try #require(throws: ReplicationError.self) { try replica.listLevels() }
        #expect(error.message.contains("NoSuchBucket"))
        #expect(error.message.contains("does not exist"))
    }

    @Test func factoryBuildsS3Replicas() throws {
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("factory")
        let client = try makeReplicaClient(server.replicaConfig(bucket: bucket, prefix: "x/y"))
        let replica = try #require(client as? S3ReplicaClient)
        #expect(replica.location == "s3://\(bucket)/x/y")
        #expect(try replica.listLevels().isEmpty)
        // No credentials anywhere: a config error naming the keys.
        var config = server.replicaConfig(bucket: bucket, prefix: "x")
        config.accessKeyID = nil
        config.secretAccessKey = nil
        let error = try #require(throws: ReplicationError.self) {
            try S3ReplicaClient(config: config, environment: [:])
        }
        #expect(error.code == .invalidConfig && error.message.contains("access-key-id"))
    }

    /// The whole path: SQLite writes through the `replicated` VFS, the Replicator ships to
    /// SeaweedFS per a YAML config with an s3:// url, and the bucket restores (with us and with
    /// Litestream) to the same database.
    @Test func replicatorShipsToS3() throws {
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("e2e")
        try TestSupport.withTemporaryDirectory { dir in
            let yaml = """
                databases:
                  - path: app.db
                    replica:
                      url: s3://\(bucket)/apps/app.db
                      endpoint: \(server.endpoint)
                      region: us-east-1
                      force-path-style: true
                      access-key-id: ${KEY_ID}
                      secret-access-key: ${SECRET}
                    max-delay: 20ms
                """
            try yaml.write(toFile: dir + "/replication.yml", atomically: true, encoding: .utf8)
            let config = try ReplicationConfig.load(
                path: dir + "/replication.yml",
                environment: ["KEY_ID": SeaweedFS.accessKeyID, "SECRET": SeaweedFS.secretAccessKey])
            let replicator = try Replicator(config: config)
            replicator.start()
            defer { replicator.shutdown(timeout: .seconds(10)) }
            do {
                let conn = try Conn(dir + "/app.db")
                try conn.exec("PRAGMA journal_mode=WAL")
                try conn.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
                for _ in 0..<20 { try conn.insertBlobs(5, bytes: 3000) }
                try conn.exec("UPDATE t SET x = randomblob(100) WHERE id % 3 = 0")
                try replicator.flush(timeout: .seconds(60))
            }
            let expected = try TestSupport.dump(dir + "/app.db")
            // Measured from the server's side: what shipping 22 transactions cost.
            print(
                "S3 requests seen by SeaweedFS while replicating 22 transactions: \(try server.requestCounts(bucket: bucket))"
            )

            let replica = try S3ReplicaClient(config: config.databases[0].replica, environment: [:])
            let keys = try replica.client.listAllObjects(prefix: "apps/app.db/").objects.map(\.key)
            #expect(keys.contains { $0.hasPrefix("apps/app.db/0000/") })
            #expect(keys.allSatisfy { $0.hasSuffix(".ltx") })
            let ours = dir + "/ours.db"
            try ReplicaRestorer.restore(from: replica, to: ours)
            #expect(try TestSupport.dump(ours) == expected)

            guard let litestream = TestSupport.litestreamPath else { return }
            try """
            dbs:
              - path: \(dir)/app.db
                replicas:
                  - type: s3
                    bucket: \(bucket)
                    path: apps/app.db
                    endpoint: \(server.endpoint)
                    region: us-east-1
                    force-path-style: true
                    access-key-id: \(SeaweedFS.accessKeyID)
                    secret-access-key: \(SeaweedFS.secretAccessKey)
            """.write(toFile: dir + "/litestream.yml", atomically: true, encoding: .utf8)
            let theirs = dir + "/theirs.db"
            let r = try TestSupport.run(
                litestream, ["restore", "-config", dir + "/litestream.yml", "-o", theirs, dir + "/app.db"],
                environment: TestSupport.childEnvironment())
            try #require(r.status == 0, "litestream restore failed: \(r)")
            #expect(try TestSupport.dump(theirs) == expected)
        }
    }

    /// A replica we publish to S3 restores with our restorer (through the S3 client) and with
    /// `litestream restore` from the bucket.
    @Test func ourS3ReplicaRestoresWithUsAndWithLitestream() throws {
        let (server, replica) = try makeReplica(prefix: "prod/db")
        try TestSupport.withTemporaryDirectory { dir in
            var builder = TestSupport.ReplicaBuilder(
                replicaDirectory: dir + "/replica", work: dir, flags: .noChecksum, encoding: .lz4Frame)
            let (db, dumps) = try TestSupport.makeHistory(dir, &builder)
            for file in try ReplicaRestorer.listFiles(builder.replica) {
                let header = try LTXDecoder.readHeader(path: builder.replica.path(of: file))
                try replica.publish(
                    level: file.level, minTXID: file.minTXID, maxTXID: file.maxTXID,
                    localPath: builder.replica.path(of: file), timestamp: header.date)
            }

            let ours = dir + "/ours.db"
            let result = try ReplicaRestorer.restore(from: replica, to: ours)
            #expect(result.txid == builder.txid)
            #expect(try TestSupport.dump(ours) == dumps[builder.txid])

            guard let litestream = TestSupport.litestreamPath else { return }
            let config = dir + "/litestream.yml"
            try """
            dbs:
              - path: \(db)
                replicas:
                  - type: s3
                    bucket: \(replica.client.bucket)
                    path: prod/db
                    endpoint: \(server.endpoint)
                    region: us-east-1
                    force-path-style: true
                    access-key-id: \(SeaweedFS.accessKeyID)
                    secret-access-key: \(SeaweedFS.secretAccessKey)
            """.write(toFile: config, atomically: true, encoding: .utf8)
            let theirs = dir + "/theirs.db"
            let r = try TestSupport.run(
                litestream, ["restore", "-config", config, "-o", theirs, db],
                environment: TestSupport.childEnvironment())
            try #require(r.status == 0, "litestream restore failed: \(r)")
            #expect(try TestSupport.dump(theirs) == dumps[builder.txid])
        }
    }

    /// What `litestream replicate` uploads to S3 lists and restores through our client.
    @Test(.enabled(if: TestSupport.litestreamPath != nil, "litestream not installed"))
    func litestreamsS3ReplicaRestoresThroughUs() throws {
        let (server, replica) = try makeReplica(prefix: "ls/db")
        try TestSupport.withTemporaryDirectory { dir in
            let db = dir + "/app.db"
            try TestSupport.sqlite(
                db,
                """
                PRAGMA journal_mode=WAL;
                CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
                WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 500)
                INSERT INTO t SELECT i, printf('row %d %0100d', i, i) FROM n;
                """)
            let config = dir + "/litestream.yml"
            try """
            dbs:
              - path: \(db)
                replicas:
                  - type: s3
                    bucket: \(replica.client.bucket)
                    path: ls/db
                    endpoint: \(server.endpoint)
                    region: us-east-1
                    force-path-style: true
                    sync-interval: 100ms
                    access-key-id: \(SeaweedFS.accessKeyID)
                    secret-access-key: \(SeaweedFS.secretAccessKey)
            """.write(toFile: config, atomically: true, encoding: .utf8)
            let process = try TestSupport.BackgroundProcess(
                TestSupport.litestreamPath!, ["replicate", "-config", config],
                environment: TestSupport.childEnvironment(),
                logPath: dir + "/litestream.log")
            defer { process.stop() }
            let uploaded = TestSupport.waitUntil(timeout: 30) {
                ((try? replica.listFiles(level: 0)) ?? []).count >= 1
            }
            try #require(uploaded, "litestream uploaded nothing: \(process.log)")
            try TestSupport.sqlite(db, "INSERT INTO t VALUES (1000, 'after the snapshot');")
            let expected = try TestSupport.dump(db)
            let caughtUp = TestSupport.waitUntil(timeout: 30) {
                let out = dir + "/probe-\(UInt32.random(in: 0...UInt32.max)).db"
                defer { try? FileManager.default.removeItem(atPath: out) }
                return (try? ReplicaRestorer.restore(from: replica, to: out)) != nil
                    && (try? TestSupport.dump(out)) == expected
            }
            #expect(caughtUp, "our restore from litestream's S3 replica never matched: \(process.log)")
            let files = try ReplicaRestorer.listFiles(replica)
            #expect(files.contains { $0.level == 0 })
            let head = try #require(try replica.client.headObject(key: replica.key(of: files[0])))
            #expect(head.metadata["litestream-timestamp"].flatMap(S3ReplicaClient.parseTimestamp) != nil)
        }
    }
}
