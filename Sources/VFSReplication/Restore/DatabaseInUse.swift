internal import CVFSShim
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Who is using a database file: the check `vfs-rebuild` makes before it replaces one.
///
/// Replacing a database under a process that has it open is never safe, `--force` or not: the
/// process keeps writing into the old (unlinked) file, or into the new one through an old WAL,
/// and its later commits are lost from both the file and the replica. So a restore looks for
/// every sign of use, and refuses with the holder's pid where it can tell it:
///
/// - SQLite's own locks. A connection in WAL mode holds a read lock on the `-shm` file's
///   "DMS" byte for as long as it is open (src/os_unix.c, `UNIX_SHM_DMS`), idle or not; a
///   transaction in any mode holds the database file's lock bytes (`PENDING_BYTE` and after).
///   Asked with open-file-description locks (`F_OFD_GETLK`), so locks of this very process are
///   seen too.
/// - The uploader lock (`<db>-vfsrepl/uploader.lock`): a process is replicating the database.
/// - Open files: `/proc/<pid>/fd` of every process we may read, for the database, its `-wal`,
///   its `-shm` and its shared replication state (a process that registered the database with
///   the VFS but has no connection open yet).
///
/// ```swift
/// if let holder = DatabaseInUse.firstHolder(of: "storage/production.sqlite3") { print(holder) }
/// ```
public enum DatabaseInUse {
    /// One sign that a database is in use.
    public struct Holder: Sendable, Equatable, CustomStringConvertible {
        /// The process, when the kernel tells it.
        public var pid: Int32?
        /// What it holds, e.g. "has storage/production.sqlite3-wal open".
        public var what: String

        public var description: String {
            guard let pid else { return "a process \(what)" }
            let name = Self.command(pid).map { " (\($0))" } ?? ""
            return "pid \(pid)\(name) \(what)"
        }

        static func command(_ pid: Int32) -> String? {
            guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/comm") else { return nil }
            let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return text.isEmpty ? nil : text
        }
    }

    // SQLite's lock layout (src/os_unix.c and src/os.h), stable since 3.7.0: file formats depend on it.
    static let pendingByte: Int64 = 0x4000_0000
    static let sharedSize: Int64 = 510
    static let shmLockBase: Int64 = 120  // (22 + SQLITE_SHM_NLOCK) * 4
    static let shmLockCount: Int64 = 9  // 8 WAL locks and the DMS byte
    /// `F_OFD_GETLK` from <fcntl.h> (Linux 3.15+), which Glibc's Swift module leaves out (it is
    /// behind _GNU_SOURCE).
    static let ofdGetLock: Int32 = 36

    /// The first sign of use found, or nil when nothing uses the database. `holdingUploaderLock`:
    /// the caller holds the uploader lock itself (`holdUploaderLock`), so it is not a sign.
    public static func firstHolder(of databasePath: String, holdingUploaderLock: Bool = false) -> Holder? {
        let files = ReplicationFiles(databasePath: databasePath)
        let db = files.databasePath
        if let h = lockHolder(path: db + "-shm", start: shmLockBase, length: shmLockCount, what: "has it open (SQLite's WAL lock on \(db)-shm)") {
            return h
        }
        if let h = lockHolder(path: db, start: pendingByte, length: 2 + sharedSize, what: "is in a transaction on it (SQLite's lock on \(db))") {
            return h
        }
        if !holdingUploaderLock, let h = uploaderHolder(files) { return h }
        return openFileHolder(files)
    }

    /// Throws when a process uses the database at `path`; the message names the database, the
    /// holder and what to do.
    public static func refuseReplacing(_ path: String, doing action: String, holdingUploaderLock: Bool = false) throws {
        guard let holder = firstHolder(of: path, holdingUploaderLock: holdingUploaderLock) else { return }
        throw ReplicationError(
            .invalidArgument,
            "database \(path) is in use: \(holder); refusing to \(action) a live database (even with --force): "
                + "stop every process that opens it, then run the restore again")
    }

    /// A POSIX lock on [start, start+length) of `path`, from any process including this one.
    static func lockHolder(path: String, start: Int64, length: Int64, what: String) -> Holder? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        lock.l_start = off_t(start)
        lock.l_len = off_t(length)
        lock.l_pid = 0
        guard fcntl(fd, ofdGetLock, &lock) == 0, lock.l_type != Int16(F_UNLCK) else { return nil }
        return Holder(pid: lock.l_pid > 0 ? lock.l_pid : nil, what: what)
    }

    /// The process holding `uploader.lock` (the pid it wrote there when elected), probed as
    /// `vfs-status` probes it (`vr_status_probe_uploader`).
    static func uploaderHolder(_ files: ReplicationFiles) -> Holder? {
        var pid: Int32 = 0
        guard vr_status_probe_uploader(files.stateDirectory, &pid) == 1 else { return nil }
        return Holder(pid: pid > 0 ? pid : nil, what: "is replicating it (holds \(files.uploaderLock))")
    }

    /// A process with the database, its WAL, its -shm or its replication state open.
    static func openFileHolder(_ files: ReplicationFiles) -> Holder? {
        var targets: [(dev: UInt64, ino: UInt64, name: String)] = []
        for path in [files.databasePath, files.databasePath + "-wal", files.databasePath + "-shm", files.stateFile] {
            var st = stat()
            if stat(path, &st) == 0 { targets.append((UInt64(st.st_dev), UInt64(st.st_ino), path)) }
        }
        guard !targets.isEmpty, let procs = try? FileManager.default.contentsOfDirectory(atPath: "/proc") else {
            return nil
        }
        for entry in procs {
            guard let pid = Int32(entry) else { continue }
            let fdDir = "/proc/\(entry)/fd"
            guard let fds = try? FileManager.default.contentsOfDirectory(atPath: fdDir) else { continue }
            for fd in fds {
                var st = stat()
                guard stat(fdDir + "/" + fd, &st) == 0 else { continue }
                if let t = targets.first(where: { $0.dev == UInt64(st.st_dev) && $0.ino == UInt64(st.st_ino) }) {
                    let what =
                        t.name == files.stateFile
                        ? "is replicating it (has \(t.name) open)" : "has \(t.name) open"
                    return Holder(pid: pid, what: what)
                }
            }
        }
        return nil
    }

    /// Holds the uploader lock of a database while it is replaced, so that no process can start
    /// replicating the old file in between (nil when there is no lock file: nothing ever
    /// replicated it). Release with `close`.
    static func holdUploaderLock(_ path: String) throws -> Int32? {
        let files = ReplicationFiles(databasePath: path)
        let fd = open(files.uploaderLock, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            try refuseReplacing(path, doing: "replace")
            throw ReplicationError(.invalidArgument, "database \(path) is in use: \(files.uploaderLock) is locked")
        }
        return fd
    }
}
