import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// What to restore and how carefully.
public struct RestoreOptions: Sendable, Equatable {
    public var target: RestoreTarget
    /// Replace an existing output file (and remove its -wal/-shm/-journal).
    public var force: Bool
    /// Check the rebuilt database (database checksum when the files carry one, and
    /// `PRAGMA integrity_check`). LTX file checksums are always verified.
    public var verify: Bool

    public init(target: RestoreTarget = .latest, force: Bool = false, verify: Bool = true) {
        self.target = target
        self.force = force
        self.verify = verify
    }
}

/// What a restore produced.
public struct RestoreResult: Sendable, Equatable {
    public var outputPath: String
    /// The restore point: the last applied transaction.
    public var txid: UInt64
    /// Timestamp of the last applied file's header.
    public var timestamp: Date
    /// Database size in pages.
    public var pageCount: UInt32
    public var pageSize: UInt32
    /// Files applied, in order.
    public var files: [LTXFileInfo]
    /// True when `PRAGMA integrity_check` ran and said ok.
    public var integrityChecked: Bool
    /// True when the result's database checksum was compared with the last file's post-apply
    /// checksum (only possible for files written without NoChecksum).
    public var checksumVerified: Bool
}

/// Rebuilds a SQLite database file from a replica.
///
/// ```swift
/// let replica = FileReplicaClient(directory: "/backups/app")
/// let result = try ReplicaRestorer.restore(from: replica, to: "/tmp/app.db",
///                                          options: RestoreOptions(target: .txid(42)))
/// print(result.txid, result.pageCount)
/// ```
///
/// Files are applied in chain order straight into a temporary file next to the output (pages
/// written with pwrite, the file truncated to each file's commit size), so memory stays at one
/// page plus buffers whatever the database size. Then fsync, verification, and a rename into
/// place (never over an existing file unless `force`). Blocking: call off the cooperative pool.
public enum ReplicaRestorer {
    /// Every LTX file of every level, sorted by level, then TXID range.
    public static func listFiles(_ client: any ReplicaClient) throws -> [LTXFileInfo] {
        var files: [LTXFileInfo] = []
        for level in try client.listLevels() { files += try client.listFiles(level: level) }
        return files
    }

    /// Lists the replica and plans a restore to `target`.
    /// For a time target, files listed without a time get it from their LTX header.
    public static func plan(_ client: any ReplicaClient, target: RestoreTarget) throws -> RestorePlan {
        var files = try listFiles(client)
        if case .timestamp = target {
            for i in files.indices where files[i].createdAt == nil {
                let local = try client.fetch(files[i])
                defer { local.release() }
                files[i].createdAt = try LTXDecoder.readHeader(path: local.path).date
            }
        }
        return try RestorePlanner.plan(files: files, target: target, location: client.location)
    }

    @discardableResult
    public static func restore(
        from client: any ReplicaClient, to outputPath: String, options: RestoreOptions = RestoreOptions(),
        logger: Logger = Logger(label: "vfsreplication.restore")
    ) throws -> RestoreResult {
        try prepareOutput(outputPath, force: options.force)
        let plan = try plan(client, target: options.target)
        logger.info(
            "restore plan",
            metadata: [
                "restore.replica": "\(client.location)", "restore.target": "\(options.target)",
                "restore.txid": "\(hex16(plan.txid))", "restore.files": "\(plan.files.count)",
            ])
        return try apply(plan, from: client, to: outputPath, options: options, logger: logger)
    }

    /// Applies a plan made by `RestorePlanner`.
    @discardableResult
    public static func apply(
        _ plan: RestorePlan, from client: any ReplicaClient, to outputPath: String, options: RestoreOptions,
        logger: Logger = Logger(label: "vfsreplication.restore")
    ) throws -> RestoreResult {
        guard !plan.files.isEmpty else { throw ReplicationError(.invalidArgument, "empty restore plan") }
        try prepareOutput(outputPath, force: options.force)
        let directory = LTXIO.directory(of: outputPath)
        let temp =
            directory
            + "/.\(LTXIO.lastComponent(of: outputPath)).rebuild-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).tmp"
        let fd = try LTXIO.open(temp, O_RDWR | O_CREAT | O_EXCL, mode: 0o644)
        var closed = false
        defer {
            if !closed { LTXIO.close(fd) }
            LTXIO.unlink(temp)  // after a successful rename this path no longer exists
        }

        var writer: PageWriter?
        var last: (header: LTXHeader, trailer: LTXTrailer, file: LTXFileInfo)?
        for file in plan.files {
            let local = try client.fetch(file)
            defer { local.release() }
            let decoder = try LTXDecoder(path: local.path)
            let header = decoder.header
            guard header.minTXID == file.minTXID, header.maxTXID == file.maxTXID else {
                throw LTXDecoder.corrupt(
                    local.path,
                    "header says TXIDs \(hex16(header.minTXID))-\(hex16(header.maxTXID)) "
                        + "but the file is named \(file.name)"
                )
            }
            if let previous = last {
                guard header.pageSize == previous.header.pageSize else {
                    throw LTXDecoder.corrupt(
                        local.path,
                        "page size \(header.pageSize) differs from \(previous.file) (\(previous.header.pageSize))")
                }
                guard header.minTXID <= previous.header.maxTXID + 1 else {
                    throw ReplicationError(.gap, "\(file) does not continue \(previous.file)")
                }
            } else {
                guard header.isSnapshot else {
                    throw ReplicationError(
                        .gap, "restore must start with a snapshot, \(file) starts at TXID \(hex16(header.minTXID))")
                }
                writer = PageWriter(fd: fd, path: temp, pageSize: Int(header.pageSize))
            }
            if case .timestamp(let date) = options.target, header.date > date {
                throw ReplicationError(
                    .gap,
                    "\(file): its header time \(RestorePlanner.format(header.date)) "
                        + "is after the target \(RestorePlanner.format(date))"
                )
            }
            try writer!.apply(decoder)
            try LTXIO.ftruncate(fd, size: Int64(header.commit) * Int64(header.pageSize), path: temp)
            last = (header, decoder.trailer!, file)
            logger.debug(
                "applied",
                metadata: [
                    "restore.file": "\(file)", "restore.pages": "\(decoder.pageCount)",
                    "restore.commit": "\(header.commit)",
                ])
        }
        let final = last!
        try LTXIO.fsync(fd, path: temp)

        var checksumVerified = false
        var integrityChecked = false
        if options.verify {
            if !final.header.noChecksum && final.trailer.postApplyChecksum != 0 {
                let sum = try LTXDatabaseChecksum.ofDatabase(
                    fd: fd, path: temp, pageSize: final.header.pageSize, pageCount: final.header.commit)
                guard sum == final.trailer.postApplyChecksum else {
                    throw ReplicationError(
                        .verificationFailed,
                        "rebuilt database checksum \(hex16(sum)) differs from \(final.file)'s "
                            + "post-apply checksum \(hex16(final.trailer.postApplyChecksum))"
                    )
                }
                checksumVerified = true
            }
            if let problems = try IntegrityCheck.run(path: temp) {
                throw ReplicationError(
                    .verificationFailed,
                    "rebuilt database (TXID \(hex16(plan.txid))) fails PRAGMA integrity_check: "
                        + problems.prefix(5).joined(separator: "; ")
                )
            }
            integrityChecked = true
        }
        LTXIO.close(fd)
        closed = true

        if options.force {
            try removeSidecars(outputPath)
            try LTXIO.rename(temp, outputPath)
        } else if try !LTXIO.renameNoReplace(temp, outputPath) {
            throw ReplicationError(
                .invalidArgument, "output \(outputPath) appeared during the restore; not overwritten")
        }
        try LTXIO.fsyncDirectory(directory)
        logger.info(
            "restored",
            metadata: [
                "restore.output": "\(outputPath)", "restore.txid": "\(hex16(plan.txid))",
                "restore.pages": "\(final.header.commit)",
            ])
        return RestoreResult(
            outputPath: outputPath, txid: final.header.maxTXID, timestamp: final.header.date,
            pageCount: final.header.commit, pageSize: final.header.pageSize, files: plan.files,
            integrityChecked: integrityChecked, checksumVerified: checksumVerified)
    }

    private static let sidecarSuffixes = ["-wal", "-shm", "-journal"]

    /// Refuses an existing output (or a stale -wal/-shm/-journal that SQLite would apply to the
    /// restored file) unless `force`.
    static func prepareOutput(_ path: String, force: Bool) throws {
        if LTXIO.isDirectory(path) {
            throw ReplicationError(.invalidArgument, "output \(path) is a directory")
        }
        let dir = LTXIO.directory(of: path)
        guard LTXIO.isDirectory(dir) else {
            throw ReplicationError(.invalidArgument, "output directory \(dir) does not exist")
        }
        if force { return }
        for candidate in [path] + sidecarSuffixes.map({ path + $0 }) where LTXIO.exists(candidate) {
            throw ReplicationError(.invalidArgument, "output \(candidate) already exists; use --force to overwrite it")
        }
    }

    private static func removeSidecars(_ path: String) throws {
        for suffix in sidecarSuffixes {
            if unlink(path + suffix) != 0 && errno != ENOENT { throw LTXIO.error("unlink", path + suffix) }
        }
    }
}

/// Writes decoded pages at their offsets, coalescing runs of consecutive pages into one pwrite.
private struct PageWriter {
    let fd: Int32
    let path: String
    let pageSize: Int
    private var run: [UInt8] = []
    private var runStart: UInt32 = 0
    private var runCount = 0
    private var page: [UInt8]
    private static let maxRunBytes = 1 << 20

    init(fd: Int32, path: String, pageSize: Int) {
        self.fd = fd
        self.path = path
        self.pageSize = pageSize
        self.page = [UInt8](repeating: 0, count: pageSize)
        run.reserveCapacity(max(PageWriter.maxRunBytes, pageSize))
    }

    mutating func apply(_ decoder: LTXDecoder) throws {
        while let pgno = try decoder.nextPage(into: &page) {
            if runCount > 0 && (pgno != runStart + UInt32(runCount) || run.count + pageSize > PageWriter.maxRunBytes) {
                try flush()
            }
            if runCount == 0 { runStart = pgno }
            run += page
            runCount += 1
        }
        // The whole file has now been verified (a corrupt file fails the restore and its temp output).
        try flush()
    }

    private mutating func flush() throws {
        guard runCount > 0 else { return }
        try run.withUnsafeBytes { try LTXIO.pwrite(fd, $0, offset: Int64(runStart - 1) * Int64(pageSize), path: path) }
        run.removeAll(keepingCapacity: true)
        runCount = 0
    }
}
