internal import CVFSShim
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What a database's replication keeps on the local disk, beside it in `<db>-vfsrepl/`, and
/// whether its spool can be written: bytes are allocated blocks (`st_blocks`), not file sizes.
///
/// ```swift
/// if let disk = try LocalReplicationState.read(files)?.disk {
///     print(disk.totalBytes, disk.problems())
/// }
/// ```
public struct LocalDiskState: Sendable, Equatable, Codable {
    /// Spool segments (`spool/`).
    public var spoolBytes: UInt64
    /// Local copies the compaction keeps (`compaction/`) and temporary LTX files (`tmp/`).
    public var cacheBytes: UInt64
    /// Everything in `<db>-vfsrepl/`.
    public var totalBytes: UInt64
    /// `spool-max-bytes` as the writing process set it (nil: no bound).
    public var spoolLimitBytes: UInt64?
    /// `spool-full: grow` (else block).
    public var spoolGrows: Bool
    /// Why the spool cannot be written right now (nil: it can), and since when.
    public var spoolError: String?
    public var spoolErrorSince: Date?
    /// Committed transactions wait in the WAL to be spooled (the spool could not take them).
    public var captureBehind: Bool
    /// `spool-full: grow` went past `spool-max-bytes` at this time (nil: within it).
    public var overLimitSince: Date?
    /// Spool writes or reservations that failed, ever.
    public var spoolFailures: UInt64

    init(_ view: vr_state_view, files: ReplicationFiles) {
        spoolBytes = Self.allocated(files.stateDirectory + "/spool")
        cacheBytes = Self.allocated(files.stateDirectory + "/compaction") + Self.allocated(files.stateDirectory + "/tmp")
        totalBytes = Self.allocated(files.stateDirectory)
        spoolLimitBytes = view.spoolLimit > 0 ? view.spoolLimit : nil
        spoolGrows = view.spoolGrow != 0
        spoolError = view.spoolErrno != 0 ? String(cString: strerror(Int32(view.spoolErrno))) : nil
        spoolErrorSince = view.spoolErrorMs > 0 ? Date(epochMilliseconds: view.spoolErrorMs) : nil
        captureBehind = view.captureBehind != 0
        overLimitSince = view.overLimitMs > 0 ? Date(epochMilliseconds: view.overLimitMs) : nil
        spoolFailures = view.spoolFailures
    }

    /// The health rules of the local disk: a spool that cannot be written, or past its bound.
    func problems() -> [String] {
        var problems: [String] = []
        if spoolError != nil || captureBehind {
            let since = spoolErrorSince.map { " since \(StatusReport.format($0))" } ?? ""
            let consequence =
                captureBehind
                ? "committed transactions wait in the WAL to be spooled"
                : spoolGrows ? "commits go on unspooled" : "writers wait"
            problems.append(
                "spool cannot be written\(since): \(spoolError ?? "write failed") (\(consequence); free space beside the database)")
        }
        if let overLimitSince, let spoolLimitBytes {
            problems.append(
                "spool past its bound since \(StatusReport.format(overLimitSince)): \(StatusReport.bytes(spoolBytes)) on disk, spool-max-bytes \(StatusReport.bytes(spoolLimitBytes)) (spool-full: grow)")
        }
        return problems
    }

    /// `disk 1.2 MiB (spool 1.0 MiB, cache 0.2 MiB)` for `vfs-status`.
    func summary() -> String {
        "disk \(StatusReport.bytes(totalBytes)) (spool \(StatusReport.bytes(spoolBytes)), cache \(StatusReport.bytes(cacheBytes)))"
    }

    /// Allocated bytes of a file or, recursively, a folder (no symlinks followed).
    static func allocated(_ path: String) -> UInt64 {
        var st = stat()
        guard lstat(path, &st) == 0 else { return 0 }
        var total = UInt64(st.st_blocks) * 512
        guard (st.st_mode & S_IFMT) == S_IFDIR else { return total }
        for name in (try? FileManager.default.contentsOfDirectory(atPath: path)) ?? [] {
            total += allocated(path + "/" + name)
        }
        return total
    }
}
