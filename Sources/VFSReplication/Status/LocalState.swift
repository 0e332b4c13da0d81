internal import CVFSShim
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The files the `replicated` VFS keeps beside a database `X`, in `X-vfsrepl/`.
///
/// ```swift
/// let files = ReplicationFiles(databasePath: "/srv/app/storage/production.sqlite3")
/// print(files.statusFile)   // /srv/app/storage/production.sqlite3-vfsrepl/status.json
/// ```
///
/// The folder is named after the canonical database path (its folder's symlinks resolved, as the
/// shim does), so every process finds the same files whichever way it spells the path.
public struct ReplicationFiles: Sendable, Equatable {
    /// The database path as the shim canonicalizes it.
    public let databasePath: String
    /// `<databasePath>-vfsrepl`.
    public let stateDirectory: String

    public init(databasePath: String) {
        self.databasePath = Self.canonical(databasePath)
        self.stateDirectory = self.databasePath + "-vfsrepl"
    }

    /// The shared TXID/spool state (mmap'ed by every process).
    public var stateFile: String { stateDirectory + "/state" }
    /// The uploader's facts (`StatusFileObserver`).
    public var statusFile: String { stateDirectory + "/status.json" }
    /// The last `vfs-status --verify` result.
    public var verificationFile: String { stateDirectory + "/verify.json" }
    /// `flock`ed by the process that uploads the database.
    public var uploaderLock: String { stateDirectory + "/uploader.lock" }

    func segmentPath(_ segment: UInt64) -> String {
        stateDirectory + "/spool/" + String(format: "%016llx", segment) + ".seg"
    }

    /// The realpath of the folder plus the file name (the file itself may not exist), as
    /// `canonicalPath` in Sources/CVFSShim/state.c; the path unchanged when the folder cannot be resolved.
    static func canonical(_ path: String) -> String {
        let absolute = ConfigPaths.absolute(path, relativeTo: FileManager.default.currentDirectoryPath)
        let url = URL(fileURLWithPath: absolute)
        let directory = url.deletingLastPathComponent().path
        guard let resolved = realpath(directory, nil) else { return absolute }
        defer { free(resolved) }
        let folder = String(cString: resolved)
        return (folder == "/" ? "" : folder) + "/" + url.lastPathComponent
    }
}

/// A database's local replication state, read from its shared state file and spool by any
/// process, without registering the database or creating anything.
public struct LocalReplicationState: Sendable, Equatable, Codable {
    /// Last TXID captured (committed through the VFS).
    public var localTXID: UInt64
    /// Last TXID durable in the replica.
    public var durableTXID: UInt64
    /// Bytes of spool not yet shipped (exact: segment files are measured).
    public var pendingSpoolBytes: UInt64
    /// Time of the last captured commit.
    public var lastCommit: Date?
    /// Commit time of the oldest transaction not yet durable (nil when none is pending or the
    /// spool could not be read).
    public var oldestPendingCommit: Date?
    /// Transactions captured by every process since the state was created.
    public var captures: UInt64
    public var pageSize: UInt32
    /// Database size in pages after `localTXID`.
    public var pageCount: UInt32
    /// The local footprint and whether the spool can be written (see `DiskFootprint.swift`).
    public var disk: LocalDiskState?

    /// Transactions captured and not yet durable.
    public var pendingTransactions: UInt64 { localTXID > durableTXID ? localTXID - durableTXID : 0 }

    /// Seconds the oldest undurable commit has waited (0 when nothing is pending; nil when it is
    /// unknown).
    public func lagSeconds(now: Date = Date()) -> Double? {
        if pendingTransactions == 0 { return 0 }
        guard let oldestPendingCommit else { return nil }
        return max(0, now.timeIntervalSince(oldestPendingCommit))
    }

    public init(
        localTXID: UInt64, durableTXID: UInt64, pendingSpoolBytes: UInt64 = 0, lastCommit: Date? = nil,
        oldestPendingCommit: Date? = nil, captures: UInt64 = 0, pageSize: UInt32 = 0, pageCount: UInt32 = 0
    ) {
        self.localTXID = localTXID
        self.durableTXID = durableTXID
        self.pendingSpoolBytes = pendingSpoolBytes
        self.lastCommit = lastCommit
        self.oldestPendingCommit = oldestPendingCommit
        self.captures = captures
        self.pageSize = pageSize
        self.pageCount = pageCount
    }

    /// Reads the state of the database whose files are `files`. Returns nil when the database
    /// was never opened through the `replicated` VFS (no state file); throws when the state file
    /// is unreadable or not a state file.
    public static func read(_ files: ReplicationFiles) throws -> LocalReplicationState? {
        guard let view = try readView(files) else { return nil }
        return inspect(view, files: files)
    }

    static func readView(_ files: ReplicationFiles) throws -> vr_state_view? {
        var view = vr_state_view()
        let rc = vr_state_read_file(files.stateDirectory, &view)
        if rc == ENOENT { return nil }
        guard rc == 0 else {
            let reason = rc == EINVAL ? "not a replication state file" : String(cString: strerror(rc))
            throw ReplicationError(.io, "database \(files.databasePath): \(files.stateFile): \(reason)")
        }
        return view
    }

    /// Builds the state from a view: spool bytes pending from the segment files, the oldest
    /// pending commit from the first COMMIT record after the shipped position.
    static func inspect(_ view: vr_state_view, files: ReplicationFiles) -> LocalReplicationState {
        let shipped = SpoolPosition(segment: view.shippedSeg, offset: view.shippedOff)
        let end = SpoolPosition(segment: view.appendSeg, offset: view.appendOff)
        var pending: UInt64 = 0
        if shipped < end {
            var seg = shipped.segment
            while seg <= end.segment {
                let start = seg == shipped.segment ? shipped.offset : 0
                let stop = seg == end.segment ? end.offset : fileSize(files.segmentPath(seg)) ?? start
                if stop > start { pending += stop - start }
                seg += 1
            }
        }
        var state = LocalReplicationState(
            localTXID: view.lastTxid, durableTXID: view.shippedTxid, pendingSpoolBytes: pending,
            lastCommit: view.lastCommitMs > 0 ? Date(epochMilliseconds: view.lastCommitMs) : nil,
            captures: view.captures, pageSize: view.pageSize, pageCount: view.commitPages)
        state.disk = LocalDiskState(view, files: files)
        if state.pendingTransactions > 0 {
            state.oldestPendingCommit = oldestCommit(files: files, from: shipped, to: end).map(
                Date.init(epochMilliseconds:))
        }
        return state
    }

    private static func fileSize(_ path: String) -> UInt64? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return UInt64(st.st_size)
    }

    /// The timestamp of the first COMMIT record in [from, to): reads record headers only
    /// (frames are skipped by their size). Nil if there is none or the spool cannot be read.
    static func oldestCommit(files: ReplicationFiles, from: SpoolPosition, to: SpoolPosition) -> Int64? {
        var pos = from
        var fd: Int32 = -1
        var fdSegment: UInt64 = 0
        defer { if fd >= 0 { close(fd) } }
        var records = 0
        while pos < to && records < 1_000_000 {
            let segmentEnd = pos.segment == to.segment ? to.offset : fileSize(files.segmentPath(pos.segment)) ?? 0
            if pos.offset >= segmentEnd {
                pos = SpoolPosition(segment: pos.segment + 1, offset: 0)
                continue
            }
            if fd < 0 || fdSegment != pos.segment {
                if fd >= 0 { close(fd) }
                fd = open(files.segmentPath(pos.segment), O_RDONLY | O_CLOEXEC)
                fdSegment = pos.segment
                if fd < 0 { return nil }
            }
            var header = vr_rec_header()
            let size = MemoryLayout<vr_rec_header>.size
            let n = withUnsafeMutableBytes(of: &header) { buf in
                var got = -1
                repeat { got = pread(fd, buf.baseAddress, size, off_t(pos.offset)) } while got < 0 && errno == EINTR
                return got
            }
            guard n == size else { return nil }
            guard vr_rec_valid(&header, pos.segment) != 0 else { return nil }
            if UInt32(header.kind) == VR_REC_COMMIT { return header.timestampMs }
            pos.offset += UInt64(size)
            if UInt32(header.kind) == VR_REC_FRAMES {
                pos.offset += UInt64(header.nFrame) * UInt64(24 + header.pageSize)
            }
            records += 1
        }
        return nil
    }
}

/// Whether a process is uploading a database right now (its `uploader.lock` is held).
public enum UploaderPresence: Sendable, Equatable, Codable {
    /// A process holds the lock; its pid as it wrote it (nil if unreadable).
    case running(pid: Int32?)
    /// Nobody holds the lock: commits are captured but not shipped until an uploader starts.
    case none
    /// The lock could not be probed (the message says why).
    case unknown(String)

    public var isRunning: Bool { if case .running = self { true } else { false } }

    /// Probes the lock without creating it or holding it (see `vr_status_probe_uploader`).
    public static func probe(_ files: ReplicationFiles) -> UploaderPresence {
        var pid: Int32 = 0
        let rc = vr_status_probe_uploader(files.stateDirectory, &pid)
        switch rc {
        case 1:
            // The lock's holder wrote its pid when elected. A holder other than that process (a
            // child forked without the shim's fork handlers) never ships: never report it alive.
            if pid > 0 && kill(pid, 0) != 0 && errno == ESRCH {
                return .unknown(
                    "\(files.uploaderLock) is held, but its uploader (pid \(pid)) is not alive: a process that inherited the lock holds it and does not ship"
                )
            }
            return .running(pid: pid > 0 ? pid : nil)
        case 0: return .none
        default: return .unknown("\(files.uploaderLock): \(String(cString: strerror(-rc)))")
        }
    }
}

extension Date {
    init(epochMilliseconds milliseconds: Int64) { self.init(timeIntervalSince1970: Double(milliseconds) / 1000) }
    var epochMilliseconds: Int64 { Int64((timeIntervalSince1970 * 1000).rounded()) }
}
