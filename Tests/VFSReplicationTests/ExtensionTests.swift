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

    private func env(_ config: String) -> [String: String] {
        var e = TestSupport.childEnvironment()
        e["VFS_REPLICATION_CONFIG"] = config
        return e
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
        let r = try TestSupport.run(sqlite3, [], environment: env(config), input: script)
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
        let r = try TestSupport.run("/usr/bin/python3", ["-c", code], environment: env(config))
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
        let r = try TestSupport.run("/usr/bin/ruby", ["-e", code], environment: env(config))
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
                "/usr/bin/python3", ["-c", code, "\(w)"], environment: env(config), logPath: dir + "/worker\(w).log")
        }
        for p in procs {
            p.process.waitUntilExit()
            #expect(p.process.terminationStatus == 0, "\((try? String(contentsOfFile: p.logPath, encoding: .utf8)) ?? "")")
        }
        #expect(try TestSupport.sqlite(dir + "/app.db", "SELECT count(*) FROM t").trimmingCharacters(in: .whitespacesAndNewlines) == "450")
        try expectRebuildEqual(dir)
    }
}
