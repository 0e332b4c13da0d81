internal import CSQLite
internal import CVFSShim
import Foundation

/// Reads a consistent image of a live database, as of a TXID, through the replicated VFS.
///
/// A writer connection takes the write lock (so the spool is caught up and the TXID cannot
/// move), a reader connection opens a read transaction at that instant, then the writer lets
/// go: application writers are blocked only for the moment it takes to start the reader. Pages
/// are then read from the reader's own files (WAL frames up to its snapshot, else the main
/// file), which a checkpoint cannot change under an open read transaction.
final class SnapshotReader {
    private var writer: OpaquePointer?
    private var reader: OpaquePointer?
    private var snap: OpaquePointer?
    let databasePath: String

    private(set) var txid: UInt64 = 0
    private(set) var pageSize: UInt32 = 0
    private(set) var commit: UInt32 = 0
    private(set) var timestampMs: Int64 = 0
    private(set) var spoolPosition = SpoolPosition(segment: 0, offset: 0)

    /// Returns nil when the database does not exist yet or has no pages.
    init?(databasePath: String, minTXID: UInt64) throws {
        self.databasePath = databasePath
        guard FileManager.default.fileExists(atPath: databasePath) else { return nil }
        writer = try Self.open(databasePath)
        reader = try Self.open(databasePath)
        do {
            let mode = try query(writer!, "PRAGMA journal_mode").lowercased()
            guard mode == "wal" else {
                throw ReplicationError(
                    .sqlite, "database \(databasePath) is in journal_mode=\(mode); the replicated VFS needs WAL")
            }
            try exec(writer!, "BEGIN IMMEDIATE")
            defer { _ = sqlite3_exec(writer!, "ROLLBACK", nil, nil, nil) }
            try exec(reader!, "BEGIN")
            _ = try query(reader!, "SELECT count(*) FROM sqlite_schema")
            var err = [CChar](repeating: 0, count: 512)
            var s: OpaquePointer?
            let rc = vr_snapshot_begin(writer!, reader!, minTXID, &s, &err, err.count)
            if rc == SQLITE_EMPTY {
                close()
                return nil
            }
            guard rc == SQLITE_OK, let s else {
                throw ReplicationError(.sqlite, "database \(databasePath): snapshot: \(String(cString: err))")
            }
            snap = s
            txid = vr_snapshot_txid(s)
            pageSize = vr_snapshot_page_size(s)
            commit = vr_snapshot_commit(s)
            timestampMs = vr_snapshot_timestamp_ms(s)
            spoolPosition = SpoolPosition(segment: vr_snapshot_spool_seg(s), offset: vr_snapshot_spool_off(s))
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    func readPage(_ pgno: UInt32, into buf: UnsafeMutableRawBufferPointer) throws {
        let rc = vr_snapshot_read_page(snap!, pgno, buf.baseAddress!)
        guard rc == SQLITE_OK else {
            throw ReplicationError(.io, "database \(databasePath): reading page \(pgno) for the snapshot failed (\(rc))")
        }
    }

    func close() {
        if let s = snap { vr_snapshot_end(s) }
        snap = nil
        if let r = reader {
            _ = sqlite3_exec(r, "COMMIT", nil, nil, nil)
            sqlite3_close_v2(r)
        }
        reader = nil
        if let w = writer { sqlite3_close_v2(w) }
        writer = nil
    }

    private static func open(_ path: String) throws -> OpaquePointer {
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, ReplicatedVFS.name)
        guard rc == SQLITE_OK, let db else {
            let msg = db.map { String(cString: sqlite3_errmsg($0)) } ?? "error \(rc)"
            if let db { sqlite3_close_v2(db) }
            throw ReplicationError(.sqlite, "database \(path): cannot open for a snapshot: \(msg)")
        }
        sqlite3_busy_timeout(db, 10_000)
        return db
    }

    private func exec(_ db: OpaquePointer, _ sql: String) throws {
        let rc = sqlite3_exec(db, sql, nil, nil, nil)
        guard rc == SQLITE_OK else {
            throw ReplicationError(.sqlite, "database \(databasePath): \(sql): \(String(cString: sqlite3_errmsg(db)))")
        }
    }

    private func query(_ db: OpaquePointer, _ sql: String) throws -> String {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &stmt, nil) == SQLITE_OK else {
            throw ReplicationError(.sqlite, "database \(databasePath): \(sql): \(String(cString: sqlite3_errmsg(db)))")
        }
        defer { sqlite3_finalize(stmt) }
        let rc = sqlite3_step(stmt)
        guard rc == SQLITE_ROW else {
            throw ReplicationError(.sqlite, "database \(databasePath): \(sql): \(String(cString: sqlite3_errmsg(db)))")
        }
        return sqlite3_column_text(stmt, 0).map { String(cString: $0) } ?? ""
    }
}
