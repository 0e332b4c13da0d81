import CSQLite
import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// A small SQLite connection for tests (real SQLite, real files).
final class Conn: @unchecked Sendable {
    let db: OpaquePointer
    let path: String

    init(_ path: String, vfs: String? = ReplicatedVFS.name, flags: Int32 = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) throws {
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_URI, vfs)
        guard rc == SQLITE_OK, let db else {
            let msg = db.map { String(cString: sqlite3_errmsg($0)) } ?? "rc \(rc)"
            if let db { sqlite3_close_v2(db) }
            throw TestFailure("open \(path): \(msg) (rc \(rc))")
        }
        self.db = db
        self.path = path
        sqlite3_busy_timeout(db, 10_000)
    }

    deinit { sqlite3_close_v2(db) }

    func exec(_ sql: String) throws {
        var err: UnsafeMutablePointer<CChar>?
        let rc = sqlite3_exec(db, sql, nil, nil, &err)
        if rc != SQLITE_OK {
            let msg = err.map { String(cString: $0) } ?? String(cString: sqlite3_errmsg(db))
            sqlite3_free(err)
            throw SQLError(code: rc, message: "\(sql): \(msg)")
        }
    }

    func scalar(_ sql: String) throws -> String {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &stmt, nil) == SQLITE_OK else {
            throw SQLError(code: sqlite3_errcode(db), message: "\(sql): \(String(cString: sqlite3_errmsg(db)))")
        }
        defer { sqlite3_finalize(stmt) }
        let rc = sqlite3_step(stmt)
        guard rc == SQLITE_ROW else {
            if rc == SQLITE_DONE { return "" }
            throw SQLError(code: rc, message: "\(sql): \(String(cString: sqlite3_errmsg(db)))")
        }
        return sqlite3_column_text(stmt, 0).map { String(cString: $0) } ?? ""
    }

    /// Inserts `count` rows of `bytes` random bytes into t(x).
    func insertBlobs(_ count: Int, bytes: Int, table: String = "t") throws {
        var stmt: OpaquePointer?
        sqlite3_prepare_v2(db, "INSERT INTO \(table)(x) VALUES (randomblob(?))", -1, &stmt, nil)
        defer { sqlite3_finalize(stmt) }
        for _ in 0..<count {
            sqlite3_bind_int64(stmt, 1, Int64(bytes))
            let rc = sqlite3_step(stmt)
            guard rc == SQLITE_DONE else { throw SQLError(code: rc, message: String(cString: sqlite3_errmsg(db))) }
            sqlite3_reset(stmt)
        }
    }
}

struct SQLError: Error, CustomStringConvertible {
    var code: Int32
    var message: String
    var description: String { "SQLite error \(code): \(message)" }
}

/// One replicated database in a temporary directory with a directory replica, and a
/// Replicator running in this process.
final class ReplicatedFixture: @unchecked Sendable {
    let dir: String
    let dbPath: String
    let replicaDir: String
    let configPath: String
    let config: ReplicationConfig
    let replicator: Replicator

    /// `prepare` runs on the database path before the Replicator starts (a database that exists
    /// before replication is added).
    init(
        maxDelay: String = "20ms", name: String = "app.db", replicaDirectory: String? = nil,
        prepare: ((String) throws -> Void)? = nil
    ) throws {
        dir = try TestSupport.makeTemporaryDirectory()
        dbPath = dir + "/" + name
        replicaDir = replicaDirectory ?? dir + "/replica"
        configPath = dir + "/replication.yml"
        let yaml = """
            databases:
              - path: \(name)
                replica:
                  url: file://\(replicaDir)
                max-delay: \(maxDelay)
            """
        try yaml.write(toFile: configPath, atomically: true, encoding: .utf8)
        config = try ReplicationConfig.load(path: configPath)
        try prepare?(dbPath)
        replicator = try Replicator(config: config)
        replicator.start()
    }

    deinit {
        replicator.shutdown(timeout: .seconds(10))
        try? FileManager.default.removeItem(atPath: dir)
    }

    func open() throws -> Conn {
        let c = try Conn(dbPath)
        try c.exec("PRAGMA journal_mode=WAL")
        return c
    }

    func flush() throws { try replicator.flush(timeout: .seconds(60)) }

    var status: DatabaseStatus { replicator.status()[0] }

    /// Rebuilds the replica into a new file (verified) and returns its path.
    func rebuild(txid: UInt64? = nil, timestamp: Date? = nil, as name: String = "restored.db") throws -> (path: String, result: RestoreResult) {
        let out = dir + "/" + name
        let target: RestoreTarget = txid.map { .txid($0) } ?? timestamp.map { .timestamp($0) } ?? .latest
        let result = try ReplicaRestorer.restore(
            from: FileReplicaClient(directory: replicaDir), to: out,
            options: RestoreOptions(target: target, force: true, verify: true))
        return (out, result)
    }

    /// Checkpoints the source (TRUNCATE) through the VFS and compares files byte for byte, page
    /// by page, and by `.dump`.
    func expectEqual(_ restored: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let srcDump = try TestSupport.dump(dbPath)
        let dstDump = try TestSupport.dump(restored)
        #expect(srcDump == dstDump, "dump differs", sourceLocation: sourceLocation)
        #expect(try TestSupport.sqlite(restored, "PRAGMA integrity_check").trimmingCharacters(in: .whitespacesAndNewlines) == "ok",
                sourceLocation: sourceLocation)
        let c = try open()
        try c.exec("PRAGMA wal_checkpoint(TRUNCATE)")
        let a = try TestSupport.readFile(dbPath)
        let b = try TestSupport.readFile(restored)
        #expect(a.count == b.count, "file sizes differ: source \(a.count), restored \(b.count)", sourceLocation: sourceLocation)
        if a.count == b.count && a != b {
            let pageSize = 4096
            let first = stride(from: 0, to: a.count, by: pageSize).first { a[$0..<min($0 + pageSize, a.count)] != b[$0..<min($0 + pageSize, b.count)] }
            Issue.record("pages differ, first at page \((first ?? 0) / pageSize + 1)", sourceLocation: sourceLocation)
        }
    }
}

/// Writes `<dir>/replication.yml` for one database `app.db` replicated to `<dir>/replica`.
func writeReplicationConfig(dir: String, maxDelay: String = "50ms") throws -> String {
    let path = dir + "/replication.yml"
    try """
    databases:
      - path: app.db
        replica:
          url: file://\(dir)/replica
        max-delay: \(maxDelay)
    """.write(toFile: path, atomically: true, encoding: .utf8)
    return path
}
