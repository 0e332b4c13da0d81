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
    /// Run `PRAGMA integrity_check` on the rebuilt database. LTX file checksums, the chain of
    /// database checksums and lineages, and the final database checksum (when the files carry
    /// database checksums) are always verified.
    public var verify: Bool
    /// Files downloaded at once (ahead of the one being applied).
    public var downloads: Int
    /// Restoring a configured database at its own path: the replica location to record in a
    /// `RestoreMarker` right after the rename (under the same uploader lock), so that
    /// replicating the restored file continues the replica's lineage.
    public var continueLineageOf: String?

    public init(
        target: RestoreTarget = .latest, force: Bool = false, verify: Bool = true, downloads: Int = 4,
        continueLineageOf: String? = nil
    ) {
        self.target = target
        self.force = force
        self.verify = verify
        self.downloads = downloads
        self.continueLineageOf = continueLineageOf
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
    /// Files applied, in chain order.
    public var files: [LTXFileInfo]
    /// True when `PRAGMA integrity_check` ran and said ok.
    public var integrityChecked: Bool
    /// True when the result's database checksum was compared with the last file's post-apply
    /// checksum (our files carry one; Litestream's do not).
    public var checksumVerified: Bool
    /// Why the database checksum was not checked (`checksumVerified` false), e.g. the files were
    /// written by Litestream, which records none.
    public var checksumUnavailable: String?
    /// Files that could not be used (corrupt or missing), each with the reason; lower levels
    /// stood in for them.
    public var skipped: [String] = []
    /// Bytes of LTX files downloaded and applied (in the plan that succeeded).
    public var bytes: Int64 = 0
    /// Pages written to the output (each page once).
    public var pagesWritten: Int = 0
    /// Seconds from the first download to the rename into place.
    public var seconds: Double = 0
    /// Of `seconds`, those until the rebuilt temporary file was on disk (fsync): downloading,
    /// decoding and writing the files. Measured apart so that a slow restore shows which part is slow.
    public var downloadApplySeconds: Double = 0
    /// Of `seconds`, those spent verifying the rebuilt file: its database checksum and
    /// `PRAGMA integrity_check`.
    public var verifySeconds: Double = 0
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
/// Files are downloaded a few at a time (`RestoreOptions.downloads`) while they are applied,
/// newest first: each page is written once, by the newest file that holds it (a version that a
/// later file truncated away is skipped), so the snapshot, applied last, only fills what nothing
/// newer wrote. Consecutive pages go out in large `pwrite`s into a temporary file next to the
/// output. Memory stays at a read window, a write run and a bit per page, whatever the database
/// size or the number of files. A corrupt or missing file makes the restore plan again without
/// it: lower levels stand in when they cover the same transactions, otherwise the error names the
/// file. Then fsync, verification, and a rename into place (never over an existing file unless
/// `force`). Blocking: call off the cooperative pool.
public enum ReplicaRestorer {
    /// Every LTX file of every level, sorted by level, then TXID range.
    public static func listFiles(_ client: any ReplicaClient) throws -> [LTXFileInfo] {
        var files: [LTXFileInfo] = []
        for level in try client.listLevels() { files += try client.listFiles(level: level) }
        return files
    }

    /// Lists the replica for a restore to `target`: when the target is a time, files listed
    /// without one get it from their LTX header, and on a replica whose listing dates files
    /// roughly (S3) the headers around the target are read (`HeaderTimes`).
    public static func listFiles(_ client: any ReplicaClient, for target: RestoreTarget) throws -> [LTXFileInfo] {
        var files = try listFiles(client)
        if case .timestamp(let date) = target {
            if let rough = client as? any RoughlyDatedReplica {
                files = try HeaderTimes.resolve(files, target: date, replica: rough)
            }
            for i in files.indices where files[i].createdAt == nil {
                let local = try client.fetch(files[i])
                defer { local.release() }
                files[i].createdAt = try LTXDecoder.readHeader(path: local.path).date
            }
        }
        return files
    }

    /// Lists the replica and plans a restore to `target`.
    public static func plan(_ client: any ReplicaClient, target: RestoreTarget) throws -> RestorePlan {
        try RestorePlanner.plan(files: listFiles(client, for: target), target: target, location: client.location)
    }

    @discardableResult
    public static func restore(
        from client: any ReplicaClient, to outputPath: String, options: RestoreOptions = RestoreOptions(),
        logger: Logger = Logger(label: "vfsreplication.restore"), progress: ((RestoreProgress) -> Void)? = nil
    ) throws -> RestoreResult {
        try prepareOutput(outputPath, force: options.force)
        let files = try listFiles(client, for: options.target)
        var plan = try RestorePlanner.plan(files: files, target: options.target, location: client.location)
        var skipped: [(file: LTXFileInfo, reason: String)] = []
        while true {
            logger.info(
                "restore plan",
                metadata: [
                    "restore.replica": "\(client.location)", "restore.target": "\(options.target)",
                    "restore.txid": "\(hex16(plan.txid))", "restore.files": "\(plan.files.count)",
                    "restore.bytes": "\(plan.bytes)",
                ])
            do {
                var result = try applyPlan(
                    plan, from: client, to: outputPath, options: options, logger: logger, progress: progress)
                result.skipped = skipped.map { "\($0.file): \($0.reason)" }
                return result
            } catch let failure as UnusableFile {
                skipped.append((failure.file, failure.error.message))
                plan = try fallback(
                    from: plan, files: files, skipping: skipped.map(\.file), failure: failure, client: client,
                    target: options.target)
                logger.info(
                    "replica file unusable; restoring through other files",
                    metadata: [
                        "restore.file": "\(failure.file)", "restore.error": "\(failure.error.message)",
                        "restore.files": "\(plan.files.count)",
                    ])
            }
        }
    }

    /// Plans again without the files that failed; the new plan must reach the same point.
    private static func fallback(
        from plan: RestorePlan, files: [LTXFileInfo], skipping: [LTXFileInfo], failure: UnusableFile,
        client: any ReplicaClient, target: RestoreTarget
    ) throws -> RestorePlan {
        let replanned: RestorePlan
        do {
            replanned = try RestorePlanner.plan(
                files: files, target: target, location: client.location, excluding: skipping)
        } catch let error as ReplicationError {
            throw ReplicationError(
                failure.error.code,
                "\(failure.error.message); no other files in the replica cover TXIDs "
                    + "\(hex16(failure.file.minTXID))-\(hex16(failure.file.maxTXID)) (\(error.message))")
        }
        guard replanned.txid >= plan.txid else {
            throw ReplicationError(
                failure.error.code,
                "\(failure.error.message); no other files in the replica cover TXIDs "
                    + "\(hex16(failure.file.minTXID))-\(hex16(failure.file.maxTXID)): without \(failure.file) "
                    + "the restore would stop at TXID \(hex16(replanned.txid)) instead of \(hex16(plan.txid))")
        }
        return replanned
    }

    /// A file of the plan that cannot be used: corrupt, or gone from the replica.
    private struct UnusableFile: Error {
        var file: LTXFileInfo
        var error: ReplicationError
    }

    /// Applies a plan made by `RestorePlanner` (without falling back: a corrupt or missing file
    /// fails it; `restore` plans around such files).
    @discardableResult
    public static func apply(
        _ plan: RestorePlan, from client: any ReplicaClient, to outputPath: String, options: RestoreOptions,
        logger: Logger = Logger(label: "vfsreplication.restore"), progress: ((RestoreProgress) -> Void)? = nil
    ) throws -> RestoreResult {
        do {
            return try applyPlan(
                plan, from: client, to: outputPath, options: options, logger: logger, progress: progress)
        } catch let failure as UnusableFile {
            throw failure.error
        }
    }

    private static func applyPlan(
        _ plan: RestorePlan, from client: any ReplicaClient, to outputPath: String, options: RestoreOptions,
        logger: Logger, progress: ((RestoreProgress) -> Void)?
    ) throws -> RestoreResult {
        guard let snapshot = plan.files.first else { throw ReplicationError(.invalidArgument, "empty restore plan") }
        guard snapshot.minTXID == 1 else {
            throw ReplicationError(
                .gap, "restore must start with a snapshot, \(snapshot) starts at TXID \(hex16(snapshot.minTXID))")
        }
        try prepareOutput(outputPath, force: options.force)
        let started = Date()
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

        // Newest first: the first file applied decides the final size and the page size.
        let order = Array(plan.files.reversed())
        let prefetcher = Prefetcher(client: client, files: order, concurrency: options.downloads)
        defer { prefetcher.cancel() }
        var applier: NewestFirstApplier?
        var final: (header: LTXHeader, trailer: LTXTrailer, file: LTXFileInfo)?
        var applied: [(header: LTXHeader, trailer: LTXTrailer, file: LTXFileInfo)] = []
        var report = RestoreProgress(
            filesDone: 0, filesTotal: order.count, bytesDone: 0, bytesTotal: plan.bytes, elapsed: 0)
        progress?(report)
        for file in order {
            let local: LocalLTXFile
            do {
                local = try prefetcher.next()
            } catch let error as ReplicationError
                where error.code == .missingReplica || error.code == .corruptReplicaFile
            {
                throw UnusableFile(file: file, error: error)
            }
            defer { local.release() }
            do {
                let decoder = try LTXDecoder(path: local.path)
                let header = decoder.header
                guard header.minTXID == file.minTXID, header.maxTXID == file.maxTXID else {
                    throw LTXDecoder.corrupt(
                        local.path,
                        "header says TXIDs \(hex16(header.minTXID))-\(hex16(header.maxTXID)) "
                            + "but the file is named \(file.name)")
                }
                if let final {
                    guard header.pageSize == final.header.pageSize else {
                        throw LTXDecoder.corrupt(
                            local.path,
                            "page size \(header.pageSize) differs from \(final.file) (\(final.header.pageSize))")
                    }
                } else {
                    applier = try NewestFirstApplier(
                        fd: fd, path: temp, pageSize: Int(header.pageSize), finalCommit: header.commit)
                }
                if case .timestamp(let date) = options.target, header.date > date {
                    throw ReplicationError(
                        .gap,
                        "\(file): its header time \(RestorePlanner.format(header.date)) "
                            + "is after the target \(RestorePlanner.format(date))"
                    )
                }
                let base = report.bytesDone
                try applier!.apply(decoder) { consumed in
                    report.bytesDone = base + min(consumed, file.size)
                    report.elapsed = Date().timeIntervalSince(started)
                    progress?(report)
                }
                if final == nil { final = (header, decoder.trailer!, file) }
                applied.append((header, decoder.trailer!, file))
                report.bytesDone = base + file.size
                logger.debug(
                    "applied",
                    metadata: [
                        "restore.file": "\(file)", "restore.pages": "\(decoder.pageCount)",
                        "restore.commit": "\(header.commit)",
                    ])
            } catch let error as ReplicationError where error.code == .corruptReplicaFile {
                throw UnusableFile(file: file, error: local.naming(error))
            }
            report.filesDone += 1
            report.elapsed = Date().timeIntervalSince(started)
            report.finished = report.filesDone == report.filesTotal
            progress?(report)
        }
        let last = final!
        let pagesWritten = applier!.pagesWritten
        try checkChain(Array(applied.reversed()))
        try LTXIO.fsync(fd, path: temp)
        let downloadApplySeconds = Date().timeIntervalSince(started)
        let verifyStarted = Date()

        // Which database, from which files, to which point: every verification error says it.
        let what =
            "database \(outputPath) rebuilt from \(client.location) at TXIDs "
            + "\(hex16(1))-\(hex16(last.header.maxTXID)) (\(plan.files.count) files, \(snapshot) to \(last.file))"
        var checksumVerified = false
        var checksumUnavailable: String?
        // integrity_check runs beside the database checksum (`BackgroundIntegrityCheck`). It is
        // waited for on every path out of here (this defer runs before the one that closes and
        // removes the temporary file), and a checksum mismatch is still the error reported.
        let integrity = options.verify ? BackgroundIntegrityCheck(path: temp) : nil
        defer { _ = try? integrity?.wait() }
        if let expected = last.header.postApplyChecksum(last.trailer) {
            let sum = try LTXDatabaseChecksum.ofDatabase(
                fd: fd, path: temp, pageSize: last.header.pageSize, pageCount: last.header.commit)
            guard sum == expected else {
                throw ReplicationError(
                    .verificationFailed,
                    "\(what): its database checksum \(hex16(sum)) is not the post-apply checksum "
                        + "\(hex16(expected)) that \(last.file) records")
            }
            checksumVerified = true
        } else if last.header.nodeID == 0 {
            checksumUnavailable = "written by Litestream, whose files carry no database checksum"
        } else {
            checksumUnavailable = "\(last.file) carries no database checksum (written before they were recorded)"
        }
        var integrityChecked = false
        if let integrity {
            if let rows = try integrity.wait() {
                // SQLite puts several problems into one row, separated by newlines.
                let problems = rows.flatMap { $0.split(whereSeparator: \.isNewline) }.map(String.init)
                    .filter { !$0.isEmpty && !$0.hasPrefix("*** in database") }
                let first = problems.first ?? "not ok"
                let more = problems.count > 1 ? " (and \(problems.count - 1) more problems)" : ""
                throw ReplicationError(
                    .verificationFailed, "\(what) fails PRAGMA integrity_check: \(first)\(more)",
                    details: problems)
            }
            integrityChecked = true
        }
        let verifySeconds = Date().timeIntervalSince(verifyStarted)
        LTXIO.close(fd)
        closed = true

        // The output may have come into use while we downloaded: look again, and hold its
        // uploader lock so that no process starts replicating the old file until it is replaced.
        let uploaderLock = try DatabaseInUse.holdUploaderLock(outputPath)
        defer { if let uploaderLock { LTXIO.close(uploaderLock) } }
        try refuseLiveOutput(outputPath, holdingUploaderLock: uploaderLock != nil)
        if options.force {
            try removeSidecars(outputPath)
            try LTXIO.rename(temp, outputPath)
        } else if try !LTXIO.renameNoReplace(temp, outputPath) {
            throw ReplicationError(
                .invalidArgument, "output \(outputPath) appeared during the restore; not overwritten")
        }
        try LTXIO.fsyncDirectory(directory)
        if let replica = options.continueLineageOf {
            try RestoreMarker.record(databasePath: outputPath, replica: replica, txid: last.header.maxTXID)
        }
        let seconds = Date().timeIntervalSince(started)
        logger.info(
            "restored",
            metadata: [
                "restore.output": "\(outputPath)", "restore.txid": "\(hex16(plan.txid))",
                "restore.pages": "\(last.header.commit)", "restore.seconds": "\(seconds)",
            ])
        return RestoreResult(
            outputPath: outputPath, txid: last.header.maxTXID, timestamp: last.header.date,
            pageCount: last.header.commit, pageSize: last.header.pageSize, files: plan.files,
            integrityChecked: integrityChecked, checksumVerified: checksumVerified,
            checksumUnavailable: checksumUnavailable, bytes: plan.bytes,
            pagesWritten: pagesWritten, seconds: seconds, downloadApplySeconds: downloadApplySeconds,
            verifySeconds: verifySeconds)
    }

    /// Checks, oldest first, that every file continues the one before it (`LTXChain`): database
    /// checksums where both carry them, and the lineage. A file that does not is unusable (the
    /// restore plans around it, or the error names it).
    private static func checkChain(_ chain: [(header: LTXHeader, trailer: LTXTrailer, file: LTXFileInfo)]) throws {
        for i in chain.indices.dropFirst() {
            let previous = chain[i - 1]
            let next = chain[i]
            if let problem = LTXChain.problem(
                previous: previous.header, previousPost: previous.header.postApplyChecksum(previous.trailer),
                next: next.header)
            {
                throw UnusableFile(
                    file: next.file,
                    error: ReplicationError(
                        .corruptReplicaFile, "\(next.file) cannot follow \(previous.file) in a restore: \(problem)"))
            }
        }
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
        try refuseLiveOutput(path)
        if force { return }
        for candidate in [path] + sidecarSuffixes.map({ path + $0 }) where LTXIO.exists(candidate) {
            throw ReplicationError(.invalidArgument, "output \(candidate) already exists; use --force to overwrite it")
        }
    }

    /// A database that a process has open or replicates is never replaced, `force` or not.
    private static func refuseLiveOutput(_ path: String, holdingUploaderLock: Bool = false) throws {
        guard ([path, path + "-vfsrepl"] + sidecarSuffixes.map({ path + $0 })).contains(where: LTXIO.exists) else {
            return
        }
        try DatabaseInUse.refuseReplacing(path, doing: "replace", holdingUploaderLock: holdingUploaderLock)
    }

    private static func removeSidecars(_ path: String) throws {
        for suffix in sidecarSuffixes {
            if unlink(path + suffix) != 0 && errno != ENOENT { throw LTXIO.error("unlink", path + suffix) }
        }
    }
}

/// Applies the files of a plan newest first into a file sized for the final database: a page
/// is written only by the newest file holding it, and only if no later file truncated the
/// database below it (that version is gone). Runs of consecutive pages go out in one pwrite.
private struct NewestFirstApplier {
    let fd: Int32
    let path: String
    let pageSize: Int
    /// Smallest database size of the files applied so far (all newer than the next one).
    private var limit = UInt32.max
    private var written: [UInt64]
    private var run: [UInt8] = []
    private var runStart: UInt32 = 0
    private var runCount = 0
    private var page: [UInt8]
    private(set) var pagesWritten = 0
    private static let maxRunBytes = 4 << 20
    private static let progressEvery: Int64 = 8 << 20

    init(fd: Int32, path: String, pageSize: Int, finalCommit: UInt32) throws {
        self.fd = fd
        self.path = path
        self.pageSize = pageSize
        self.page = [UInt8](repeating: 0, count: pageSize)
        self.written = [UInt64](repeating: 0, count: Int(finalCommit) / 64 + 1)
        run.reserveCapacity(max(NewestFirstApplier.maxRunBytes, pageSize))
        // Pages nothing writes (the lock page, pages lost to a truncation) read as zeros.
        try LTXIO.ftruncate(fd, size: Int64(finalCommit) * Int64(pageSize), path: path)
    }

    /// Decodes every page of `decoder` (verifying the file), writing the ones that survive.
    mutating func apply(_ decoder: LTXDecoder, progress: (Int64) -> Void) throws {
        var nextReport = NewestFirstApplier.progressEvery
        while let pgno = try decoder.nextPage(into: &page) {
            let index = Int(pgno - 1)
            if pgno <= limit, written[index >> 6] & (1 << UInt64(index & 63)) == 0 {
                if runCount > 0
                    && (pgno != runStart + UInt32(runCount) || run.count + pageSize > NewestFirstApplier.maxRunBytes)
                {
                    try flush()
                }
                if runCount == 0 { runStart = pgno }
                run += page
                runCount += 1
                written[index >> 6] |= 1 << UInt64(index & 63)
                pagesWritten += 1
            }
            if decoder.bytesConsumed >= nextReport {
                progress(decoder.bytesConsumed)
                nextReport = decoder.bytesConsumed + NewestFirstApplier.progressEvery
            }
        }
        // The whole file has now been verified (a corrupt file fails the restore and its temp output).
        try flush()
        limit = min(limit, decoder.header.commit)
    }

    private mutating func flush() throws {
        guard runCount > 0 else { return }
        try run.withUnsafeBytes { try LTXIO.pwrite(fd, $0, offset: Int64(runStart - 1) * Int64(pageSize), path: path) }
        run.removeAll(keepingCapacity: true)
        runCount = 0
    }
}
