import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// What one `ReplicaMaintainer.tick` did.
public struct MaintenanceReport: Sendable, Equatable {
    /// Compacted files written (levels 1-8).
    public var compacted: [LTXFileInfo] = []
    /// Snapshots written (level 9).
    public var snapshots: [LTXFileInfo] = []
    /// Files removed by retention.
    public var deleted: [LTXFileInfo] = []
    /// Replica requests made, by kind (one per call; a deletion counts one per file).
    public var requests: [RequestKind: Int] = [:]
    /// Failed actions (each retried later, with a growing delay), as messages naming the files.
    public var failures: [String] = []
    /// True when the tick stopped at its deadline with work left.
    public var more = false

    public init() {}

    public var isEmpty: Bool { compacted.isEmpty && snapshots.isEmpty && deleted.isEmpty && failures.isEmpty }
}

/// Keeps a replica compact: merges level-0 files into higher levels on wall-clock-aligned
/// intervals, writes new level-9 snapshots by compaction (the previous snapshot and everything
/// after it; never reading the live database), and applies retention once the replacement is
/// durable. Requests stay low: it keeps its own index of the replica's files, lists only when
/// loading it (at start-up, or after `invalidateIndex`), and does nothing while no new file
/// arrived. What to do is decided by `MaintenancePlanner` (pure); this class does the I/O.
///
/// ```swift
/// let maintainer = ReplicaMaintainer(replica: replica, policy: MaintenancePolicy(database),
///                                    logger: logger, tempDirectory: spoolDirectory + "/tmp")
/// try maintainer.loadIndex()                                  // one LIST pass, at start-up
/// // after each publish:
/// maintainer.noteUploaded(LTXFileInfo(level: 0, minTXID: 8, maxTXID: 9, size: size, createdAt: time),
///                         localCopy: tmpPath)                 // optional: saves the GET
/// // in the loop:
/// if let due = maintainer.nextDue(now: Date()), due <= Date() {
///     let report = try maintainer.tick(now: Date())           // throws only .fenced
/// }
/// ```
///
/// Compacted files and snapshots are written with `publish` (create-only): an existing object
/// means another writer, and `tick` throws `ReplicationError(.fenced)`. Any other failure is
/// logged, listed in the report and retried with a growing delay (`nextDue` accounts for it), so
/// a caller never loops on a broken file. Thread-safe: `noteUploaded` and `nextDue` may be
/// called from one thread while `tick` runs on another; ticks do not overlap.
public final class ReplicaMaintainer: @unchecked Sendable {
    public let replica: any ReplicaClient
    public let policy: MaintenancePolicy
    private let planner: MaintenancePlanner
    private let logger: Logger
    private let tempDirectory: String
    private let cache: CompactionCache

    private let lock = NSLock()
    // Guarded by `lock`:
    private var index: ReplicaIndex?
    private var indexStale = false
    private var retries: [MaintenanceTask: (resume: Date, delay: Duration)] = [:]
    private var dueCache: (valid: Bool, value: Date?) = (false, nil)
    private var ticking = false
    private var tempPrepared = false

    /// `tempDirectory` holds merge outputs and local copies of files the next compaction needs
    /// (created by `loadIndex`, which also removes what an earlier run left there; creating a
    /// maintainer touches nothing, so processes that are not the uploader can make one).
    public init(replica: any ReplicaClient, policy: MaintenancePolicy, logger: Logger, tempDirectory: String) {
        self.replica = replica
        self.policy = policy
        self.planner = MaintenancePlanner(policy: policy)
        var logger = logger
        logger[metadataKey: "replica"] = .string(replica.location)
        self.logger = logger
        self.tempDirectory = tempDirectory
        self.cache = CompactionCache(directory: tempDirectory + "/compaction-cache", maxBytes: policy.cacheMaxBytes)
    }

    private static let tempPrefix = "compaction-"

    // MARK: - Index

    /// Lists the replica (one LIST per level) and replaces the index.
    public func loadIndex() throws {
        _ = try load(now: Date())
    }

    @discardableResult
    private func load(now: Date) throws -> Int {
        prepareTempDirectory()
        let levels = try replica.listLevels()
        var files: [LTXFileInfo] = []
        for level in levels { files += try replica.listFiles(level: level) }
        let loaded = ReplicaIndex(files: files, undatedTime: now)
        lock.lock()
        index = loaded
        indexStale = false
        dueCache.valid = false
        lock.unlock()
        cache.retain { loaded.contains($0) }
        logger.debug(
            "replica index loaded",
            metadata: ["maintenance.files": "\(loaded.count)", "maintenance.bytes": "\(loaded.bytes)"])
        return 1 + levels.count
    }

    /// Creates the temporary directory and clears what an earlier run (which may have died in
    /// the middle of a merge) left in it.
    private func prepareTempDirectory() {
        lock.lock()
        let first = !tempPrepared
        tempPrepared = true
        lock.unlock()
        guard first else { return }
        try? FileManager.default.createDirectory(atPath: tempDirectory, withIntermediateDirectories: true)
        for name in (try? FileManager.default.contentsOfDirectory(atPath: tempDirectory)) ?? []
        where name.hasPrefix(ReplicaMaintainer.tempPrefix) {
            LTXIO.unlink(tempDirectory + "/" + name)
        }
        cache.reset()
    }

    /// The next tick lists the replica again (call it when something else may have changed it).
    public func invalidateIndex() {
        lock.lock()
        indexStale = true
        dueCache.valid = false
        lock.unlock()
    }

    /// The uploader published `file` (level 0 or 9). With `localCopy` (the file it uploaded,
    /// still on disk), a hard link is kept for the next compaction instead of a GET.
    public func noteUploaded(_ file: LTXFileInfo, localCopy: String? = nil) {
        lock.lock()
        let known = index != nil
        if known {
            index!.insert(file)
            dueCache.valid = false
        }
        lock.unlock()
        if known, let localCopy, file.level < policy.topLevel || file.level == MaintenancePolicy.snapshotLevel {
            cache.adopt(file, from: localCopy, link: true)
        }
    }

    /// How many objects and bytes the maintainer believes the replica holds (nil before
    /// `loadIndex`): its index, kept without extra requests (costs use it).
    public var storedSize: (files: Int, bytes: Int64)? {
        lock.lock()
        defer { lock.unlock() }
        return index.map { ($0.count, $0.bytes) }
    }

    /// The files the maintainer believes the replica holds (empty before `loadIndex`).
    public var files: [LTXFileInfo] {
        lock.lock()
        defer { lock.unlock() }
        return index?.allFiles ?? []
    }

    // MARK: - Schedule

    /// When `tick` next has work (at or before `now`: now); nil when there is nothing to do
    /// until a new file arrives. Cheap: the answer is cached until the index changes.
    public func nextDue(now: Date) -> Date? {
        lock.lock()
        defer { lock.unlock() }
        guard let index, !indexStale else {
            return retries[.listing].map { max($0.resume, now) } ?? now
        }
        if !dueCache.valid {
            let resume = retries.mapValues(\.resume)
            dueCache = (true, planner.nextDue(index, now: now, resume: resume))
        }
        return dueCache.value
    }

    // MARK: - Work

    /// Does what is due at `now`: compactions, then a snapshot, then retention, until nothing is
    /// due or `deadline` passes (then `report.more` is true). Idempotent and cheap when nothing
    /// is due. Throws only `.fenced` (another writer created an object this maintainer meant to
    /// create); other failures are in the report and retried later.
    @discardableResult
    public func tick(now: Date, deadline: Date? = nil) throws -> MaintenanceReport {
        lock.lock()
        guard !ticking else {
            lock.unlock()
            return MaintenanceReport()
        }
        ticking = true
        let needsLoad = index == nil || indexStale
        lock.unlock()
        defer {
            lock.lock()
            ticking = false
            lock.unlock()
        }

        var report = MaintenanceReport()
        if needsLoad {
            if let resume = retryResume(.listing), resume > now { return report }
            do {
                report.requests[.list, default: 0] += try load(now: now)
                clearRetry(.listing)
            } catch let error as ReplicationError where error.code == .fenced {
                throw error
            } catch {
                fail(.listing, error, now: now, report: &report, what: "listing the replica")
                return report
            }
        }

        var performed = 0
        while performed < 100_000 {
            lock.lock()
            let paused = Set(retries.filter { $0.value.resume > now }.keys)
            let action = index.flatMap { planner.nextAction($0, now: now, paused: paused) }
            lock.unlock()
            guard let action else { break }
            if let deadline, performed > 0, Date() >= deadline {
                report.more = true
                break
            }
            performed += 1
            do {
                try perform(action, now: now, report: &report)
                clearRetry(action.task)
            } catch let error as ReplicationError where error.code == .fenced {
                throw error  // the caller stops shipping and reports it
            } catch {
                fail(action.task, error, now: now, report: &report, what: describe(action))
                if (error as? ReplicationError)?.code == .missingReplica { invalidateIndex() }
            }
        }
        return report
    }

    private func describe(_ action: MaintenanceAction) -> String {
        switch action {
        case .compact(let level, let inputs):
            return "compacting \(inputs.count) files into level \(level) (\(inputs.first!) to \(inputs.last!))"
        case .snapshot(let inputs):
            return "writing a snapshot from \(inputs.count) files (\(inputs.first!) to \(inputs.last!))"
        case .delete(let files):
            return "deleting \(files.count) files"
        }
    }

    private func perform(_ action: MaintenanceAction, now: Date, report: inout MaintenanceReport) throws {
        switch action {
        case .compact(let level, let inputs):
            let file = try merge(inputs, into: level, report: &report)
            report.compacted.append(file)
            logger.debug(
                "compacted",
                metadata: [
                    "maintenance.level": "\(level)", "maintenance.txid.min": "\(hex16(file.minTXID))",
                    "maintenance.txid.max": "\(hex16(file.maxTXID))",
                    "maintenance.inputs": "\(inputs.count)", "maintenance.bytes": "\(file.size)",
                ])
        case .snapshot(let inputs):
            let file = try merge(inputs, into: MaintenancePolicy.snapshotLevel, report: &report)
            lock.lock()
            index?.noteSnapshotWritten(file, at: now)
            dueCache.valid = false
            lock.unlock()
            report.snapshots.append(file)
            logger.info(
                "snapshot written",
                metadata: [
                    "maintenance.txid": "\(hex16(file.maxTXID))", "maintenance.inputs": "\(inputs.count)",
                    "maintenance.bytes": "\(file.size)",
                ])
        case .delete(let files):
            try replica.delete(files)
            report.requests[.delete, default: 0] += files.count
            lock.lock()
            index?.remove(files)
            dueCache.valid = false
            lock.unlock()
            for file in files { cache.evict(file) }
            report.deleted += files
            logger.debug("retention deleted files", metadata: ["maintenance.files": "\(files.count)"])
        }
    }

    /// Merges `inputs` into a file at `level`, publishes it (create-only), records it.
    private func merge(_ inputs: [LTXFileInfo], into level: Int, report: inout MaintenanceReport) throws
        -> LTXFileInfo
    {
        var locals: [LocalLTXFile] = []
        defer { for local in locals { local.release() } }
        for input in inputs {
            if let cached = cache.path(of: input) {
                locals.append(LocalLTXFile(path: cached, isTemporary: false))
                continue
            }
            let local = try replica.fetch(input)
            report.requests[.get, default: 0] += 1
            locals.append(local)
            let header = try LTXDecoder.readHeader(path: local.path)
            guard header.minTXID == input.minTXID, header.maxTXID == input.maxTXID else {
                throw LTXDecoder.corrupt(
                    local.path,
                    "header says TXIDs \(hex16(header.minTXID))-\(hex16(header.maxTXID)) but the file is \(input)")
            }
        }
        let minTXID = inputs.first!.minTXID
        let maxTXID = inputs.last!.maxTXID
        let output =
            tempDirectory + "/\(ReplicaMaintainer.tempPrefix)\(level)-"
            + LTXFileInfo.fileName(minTXID: minTXID, maxTXID: maxTXID)
        var keepOutput = false
        defer { if !keepOutput { LTXIO.unlink(output) } }
        let merged = try LTXMerger.merge(inputs: locals.map(\.path), to: output)
        // Never publish what does not read back.
        try LTXDecoder.verify(path: output)
        let timestamp = merged.header.date
        try replica.publish(level: level, minTXID: minTXID, maxTXID: maxTXID, localPath: output, timestamp: timestamp)
        report.requests[.put, default: 0] += 1
        let file = LTXFileInfo(
            level: level, minTXID: minTXID, maxTXID: maxTXID, size: merged.size, createdAt: timestamp)
        lock.lock()
        index?.insert(file)
        dueCache.valid = false
        lock.unlock()
        // Inputs now covered by this file are not needed for another compaction.
        if level != MaintenancePolicy.snapshotLevel {
            for input in inputs { cache.evict(input) }
        }
        if level < policy.topLevel || level == MaintenancePolicy.snapshotLevel {
            keepOutput = cache.adopt(file, from: output, link: false)
        }
        if level == MaintenancePolicy.snapshotLevel {
            // Only the newest snapshot can be the start of the next one.
            cache.retain { $0.level != MaintenancePolicy.snapshotLevel || $0 == file }
        }
        return file
    }

    // MARK: - Retries

    private func retryResume(_ task: MaintenanceTask) -> Date? {
        lock.lock()
        defer { lock.unlock() }
        return retries[task]?.resume
    }

    private func clearRetry(_ task: MaintenanceTask) {
        lock.lock()
        if retries.removeValue(forKey: task) != nil { dueCache.valid = false }
        lock.unlock()
    }

    private func fail(
        _ task: MaintenanceTask, _ error: any Error, now: Date, report: inout MaintenanceReport, what: String
    ) {
        let message = (error as? ReplicationError)?.message ?? "\(error)"
        lock.lock()
        let delay = retries[task].map { min($0.delay * 2, policy.maxRetryDelay) } ?? policy.retryDelay
        let resume = now.addingTimeInterval(Double(MaintenanceClock.ms(delay)) / 1000)
        retries[task] = (resume, delay)
        dueCache.valid = false
        lock.unlock()
        report.failures.append("\(what): \(message)")
        logger.info(
            "replica maintenance failed; will retry",
            metadata: [
                "maintenance.task": "\(task)", "maintenance.error": "\(message)",
                "maintenance.retry.at": "\(RestorePlanner.format(resume))",
            ])
    }
}

/// Local copies of replica files the next compaction will read, so that merging needs no GET:
/// hard links to what the uploader just uploaded, and the maintainer's own merge outputs. Bounded
/// in bytes (the oldest go first); a file that is not here is simply fetched.
final class CompactionCache: @unchecked Sendable {
    private let directory: String
    private let maxBytes: Int64
    private let lock = NSLock()
    private var entries: [String: (file: LTXFileInfo, added: UInt64)] = [:]
    private var bytes: Int64 = 0
    private var counter: UInt64 = 0

    init(directory: String, maxBytes: Int64) {
        self.directory = directory
        self.maxBytes = maxBytes
    }

    /// Starts empty: removes whatever an earlier run left in the directory.
    func reset() {
        lock.lock()
        entries.removeAll()
        bytes = 0
        lock.unlock()
        try? FileManager.default.removeItem(atPath: directory)
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    private func path(_ file: LTXFileInfo) -> String {
        directory + "/\(file.level)-" + file.name
    }

    /// The local copy of `file`, if there is one (and it is still on disk).
    func path(of file: LTXFileInfo) -> String? {
        let target = path(file)
        lock.lock()
        let known = entries[target] != nil
        lock.unlock()
        guard known else { return nil }
        guard LTXIO.exists(target) else {
            evict(file)
            return nil
        }
        return target
    }

    /// Keeps `source` as the local copy of `file`: a hard link (`link`), else a rename. Returns
    /// false (leaving `source` alone) when it does not fit or cannot be kept.
    @discardableResult
    func adopt(_ file: LTXFileInfo, from source: String, link makeLink: Bool) -> Bool {
        guard file.size <= maxBytes else { return false }
        let target = path(file)
        LTXIO.unlink(target)
        let kept = makeLink ? Glibc.link(source, target) == 0 : Glibc.rename(source, target) == 0
        guard kept else { return false }
        lock.lock()
        counter += 1
        if let old = entries[target] { bytes -= old.file.size }
        entries[target] = (file, counter)
        bytes += file.size
        var victims: [String] = []
        while bytes > maxBytes,
            let oldest = entries.filter({ $0.key != target }).min(by: { $0.value.added < $1.value.added })
        {
            entries[oldest.key] = nil
            bytes -= oldest.value.file.size
            victims.append(oldest.key)
        }
        lock.unlock()
        for victim in victims { LTXIO.unlink(victim) }
        return true
    }

    func evict(_ file: LTXFileInfo) {
        let target = path(file)
        lock.lock()
        let removed = entries.removeValue(forKey: target)
        if let removed { bytes -= removed.file.size }
        lock.unlock()
        if removed != nil { LTXIO.unlink(target) }
    }

    /// Drops every entry `keep` rejects.
    func retain(_ keep: (LTXFileInfo) -> Bool) {
        lock.lock()
        let victims = entries.filter { !keep($0.value.file) }
        for (key, value) in victims {
            entries[key] = nil
            bytes -= value.file.size
        }
        lock.unlock()
        for key in victims.keys { LTXIO.unlink(key) }
    }
}
