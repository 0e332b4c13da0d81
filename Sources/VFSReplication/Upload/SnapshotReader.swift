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
    private var writer: SQLiteConnection?
    private var reader: SQLiteConnection?
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
        let writer = try SQLiteConnection(path: databasePath, flags: .readWrite, vfs: ReplicatedVFS.name)
        let reader = try SQLiteConnection(path: databasePath, flags: .readWrite, vfs: ReplicatedVFS.name)
        self.writer = writer
        self.reader = reader
        do {
            let mode = (try writer.scalar("PRAGMA journal_mode") ?? "").lowercased()
            guard mode == "wal" else {
                // Not switched to WAL yet (the app is still setting it up). Writes in any other
                // mode are refused by the VFS, so there is nothing to replicate until it is.
                close()
                return nil
            }
            try writer.exec("BEGIN IMMEDIATE")
            defer { try? writer.exec("ROLLBACK") }
            try reader.exec("BEGIN")
            _ = try reader.scalar("SELECT count(*) FROM sqlite_schema")
            var err = [CChar](repeating: 0, count: 512)
            var s: OpaquePointer?
            let rc = vr_snapshot_begin(writer.handle, reader.handle, minTXID, &s, &err, err.count)
            if rc == Int32(VR_SQL_EMPTY) {
                close()
                return nil
            }
            guard rc == Int32(VR_SQL_OK), let s else {
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
        guard rc == Int32(VR_SQL_OK) else {
            throw ReplicationError(.io, "database \(databasePath): reading page \(pgno) for the snapshot failed (\(rc))")
        }
    }

    func close() {
        if let s = snap { vr_snapshot_end(s) }
        snap = nil
        if let r = reader { try? r.exec("COMMIT") }
        reader = nil
        writer = nil
    }
}
