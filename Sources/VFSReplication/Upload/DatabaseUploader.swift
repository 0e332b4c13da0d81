internal import CVFSShim
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// What an operator (or `flush()`) needs to know about one database.
public struct DatabaseStatus: Sendable, Equatable {
    public var path: String
    public var replica: String
    /// Last TXID captured locally.
    public var localTXID: UInt64
    /// Last TXID durable in the replica.
    public var durableTXID: UInt64
    /// Whether this process is the database's uploader.
    public var isUploader: Bool
    /// Another writer owns the replica lineage; shipping stopped.
    public var fenced: Bool
    public var lastError: String?
    /// Bytes of spool not yet shipped.
    public var pendingSpoolBytes: UInt64
    public var lastUpload: Date?
    public var lastSnapshot: Date?
    public var filesUploaded: Int
    public var bytesUploaded: Int64
}

/// Ships one database's spool to its replica, one turn at a time on a thread of the
/// `UploaderPool`: every call a turn makes is blocking I/O (spool reads, LTX encoding, fsync,
/// replica writes), none on the commit path.
final class DatabaseUploader: @unchecked Sendable {
    let config: DatabaseConfig
    let spool: SpoolHandle
    let replica: any ReplicaClient
    /// The same client when the database has several replicas (`replicas:`): catching up a
    /// replica that fell behind is part of maintenance.
    private let replicaSet: ReplicaSet?
    /// A batch whose publish failed with several replicas: it is retried as it is, not grown by
    /// later commits, so a replica that took it gets no second, overlapping file.
    private var retryUnchanged = false
    private let logger: Logger
    private let observers: [any UploaderObserver]
    /// Compaction, snapshots by compaction and retention (runs in turns between uploads).
    private let maintainer: ReplicaMaintainer
    private var lastPendingReport: (Int64?, Int) = (nil, 0)
    private let policy: ShipPolicy
    private let pollInterval: Duration
    /// How long a remote-durability upload waits for more committers to join it.
    var groupCommitWindow: Duration = .milliseconds(2)

    private let cond = NSCondition()
    // Guarded by cond:
    private var running = false
    private var stopRequested = false
    private var flushWaiters = 0
    /// The pool that runs this database's turns (set by `start(in:)`).
    private var pool: UploaderPool?
    private var lastError: String?
    private var fenced = false
    private var isUploader = false
    private var lastUpload: Date?
    private var lastSnapshot: Date?
    private var filesUploaded = 0
    private var bytesUploaded: Int64 = 0
    private var spoolRepairs = 0
    /// A snapshot is needed, and the process began to exit before it was taken (SQLite cannot
    /// be used any more): a flush fails at once instead of waiting out its timeout.
    private var snapshotBlockedAtExit = false

    // Turn state (one pool thread at a time):
    private var reader: SpoolReader
    private var readPos = SpoolPosition(segment: 1, offset: 0)
    private var batch = PendingBatch()
    /// Why the next shipment must be a snapshot (nil: deltas continue). Set only through
    /// `requireSnapshot`, cleared when one ships or a start-up finds the lineage intact.
    private(set) var snapshotReason: SnapshotReason?
    private var needSnapshot: Bool { snapshotReason != nil }
    /// The last COMMIT/RESET record consumed from the spool: the WAL state it left and its TXID.
    private var lastSeen: (wal: WALPosition, txid: UInt64, timestampMs: Int64)?
    private var snapshotMinTXID: UInt64 = 1
    private var startedUp = false
    /// The database has content no write through the VFS will bring (never captured, or changed
    /// while closed): the next round records a lineage start itself (issue: existing databases).
    private var forceLineageStart = false
    /// The last snapshot attempt found nothing to read (no database yet, not in WAL mode) while
    /// this was the last TXID: a closing connection waits for it only once a commit came since
    /// (`publishBasePending`).
    private var snapshotFoundNothingAt: UInt64?
    /// The replica size last reported (`reportStoredSize`), guarded by `storedLock`.
    private let storedLock = NSLock()
    private var lastStoredBytes: Int64 = -1
    private var lastStoredFiles = -1

    init(
        config: DatabaseConfig, spool: SpoolHandle, replica: any ReplicaClient, logger: Logger,
        observers: [any UploaderObserver] = []
    ) {
        self.config = config
        self.spool = spool
        let path = config.path
        let send: @Sendable (UploaderEvent) -> Void = { event in
            for o in observers { o.uploader(database: path, didReport: event) }
        }
        if let set = replica as? ReplicaSet {
            // Several replicas: each one's requests are counted (and priced) on its own, and
            // the database's totals are their sum.
            set.observe(
                wrap: { name, client in
                    ObservedReplicaClient(client) { event in
                        send(event)
                        switch event {
                        case .request(let kind, let count): send(.replicaRequest(replica: name, kind, count: count))
                        case .downloaded(let bytes): send(.replicaDownloaded(replica: name, bytes: bytes))
                        default: break
                        }
                    }
                },
                report: { send(.replica($0)) })
            self.replica = set
            self.replicaSet = set
        } else {
            self.replica = ObservedReplicaClient(replica, report: send)
            self.replicaSet = nil
        }
        self.observers = observers
        self.maintainer = ReplicaMaintainer(
            replica: self.replica, policy: MaintenancePolicy(config), logger: logger,
            tempDirectory: spool.stateDirectory + "/compaction")
        var logger = logger
        logger[metadataKey: "db.path"] = .string(config.path)
        self.logger = logger
        self.policy = ShipPolicy(maxDelay: config.maxDelay)
        let tenth = config.maxDelay / 10
        self.pollInterval = min(max(tenth, .milliseconds(2)), .milliseconds(50))
        self.groupCommitWindow = config.groupCommitWindow
        self.reader = SpoolReader(spool: spool)
    }

    /// Hands the database to `pool`, whose threads run its turns from now on.
    func start(in pool: UploaderPool) {
        cond.lock()
        guard !running else {
            cond.unlock()
            return
        }
        running = true
        stopRequested = false
        self.pool = pool
        cond.unlock()
        // Until a turn has looked, the host's last close waits for it (vr_set_close_wait).
        spool.setBasePending(true)
        pool.add(self)
    }

    /// Asks the pool to ship what is pending and stop serving the database (`stop` waits).
    func requestStop() {
        cond.lock()
        stopRequested = true
        cond.broadcast()
        let pool = self.pool
        cond.unlock()
        spool.kick()
        pool?.wake(self)
    }

    /// Asks the pool to ship what is pending and stop serving the database; waits for it.
    func stop(timeout: Duration) {
        requestStop()
        cond.lock()
        let deadline = Date().addingTimeInterval(timeout.seconds)
        while running {
            if !cond.wait(until: deadline) { break }
        }
        cond.unlock()
    }

    /// Waits until every transaction committed before the call is durable in the replica.
    func flush(timeout: Duration) throws {
        var target = spool.state().lastTxid
        // A database whose current state no capture holds (an existing database added to the
        // config, or one changed while closed): the uploader records a lineage start above
        // `target` and snapshots it; wait for that too.
        if BackupCoverage.needsLineageStart(databasePath: spool.databasePath, state: spool.state()) { target += 1 }
        let deadline = Date().addingTimeInterval(timeout.seconds)
        // The uploader may be another process (a forking server's master): it ships at once too.
        if spool.state().shippedTxid < target { spool.requestShip(upTo: target) }
        cond.lock()
        flushWaiters += 1
        cond.broadcast()
        spool.kick()
        pool?.wake(self)
        defer {
            flushWaiters -= 1
            cond.unlock()
        }
        while true {
            let st = spool.state()
            if st.shippedTxid >= target { return }
            if fenced {
                throw ReplicationError(.fenced, "database \(config.path): \(lastError ?? "fenced")")
            }
            if snapshotBlockedAtExit {
                throw ReplicationError(.shutDown, Self.blockedAtExitMessage(config.path))
            }
            if Date() >= deadline {
                let detail = lastError.map { ": last error: \($0)" } ?? ""
                throw ReplicationError(
                    .timeout,
                    "database \(config.path): transaction \(target) not durable in \(replica.location) after \(timeout)\(detail)"
                )
            }
            // Another process may be the uploader: poll the shared state as well.
            _ = cond.wait(until: min(deadline, Date().addingTimeInterval(0.01)))
        }
    }

    func status() -> DatabaseStatus {
        let st = spool.state()
        cond.lock()
        defer { cond.unlock() }
        let pending = spool.pendingBytes
        return DatabaseStatus(
            path: config.path, replica: replica.location, localTXID: st.lastTxid, durableTXID: st.shippedTxid,
            isUploader: isUploader, fenced: fenced, lastError: lastError, pendingSpoolBytes: pending,
            lastUpload: lastUpload, lastSnapshot: lastSnapshot, filesUploaded: filesUploaded,
            bytesUploaded: bytesUploaded)
    }

    // MARK: - Turns (run by UploaderPool)

    /// What the pool does with the database after a turn.
    enum TurnResult: Equatable {
        /// Run another turn at once.
        case again
        /// Run the next turn after `after`, or earlier when the database's work generation moves
        /// (a kick: flush, stop, a committer waiting for remote durability) if `wakeOnWork`.
        case wait(Duration, wakeOnWork: Bool)
        /// Nothing to do: the database is parked (`vr_db_park`), so its next commit in any
        /// process moves the work generation and rings the pool's bell; or `after` passes.
        case park(Duration)
        /// Stopped: the pool forgets the database.
        case finished
    }

    /// The work generation read at the start of the last turn: the pool runs the next turn early
    /// when it moves (see `TurnResult.wait`).
    private(set) var turnGeneration: UInt32 = 0
    private var backoff = TurnRules.firstBackoff
    private var lastElectAttempt = ContinuousClock.now - .seconds(10)
    /// durability: remote: the end of the group-commit window a waiting committer opened.
    private var groupCommitUntil: ContinuousClock.Instant?
    private var parked = false

    /// What the spool reader's buffer held at the end of the last turn (see
    /// `SpoolReader.releaseBuffer`); guarded by `cond`, read by tests from other threads.
    private var readBufferBytes = 0
    var spoolReadBufferBytes: Int {
        cond.lock()
        defer { cond.unlock() }
        return readBufferBytes
    }
    private func publishReadBuffer() {
        let n = reader.bufferBytes
        cond.lock()
        readBufferBytes = n
        cond.unlock()
    }

    /// One turn of the upload loop: look at the state, do at most one piece of work (elect,
    /// read and ship, snapshot, a slice of maintenance), and say when to look again. Runs on a
    /// pool thread, never on two at once for one database.
    func turn() -> TurnResult {
        if parked {
            spool.unpark()
            parked = false
        }
        // Read before looking for work, so a wake-up in between is never lost.
        let generation = spool.workGeneration()
        turnGeneration = generation
        cond.lock()
        let stopping = stopRequested
        var flushing = flushWaiters > 0 || stopping
        let isFenced = fenced
        let flushWaiting = flushWaiters > 0
        cond.unlock()
        // Look again after `d` (earlier on work if `onWork`); at once when a stop, or a flush
        // this wait would be cut short for, waits in this process.
        func wait(_ d: Duration, onWork: Bool) -> TurnResult {
            if stopping || (onWork && flushWaiting) { return .again }
            return .wait(d, wakeOnWork: onWork)
        }
        // durability: remote — a committer waits for its transaction: gather the others that
        // commit within the group-commit window, then ship them all in one upload.
        if isUploader && !isFenced && spool.waitedTXID > spool.state().shippedTxid {
            let g = TurnRules.groupCommit(
                now: .now, windowEnd: groupCommitUntil, window: groupCommitWindow, flushing: flushing)
            groupCommitUntil = g.windowEnd
            if let d = g.wait { return .wait(d, wakeOnWork: false) }
            flushing = true
        }
        groupCommitUntil = nil

        if isFenced {
            spool.setBasePending(false)
            if stopping { return finish() }
            return wait(TurnRules.fencedWait, onWork: true)
        }

        if !isUploader {
            if stopping { return finish() }
            if TurnRules.shouldTryElection(now: .now, lastAttempt: lastElectAttempt, flushing: flushing) {
                lastElectAttempt = ContinuousClock.now
                if spool.tryElect() {
                    setUploader(true)
                    logger.info("elected uploader")
                }
            }
            if !isUploader {
                spool.setBasePending(false)  // another process ships it
                let (d, onWork) = TurnRules.candidateWait(now: .now, lastAttempt: lastElectAttempt, flushing: flushing)
                return onWork ? wait(d, onWork: true) : .wait(d, wakeOnWork: false)
            }
        }

        do {
            defer {
                publishBasePending()
                publishReadBuffer()
            }
            try step(flushing: flushing)
            backoff = TurnRules.firstBackoff
            recordError(nil)
        } catch let error as ReplicationError where error.code == .fenced {
            markFenced(error, during: "upload")
            return .again
        } catch {
            let message = (error as? ReplicationError)?.message ?? "\(error)"
            logger.warning("upload failed; will retry", metadata: ["error": "\(message)"])
            recordError(message)
            if stopping { return finish() }
            // After an error only a stop cuts the back-off short: a waiting flush must not turn
            // retries into a busy loop against the replica.
            let d = backoff
            backoff = TurnRules.nextBackoff(after: backoff)
            return .wait(d, wakeOnWork: false)
        }

        if stopping {
            let st = spool.state()
            if st.shippedTxid >= st.lastTxid { return finish() }
            return .again
        }
        let nowMs = Self.nowMs()
        let now = Date()
        let next = TurnRules.afterStep(
            TurnRules.AfterStep(
                decision: policy.decide(batch: batch, nowMs: nowMs, flushRequested: flushing), nowMs: nowMs,
                startedUp: startedUp, needSnapshot: needSnapshot, batchEmpty: batch.isEmpty, flushing: flushing,
                flushWaiting: flushWaiting, idleReclaimDueMs: idleReclaimDueMs(spool.state()),
                maintenanceInMs: [maintainer.nextDue(now: now), replicaSet?.nextCatchUp()].compactMap { $0 }.min()
                    .map { Int64($0.timeIntervalSince(now) * 1000) },
                pollInterval: pollInterval, idleCap: Self.idleWaitCap))
        switch next {
        case .again:
            return .again
        case .maintain(let slice):
            // Nothing to ship right now: compaction, snapshots and retention get a slice.
            runMaintenance(slice: slice)
            return .again
        case .park(let d):
            // Nothing read and nothing due: park until a commit wakes the database (the shim
            // does, once per idle period) instead of polling the spool.
            guard spool.park(seenTXID: lastReadTXID) else { return .again }
            parked = true
            reader.releaseBuffer()
            publishReadBuffer()
            return .park(d)
        case .wait(let d):
            return .wait(d, wakeOnWork: true)
        }
    }

    /// The end of the database's service in this process: resign the election, wake the
    /// stopper.
    private func finish() -> TurnResult {
        if isUploader {
            spool.setBell(home: nil)
            spool.resign()
            setUploader(false)
        }
        spool.setBasePending(false)
        cond.lock()
        running = false
        cond.broadcast()
        cond.unlock()
        return .finished
    }

    /// Tells the shim whether a host's last connection to close should wait for this thread's
    /// base snapshot: at exit it can no longer be taken (see `vr_set_close_wait`).
    private func publishBasePending() {
        spool.setBasePending(!fenced && (!startedUp || needSnapshot), idleAtTXID: snapshotFoundNothingAt)
    }

    private func setUploader(_ value: Bool) {
        // Commits in any process now ring this pool's bell when they wake the database.
        if value, let home = pool?.home { spool.setBell(home: home) }
        cond.lock()
        isUploader = value
        cond.unlock()
        emit(.elected(value))
    }

    private func recordError(_ message: String?) {
        cond.lock()
        let changed = lastError != message
        lastError = message
        cond.broadcast()
        cond.unlock()
        if changed { emit(.error(message)) }
    }

    /// The replica's size from the maintainer's index (costs); nothing when it is not loaded or
    /// has not changed since the last report.
    private func reportStoredSize() {
        guard let size = maintainer.storedSize else { return }
        storedLock.lock()
        let changed = size.bytes != lastStoredBytes || size.files != lastStoredFiles
        lastStoredBytes = size.bytes
        lastStoredFiles = size.files
        storedLock.unlock()
        if changed { emit(.stored(bytes: size.bytes, files: size.files)) }
    }

    private func emit(_ event: UploaderEvent) {
        for o in observers { o.uploader(database: config.path, didReport: event) }
    }

    /// Reports the pending batch when it changes (the status page's lag comes from it).
    private func reportPending() {
        let now = (batch.oldestCommitMs, batch.transactions)
        guard now != lastPendingReport else { return }
        lastPendingReport = now
        emit(.pending(oldestCommitMs: batch.oldestCommitMs, transactions: batch.transactions, pageBytes: batch.pageBytes))
    }

    /// The longest idle sleep: a writer of an older version, which does not wake the uploader,
    /// is still picked up within this.
    static let idleWaitCap: Duration = .seconds(30)
    /// The shared state's last TXID when the spool was last read.
    private var lastReadTXID: UInt64 = 0

    /// One round: read new spool records, snapshot if needed, ship if due.
    private func step(flushing: Bool) throws {
        if !startedUp { try startUp() }
        if retryUnchanged && !batch.isEmpty && !needSnapshot {
            try shipBatch()
            reportPending()
            return
        }
        do {
            try readSpool()
        } catch let error as ReplicationError where error.code == .corruptSpool {
            try repairSpool(error)
        }
        if needSnapshot {
            if ReplicatedVFS.processIsExiting {
                // Taking a snapshot needs SQLite, which exit handlers must not use (see
                // vr_process_exit_begin): the commits stay in the spool for the next process.
                cond.lock()
                snapshotBlockedAtExit = true
                cond.broadcast()
                cond.unlock()
                throw ReplicationError(.shutDown, Self.blockedAtExitMessage(config.path))
            }
            try shipSnapshot()
            reportPending()
            return
        }
        if policy.decide(batch: batch, nowMs: Self.nowMs(), flushRequested: flushing) == .ship {
            try shipBatch()
        } else if batch.isEmpty {
            reclaimIfIdle()
        }
        prepareSpareIfBusy()
        reportPending()
    }

    static func blockedAtExitMessage(_ path: String) -> String {
        "database \(path): not backed up yet: the snapshot that starts its backup was not taken before the process began to exit, and SQLite cannot be used by exit handlers; its commits stay in the spool beside it and ship when it is next opened with replication (or run vfs-replicate --once)"
    }

    /// Another writer owns the replica: stop shipping for good, keep the spool, say so everywhere.
    private func markFenced(_ error: ReplicationError, during activity: String) {
        logger.error(
            "fenced: shipping stopped, the spool is kept", metadata: ["error": "\(error.message)", "during": "\(activity)"])
        cond.lock()
        fenced = true
        lastError = error.message
        cond.broadcast()
        cond.unlock()
        emit(.fenced(error.message))
    }

    private func runMaintenance(slice: Duration) {
        if let set = replicaSet, let due = set.nextCatchUp(), due <= Date() {
            do {
                try set.catchUp(deadline: Date().addingTimeInterval(slice.seconds))
            } catch let error as ReplicationError where error.code == .fenced {
                markFenced(error, during: "catching up a replica")
            } catch {
                logger.warning("catching up a replica failed; will retry", metadata: ["error": "\(error)"])
            }
            return
        }
        do {
            let report = try maintainer.tick(now: Date(), deadline: Date().addingTimeInterval(slice.seconds))
            if !report.isEmpty {
                logger.debug(
                    "maintenance",
                    metadata: [
                        "compacted": "\(report.compacted.count)", "snapshots": "\(report.snapshots.count)",
                        "deleted": "\(report.deleted.count)", "failures": "\(report.failures.count)",
                    ])
            }
            for failure in report.failures { logger.warning("maintenance failed; will retry", metadata: ["error": "\(failure)"]) }
            reportStoredSize()
        } catch let error as ReplicationError where error.code == .fenced {
            markFenced(error, during: "compaction")
        } catch {
            logger.warning("maintenance failed; will retry", metadata: ["error": "\(error)"])
        }
    }

    /// A torn or corrupt spool (power loss before the spool was synced, a damaged disk): what it
    /// held cannot be trusted, so nothing of it is shipped; the next shipment is a snapshot of
    /// the database, matched to the TXID the shared state recorded last.
    private func repairSpool(_ error: ReplicationError) throws {
        let st = spool.state()
        logger.error(
            "corrupt spool: skipping to its end; the next shipment is a snapshot",
            metadata: ["error": "\(error.message)", "txid": "\(st.lastTxid)"])
        emit(.error("corrupt spool repaired by a new snapshot: \(error.message)"))
        cond.lock()
        spoolRepairs += 1
        cond.unlock()
        readPos = SpoolPosition(segment: st.appendSeg, offset: st.appendOff)
        let wal = WALPosition(
            salt1: UInt32(bigEndian: st.walSalt1), salt2: UInt32(bigEndian: st.walSalt2), frame: st.walFrame)
        lastSeen = (wal, st.lastTxid, st.lastCommitMs)
        requireSnapshot(.corruptSpool)
    }

    /// From now on nothing is shipped as a delta until a snapshot is: the pending batch is
    /// dropped (its pages stay in the database, which the snapshot reads).
    private func requireSnapshot(_ reason: SnapshotReason) {
        if snapshotReason == nil { snapshotReason = reason }
        batch.reset(nextExpected: nil)
    }

    private func readSpool() throws {
        let st = spool.state()
        let end = SpoolPosition(segment: st.appendSeg, offset: st.appendOff)
        lastReadTXID = st.lastTxid
        if !verifyBeforeSet {
            // Everything spooled before this process first looked may predate a power cut.
            verifyBeforeSet = true
            reader.verifyBefore = end
        }
        if readPos < end {
            snapshotFoundNothingAt = nil
            try reader.scan(from: readPos, to: end) { record, next in
                switch record {
                case .frames(let txid, let pageSize, let pages):
                    if !needSnapshot {
                        try wrap { try batch.addFrames(txid: txid, pageSize: pageSize, pages: pages) }
                    }
                case .commit(let txid, let commitPages, let pageSize, let ts, let wal):
                    lastSeen = (wal, txid, ts)
                    if needSnapshot { break }
                    try wrap { try batch.commit(txid: txid, commitPages: commitPages, pageSize: pageSize, timestampMs: ts) }
                case .reset(let txid, let ts, let wal):
                    lastSeen = (wal, txid, ts)
                    if txid > 1 || spool.state().shippedTxid > 0 {
                        logger.notice("lineage break in the spool: next shipment is a snapshot", metadata: ["txid": "\(txid)"])
                    }
                    requireSnapshot(.lineageBreak)
                case .snapshot:
                    break  // reserved
                }
                if needSnapshot { batch.reset(nextExpected: nil) }
                readPos = next
            }
        }
    }

    private var verifyBeforeSet = false

    private func wrap(_ body: () throws -> Void) throws {
        do {
            try body()
        } catch let v as PendingBatch.Violation {
            throw ReplicationError(.corruptSpool, "database \(config.path): spool inconsistency: \(v)")
        }
    }

    /// Compares what the replica holds with what this spool says was shipped; anything but an
    /// exact continuation starts a new lineage with a snapshot.
    private func startUp() throws {
        // Temporary LTX files of an uploader that died (or of a power cut) are never reused.
        for name in (try? FileManager.default.contentsOfDirectory(atPath: tempDirectory)) ?? [] {
            unlink(tempDirectory + "/" + name)
        }
        let st = spool.state()
        var newest: LTXFileInfo?
        for level in try replica.listLevels() {
            for f in try replica.listFiles(level: level) where f.maxTXID > (newest?.maxTXID ?? 0) {
                newest = f
            }
        }
        let replicaMax = newest?.maxTXID ?? 0
        readPos = SpoolPosition(segment: st.shippedSeg, offset: st.shippedOff)
        lastSeen = nil
        var decision = StartupDecision.first(replicaMax: replicaMax, shippedTXID: st.shippedTxid)
        if decision == .inspectNewest, let newest {
            // Files this spool did not record as shipped. Whose are they? Our files carry this
            // database's lineage id in the LTX header's node id.
            let local = try replica.fetch(newest)
            defer { local.release() }
            let header = try LTXDecoder.readHeader(path: local.path)
            let own = header.nodeID == st.lineageId ? try ownUnrecordedUpload(replicaMax: replicaMax, header: header) : nil
            decision = StartupDecision.afterInspecting(
                replicaMax: replicaMax, newestNodeID: header.nodeID, lineageID: st.lineageId, ownUpload: own)
            if decision == .fence {
                // Another app instance (a deploy overlap, a copied config) owns this replica.
                throw ReplicationError(
                    .fenced,
                    "database \(config.path): replica \(replica.location) holds a lineage up to TXID \(replicaMax) written by another writer (id \(hex16(header.nodeID)); this database is \(hex16(st.lineageId))); another writer owns it. Stop the other writer, or rebuild this database from the replica with vfs-rebuild (which lets it continue the lineage), or point the replica at a new location"
                )
            }
        }
        switch decision {
        case .continue(let next):
            batch.reset(nextExpected: next)
            snapshotReason = nil
        case .adopt(let position, let txid):
            // Our last upload, published just before the uploader died and before it could
            // record it: take it as shipped.
            logger.notice("found this database's last upload in the replica; continuing", metadata: ["txid": "\(txid)"])
            readPos = position
            spool.setShipped(txid: txid, position: position)
            batch.reset(nextExpected: txid + 1)
            snapshotReason = nil
        case .snapshotAboveReplica(let floor):
            logger.warning(
                "the replica is ahead of this database's spool (power loss?); continuing with a new snapshot",
                metadata: ["replica.max_txid": "\(floor)", "shipped_txid": "\(st.shippedTxid)"])
            spool.raiseTXIDFloor(floor)
            let now = spool.state()
            readPos = SpoolPosition(segment: now.appendSeg, offset: now.appendOff)
            lastSeen = (
                WALPosition(salt1: UInt32(bigEndian: now.walSalt1), salt2: UInt32(bigEndian: now.walSalt2), frame: now.walFrame),
                now.lastTxid, now.lastCommitMs
            )
            requireSnapshot(.replicaAhead)
            snapshotMinTXID = floor + 1
        case .newLineage(let minTXID, let lostFiles):
            if lostFiles {
                logger.warning(
                    "replica lost files this database shipped; starting a new lineage with a snapshot",
                    metadata: ["replica.max_txid": "\(replicaMax)", "shipped_txid": "\(st.shippedTxid)"])
            }
            requireSnapshot(.newLineage)
            snapshotMinTXID = minTXID
            spool.raiseTXIDFloor(minTXID - 1)
        case .inspectNewest, .fence:
            // Unreachable (a newest file exists whenever the replica is ahead); retried, never a crash.
            throw ReplicationError(.io, "database \(config.path): replica \(replica.location): its listing changed while starting up")
        }
        if BackupCoverage.needsLineageStart(databasePath: spool.databasePath, state: spool.state()) {
            // Back up what is there now, without waiting for a write that may not come for days.
            logger.notice("the database's current state was never captured; shipping a snapshot of it")
            forceLineageStart = true
            requireSnapshot(.neverCaptured)
        }
        try maintainer.loadIndex()
        reportStoredSize()
        trimSpool()  // what an earlier uploader shipped but did not reclaim
        startedUp = true
    }

    /// Records a lineage start (a RESET at the current WAL position, with the next TXID) by
    /// taking the write lock for an instant through the VFS; the next round snapshots it. Taking
    /// the lock runs the shim's reconcile, which records the RESET itself when the database has
    /// no capture history or changed while closed (or captures a dead writer's commit); only if
    /// it recorded nothing does `vr_db_force_reset`. The lock is held for no work at all; the
    /// busy timeout bounds the wait for an app writer, and on SQLITE_BUSY this round fails and
    /// the run loop retries with back-off. Opening through the VFS also switches a
    /// rollback-journal database to WAL, if no other connection keeps it in rollback mode.
    private func recordLineageStart() throws {
        let before = spool.state().lastTxid
        let writer = try SQLiteConnection(
            path: spool.databasePath, flags: .readWrite, vfs: ReplicatedVFS.name, busyTimeoutMs: 2000)
        do {
            try writer.exec("BEGIN IMMEDIATE")
        } catch let error as ReplicationError {
            throw ReplicationError(
                .sqlite, "database \(config.path): cannot take the write lock to start its backup: \(error.message)")
        }
        defer { try? writer.exec("ROLLBACK") }
        if spool.state().lastTxid != before { return }
        let rc = vr_db_force_reset(writer.handle)
        guard rc == 0 else {
            throw ReplicationError(.sqlite, "database \(config.path): cannot record the new lineage start (\(rc))")
        }
    }

    /// Whether the replica's newest file (ours, by lineage id) is an upload of this spool whose
    /// acknowledgment was lost (kill -9 between the publish and recording it): its TXID was
    /// captured here with the same commit time. Returns the spool position after that record.
    private func ownUnrecordedUpload(replicaMax: UInt64, header: LTXHeader) throws -> SpoolPosition? {
        let st = spool.state()
        guard replicaMax <= st.lastTxid, header.maxTXID == replicaMax else { return nil }
        var record: (ts: Int64, next: SpoolPosition)?
        let end = SpoolPosition(segment: st.appendSeg, offset: st.appendOff)
        if readPos < end {
            do {
                try reader.scan(from: readPos, to: end) { rec, next in
                    guard record == nil else { return }
                    switch rec {
                    case .commit(let txid, _, _, let ts, _) where txid == replicaMax: record = (ts, next)
                    case .reset(let txid, let ts, _) where txid == replicaMax: record = (ts, next)
                    default: break
                    }
                }
            } catch let error as ReplicationError where error.code == .corruptSpool && record == nil {
                // A torn spool (a power cut) cannot prove the upload was ours: continue above the
                // replica with a new snapshot instead (the caller's other branch).
                logger.warning("corrupt spool while looking for the last upload", metadata: ["error": "\(error.message)"])
                return nil
            }
        }
        guard let record, header.timestamp == record.ts else { return nil }
        return record.next
    }

    /// Per-page database checksums of the replica's state (`PageChecksumMap`), opened on first use.
    private var pageSumsMap: PageChecksumMap?
    private func pageSums() throws -> PageChecksumMap {
        if let pageSumsMap { return pageSumsMap }
        let map = try PageChecksumMap(path: spool.stateDirectory + "/pagesums")
        pageSumsMap = map
        return map
    }

    private var tempDirectory: String {
        let dir = spool.stateDirectory + "/tmp"
        mkdir(dir, 0o755)
        return dir
    }

    /// Finds the TXID whose spooled record left the WAL at `p` (the snapshot reader's position),
    /// and the spool position after that record. Nil if it is not spooled yet.
    private func txid(at p: WALPosition) throws -> (txid: UInt64, timestampMs: Int64, next: SpoolPosition)? {
        typealias Point = (txid: UInt64, timestampMs: Int64, next: SpoolPosition)
        let st = spool.state()
        let end = SpoolPosition(segment: st.appendSeg, offset: st.appendOff)
        if p.frame == 0 {
            // An empty WAL is the state left by the last record before a transaction that starts
            // a new WAL generation (or by the last record of all).
            var candidate: Point? = lastSeen.map { ($0.txid, $0.timestampMs, readPos) }
            var stop = false
            if readPos < end {
                try reader.scan(from: readPos, to: end) { record, next in
                    guard !stop else { return }
                    switch record {
                    case .commit(let txid, _, _, let ts, let wal):
                        if wal.firstFrame == 1 {
                            stop = true
                            return
                        }
                        candidate = (txid, ts, next)
                    case .reset(let txid, let ts, _):
                        candidate = (txid, ts, next)
                    default:
                        break
                    }
                }
            }
            return candidate
        }
        func matches(_ w: WALPosition) -> Bool { w.frame == p.frame && w.salt1 == p.salt1 && w.salt2 == p.salt2 }
        if let seen = lastSeen, matches(seen.wal) { return (seen.txid, seen.timestampMs, readPos) }
        var found: Point?
        if readPos < end {
            try reader.scan(from: readPos, to: end) { record, next in
                guard found == nil else { return }
                switch record {
                case .commit(let txid, _, _, let ts, let wal) where matches(wal): found = (txid, ts, next)
                case .reset(let txid, let ts, let wal) where matches(wal): found = (txid, ts, next)
                default: break
                }
            }
        }
        return found
    }

    private func shipSnapshot() throws {
        // No fork() while this thread's SQLite connections are open (see vr_fork_hold_begin).
        vr_fork_hold_begin()
        defer { vr_fork_hold_end() }
        if forceLineageStart {
            try recordLineageStart()
            forceLineageStart = false
            return
        }
        let lastBefore = spool.state().lastTxid
        guard let snap = try SnapshotReader(databasePath: spool.databasePath) else {
            snapshotFoundNothingAt = lastBefore
            return  // no database content yet; the first commit will bring it
        }
        defer { snap.close() }
        let found: (txid: UInt64, timestampMs: Int64, next: SpoolPosition)?
        do {
            found = try txid(at: snap.position)
        } catch let error as ReplicationError where error.code == .corruptSpool {
            // A torn spool between the shipped position and the snapshot's: as in readSpool, skip
            // to its end; the next round snapshots at the TXID the shared state recorded last.
            snap.close()
            try repairSpool(error)
            return
        }
        guard let point = found else {
            // The writer that published this state has not spooled it yet (the next round finds
            // it); or nothing was ever captured, and the database has content (filled without
            // the VFS after this uploader started): record the lineage start now.
            if snap.schemaObjects > 0 && spool.state().lastTxid == 0 {
                snap.close()
                try recordLineageStart()
            }
            return
        }
        guard point.txid >= snapshotMinTXID else {
            // The replica already holds TXIDs up to the minimum and no commit above it came: take
            // the write lock for an instant to record the lineage start at the current position
            // (the TXID floor makes it larger), then snapshot in the next round.
            snap.close()
            try recordLineageStart()
            return
        }
        let header = LTXHeader(
            pageSize: snap.pageSize, commit: snap.commit, minTXID: 1, maxTXID: point.txid,
            timestamp: point.timestampMs > 0 ? point.timestampMs : Self.nowMs(), nodeID: spool.state().lineageId)
        let tmp = tempDirectory + "/snapshot-\(point.txid).ltx"
        defer { unlink(tmp) }
        let encoder = try LTXEncoder(path: tmp, header: header)
        // The snapshot sets the page checksums every later batch updates.
        let sums = try pageSums()
        try sums.beginSnapshot(pageSize: snap.pageSize, commit: snap.commit)
        var page = [UInt8](repeating: 0, count: Int(snap.pageSize))
        let lock = LTX.lockPageNumber(pageSize: snap.pageSize)
        var pgno: UInt32 = 1
        while pgno <= snap.commit {
            if pgno != lock {
                try page.withUnsafeMutableBytes { try snap.readPage(pgno, into: $0) }
                try encoder.writePage(pgno, page)
                sums.setSnapshotPage(pgno, checksum: encoder.lastPageChecksum)
            }
            pgno += 1
        }
        try encoder.finish(checksums: LTXHeader.DatabaseChecksums(pre: 0, post: encoder.pagesChecksum))
        let size = encoder.size
        snap.close()
        try replica.publish(
            level: 9, minTXID: 1, maxTXID: point.txid, localPath: tmp,
            timestamp: Date(timeIntervalSince1970: Double(header.timestamp) / 1000))
        sums.finishSnapshot(txid: point.txid, lineage: header.nodeID)
        logger.info(
            "snapshot shipped",
            metadata: [
                "txid": "\(point.txid)", "pages": "\(snap.commit)", "bytes": "\(size)",
                "reason": "\(snapshotReason?.rawValue ?? "requested")",
            ])
        maintainer.noteUploaded(
            LTXFileInfo(level: 9, minTXID: 1, maxTXID: point.txid, size: size,
                        createdAt: Date(timeIntervalSince1970: Double(header.timestamp) / 1000)),
            localCopy: tmp)
        readPos = point.next
        spool.setShipped(txid: point.txid, position: readPos)
        snapshotReason = nil
        batch.reset(nextExpected: point.txid + 1)
        noteUpload(bytes: size, snapshot: true)
        emit(.shipped(level: 9, minTXID: 1, maxTXID: point.txid, bytes: size, pages: Int(snap.commit), transactions: 0))
        trimSpool()
    }

    private func shipBatch() throws {
        guard !batch.isEmpty else { return }
        let header = LTXHeader(
            pageSize: batch.pageSize, commit: batch.commitPages, minTXID: batch.minTXID, maxTXID: batch.maxTXID,
            timestamp: batch.timestampMs, nodeID: spool.state().lineageId)
        let tmp = tempDirectory + "/\(LTXFileInfo.fileName(minTXID: batch.minTXID, maxTXID: batch.maxTXID))"
        defer { unlink(tmp) }
        let encoder = try LTXEncoder(path: tmp, header: header)
        // Pre/post-apply database checksums from the page checksums of the state the replica
        // holds (nil when they cannot be trusted: then this batch ships without, and a snapshot
        // follows to set them again).
        let sums = try pageSums()
        let pre = sums.trusted(txid: batch.minTXID - 1, lineage: header.nodeID, pageSize: batch.pageSize)
        var changes: [(pgno: UInt32, checksum: UInt64)] = []
        var page = [UInt8](repeating: 0, count: Int(batch.pageSize))
        for (pgno, loc) in batch.sortedPages() {
            try page.withUnsafeMutableBytes { try reader.readPage(loc, pageSize: Int(batch.pageSize), into: $0) }
            try encoder.writePage(pgno, page)
            changes.append((pgno, encoder.lastPageChecksum))
        }
        try encoder.finish(
            checksums: pre.map {
                LTXHeader.DatabaseChecksums(pre: $0, post: sums.postApply(changes: changes, commit: batch.commitPages))
            })
        do {
            try replica.publish(
                level: 0, minTXID: batch.minTXID, maxTXID: batch.maxTXID, localPath: tmp,
                timestamp: Date(timeIntervalSince1970: Double(batch.timestampMs) / 1000))
        } catch {
            if replicaSet != nil { retryUnchanged = true }
            throw error
        }
        retryUnchanged = false
        logger.debug(
            "batch shipped",
            metadata: ["txid.min": "\(batch.minTXID)", "txid.max": "\(batch.maxTXID)", "bytes": "\(encoder.size)"])
        maintainer.noteUploaded(
            LTXFileInfo(level: 0, minTXID: batch.minTXID, maxTXID: batch.maxTXID, size: encoder.size,
                        createdAt: Date(timeIntervalSince1970: Double(batch.timestampMs) / 1000)),
            localCopy: tmp)
        if pre != nil {
            try sums.apply(changes: changes, commit: batch.commitPages, txid: batch.maxTXID, lineage: header.nodeID)
        } else {
            sums.invalidate()
            logger.notice(
                "page checksums of the replica's state unknown (first run with them, or after a crash): next shipment is a snapshot",
                metadata: ["txid": "\(batch.maxTXID)"])
        }
        spool.setShipped(txid: batch.maxTXID, position: readPos)
        emit(
            .shipped(
                level: 0, minTXID: batch.minTXID, maxTXID: batch.maxTXID, bytes: encoder.size,
                pages: encoder.pageCount, transactions: batch.transactions))
        let next = batch.maxTXID + 1
        batch.reset(nextExpected: next)
        if pre == nil { requireSnapshot(.unknownReplicaState) }
        noteUpload(bytes: encoder.size, snapshot: false)
        trimSpool()
    }

    private func noteUpload(bytes: Int64, snapshot: Bool) {
        cond.lock()
        filesUploaded += 1
        bytesUploaded += bytes
        lastUpload = Date()
        if snapshot { lastSnapshot = Date() }
        cond.broadcast()
        cond.unlock()
        reportStoredSize()
    }

    /// Reclaims shipped spool. Segments entirely before the read position are removed, except
    /// up to four of the newest, which become spare segments the shim renames to its next
    /// segment at a rotation (`vr_db_add_spare`): appends then overwrite written, cached blocks
    /// instead of allocating fresh ones (see benchmarks/README.md "Spool appends"). Nothing
    /// reads the spool before the shipped position.
    ///
    /// The shipped part of the segment the shim still appends to is freed (hole-punched), and
    /// the spares are dropped, only when `spool-max-bytes` bounds the spool (whose bound counts
    /// bytes on disk) or once the database has been idle for `idleReclaim`: the shim only
    /// rotates when a writer comes, so an idle database would otherwise keep them.
    private func trimSpool() {
        let st = spool.state()
        let bounded = st.spoolLimit > 0
        var seg = readPos.segment
        while seg > 1 {
            seg -= 1
            if seg >= st.appendSeg { continue }
            let path = spool.segmentPath(seg)
            if !bounded, Self.worthSparing(path, segment: seg), spool.addSpare(seg) { continue }
            if unlink(path) != 0 { break }
        }
        if bounded { punchShipped(st) }
    }

    /// Frees what was shipped of the current segment and drops the spare segments once the
    /// database has been idle a while (called on every idle round; cheap when there is nothing
    /// to do).
    private func reclaimIfIdle() {
        let st = spool.state()
        guard let dueMs = idleReclaimDueMs(st), Self.nowMs() >= dueMs else { return }
        idleReclaimedAt = st.lastTxid
        spool.dropSpares()
        punchShipped(st)
    }
    /// A writer faster than shipped segments come back gets pre-touched spares (SpareSegments).
    private func prepareSpareIfBusy() {
        let st = spool.state()
        guard st.spoolLimit == 0 else { return }
        let seg = st.appendSeg
        let due = sparePolicy.observe(
            appendSegment: seg, nowMs: Self.nowMs(),
            finishedBytes: {
                var s = stat()
                return stat(spool.segmentPath(seg - 1), &s) == 0 ? UInt64(s.st_size) : nil
            }, spares: { spool.spareCount() })
        if due { _ = SpareSegments.prepare(spool: spool, bytes: spool.segmentTarget) }
    }
    private var sparePolicy = SparePolicy()

    /// When `reclaimIfIdle` has something to do next (nil: nothing).
    private func idleReclaimDueMs(_ st: vr_state_view) -> Int64? {
        guard st.lastTxid != idleReclaimedAt, st.shippedTxid == st.lastTxid else { return nil }
        return st.lastCommitMs + Int64(idleReclaim.milliseconds)
    }
    private var idleReclaimedAt: UInt64 = 0
    private let idleReclaim: Duration = .seconds(10)

    private func punchShipped(_ st: vr_state_view) {
        let shipped = SpoolPosition(segment: st.shippedSeg, offset: st.shippedOff)
        if shipped.segment != punched.segment { punched = SpoolPosition(segment: shipped.segment, offset: 0) }
        if shipped.offset >= punched.offset + 4096 {
            let rc = vr_spool_punch(spool.segmentPath(shipped.segment), punched.offset, shipped.offset)
            if rc == 0 || rc == EOPNOTSUPP { punched.offset = shipped.offset & ~4095 }
        }
    }
    /// How far the shipped segment's blocks were freed.
    private var punched = SpoolPosition(segment: 0, offset: 0)

    /// A segment is worth keeping as the spare when it is large enough to matter and was written
    /// by this version (its records' CRCs cover the segment number: see `vr_rec_valid`).
    static func worthSparing(_ path: String, segment: UInt64) -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0, st.st_size >= 256 << 10 else { return false }
        var hdr = vr_rec_header()
        let size = MemoryLayout<vr_rec_header>.size
        let n = withUnsafeMutableBytes(of: &hdr) { pread(fd, $0.baseAddress, size, 0) }
        return n == size && hdr.magic == VR_REC_MAGIC2 && vr_rec_valid(&hdr, segment) != 0
    }

    static func nowMs() -> Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}

extension Duration {
    var seconds: TimeInterval {
        let (s, atto) = components
        return TimeInterval(s) + TimeInterval(atto) / 1e18
    }
}
