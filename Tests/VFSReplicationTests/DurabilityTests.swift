import CSQLite
import Foundation
import Testing

@testable import VFSReplication

/// durability: remote — a commit returns only once it is durable in the replica.
@Suite("Remote durability", .serialized)
struct DurabilityTests {
    @Test func everyCommitIsDurableWhenItReturns() throws {
        let f = try ReplicatedFixture(maxDelay: "10s")  // max-delay alone would hold commits for 10 s
        try f.replicator.setDurability(database: f.dbPath, remote: true, timeout: .seconds(20))
        let c = try f.open()
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        for i in 0..<20 {
            try c.insertBlobs(1, bytes: 100)
            let report = try c.scalar("PRAGMA replicated_last_commit").split(separator: " ")
            #expect(report.count == 2 && report[1] == "durable", "commit \(i): \(report)")
            let durable = UInt64(try c.scalar("PRAGMA replicated_durable_txid")) ?? 0
            #expect(durable >= UInt64(report[0]) ?? .max)
        }
        let (out, _) = try f.rebuild()
        try f.expectEqual(out)
    }

    @Test func concurrentCommittersShareUploads() throws {
        let f = try ReplicatedFixture(maxDelay: "10s")
        try f.replicator.setDurability(database: f.dbPath, remote: true, timeout: .seconds(30))
        let setup = try f.open()
        try setup.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        let before = f.status.filesUploaded
        let errors = ManagedErrors()
        let group = DispatchGroup()
        for _ in 0..<4 {
            group.enter()
            Thread.detachNewThread {
                defer { group.leave() }
                do {
                    let c = try f.open()
                    for _ in 0..<25 { try c.insertBlobs(1, bytes: 64) }
                } catch { errors.add(error) }
            }
        }
        group.wait()
        #expect(errors.all.isEmpty, "\(errors.all)")
        let uploads = f.status.filesUploaded - before
        #expect(uploads < 100, "100 commits from 4 writers must share uploads (group commit): \(uploads) uploads")
        #expect(f.status.durableTXID == f.status.localTXID)
    }

    @Test func unreachableReplicaTimesOutAndTheCommitStaysSpooled() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let blocker = dir + "/backups"
        FileManager.default.createFile(atPath: blocker, contents: Data("down".utf8))
        try """
        databases:
          - path: app.db
            replica:
              url: file://\(blocker)/app
        """.write(toFile: dir + "/replication.yml", atomically: true, encoding: .utf8)
        let replicator = try Replicator(config: try ReplicationConfig.load(path: dir + "/replication.yml"))
        replicator.start()
        defer { replicator.shutdown(timeout: .seconds(5)) }
        try replicator.setDurability(database: dir + "/app.db", remote: true, timeout: .milliseconds(300))
        let c = try Conn(dir + "/app.db")
        try c.exec("PRAGMA journal_mode=WAL")
        let start = Date()
        try c.exec("CREATE TABLE t(x)")
        #expect(Date().timeIntervalSince(start) < 5, "never an endless hang")
        #expect(try c.scalar("PRAGMA replicated_last_commit").hasSuffix("not-durable"))
        // Still committed locally, still spooled: it ships when the replica is back.
        try FileManager.default.removeItem(atPath: blocker)
        try replicator.flush(timeout: .seconds(60))
        #expect(try c.scalar("PRAGMA replicated_last_commit").hasSuffix(" durable"))
    }
}

@Suite("Durability config")
struct DurabilityConfigTests {
    @Test func keysParseWithDefaultsAndErrors() throws {
        let yaml = """
            defaults:
              durability: remote
              durability-timeout: 3s
            databases:
              - path: a.db
                replica: { url: file:///tmp/a }
                group-commit-window: 5ms
                spool-max-bytes: 64MiB
                spool-full: grow
              - path: b.db
                replica: { url: file:///tmp/b }
                durability: local
            """
        let config = try ReplicationConfig.parse(yaml: yaml, baseDirectory: "/srv", environment: [:], sourceName: "r.yml")
        let a = try #require(config.database(forPath: "/srv/a.db"))
        let b = try #require(config.database(forPath: "/srv/b.db"))
        #expect(a.durability == .remote && a.durabilityTimeout == .seconds(3) && a.groupCommitWindow == .milliseconds(5))
        #expect(a.spoolGrows && a.spoolMaxBytes == 64 << 20)
        #expect(b.durability == .local && !b.spoolGrows && b.groupCommitWindow == .milliseconds(2))
        let bad = """
            databases:
              - path: a.db
                replica: { url: file:///tmp/a }
                durability: sometimes
            """
        #expect(throws: ReplicationError.self) {
            _ = try ReplicationConfig.parse(yaml: bad, baseDirectory: "/srv", environment: [:], sourceName: "r.yml")
        }
        do {
            _ = try ReplicationConfig.parse(yaml: bad, baseDirectory: "/srv", environment: [:], sourceName: "r.yml")
        } catch let e as ReplicationError {
            #expect(e.message.contains("r.yml:4") && e.message.contains("'local' or 'remote'"), "\(e.message)")
        }
    }

    @Test func remoteDurabilityFromTheConfigFile() throws {
        let f = try ReplicatedFixture(maxDelay: "10s\n    durability: remote")
        let c = try f.open()
        try c.exec("CREATE TABLE t(x)")
        try c.exec("INSERT INTO t VALUES (1)")
        #expect(try c.scalar("PRAGMA replicated_last_commit").hasSuffix(" durable"))
    }
}
