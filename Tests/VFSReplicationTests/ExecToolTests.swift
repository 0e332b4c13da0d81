import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// `vfs-replicate exec -- CMD`: the built binary runs a real child (`/bin/sh` scripts, the
/// `vfs-bench write` writer through the replicated VFS, the sqlite3 CLI) and the tests check
/// what reached a directory replica, the exit status, the signals and the restore before start.
@Suite(
    "vfs-replicate exec",
    .serialized,
    .enabled(if: TestSupport.builtProduct("vfs-replicate") != nil, "vfs-replicate binary not built next to the tests"),
    .enabled(if: TestSupport.builtProduct("vfs-bench") != nil, "vfs-bench binary not built next to the tests"),
    .enabled(if: TestSupport.builtProduct("vfs-rebuild") != nil, "vfs-rebuild binary not built next to the tests"),
    .enabled(if: TestSupport.sqlite3Path != nil, "sqlite3 CLI not found")
)
struct ExecToolTests {
    static var replicate: String { TestSupport.builtProduct("vfs-replicate")! }
    static var bench: String { TestSupport.builtProduct("vfs-bench")! }

    /// `dir/replication.yml` for `dir/app.db` with a directory replica. max-delay 1 h: nothing
    /// ships on its own during a test, so what is in the replica came from a flush.
    static func config(_ dir: String) throws -> String {
        _ = try TestSupport.fileReplicaConfig(dir: dir, maxDelay: "1h")
        return dir + "/replication.yml"
    }

    /// A shell command that writes `n` transactions to `dir/app.db` through the VFS and ships
    /// none of them itself (`--no-upload`: exec's uploader must).
    static func writer(_ dir: String, _ n: Int, upload: Bool = false) -> String {
        "'\(bench)' write --config '\(dir)/replication.yml' --database '\(dir)/app.db' --transactions \(n)"
            + (upload ? "" : " --no-upload")
    }

    static func exec(_ dir: String, _ options: [String] = [], _ script: String) throws -> TestSupport.ProcessResult {
        try TestSupport.run(
            replicate, ["exec", "--config", try config(dir)] + options + ["--", "/bin/sh", "-c", script])
    }

    /// The replica rebuilt into `dir/rebuilt.db`, as a .dump.
    static func replicaDump(_ dir: String) throws -> String {
        let out = dir + "/rebuilt-\(UUID().uuidString).db"
        let r = try TestSupport.run(
            TestSupport.builtProduct("vfs-rebuild")!, ["--replica", "file://\(dir)/replica", "--output", out, "-q"])
        guard r.status == 0 else { throw TestFailure("vfs-rebuild failed: \(r)") }
        return try TestSupport.dump(out)
    }

    @Test func theChildsCommitsReachTheReplicaWhenItExits() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let r = try Self.exec(dir, [], Self.writer(dir, 25))
            #expect(r.status == 0, "\(r)")
            #expect(r.stdout.contains("committed 25 transactions"), "the child's output is its own: \(r)")
            let rows = try TestSupport.sqlite(dir + "/app.db", "SELECT count(*) FROM bench;")
            #expect(rows.trimmingCharacters(in: .whitespacesAndNewlines) == "25")
            #expect(try Self.replicaDump(dir) == TestSupport.dump(dir + "/app.db"))
        }
    }

    @Test func aChildWithItsOwnUploaderCooperates() throws {
        try TestSupport.withTemporaryDirectory { dir in
            // The child replicates in-process too: both take part in the election, one ships.
            let r = try Self.exec(dir, [], Self.writer(dir, 10, upload: true) + " && " + Self.writer(dir, 10))
            #expect(r.status == 0, "\(r)")
            #expect(!r.stderr.lowercased().contains("fenced"), "\(r)")
            #expect(!r.stderr.contains("could not flush"), "\(r)")
            #expect(try Self.replicaDump(dir) == TestSupport.dump(dir + "/app.db"))
            #expect(try TestSupport.sqlite(dir + "/app.db", "SELECT count(*) FROM bench;").hasPrefix("20"))
        }
    }

    /// The child is the sqlite3 CLI with the loadable extension (its own uploader, from
    /// VFS_REPLICATION_CONFIG in the environment it inherits), reading its SQL from the standard
    /// input it inherits from exec.
    @Test func theSqlite3CLIWithTheExtensionAsTheChild() throws {
        guard let lib = ExtensionTests.library else {
            Issue.record("libvfsreplication.so is not built (scripts/test builds it into .build-ext/release)")
            return
        }
        try TestSupport.withTemporaryDirectory { dir in
            let config = try Self.config(dir)
            let script = """
                .load \(lib)
                .open 'file:\(dir)/app.db?vfs=replicated'
                PRAGMA journal_mode=WAL;
                CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT);
                INSERT INTO t(x) SELECT 'row ' || value FROM generate_series(1, 300);
                DELETE FROM t WHERE id % 7 = 0;
                SELECT count(*) FROM t;
                """
            let r = try TestSupport.run(
                Self.replicate, ["exec", "--config", config, "--", TestSupport.sqlite3Path!],
                environment: TestSupport.extensionEnvironment(config: config), input: script)
            #expect(r.status == 0, "\(r)")
            #expect(r.stdout.contains("wal\n258\n"), "the child read exec's standard input: \(r)")
            #expect(!r.stderr.contains("could not flush"), "\(r)")
            #expect(try Self.replicaDump(dir) == TestSupport.dump(dir + "/app.db"))
        }
    }

    @Test func theExitStatusIsTheChilds() throws {
        try TestSupport.withTemporaryDirectory { dir in
            #expect(try Self.exec(dir, [], "exit 0").status == 0)
            let three = try Self.exec(dir, [], Self.writer(dir, 3) + " && exit 3")
            #expect(three.status == 3, "\(three)")
            // The commits before a failing exit are flushed all the same.
            #expect(try Self.replicaDump(dir) == TestSupport.dump(dir + "/app.db"))
            let killed = try Self.exec(dir, [], "kill -KILL $$")
            #expect(killed.status == 128 + SIGKILL, "\(killed)")
            // Started with SIGCHLD ignored (children reaped by the kernel): the status all the same.
            let ignoring = try TestSupport.run(
                "/usr/bin/python3",
                [
                    "-c",
                    "import os, signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); os.execv(sys.argv[1], sys.argv[1:])",
                    Self.replicate, "exec", "--config", try Self.config(dir), "--", "/bin/sh", "-c",
                    "sleep 0.2; exit 5",
                ])
            #expect(ignoring.status == 5, "\(ignoring)")
        }
    }

    @Test func signalsReachTheChild() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let config = try Self.config(dir)
            let script =
                Self.writer(dir, 5) + " >/dev/null"
                + "; trap 'echo got-usr1' USR1; trap 'echo got-hup' HUP; trap 'exit 7' TERM; echo child-ready"
                + "; while :; do sleep 0.05; done"
            let process = try TestSupport.BackgroundProcess(
                Self.replicate, ["exec", "--config", config, "--", "/bin/sh", "-c", script], logPath: dir + "/exec.log")
            defer { process.stop(timeout: 5) }
            #expect(TestSupport.waitUntil(timeout: 30) { process.log.contains("child-ready") }, "\(process.log)")
            // exec started first, so it is the elected uploader (the writer shipped nothing).
            let holder = DatabaseInUse.uploaderHolder(ReplicationFiles(databasePath: dir + "/app.db"))
            #expect(holder?.pid == process.process.processIdentifier, "\(String(describing: holder))")
            kill(process.process.processIdentifier, SIGUSR1)
            #expect(TestSupport.waitUntil(timeout: 10) { process.log.contains("got-usr1") }, "\(process.log)")
            kill(process.process.processIdentifier, SIGHUP)
            #expect(TestSupport.waitUntil(timeout: 10) { process.log.contains("got-hup") }, "\(process.log)")
            kill(process.process.processIdentifier, SIGTERM)
            process.process.waitUntilExit()
            #expect(process.process.terminationReason == .exit)
            #expect(process.process.terminationStatus == 7, "\(process.log)")
            #expect(try Self.replicaDump(dir) == TestSupport.dump(dir + "/app.db"))
        }
    }

    @Test func missingDatabasesAreRestoredBeforeTheChildStarts() throws {
        try TestSupport.withTemporaryDirectory { dir in
            var r = try Self.exec(dir, [], Self.writer(dir, 12))
            #expect(r.status == 0, "\(r)")
            let original = try TestSupport.dump(dir + "/app.db")
            // A new container: no database, no spool.
            for suffix in ["", "-wal", "-shm"] { unlink(dir + "/app.db" + suffix) }
            try FileManager.default.removeItem(atPath: dir + "/app.db-vfsrepl")

            // The child reads the database with plain sqlite3 the moment it starts.
            r = try Self.exec(
                dir, ["--restore-if-missing"],
                "'\(TestSupport.sqlite3Path!)' '\(dir)/app.db' 'SELECT count(*) FROM bench;' && " + Self.writer(dir, 3))
            #expect(r.status == 0, "\(r)")
            #expect(r.stdout.hasPrefix("12\n"), "\(r)")
            #expect(r.stderr.contains("restored \(dir)/app.db"), "\(r)")
            #expect(try TestSupport.sqlite(dir + "/app.db", "SELECT count(*) FROM bench;").hasPrefix("15"))
            // The restore continued the replica's lineage: the three new commits follow on.
            #expect(try Self.replicaDump(dir) == TestSupport.dump(dir + "/app.db"))
            #expect(original != (try TestSupport.dump(dir + "/app.db")))

            // Present now: left alone.
            r = try Self.exec(dir, ["--restore-if-missing"], "exit 0")
            #expect(r.status == 0 && r.stderr.contains("skipped \(dir)/app.db: "), "\(r)")
            #expect(!r.stderr.contains("restored \(dir)/app.db"), "\(r)")
        }
    }

    @Test func aFailedRestoreNamesTheDatabaseAndTheChildNeverStarts() throws {
        try TestSupport.withTemporaryDirectory { dir in
            var r = try Self.exec(dir, [], Self.writer(dir, 4))
            #expect(r.status == 0, "\(r)")
            for suffix in ["", "-wal", "-shm"] { unlink(dir + "/app.db" + suffix) }
            try FileManager.default.removeItem(atPath: dir + "/app.db-vfsrepl")
            // Every file of the replica damaged in the middle: no chain can be applied.
            let files = FileManager.default.enumerator(atPath: dir + "/replica")!.compactMap { $0 as? String }
                .filter { $0.hasSuffix(".ltx") }
            #expect(!files.isEmpty)
            for file in files {
                var bytes = try TestSupport.readFile(dir + "/replica/" + file)
                bytes[bytes.count / 2] ^= 0xff
                try TestSupport.writeFile(dir + "/replica/" + file, bytes)
            }
            r = try Self.exec(dir, ["--restore-if-missing"], "touch '\(dir)/child-ran'")
            #expect(r.status == 1, "\(r)")
            #expect(r.stderr.contains("not starting the command: restore failed"), "\(r)")
            #expect(r.stderr.contains("\(dir)/app.db"), "\(r)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/child-ran"))
            #expect(!FileManager.default.fileExists(atPath: dir + "/app.db"))
        }
    }

    @Test func aDatabaseThatCannotBeFlushedIsNamedWithinTheTimeout() throws {
        try TestSupport.withTemporaryDirectory { dir in
            _ = try Self.config(dir)
            // The replica's directory is a plain file: every upload fails.
            try "not a directory".write(toFile: dir + "/replica", atomically: true, encoding: .utf8)
            let started = Date()
            let r = try Self.exec(dir, ["--flush-timeout", "2"], Self.writer(dir, 3) + " && exit 4")
            #expect(r.status == 4, "the child's status, flushed or not: \(r)")
            #expect(r.stderr.contains("could not flush \(dir)/app.db"), "\(r)")
            #expect(r.stderr.contains("1 of 1 databases not flushed within 2 s"), "\(r)")
            // Bounded: the 2 s flush and a short stop, not the 30 s default.
            #expect(Date().timeIntervalSince(started) < 25, "\(r)")
        }
    }

    @Test func aCommandThatCannotRunGives127Or126() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let config = try Self.config(dir)
            var r = try TestSupport.run(Self.replicate, ["exec", "--config", config, "--", "no-such-command-x", "arg"])
            #expect(r.status == 127, "\(r)")
            #expect(r.stderr.contains("cannot run no-such-command-x: not found in PATH"), "\(r)")
            r = try TestSupport.run(Self.replicate, ["exec", "--config", config, "--", config])
            #expect(r.status == 126, "\(r)")
            #expect(r.stderr.contains("cannot run \(config): not executable"), "\(r)")
            r = try TestSupport.run(Self.replicate, ["exec", "--config", config])
            #expect(r.status != 0 && r.stderr.contains("name the command to run after --"), "\(r)")
        }
    }
}
