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

    @Test func listsRestorePointsPerLevel() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, _) = try Self.history(dir)
            let r = try Self.rebuild(["--list", "--replica", builder.replica.location])
            #expect(r.status == 0, "\(r)")
            let lines = r.stdout.split(separator: "\n").map(String.init)
            #expect(lines.count == 7, "\(r)")
            #expect(
                lines.first?.hasPrefix(
                    "replica \(builder.replica.location): 5 files, ") == true, "\(r)")
            #expect(
                lines.first?.hasSuffix(
                    "restore points from TXID 0000000000000001 (2025-06-15T15:06:50.000Z) "
                        + "to TXID 0000000000000005 (2025-06-15T15:07:30.000Z)") == true, "\(r)")
            #expect(
                lines[1].hasPrefix("level 0 (shipped batches): 5 files, ")
                    && lines[1].hasSuffix(
                        ", 5 restore points from 2025-06-15T15:06:50.000Z to 2025-06-15T15:07:30.000Z"),
                "\(r)")
            #expect(lines[2].hasPrefix("  0000000000000001-0000000000000001  2025-06-15T15:06:50.000Z  "), "\(r)")
            #expect(lines[2].hasSuffix("  \(dir)/replica/ltx/0/0000000000000001-0000000000000001.ltx"), "\(r)")
            #expect(lines.last?.hasPrefix("  0000000000000005-0000000000000005  2025-06-15T15:07:30.000Z  ") == true)

            let json = try Self.rebuild(["--list", "--json", "--replica", builder.replica.location])
            #expect(json.status == 0, "\(json)")
            let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
            #expect(object?["files"] as? Int == 5)
            #expect(object?["restore_points"] as? Int == 5)
            let levels = object?["levels"] as? [[String: Any]]
            #expect(levels?.first?["level"] as? Int == 0)
            #expect((levels?.first?["files"] as? [Any])?.count == 5)
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
            #expect(r.stdout.contains(": download and apply ") && r.stdout.contains(", verify "), "\(r)")
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

    @Test func dryRunPrintsThePlanWithoutDownloading() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, _) = try Self.history(dir)
            let url = builder.replica.location
            var r = try Self.rebuild(["--dry-run", "--replica", url, "--txid", "3"])
            #expect(r.status == 0, "\(r)")
            let lines = r.stdout.split(separator: "\n").map(String.init)
            #expect(
                lines.first
                    == "plan for TXID 0000000000000003 from \(url): restore point TXID 0000000000000003 (3), "
                    + "time 2025-06-15T15:07:10.000Z")
            #expect(lines.count == 5)
            #expect(lines[1].hasPrefix("  level 0  0000000000000001-0000000000000001  2025-06-15T15:06:50.000Z  "))
            #expect(lines.last?.hasPrefix("3 files, ") == true)
            #expect(lines.last?.hasSuffix(" to download: 3 GET requests (after 2 LIST requests)") == true, "\(r)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/out.db"))

            r = try Self.rebuild(["--dry-run", "--json", "--replica", url])
            #expect(r.status == 0, "\(r)")
            let plan = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            #expect(plan?["txid"] as? Int == 5)
            #expect(plan?["txid_hex"] as? String == "0000000000000005")
            #expect((plan?["files"] as? [Any])?.count == 5)
            #expect((plan?["requests"] as? [String: Int])?["GET"] == 5)
            #expect((plan?["bytes"] as? Int ?? 0) > 0)
        }
    }

    @Test func jsonResultAndProgressOnStandardError() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, dumps) = try Self.history(dir)
            var r = try Self.rebuild(["--json", "--replica", builder.replica.location, "--output", dir + "/j.db"])
            #expect(r.status == 0, "\(r)")
            let result = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            #expect(result?["status"] as? String == "restored")
            #expect(result?["txid"] as? Int == 5)
            #expect(result?["output"] as? String == dir + "/j.db")
            #expect((result?["verified"] as? [String: Bool])?["integrity_check"] == true)
            #expect(try TestSupport.dump(dir + "/j.db") == dumps[5])
            // Where the time went, machine-readable (benchmarks/run restore reads it): both parts
            // measured, neither longer than the whole.
            let seconds = try #require(result?["seconds"] as? Double)
            let timings = try #require(result?["timings"] as? [String: Double], "\(r)")
            let apply = try #require(timings["download_apply_seconds"])
            let verify = try #require(timings["verify_seconds"])
            #expect(apply > 0 && verify > 0, "\(timings)")
            #expect(apply + verify <= seconds, "\(timings), \(seconds) s in all")

            // Not a terminal: plain progress lines on standard error, the result on standard output.
            r = try Self.rebuild(["--replica", builder.replica.location, "--output", dir + "/p.db"])
            #expect(r.status == 0, "\(r)")
            #expect(r.stderr.contains("restore: 100% "), "\(r)")
            #expect(r.stderr.contains("5/5 files"), "\(r)")
            #expect(!r.stdout.contains("restore: "))
            r = try Self.rebuild(["--quiet", "--replica", builder.replica.location, "--output", dir + "/q.db"])
            #expect(r.status == 0 && r.stderr.isEmpty, "\(r)")
        }
    }

    @Test func allRestoresTheMissingDatabasesOfAConfiguration() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, dumps) = try Self.history(dir)
            let config = dir + "/repl.yml"
            try FileManager.default.createDirectory(atPath: dir + "/app", withIntermediateDirectories: true)
            try TestSupport.writeFile(
                config,
                Array(
                    """
                    databases:
                      - path: app/main.db
                        replica:
                          url: \(builder.replica.location)
                      - path: app/empty.db
                        replica:
                          url: file://\(dir)/never-written
                    """.utf8))
            // The second replica has no files: without --if-replica-exists that is a failure.
            var r = try Self.rebuild(["--config", config, "--all", "--if-db-not-exists", "--quiet"])
            #expect(r.status != 0, "\(r)")
            #expect(r.stderr.contains("1 of 2 databases failed"), "\(r)")
            #expect(r.stderr.contains("no LTX files in file://\(dir)/never-written"), "\(r)")
            #expect(try TestSupport.dump(dir + "/app/main.db") == dumps[5])

            // Fresh server: both missing, restore what can be restored.
            try FileManager.default.removeItem(atPath: dir + "/app/main.db")
            r = try Self.rebuild(["--config", config, "--all", "--if-db-not-exists", "--if-replica-exists", "--quiet"])
            #expect(r.status == 0, "\(r)")
            let lines = r.stdout.split(separator: "\n").map(String.init)
            #expect(lines.count == 3, "\(r)")
            #expect(
                lines[0].hasPrefix(
                    "restored \(dir)/app/main.db from \(builder.replica.location): TXID 0000000000000005"))
            #expect(lines[1] == "skipped \(dir)/app/empty.db: no LTX files in file://\(dir)/never-written")
            #expect(lines[2] == "1 restored, 1 skipped, 0 failed (\(config))")
            #expect(try TestSupport.dump(dir + "/app/main.db") == dumps[5])
            // Rebuilt in place: replicating it continues the replica's lineage.
            let marker = try JSONSerialization.jsonObject(
                with: Data(contentsOf: URL(fileURLWithPath: dir + "/app/main.db-vfsrepl/restored.json")))
            #expect((marker as? [String: Any])?["txid"] as? Int == 5)

            // Nothing to restore: exit 0.
            r = try Self.rebuild(["--config", config, "--all", "--if-db-not-exists", "--if-replica-exists", "--json"])
            #expect(r.status == 0, "\(r)")
            let all = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            #expect(all?["restored"] as? Int == 0)
            #expect(all?["skipped"] as? Int == 2)
            let first = (all?["databases"] as? [[String: Any]])?.first
            #expect(first?["status"] as? String == "skipped")
            #expect(first?["reason"] as? String == "\(dir)/app/main.db exists")

            // One database, to its configured path.
            try FileManager.default.removeItem(atPath: dir + "/app/main.db")
            r = try Self.rebuild(["--config", config, "--database", dir + "/app/main.db", "--if-db-not-exists"])
            #expect(r.status == 0, "\(r)")
            #expect(try TestSupport.dump(dir + "/app/main.db") == dumps[5])
            r = try Self.rebuild(["--config", config, "--database", dir + "/app/main.db", "--if-db-not-exists"])
            #expect(r.status == 0 && r.stdout == "skipped \(dir)/app/main.db: \(dir)/app/main.db exists\n", "\(r)")

            // Usage: --all takes no --output.
            r = try Self.rebuild(["--config", config, "--all", "--output", dir + "/x.db"])
            #expect(r.status != 0)
        }
    }
}
