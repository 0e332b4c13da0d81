import Foundation
import Testing

@testable import VFSReplication

/// Interop the other way: real `litestream replicate` writes the replica, we restore it.
@Suite(
    "Restore from litestream",
    .enabled(if: TestSupport.litestreamPath != nil, "litestream binary not found at .venv/bin/litestream"),
    .enabled(if: TestSupport.sqlite3Path != nil, "sqlite3 CLI not found")
)
struct RestoreFromLitestreamTests {
    static func maxTXID(_ replica: FileReplicaClient) -> UInt64 {
        ((try? replica.listFiles(level: 0)) ?? []).map(\.maxTXID).max() ?? 0
    }

    @Test func restoresWhatLitestreamReplicated() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let db = dir + "/source.db"
            let replica = FileReplicaClient(directory: dir + "/replica")
            try TestSupport.sqlite(
                db,
                """
                PRAGMA journal_mode=WAL;
                CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
                WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 400)
                INSERT INTO t SELECT i, printf('row %d %0300d', i, i) FROM n;
                """)
            let config = dir + "/litestream.yml"
            try TestSupport.writeFile(
                config,
                Array(
                    """
                    dbs:
                      - path: \(db)
                        replicas:
                          - url: \(replica.location)
                    """.utf8))
            let litestream = try TestSupport.BackgroundProcess(
                TestSupport.litestreamPath!, ["replicate", "-config", config],
                environment: TestSupport.childEnvironment(), logPath: dir + "/litestream.log")
            defer { litestream.stop() }
            try #require(TestSupport.waitUntil(timeout: 30) { Self.maxTXID(replica) >= 1 }, "\(litestream.log)")

            var dumps: [UInt64: String] = [:]
            let writes = [
                "UPDATE t SET v = 'updated ' || id WHERE id % 5 = 0;",
                """
                CREATE TABLE u(k TEXT PRIMARY KEY, blob BLOB);
                WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 300)
                INSERT INTO u SELECT 'key' || i, randomblob(500) FROM n;
                """,
                "DELETE FROM t WHERE id > 100;",
            ]
            dumps[Self.maxTXID(replica)] = try TestSupport.dump(db)
            for sql in writes {
                let before = Self.maxTXID(replica)
                try TestSupport.sqlite(db, sql)
                try #require(
                    TestSupport.waitUntil(timeout: 30) { Self.maxTXID(replica) > before }, "\(litestream.log)")
                dumps[Self.maxTXID(replica)] = try TestSupport.dump(db)
            }
            litestream.stop()
            let expected = try TestSupport.dump(db)

            // Latest, through the library.
            let result = try ReplicaRestorer.restore(from: replica, to: dir + "/ours.db")
            #expect(result.integrityChecked)
            // Litestream's files carry no database checksum: the result says so.
            #expect(!result.checksumVerified)
            #expect(result.checksumUnavailable?.contains("Litestream") == true, "\(result)")
            #expect(try TestSupport.dump(dir + "/ours.db") == expected)

            // Through the binary, when built.
            if let rebuild = TestSupport.builtProduct("vfs-rebuild") {
                let r = try TestSupport.run(rebuild, ["--replica", replica.location, "--output", dir + "/tool.db"])
                #expect(r.status == 0, "\(r)")
                #expect(r.stdout.contains("TXID \(hex16(result.txid))"), "\(r)")
                #expect(r.stdout.contains("database checksum not checked: written by Litestream"), "\(r)")
                #expect(!r.stdout.contains("database checksums,"), "\(r)")
                let json = try TestSupport.run(
                    rebuild, ["--replica", replica.location, "--output", dir + "/tool-json.db", "--json", "--quiet"])
                #expect(json.status == 0, "\(json)")
                #expect(json.stdout.contains("\"database_checksum\" : false"), "\(json)")
                #expect(try TestSupport.dump(dir + "/tool.db") == expected)
                let list = try TestSupport.run(rebuild, ["--list", "--replica", replica.location])
                #expect(list.status == 0, "\(list)")
                let fileLines = list.stdout.split(separator: "\n").filter { $0.hasPrefix("  ") }
                #expect(fileLines.count == (try ReplicaRestorer.listFiles(replica)).count, "\(list)")
            }

            // Every TXID we saw the database at restores to that state, as litestream's own restore does.
            for (txid, dump) in dumps.sorted(by: { $0.key < $1.key }) {
                let ours = dir + "/ours-\(txid).db"
                let theirs = dir + "/theirs-\(txid).db"
                try ReplicaRestorer.restore(from: replica, to: ours, options: RestoreOptions(target: .txid(txid)))
                let r = try TestSupport.run(
                    TestSupport.litestreamPath!, ["restore", "-txid", hex16(txid), "-o", theirs, replica.location],
                    environment: TestSupport.childEnvironment())
                #expect(r.status == 0, "\(r)")
                #expect(try TestSupport.dump(ours) == dump, "TXID \(txid)")
                #expect(try TestSupport.dump(theirs) == dump, "TXID \(txid)")
            }
        }
    }
}
