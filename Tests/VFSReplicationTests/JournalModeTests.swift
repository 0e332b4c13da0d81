import CSQLite
import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// Databases that are not in WAL mode (issue 10, item 4): a new database becomes WAL by itself,
/// an existing rollback-journal database is converted, or (when another connection keeps it in
/// rollback mode) its writes are refused before any journal is written. Never wedged.
@Suite("Journal modes: new and rollback-journal databases", .serialized)
struct JournalModeTests {
    /// A rollback-journal (DELETE mode) database with rows, written by plain sqlite3.
    private static func makeRollbackDatabase(_ path: String) throws {
        try TestSupport.sqlite(
            path,
            """
            CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT);
            INSERT INTO t(x) SELECT 'old ' || value FROM generate_series(1, 200);
            """)
        let mode = try TestSupport.sqlite(path, "PRAGMA journal_mode;").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(mode == "delete")
    }

    private static func journalMode(_ path: String) throws -> String {
        try TestSupport.sqlite(path, "PRAGMA journal_mode;").trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func newDatabaseWithoutPragmaBecomesWAL() throws {
        let f = try ReplicatedFixture()
        let c = try Conn(f.dbPath)  // no PRAGMA journal_mode
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        try c.insertBlobs(20, bytes: 200)
        #expect(try c.scalar("PRAGMA journal_mode") == "wal")
        try f.flush()
        #expect(f.status.durableTXID > 0)
        let (out, _) = try f.rebuild()
        try f.expectEqual(out)
    }

    @Test func rollbackJournalDatabaseIsConverted() throws {
        let f = try ReplicatedFixture(prepare: Self.makeRollbackDatabase)
        let c = try Conn(f.dbPath)
        try c.exec("INSERT INTO t(x) VALUES ('through the VFS')")
        #expect(try c.scalar("PRAGMA journal_mode") == "wal")
        #expect(try c.scalar("SELECT count(*) FROM t") == "201")
        #expect(!FileManager.default.fileExists(atPath: f.dbPath + "-journal"))
        try f.flush()
        let (out, _) = try f.rebuild()
        try f.expectEqual(out)
    }

    @Test func rollbackJournalDatabaseHeldOpenIsRefusedNotWedged() throws {
        // Another connection (plain SQLite) keeps it in rollback mode: a read transaction holds
        // the shared lock from before replication starts, so neither the uploader nor the app's
        // open can switch it to WAL now.
        var held: Conn?
        let f = try ReplicatedFixture(prepare: { path in
            try Self.makeRollbackDatabase(path)
            let c = try Conn(path, vfs: nil)
            try c.exec("BEGIN")
            _ = try c.scalar("SELECT count(*) FROM t")
            held = c
        })
        let plain = try #require(held)
        let c = try Conn(f.dbPath)
        #expect(try c.scalar("SELECT count(*) FROM t") == "200", "reads work")
        do {
            try c.exec("INSERT INTO t(x) VALUES ('refused')")
            Issue.record("a write to a rollback-journal database went through")
        } catch let e as SQLError {
            #expect(e.code & 0xff == SQLITE_READONLY, "\(e)")
        }
        #expect(!FileManager.default.fileExists(atPath: f.dbPath + "-journal"), "no journal left behind")
        try plain.exec("COMMIT")

        // Not wedged: the next open through the VFS converts it and writes.
        let c2 = try Conn(f.dbPath)
        try c2.exec("INSERT INTO t(x) VALUES ('after')")
        #expect(try c2.scalar("PRAGMA journal_mode") == "wal")
        #expect(try c2.scalar("SELECT count(*) FROM t") == "201")
        // The documented path works too on the first connection, now that nobody holds it.
        try c.exec("PRAGMA journal_mode=WAL")
        try c.exec("INSERT INTO t(x) VALUES ('first connection')")
        try f.flush()
        let (out, _) = try f.rebuild()
        try f.expectEqual(out)
    }

    // MARK: - Through the loadable extension, in Python and Ruby

    private func setUp() throws -> (dir: String, config: String, lib: String)? {
        guard let lib = ExtensionTests.library else {
            Issue.record("libvfsreplication.so is not built (scripts/test builds it into .build-ext/release)")
            return nil
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        return (dir, try writeReplicationConfig(dir: dir), lib)
    }

    private func expectReplicaEqual(_ dir: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let out = dir + "/restored.db"
        _ = try ReplicaRestorer.restore(
            from: FileReplicaClient(directory: dir + "/replica"), to: out,
            options: RestoreOptions(force: true, verify: true))
        #expect(try TestSupport.dump(out) == TestSupport.dump(dir + "/app.db"), sourceLocation: sourceLocation)
    }

    private func python(_ lib: String, _ body: String) -> String {
        """
        import sqlite3, sys
        boot = sqlite3.connect(":memory:")
        boot.enable_load_extension(True)
        boot.load_extension("\(lib.replacingOccurrences(of: ".so", with: ""))")
        \(body)
        """
    }

    private func ruby(_ lib: String, _ body: String, before: String = "") -> String {
        """
        require "sqlite3"
        \(before)
        boot = SQLite3::Database.new(":memory:")
        boot.enable_load_extension(true)
        boot.load_extension("\(lib)")
        FLAGS = SQLite3::Constants::Open::READWRITE | SQLite3::Constants::Open::CREATE | SQLite3::Constants::Open::URI
        \(body)
        """
    }

    @Test func pythonNewDatabaseWithoutPragma() throws {
        guard let (dir, config, lib) = try setUp() else { return }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let code = python(
            lib,
            """
            db = sqlite3.connect("file:\(dir)/app.db?vfs=replicated", uri=True)
            db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT)")
            for i in range(50):
                db.execute("INSERT INTO t(x) VALUES (?)", ("python %d" % i,))
            db.commit()
            print(db.execute("PRAGMA journal_mode").fetchone()[0])
            db.close()
            """)
        let r = try TestSupport.run(
            "/usr/bin/python3", ["-c", code], environment: TestSupport.extensionEnvironment(config: config))
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "wal", "\(r)")
        #expect(try Self.journalMode(dir + "/app.db") == "wal")
        try expectReplicaEqual(dir)
    }

    @Test func rubyNewDatabaseWithoutPragma() throws {
        guard let (dir, config, lib) = try setUp() else { return }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // What Rails before 7.1 does on the first db:migrate: no journal mode, a CREATE TABLE.
        let code = ruby(
            lib,
            """
            db = SQLite3::Database.new("file:\(dir)/app.db?vfs=replicated", flags: FLAGS)
            db.execute("CREATE TABLE schema_migrations(version TEXT PRIMARY KEY)")
            db.transaction { 30.times { |i| db.execute("INSERT INTO schema_migrations VALUES (?)", ["2024#{i}"]) } }
            puts db.get_first_value("PRAGMA journal_mode")
            db.close
            """)
        let r = try TestSupport.run(
            "/usr/bin/ruby", ["-e", code], environment: TestSupport.extensionEnvironment(config: config))
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "wal", "\(r)")
        try expectReplicaEqual(dir)
    }

    @Test func pythonRollbackJournalDatabaseIsConverted() throws {
        guard let (dir, config, lib) = try setUp() else { return }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.makeRollbackDatabase(dir + "/app.db")
        let code = python(
            lib,
            """
            db = sqlite3.connect("file:\(dir)/app.db?vfs=replicated", uri=True)
            db.execute("INSERT INTO t(x) VALUES ('python')")
            db.commit()
            print(db.execute("PRAGMA journal_mode").fetchone()[0])
            db.close()
            """)
        let r = try TestSupport.run(
            "/usr/bin/python3", ["-c", code], environment: TestSupport.extensionEnvironment(config: config))
        #expect(r.status == 0, "\(r)")
        #expect(r.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "wal", "\(r)")
        #expect(!FileManager.default.fileExists(atPath: dir + "/app.db-journal"))
        #expect(try TestSupport.sqlite(dir + "/app.db", "SELECT count(*) FROM t;").hasPrefix("201"))
        try expectReplicaEqual(dir)
    }

    @Test func rubyRollbackJournalDatabaseHeldOpenIsRefusedNotWedged() throws {
        guard let (dir, config, lib) = try setUp() else { return }
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try Self.makeRollbackDatabase(dir + "/app.db")
        // A plain connection in the same process holds a read transaction (rollback mode) while
        // the replicated connection writes: refused, with an exception the app sees; then, once
        // released, a new open through the VFS converts and writes.
        let code = ruby(
            lib,
            """
            db = SQLite3::Database.new("file:\(dir)/app.db?vfs=replicated", flags: FLAGS)
            begin
              db.execute("INSERT INTO t(x) VALUES ('refused')")
              puts "WRITTEN"
            rescue SQLite3::Exception => e
              puts "REFUSED #{e.class}: #{e.message}"
            end
            puts(File.exist?("\(dir)/app.db-journal") ? "JOURNAL LEFT" : "NO JOURNAL")
            plain.execute("COMMIT")
            plain.close
            db.close
            db = SQLite3::Database.new("file:\(dir)/app.db?vfs=replicated", flags: FLAGS)
            db.execute("INSERT INTO t(x) VALUES ('after')")
            puts db.get_first_value("PRAGMA journal_mode")
            puts db.get_first_value("SELECT count(*) FROM t")
            db.close
            """,
            // Held before the extension starts this process's uploader, so nothing can switch it.
            before: """
                plain = SQLite3::Database.new("\(dir)/app.db")
                plain.execute("BEGIN")
                plain.get_first_value("SELECT count(*) FROM t")
                """)
        let r = try TestSupport.run(
            "/usr/bin/ruby", ["-e", code], environment: TestSupport.extensionEnvironment(config: config))
        #expect(r.status == 0, "\(r)")
        let lines = r.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first?.hasPrefix("REFUSED SQLite3::ReadOnlyException") == true, "\(r)")
        #expect(lines.contains("NO JOURNAL"), "\(r)")
        #expect(lines.suffix(2) == ["wal", "201"], "\(r)")
        try expectReplicaEqual(dir)
    }
}
