import Foundation
import Testing

@testable import VFSReplication

/// `vfs-rebuild`, run as a built binary: output and exit codes.
@Suite(
    "vfs-rebuild",
    .enabled(if: TestSupport.builtProduct("vfs-rebuild") != nil, "vfs-rebuild binary not built next to the tests"),
    .enabled(if: TestSupport.sqlite3Path != nil, "sqlite3 CLI not found")
)
struct RestoreToolTests {
    static func rebuild(_ arguments: [String]) throws -> TestSupport.ProcessResult {
        try TestSupport.run(TestSupport.builtProduct("vfs-rebuild")!, arguments)
    }

    static func history(_ dir: String) throws -> (TestSupport.ReplicaBuilder, [UInt64: String]) {
        var builder = TestSupport.ReplicaBuilder(
            replicaDirectory: dir + "/replica", work: dir, flags: .noChecksum, encoding: .lz4Frame)
        let (_, dumps) = try TestSupport.makeHistory(dir, &builder)
        return (builder, dumps)
    }

    @Test func listsEveryFile() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, _) = try Self.history(dir)
            let r = try Self.rebuild(["--list", "--replica", builder.replica.location])
            #expect(r.status == 0, "\(r)")
            let lines = r.stdout.split(separator: "\n").map(String.init)
            #expect(lines.count == 5)
            #expect(
                lines.first
                    == "0000000000000001-0000000000000001  2025-06-15T15:06:50.000Z  level 0  "
                    + "\(dir)/replica/ltx/0/0000000000000001-0000000000000001.ltx"
            )
            #expect(
                lines.last?.hasPrefix("0000000000000005-0000000000000005  2025-06-15T15:07:30.000Z  level 0  ") == true)
        }
    }

    @Test func restoresLatestTXIDAndTime() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, dumps) = try Self.history(dir)
            let url = builder.replica.location
            var r = try Self.rebuild(["--replica", url, "--output", dir + "/latest.db"])
            #expect(r.status == 0, "\(r)")
            #expect(r.stdout.contains("TXID 0000000000000005 (5)"), "\(r)")
            #expect(r.stdout.contains("integrity_check"), "\(r)")
            #expect(try TestSupport.dump(dir + "/latest.db") == dumps[5])

            for txid in ["3", "0000000000000003", "0x3"] {
                let out = dir + "/txid-\(txid).db"
                r = try Self.rebuild(["--replica", url, "--output", out, "--txid", txid])
                #expect(r.status == 0, "\(r)")
                #expect(try TestSupport.dump(out) == dumps[3])
            }

            // TXID t is stamped 1_750_000_000 + 10 t = 2025-06-15T15:06:40Z + 10 t.
            r = try Self.rebuild([
                "--replica", url, "--output", dir + "/time.db", "--timestamp", "2025-06-15T15:07:15Z",
            ])
            #expect(r.status == 0, "\(r)")
            #expect(r.stdout.contains("TXID 0000000000000003"), "\(r)")
            #expect(try TestSupport.dump(dir + "/time.db") == dumps[3])
        }
    }

    @Test func refusesExistingOutputUnlessForced() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, dumps) = try Self.history(dir)
            let out = dir + "/out.db"
            try TestSupport.writeFile(out, [1])
            var r = try Self.rebuild(["--replica", builder.replica.location, "--output", out])
            #expect(r.status != 0)
            #expect(r.stderr.contains("already exists"), "\(r)")
            r = try Self.rebuild(["--replica", builder.replica.location, "--output", out, "--force", "--no-verify"])
            #expect(r.status == 0, "\(r)")
            #expect(!r.stdout.contains("integrity_check"), "\(r)")
            #expect(try TestSupport.dump(out) == dumps[5])
        }
    }

    @Test func reportsGapsCorruptionAndMissingReplicas() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, _) = try Self.history(dir)
            let url = builder.replica.location
            let files = try builder.replica.listFiles(level: 0)

            // Corruption: the message names the file.
            let damaged = builder.replica.path(of: files[1])
            var bytes = try TestSupport.readFile(damaged)
            bytes[bytes.count - 1] ^= 0x55
            try TestSupport.writeFile(damaged, bytes)
            var r = try Self.rebuild(["--replica", url, "--output", dir + "/a.db"])
            #expect(r.status != 0)
            #expect(r.stderr.contains("corrupt LTX file \(damaged)"), "\(r)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/a.db"))

            // Gap: the message names the missing range and the neighbouring files.
            try builder.replica.delete([files[1]])
            r = try Self.rebuild(["--replica", url, "--output", dir + "/b.db"])
            #expect(r.status != 0)
            #expect(r.stderr.contains("TXID 0000000000000002 missing"), "\(r)")
            #expect(r.stderr.contains("L0/0000000000000001-0000000000000001.ltx"), "\(r)")
            #expect(r.stderr.contains("L0/0000000000000003-0000000000000003.ltx"), "\(r)")

            // Nothing there at all.
            r = try Self.rebuild(["--replica", "file://\(dir)/elsewhere", "--output", dir + "/c.db"])
            #expect(r.status != 0)
            #expect(r.stderr.contains("no LTX files in file://\(dir)/elsewhere"), "\(r)")

            // Usage errors.
            r = try Self.rebuild(["--output", dir + "/d.db"])
            #expect(r.status != 0)
            r = try Self.rebuild(["--replica", url, "--output", dir + "/d.db", "--txid", "zebra"])
            #expect(r.status != 0)
            #expect(r.stderr.contains("invalid TXID zebra"), "\(r)")
        }
    }

    @Test func findsTheReplicaThroughTheConfiguration() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, dumps) = try Self.history(dir)
            let config = dir + "/repl.yml"
            try TestSupport.writeFile(
                config,
                Array(
                    """
                    databases:
                      - path: \(dir)/source.db
                        replica:
                          url: \(builder.replica.location)
                    """.utf8))
            var r = try Self.rebuild(["--config", config, "--database", dir + "/source.db", "--output", dir + "/c.db"])
            #expect(r.status == 0, "\(r)")
            #expect(try TestSupport.dump(dir + "/c.db") == dumps[5])
            r = try Self.rebuild(["--config", config, "--database", dir + "/other.db", "--output", dir + "/d.db"])
            #expect(r.status != 0)
            #expect(r.stderr.contains("not configured"), "\(r)")
        }
    }
}
