internal import CVFSShim
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Whether a database's current state can be in its replica, judged from the files alone (any
/// process, nothing created): the status checks and the uploader's start-up share these rules.
///
/// A database is not backed up when it has content and either nothing of it was ever shipped,
/// or it changed without the VFS after its last clean close (a tool wrote it while the app was
/// down). A database with no file, or with no table yet, has nothing to back up.
enum BackupCoverage {
    /// The time since which the database's current state is not in its replica; nil when it is,
    /// or when there is nothing to back up.
    ///
    /// The time is the modification time of the database (or of its WAL, if newer): the moment
    /// the state the replica lacks was written. It is a fact of the files, so every process
    /// (`vfs-status`, the dashboard of any process) reports the same time and nothing has to be
    /// recorded when a database is first seen.
    static func notBackedUpSince(databasePath: String, stateDirectory: String) -> Date? {
        guard let file = DatabaseFile(path: databasePath), file.hasContent else { return nil }
        var view = vr_state_view()
        guard vr_state_read_file(stateDirectory, &view) == 0 else { return file.modified }
        if view.shippedTxid == 0 || file.changedSinceCleanClose(view) { return file.modified }
        return nil
    }

    /// Whether an uploader must record a lineage start itself (take the write lock for an
    /// instant) for the database's current state to reach the replica: it has content that no
    /// write through the VFS will bring, because nothing was ever captured or it changed while
    /// closed.
    static func needsLineageStart(databasePath: String, state view: vr_state_view) -> Bool {
        guard let file = DatabaseFile(path: databasePath), file.hasContent else { return false }
        return view.lastTxid == 0 || file.changedSinceCleanClose(view)
    }

    /// The facts read from a database file: its identity and whether it holds a schema.
    private struct DatabaseFile {
        var identity: FileIdentity
        var modified: Date
        var hasContent: Bool

        init?(path: String) {
            var st = stat()
            guard stat(path, &st) == 0 else { return nil }
            identity = FileIdentity(st)
            var newest = Double(st.st_mtim.tv_sec) + Double(st.st_mtim.tv_nsec) / 1e9
            var walStat = stat()
            var walFrames = false
            if stat(path + "-wal", &walStat) == 0 {
                walFrames = walStat.st_size > 32  // a WAL header and at least part of a frame
                newest = max(newest, Double(walStat.st_mtim.tv_sec) + Double(walStat.st_mtim.tv_nsec) / 1e9)
            }
            modified = Date(timeIntervalSince1970: newest)
            hasContent = walFrames || Self.mainFileHasSchema(path: path, size: identity.size)
        }

        /// A database of one page whose schema table (page 1, a b-tree leaf) has no rows holds
        /// nothing: that is what the VFS leaves when it creates a new database in WAL mode.
        private static func mainFileHasSchema(path: String, size: UInt64) -> Bool {
            guard size >= 108 else { return false }
            // Read through SQLite's unix VFS, never open()/close(): this process may have the
            // database open, and close() would drop its locks (see vr_file_read_prefix).
            var h = [UInt8](repeating: 0, count: 108)
            guard vr_file_read_prefix(path, &h, 108) == 108 else { return true }  // unreadable: not empty
            var pageSize = UInt64(h[16]) << 8 | UInt64(h[17])
            if pageSize == 1 { pageSize = 65536 }
            let leafCells = UInt16(h[103]) << 8 | UInt16(h[104])
            return size > pageSize || h[100] != 0x0D || leafCells > 0
        }

        /// The last connection closed cleanly (the shim recorded the file's identity then) and
        /// the file is no longer that one: something wrote it without the VFS.
        func changedSinceCleanClose(_ view: vr_state_view) -> Bool {
            view.cleanValid != 0
                && FileIdentity(inode: view.cleanIno, size: view.cleanSize, mtimeNs: view.cleanMtimeNs) != identity
        }
    }
}
