internal import CVFSShim
import Foundation

/// Reads a consistent image of a live database through the replicated VFS, without ever
/// taking the write lock: application writers are never blocked by a snapshot.
///
/// A connection marked as the snapshot reader opens a read transaction; the shim saw the
/// wal-index header when the read mark was taken, which is the reader's snapshot, and reports
/// its WAL position so the uploader can find the TXID it corresponds to in the spool. Pages are
/// then read from the reader's own files (WAL frames up to its mark, else the main file), which
/// a checkpoint cannot change while the read transaction is open.
final class SnapshotReader {
    private var reader: SQLiteConnection?
    private var snap: OpaquePointer?
    let databasePath: String

    private(set) var pageSize: UInt32 = 0
    private(set) var commit: UInt32 = 0
    private(set) var position = WALPosition(salt1: 0, salt2: 0, frame: 0)
    /// Rows of sqlite_schema in the snapshot (0: the database holds nothing yet).
    private(set) var schemaObjects = 0

    /// Returns nil when the database does not exist yet, has no pages or is not in WAL mode yet.
    init?(databasePath: String) throws {
        self.databasePath = databasePath
        // Not yet a WAL database (being created, or in rollback mode): nothing to snapshot, and
        // no connection, whose open would try to switch it and so take locks an app's
        // connection without a busy handler then meets (SQLITE_BUSY).
        guard Self.headerSaysWAL(databasePath) else { return nil }
        let reader = try SQLiteConnection(path: databasePath, flags: .readWrite, vfs: ReplicatedVFS.name)
        self.reader = reader
        do {
            let mode = (try reader.scalar("PRAGMA journal_mode") ?? "").lowercased()
            guard mode == "wal" else {
                // Not switched to WAL yet (the app is still setting it up). Writes in any other
                // mode are refused by the VFS, so there is nothing to replicate until it is.
                close()
                return nil
            }
            var one: Int32 = 1
            _ = vr_sql_file_control(reader.handle, Int32(VR_FCNTL_SNAPSHOT_READER), &one)
            try reader.exec("BEGIN")
            schemaObjects = Int(try reader.scalar("SELECT count(*) FROM sqlite_schema") ?? "0") ?? 0
            var err = [CChar](repeating: 0, count: 512)
            var s: OpaquePointer?
            let rc = vr_snapshot_begin(reader.handle, &s, &err, err.count)
            if rc == Int32(VR_SQL_EMPTY) {
                close()
                return nil
            }
            guard rc == Int32(VR_SQL_OK), let s else {
                throw ReplicationError(.sqlite, "database \(databasePath): snapshot: \(String(cString: err))")
            }
            snap = s
            pageSize = vr_snapshot_page_size(s)
            commit = vr_snapshot_commit(s)
            position = WALPosition(salt1: vr_snapshot_salt1(s), salt2: vr_snapshot_salt2(s), frame: vr_snapshot_wal_frame(s))
        } catch {
            close()
            throw error
        }
    }

    deinit { close() }

    /// Whether the database is in WAL mode, read without SQLite: bytes 18 and 19 of its header
    /// are 2; or the main file is still empty and its WAL holds frames (a database created in
    /// WAL mode has its first pages only in the WAL until a checkpoint).
    private static func headerSaysWAL(_ path: String) -> Bool {
        var h = [UInt8](repeating: 0, count: 20)
        let n = vr_file_read_prefix(path, &h, 20)  // not open()/close(): see vr_file_read_prefix
        if n == 20 { return h[18] == 2 && h[19] == 2 }
        guard n == 0 else { return false }
        var st = stat()
        return stat(path + "-wal", &st) == 0 && st.st_size > 32
    }

    func readPage(_ pgno: UInt32, into buf: UnsafeMutableRawBufferPointer) throws {
        let rc = vr_snapshot_read_page(snap!, pgno, buf.baseAddress!)
        guard rc == Int32(VR_SQL_OK) else {
            throw ReplicationError(.io, "database \(databasePath): reading page \(pgno) for the snapshot failed (\(rc))")
        }
    }

    func close() {
        if let s = snap { vr_snapshot_end(s) }
        snap = nil
        if let r = reader { try? r.exec("COMMIT") }
        reader = nil
    }
}
