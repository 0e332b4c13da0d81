import Foundation
import Testing

@testable import VFSReplication

/// The loadable extension in real hosts: the sqlite3 CLI, Debian's python3 and Ruby's sqlite3
/// gem. Each host writes through `?vfs=replicated`; `vfs-rebuild` must restore an equal database.
@Suite("Loadable extension", .serialized)
struct ExtensionTests {
    /// Built by scripts/test: `swift build -c release --scratch-path .build-ext --product vfsreplication -Xswiftc -static-stdlib`.
    static let library: String? = {
        let path = TestSupport.packageRoot + "/.build-ext/release/libvfsreplication.so"
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }()

    private func setUp() throws -> (dir: String, config: String, lib: String)? {
        guard let lib = Self.library else {
            Issue.record("libvfsreplication.so is not built (scripts/test builds it into .build-ext/release)")
            return nil
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        let config = dir + "/replication.yml"
        try """
        databases:
          - path: app.db
            replica:
              url: file://\(dir)/replica
            max-delay: 50ms
        """.write(toFile: config, atomically: true, encoding: .utf8)
        return (dir, config, lib)
    }

    private func expectRebuildEqual(_ dir: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        guard let rebuild = TestSupport.builtProduct("vfs-rebuild") else {
            Issue.record("vfs-rebuild is not built", sourceLocation: sourceLocation)
            return
        }
        let out = dir + "/restored.db"
        let r = try TestSupport.run(rebuild, ["--replica", "file://\(dir)/replica", "--output", out])
        #expect(r.status == 0, "\(r)", sourceLocation: sourceLocation)
        #expect(try TestSupport.dump(out) == TestSupport.dump(dir + "/app.db"), sourceLocation: sourceLocation)
    }

    @Test func exportsOnlyItsEntryPointAndLinksNoSQLite() throws {
        guard let lib = Self.library else {
            Issue.record("libvfsreplication.so is not built")
            return
        }
        let needed = try TestSupport.run("/usr/bin/readelf", ["-d", lib]).stdout
        #expect(!needed.contains("libsqlite3"), "\(needed)")
        #expect(!needed.contains("libswiftCore"), "the Swift runtime must be linked statically: \(needed)")
        let exported = try TestSupport.run("/usr/bin/nm", ["-D", "--defined-only", lib]).stdout
            .split(separator: "\n").filter { line in
                let f = line.split(separator: " ")
                return f.count == 3 && f[1].first.map { $0.isUppercase } == true
            }
        #expect(exported.map { String($0.split(separator: " ")[2]) } == ["sqlite3_vfsreplication_init"])
    }

    @Test func sqlite3CLI() throws {
        guard let (dir, config, lib) = try setUp(), let sqlite3 = TestSupport.sqlite3Path else { return }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let script = """
            .load \(lib)
            .open 'file:\(dir)/app.db?vfs=replicated'
            PRAGMA journal_mode=WAL;
            CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT);
            INSERT INTO t(x) SELECT 'row ' || value FROM generate_series(1, 500);
            UPDATE t SET x = upper(x) WHERE id % 7 = 0;
            DELETE FROM t WHERE id % 11 = 0;
            """
        let r = try TestSupport.run(
            sqlite3, [], environment: TestSupport.extensionEnvironment(config: config), input: script)
        #expect(r.status == 0, "\(r)")
        try expectRebuildEqual(dir)
    }

    @Test func python3() throws {
        guard let (dir, config, lib) = try setUp() else { return }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let code = """
            import sqlite3
            boot = sqlite3.connect(":memory:")
            boot.enable_load_extension(True)
            boot.load_extension("\(lib.replacingOccurrences(of: ".so", with: ""))")
            db = sqlite3.connect("file:\(dir)/app.db?vfs=replicated", uri=True)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
            for i in range(300):
                db.execute("INSERT INTO t(x) VALUES (randomblob(200))")
                db.commit()
            db.execute("DELETE FROM t WHERE id % 3 = 0")
            db.commit()
            db.close()
            """
        let r = try TestSupport.run(
            "/usr/bin/python3", ["-c", code], environment: TestSupport.extensionEnvironment(config: config))
        #expect(r.status == 0, "\(r)")
        try expectRebuildEqual(dir)
    }

    @Test func ruby() throws {
        guard let (dir, config, lib) = try setUp() else { return }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/ruby") else {
            Issue.record("ruby is not installed (scripts/setup installs ruby and ruby-sqlite3)")
            return
        }
        let code = """
            require "sqlite3"
            boot = SQLite3::Database.new(":memory:")
            boot.enable_load_extension(true)
            boot.load_extension("\(lib)")
            flags = SQLite3::Constants::Open::READWRITE | SQLite3::Constants::Open::CREATE | SQLite3::Constants::Open::URI
            db = SQLite3::Database.new("file:\(dir)/app.db?vfs=replicated", flags: flags)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT)")
            200.times { |i| db.execute("INSERT INTO t(x) VALUES (?)", ["ruby #{i}"]) }
            db.transaction { 50.times { |i| db.execute("UPDATE t SET x = ? WHERE id = ?", ["changed", i]) } }
            db.close
            """
        let r = try TestSupport.run(
            "/usr/bin/ruby", ["-e", code], environment: TestSupport.extensionEnvironment(config: config))
        #expect(r.status == 0, "\(r)")
        try expectRebuildEqual(dir)
    }

    @Test func workerProcessesShareOneUploader() throws {
        // Several Python worker processes (Gunicorn-style) write the same database at once.
        guard let (dir, config, lib) = try setUp() else { return }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let code = """
            import sqlite3, os, sys
            boot = sqlite3.connect(":memory:")
            boot.enable_load_extension(True)
            boot.load_extension("\(lib.replacingOccurrences(of: ".so", with: ""))")
            db = sqlite3.connect("file:\(dir)/app.db?vfs=replicated", uri=True, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE IF NOT EXISTS t(id INTEGER PRIMARY KEY, worker INT, n INT)")
            db.commit()
            w = int(sys.argv[1])
            for i in range(150):
                db.execute("INSERT INTO t(worker, n) VALUES (?, ?)", (w, i))
                db.commit()
            db.close()
            """
        let procs = try (0..<3).map { w in
            try TestSupport.BackgroundProcess(
                "/usr/bin/python3", ["-c", code, "\(w)"], environment: TestSupport.extensionEnvironment(config: config),
                logPath: dir + "/worker\(w).log")
        }
        for p in procs {
            p.process.waitUntilExit()
            #expect(
                p.process.terminationStatus == 0, "\((try? String(contentsOfFile: p.logPath, encoding: .utf8)) ?? "")")
        }
        #expect(
            try TestSupport.sqlite(dir + "/app.db", "SELECT count(*) FROM t").trimmingCharacters(
                in: .whitespacesAndNewlines) == "450")
        try expectRebuildEqual(dir)
    }

    // MARK: Failed loads

    /// Ways a load must fail, each with the environment it runs in and a phrase of its error.
    private func failedLoads(_ dir: String) throws -> [(name: String, env: [String: String], error: String)] {
        let unknownKey = dir + "/unknown-key.yml"
        try "databases:\n  - path: app.db\n    replica: {url: file://\(dir)/replica}\n    max_delay: 1s\n"
            .write(toFile: unknownKey, atomically: true, encoding: .utf8)
        let deep = dir + "/deep.yml"
        try ("databases: " + String(repeating: "[", count: 8000) + String(repeating: "]", count: 8000))
            .write(toFile: deep, atomically: true, encoding: .utf8)
        let folder = dir + "/folder.yml"
        try FileManager.default.createDirectory(atPath: dir + "/adir", withIntermediateDirectories: true)
        try "databases:\n  - path: adir\n    replica: {url: file://\(dir)/replica}\n"
            .write(toFile: folder, atomically: true, encoding: .utf8)
        let good = dir + "/replication.yml"
        var nan = TestSupport.extensionEnvironment(config: good)
        nan["VFS_REPLICATION_EXIT_FLUSH_SECONDS"] = "nan"
        var huge = TestSupport.extensionEnvironment(config: good)
        huge["VFS_REPLICATION_EXIT_FLUSH_SECONDS"] = "1e300"
        return [
            (
                "missing config", TestSupport.extensionEnvironment(config: dir + "/missing.yml"),
                "configuration file does not exist"
            ),
            ("unknown key", TestSupport.extensionEnvironment(config: unknownKey), "unknown key 'max_delay'"),
            ("deep nesting", TestSupport.extensionEnvironment(config: deep), "nest more than"),
            ("folder as database", TestSupport.extensionEnvironment(config: folder), "names a folder"),
            ("exit flush nan", nan, "VFS_REPLICATION_EXIT_FLUSH_SECONDS='nan'"),
            ("exit flush 1e300", huge, "VFS_REPLICATION_EXIT_FLUSH_SECONDS='1e300'"),
        ]
    }

    /// A failed `.load` prints one error and leaves the CLI working: no VFS is left registered
    /// (opening through it says so), other databases open and write, and the process exits
    /// normally (it segfaulted at the next `.open`, or with SIGILL at exit).
    @Test func failedLoadLeavesTheSqlite3CLIWorking() throws {
        guard let (dir, _, lib) = try setUp(), let sqlite3 = TestSupport.sqlite3Path else { return }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (name, environment, error) in try failedLoads(dir) {
            let script = """
                .load \(lib)
                .open '\(dir)/plain.db'
                CREATE TABLE IF NOT EXISTS t(x);
                INSERT INTO t VALUES (1);
                SELECT 'rows ' || count(*) FROM t;
                .open 'file:\(dir)/other.db?vfs=replicated'
                SELECT 'alive';
                """
            let r = try TestSupport.run(sqlite3, [], environment: environment, input: script)
            #expect(r.status == 1, "\(name): \(r)")
            #expect(r.stderr.contains(error), "\(name): \(r)")
            #expect(r.stderr.contains("no such vfs: replicated"), "\(name): \(r)")
            #expect(r.stdout.contains("rows ") && r.stdout.hasSuffix("alive\n"), "\(name): \(r)")
            let loadError = r.stderr.split(separator: "\n").filter { $0.contains("vfsreplication") }
            #expect(loadError.count == 1, "\(name): one line: \(r)")
        }
    }

    @Test func failedLoadLeavesPythonWorking() throws {
        guard let (dir, _, lib) = try setUp() else { return }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let code = """
            import os, sqlite3, sys
            boot = sqlite3.connect(":memory:")
            boot.enable_load_extension(True)
            try:
                boot.load_extension("\(lib.replacingOccurrences(of: ".so", with: ""))")
                sys.exit("the load succeeded")
            except sqlite3.OperationalError as e:
                print("load error:", e)
            db = sqlite3.connect("\(dir)/plain.db")
            db.execute("CREATE TABLE IF NOT EXISTS t(x)")
            db.execute("INSERT INTO t VALUES (1)")
            db.commit()
            try:
                sqlite3.connect("file:\(dir)/other.db?vfs=replicated", uri=True)
                sys.exit("the replicated VFS is still registered")
            except sqlite3.OperationalError as e:
                print("open error:", e)
            print("threads", len(os.listdir("/proc/self/task")))
            print("alive")
            """
        for (name, environment, error) in try failedLoads(dir) {
            let r = try TestSupport.run("/usr/bin/python3", ["-c", code], environment: environment)
            #expect(r.status == 0, "\(name): \(r)")
            #expect(r.stdout.contains(error), "\(name): \(r)")
            #expect(r.stdout.contains("open error: no such vfs: replicated"), "\(name): \(r)")
            #expect(r.stdout.contains("threads 1\n"), "\(name): no thread may run: \(r)")
            #expect(r.stdout.hasSuffix("alive\n"), "\(name): \(r)")
        }
    }

    @Test func failedLoadLeavesRubyWorking() throws {
        guard let (dir, _, lib) = try setUp() else { return }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/ruby") else {
            Issue.record("ruby is not installed (scripts/setup installs ruby and ruby-sqlite3)")
            return
        }
        let code = """
            require "sqlite3"
            boot = SQLite3::Database.new(":memory:")
            boot.enable_load_extension(true)
            begin
              boot.load_extension("\(lib)")
              abort "the load succeeded"
            rescue StandardError => e  # the gem raises RuntimeError for a failed load
              puts "load error: #{e.message}"
            end
            db = SQLite3::Database.new("\(dir)/plain.db")
            db.execute("CREATE TABLE IF NOT EXISTS t(x)")
            db.execute("INSERT INTO t VALUES (1)")
            flags = SQLite3::Constants::Open::READWRITE | SQLite3::Constants::Open::CREATE | SQLite3::Constants::Open::URI
            begin
              SQLite3::Database.new("file:\(dir)/other.db?vfs=replicated", flags: flags)
              abort "the replicated VFS is still registered"
            rescue SQLite3::Exception => e
              puts "open error: #{e.message}"
            end
            puts "alive"
            """
        for (name, environment, error) in try failedLoads(dir) {
            let r = try TestSupport.run("/usr/bin/ruby", ["-e", code], environment: environment)
            #expect(r.status == 0, "\(name): \(r)")
            #expect(r.stdout.contains(error), "\(name): \(r)")
            #expect(r.stdout.contains("open error:"), "\(name): \(r)")
            #expect(r.stdout.hasSuffix("alive\n"), "\(name): \(r)")
        }
    }

    /// After a failed load the same process loads a good config and replicates.
    @Test func aGoodLoadAfterAFailedOneReplicates() throws {
        guard let (dir, config, lib) = try setUp() else { return }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let code = """
            import os, sqlite3
            boot = sqlite3.connect(":memory:")
            boot.enable_load_extension(True)
            lib = "\(lib.replacingOccurrences(of: ".so", with: ""))"
            os.environ["VFS_REPLICATION_CONFIG"] = "\(dir)/missing.yml"
            try:
                boot.load_extension(lib)
            except sqlite3.OperationalError as e:
                print("load error:", e)
            os.environ["VFS_REPLICATION_CONFIG"] = "\(config)"
            boot.load_extension(lib)
            db = sqlite3.connect("file:\(dir)/app.db?vfs=replicated", uri=True)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE t(x)")
            for i in range(50):
                db.execute("INSERT INTO t VALUES (?)", (i,))
                db.commit()
            db.close()
            """
        let r = try TestSupport.run(
            "/usr/bin/python3", ["-c", code], environment: TestSupport.extensionEnvironment(config: config))
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.contains("vfsreplication: \(dir)/missing.yml: configuration file does not exist"), "\(r)")
        try expectRebuildEqual(dir)
    }
}

/// `vfs_replication_add` and `vfs_replication_remove`: a host adds and removes databases while
/// replication runs (a tenant's new database), without a restart.
@Suite("Loadable extension: databases added while running", .serialized)
struct ExtensionAddRemoveTests {
    @Test func sqlite3CLIAddsAndRemovesADatabase() throws {
        guard let lib = ExtensionTests.library, let sqlite3 = TestSupport.sqlite3Path,
            let rebuild = TestSupport.builtProduct("vfs-rebuild")
        else {
            Issue.record("libvfsreplication.so, sqlite3 or vfs-rebuild is missing")
            return
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try TestSupport.fileReplicaConfig(dir: dir, maxDelay: "1s").sourcePath!
        let script = """
            .load \(lib)
            SELECT vfs_replication_add('tenant.db', 'file://\(dir)/replica-tenant');
            .open 'file:\(dir)/tenant.db?vfs=replicated'
            PRAGMA journal_mode=WAL;
            CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT);
            INSERT INTO t(x) SELECT 'row ' || value FROM generate_series(1, 300);
            SELECT 'removed', vfs_replication_remove('\(dir)/tenant.db');
            SELECT 'again', vfs_replication_remove('\(dir)/tenant.db');
            """
        let r = try TestSupport.run(
            sqlite3, [], environment: TestSupport.extensionEnvironment(config: config), input: script)
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.contains(dir + "/tenant.db"), "\(r)")
        #expect(r.stdout.contains("removed|1") && r.stdout.contains("again|0"), "\(r)")
        // What it committed before the removal is in its replica.
        let out = dir + "/restored.db"
        let rb = try TestSupport.run(rebuild, ["--replica", "file://\(dir)/replica-tenant", "--output", out])
        #expect(rb.status == 0, "\(rb)")
        #expect(try TestSupport.sqlite(out, "SELECT count(*) FROM t;") == "300\n")

        // Twice, or without replication running: an error naming the database.
        let twice = try TestSupport.run(
            sqlite3, [], environment: TestSupport.extensionEnvironment(config: config),
            input: ".load \(lib)\nSELECT vfs_replication_add('app.db', 'file://\(dir)/other');\n")
        #expect(twice.stderr.contains("app.db is already replicated"), "\(twice)")
        var bare = TestSupport.childEnvironment()
        bare["VFS_REPLICATION_CONFIG"] = nil
        let none = try TestSupport.run(
            sqlite3, [], environment: bare,
            input: ".load \(lib)\nSELECT vfs_replication_add('x.db', 'file://\(dir)/x');\n")
        #expect(none.stderr.contains("replication is not running in this process"), "\(none)")
    }

    /// A database added while running gets the config's `defaults`, as a listed one does: here
    /// encryption. Before, it got built-in defaults, so a tenant added at run time was shipped
    /// in plain text beside encrypted ones, silently.
    @Test func anAddedDatabaseGetsTheConfigDefaults() throws {
        guard let lib = ExtensionTests.library, let sqlite3 = TestSupport.sqlite3Path else {
            Issue.record("libvfsreplication.so or sqlite3 is missing")
            return
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let key = String(repeating: "3c", count: 32)
        let config = dir + "/replication.yml"
        try """
        defaults:
          max-delay: 100ms
          replica:
            encryption:
              key-id: k1
              keys:
                k1: env:VFSREPL_ADD_KEY
        databases:
          - path: app.db
            replica:
              url: file://\(dir)/replica
        """.write(toFile: config, atomically: true, encoding: .utf8)
        let script = """
            .load \(lib)
            SELECT vfs_replication_add('tenant.db', 'file://\(dir)/replica-tenant');
            .open 'file:\(dir)/tenant.db?vfs=replicated'
            PRAGMA journal_mode=WAL;
            CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT);
            INSERT INTO t(x) SELECT 'secret row ' || value FROM generate_series(1, 50);
            """
        var env = TestSupport.extensionEnvironment(config: config)
        env["VFSREPL_ADD_KEY"] = key
        let r = try TestSupport.run(sqlite3, [], environment: env, input: script)
        #expect(r.status == 0, "\(r)")
        // Every object of the added database's replica is sealed, none is plain LTX.
        let files = (FileManager.default.enumerator(atPath: dir + "/replica-tenant")?.allObjects as? [String] ?? [])
            .filter { $0.hasSuffix(".ltx") }
        #expect(!files.isEmpty, "nothing was shipped for the added database: \(r)")
        for f in files {
            let sealed = try TestSupport.readFile(dir + "/replica-tenant/" + f).starts(with: SealedObject.magic)
            #expect(sealed, "\(f) is not encrypted")
        }
        // A typo in the call is named, with the call.
        let bad = try TestSupport.run(
            sqlite3, [], environment: env,
            input: ".load \(lib)\nSELECT vfs_replication_add('other.db', 'flie:///tmp/x');\n")
        #expect(bad.stderr.contains("vfs_replication_add('other.db', 'flie:///tmp/x')"), "\(bad)")
    }
}
