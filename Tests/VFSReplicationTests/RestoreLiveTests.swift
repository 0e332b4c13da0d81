import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// A restore never replaces a database that a process has open or replicates (`--force` or not),
/// and a database restored before the app boots is healthy while it waits for its first open.
/// Real processes: the writer is `vfs-bench write`, the holders are Debian's python3 and the
/// `vfs-replicate` sidecar, the tools are the built binaries.
@Suite(
    "Restore onto a live database",
    .serialized,
    .enabled(if: TestSupport.builtProduct("vfs-rebuild") != nil, "vfs-rebuild binary not built next to the tests"),
    .enabled(if: TestSupport.builtProduct("vfs-bench") != nil, "vfs-bench binary not built next to the tests"),
    .enabled(if: TestSupport.sqlite3Path != nil, "sqlite3 CLI not found")
)
struct RestoreLiveTests {
    static func tool(_ name: String, _ arguments: [String]) throws -> TestSupport.ProcessResult {
        try TestSupport.run(TestSupport.builtProduct(name)!, arguments)
    }

    /// A replicated database `app.db` with 30 transactions, in `dir`; returns the config path.
    static func replicatedDatabase(_ dir: String) throws -> String {
        let config = try writeReplicationConfig(dir: dir)
        let r = try tool("vfs-bench", ["write", "--config", config, "--database", dir + "/app.db", "--transactions", "30"])
        guard r.status == 0 else { throw TestFailure("vfs-bench write failed: \(r)") }
        return config
    }

    /// A python3 process holding the database open with plain SQLite (an idle WAL connection);
    /// returns once the connection has read the database.
    static func holdOpen(_ database: String, log: String) throws -> TestSupport.BackgroundProcess {
        let python = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") ? "/usr/bin/python3" : "python3"
        let script = """
            import sqlite3, sys, time
            c = sqlite3.connect(sys.argv[1])
            c.execute("SELECT count(*) FROM sqlite_master").fetchall()
            print("ready", flush=True)
            time.sleep(120)
            """
        let holder = try TestSupport.BackgroundProcess(
            "/usr/bin/env", [python, "-c", script, database], logPath: log)
        guard TestSupport.waitUntil(timeout: 30, { holder.log.contains("ready") }) else {
            holder.stop()
            throw TestFailure("the holder did not open \(database): \(holder.log)")
        }
        return holder
    }

    // Failed before the fix: `vfs-rebuild --force` replaced the database under the open
    // connection (exit 0, "restored ...").
    @Test func refusesToReplaceADatabaseAProcessHasOpenEvenWithForce() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let config = try Self.replicatedDatabase(dir)
            let db = dir + "/app.db"
            let before = try TestSupport.dump(db)
            let holder = try Self.holdOpen(db, log: dir + "/holder.log")
            defer { holder.stop() }
            let pid = holder.process.processIdentifier

            for arguments in [
                ["--config", config, "--database", dir + "/app.db", "--force"],
                ["--config", config, "--all", "--force"],
                ["--replica", "file://\(dir)/replica", "--output", db, "--force"],
            ] {
                let r = try Self.tool("vfs-rebuild", arguments)
                #expect(r.status != 0, "\(arguments): \(r)")
                #expect(r.stderr.contains("database \(db) is in use: pid \(pid)"), "\(arguments): \(r)")
                #expect(r.stderr.contains("even with --force"), "\(arguments): \(r)")
                #expect(!r.stdout.contains("restored \(db)"), "\(arguments): \(r)")
            }
            #expect(try TestSupport.dump(db) == before)

            // Once nothing holds it, --force replaces it.
            holder.stop()
            let r = try Self.tool("vfs-rebuild", ["--config", config, "--database", dir + "/app.db", "--force"])
            #expect(r.status == 0, "\(r)")
            #expect(try TestSupport.dump(db) == before)
        }
    }

    // Failed before the fix: the restore replaced the database (and removed its spool state)
    // while the sidecar was replicating it.
    @Test func refusesToReplaceADatabaseAProcessReplicates() throws {
        guard let replicate = TestSupport.builtProduct("vfs-replicate") else {
            Issue.record("vfs-replicate is not built next to the tests")
            return
        }
        try TestSupport.withTemporaryDirectory { dir in
            let config = try Self.replicatedDatabase(dir)
            let sidecar = try TestSupport.BackgroundProcess(replicate, ["--config", config], logPath: dir + "/sidecar.log")
            defer { sidecar.stop() }
            let files = ReplicationFiles(databasePath: dir + "/app.db")
            #expect(TestSupport.waitUntil(timeout: 30) { DatabaseInUse.uploaderHolder(files) != nil }, "\(sidecar.log)")
            let r = try Self.tool("vfs-rebuild", ["--config", config, "--database", dir + "/app.db", "--force"])
            #expect(r.status != 0, "\(r)")
            #expect(r.stderr.contains("is in use: pid \(sidecar.process.processIdentifier)"), "\(r)")
            #expect(FileManager.default.fileExists(atPath: files.stateFile), "the spool state must be left alone")
        }
    }

    @Test func aDatabaseNothingUsesIsFree() throws {
        try TestSupport.withTemporaryDirectory { dir in
            _ = try Self.replicatedDatabase(dir)
            #expect(DatabaseInUse.firstHolder(of: dir + "/app.db") == nil)
            #expect(DatabaseInUse.firstHolder(of: dir + "/missing.db") == nil)
        }
    }

    // Failed before the fix: vfs-status said UNHEALTHY ("no replication state: no process has
    // registered this database") right after the deploy's restore step, and exited 1.
    @Test func aRestoredDatabaseIsHealthyUntilItsFirstOpen() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let config = try Self.replicatedDatabase(dir)
            let db = dir + "/app.db"
            let original = try TestSupport.dump(db)
            // A new server: no database, no spool state.
            for suffix in ["", "-wal", "-shm"] { unlink(db + suffix) }
            try FileManager.default.removeItem(atPath: db + "-vfsrepl")

            var r = try Self.tool("vfs-rebuild", ["--config", config, "--all", "--if-db-not-exists"])
            #expect(r.status == 0, "\(r)")
            #expect(try TestSupport.dump(db) == original)

            r = try Self.tool("vfs-status", ["--config", config])
            #expect(r.status == 0, "\(r)")
            #expect(r.stdout.contains("\(dir)/app.db  ok  restored TXID "), "\(r)")
            #expect(r.stdout.contains("waiting for its first open"), "\(r)")
            r = try Self.tool("vfs-status", ["--config", config, "--json"])
            #expect(r.status == 0, "\(r)")
            let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
            let first = (object?["databases"] as? [[String: Any]])?.first
            #expect(first?["healthy"] as? Bool == true, "\(r)")
            #expect((first?["restored"] as? [String: Any])?["waitingForFirstOpen"] as? Bool == true, "\(r)")

            // The file changed behind our back (written without the VFS): no longer vouched for.
            try TestSupport.sqlite(db, "CREATE TABLE sneaky(x);")
            r = try Self.tool("vfs-status", ["--config", config])
            #expect(r.status != 0, "\(r)")

            // Restored again, then the app opens and writes: an ordinary healthy database.
            for suffix in ["", "-wal", "-shm"] { unlink(db + suffix) }
            r = try Self.tool("vfs-rebuild", ["--config", config, "--all", "--if-db-not-exists"])
            #expect(r.status == 0, "\(r)")
            r = try Self.tool("vfs-bench", ["write", "--config", config, "--database", db, "--transactions", "5"])
            #expect(r.status == 0, "\(r)")
            r = try Self.tool("vfs-status", ["--config", config])
            #expect(r.status == 0, "\(r)")
            #expect(!r.stdout.contains("waiting for its first open"), "\(r)")
        }
    }
}
