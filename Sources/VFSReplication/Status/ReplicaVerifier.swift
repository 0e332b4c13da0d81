internal import CVFSShim
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// The result of `ReplicaVerifier.verify`, kept in `<db>-vfsrepl/verify.json`.
public struct VerificationRecord: Sendable, Equatable, Codable {
    public var passed: Bool
    /// The TXID of the live read snapshot, and the replica's restore point compared with it.
    public var txid: UInt64
    public var startedAt: Date
    public var finishedAt: Date
    public var pageSize: UInt32
    /// Pages of the live snapshot.
    public var pageCount: UInt32
    /// Pages that differ (the first 20), and how many in all.
    public var differingPages: [UInt32]
    public var differingPageCount: Int
    /// LTX files the rebuild applied.
    public var replicaFiles: Int
    /// How many read snapshots were taken before one fell on a restore point.
    public var attempts: Int
    public var message: String

    public init(
        passed: Bool, txid: UInt64, startedAt: Date, finishedAt: Date, pageSize: UInt32, pageCount: UInt32,
        differingPages: [UInt32] = [], differingPageCount: Int = 0, replicaFiles: Int = 0, attempts: Int = 1,
        message: String
    ) {
        self.passed = passed
        self.txid = txid
        self.startedAt = startedAt
        self.finishedAt = finishedAt
        self.pageSize = pageSize
        self.pageCount = pageCount
        self.differingPages = differingPages
        self.differingPageCount = differingPageCount
        self.replicaFiles = replicaFiles
        self.attempts = attempts
        self.message = message
    }

    public static func load(path: String) -> VerificationRecord? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? UploaderRecord.makeDecoder().decode(VerificationRecord.self, from: data)
    }

    public func write(path: String) throws {
        try StatusFiles.writeAtomically(UploaderRecord.makeEncoder().encode(self), to: path)
    }
}

/// How `ReplicaVerifier.verify` waits.
public struct VerifyOptions: Sendable, Equatable {
    /// The whole verification's limit (waiting for a restore point, the uploader, the rebuild).
    public var timeout: Duration
    /// After this many read snapshots fell inside a shipped batch, hold the write lock (for at
    /// most `maxWriteHold`) until the snapshot's transaction ships, which makes it a restore point.
    public var attemptsBeforeHolding: Int
    /// The longest the write lock is held (writers wait meanwhile; keep it under their busy
    /// timeout).
    public var maxWriteHold: Duration
    /// Where the two copies are written (default: a new folder in `<db>-vfsrepl`, which is on the
    /// database's file system and removed afterwards). Needs twice the database's size.
    public var temporaryDirectory: String?
    /// Record the result in `<db>-vfsrepl/verify.json` (shown by `vfs-status` and the dashboard).
    public var record: Bool

    public init(
        timeout: Duration = .seconds(300), attemptsBeforeHolding: Int = 3, maxWriteHold: Duration = .seconds(3),
        temporaryDirectory: String? = nil, record: Bool = true
    ) {
        self.timeout = timeout
        self.attemptsBeforeHolding = attemptsBeforeHolding
        self.maxWriteHold = maxWriteHold
        self.temporaryDirectory = temporaryDirectory
        self.record = record
    }
}

/// Checks that a replica rebuilds to exactly what the live database holds, without writing
/// anything to the database.
///
/// ```swift
/// let record = try ReplicaVerifier.verify(database: config.databases[0])
/// print(record.passed, record.message)
/// ```
///
/// 1. A read transaction is opened on the live database (default VFS, read-only) while a second
///    connection holds the WAL write lock for an instant (`BEGIN IMMEDIATE`, then `ROLLBACK`): no
///    commit can be half-published then, so the shared state's last TXID is exactly the state
///    the read transaction sees. That connection goes through the `replicated` VFS so that a
///    commit a crashed writer published but did not spool is caught up first.
/// 2. Holding the read transaction, it waits until that TXID is durable in the replica.
/// 3. A restore point is the end of a shipped file. If the TXID fell inside a shipped batch, it
///    starts over; after `attemptsBeforeHolding` misses it keeps the write lock (at most
///    `maxWriteHold`) until the uploader ships, which then ends a file at that TXID.
/// 4. The read snapshot is copied with SQLite's backup API (Debian's SQLite has no
///    `sqlite_dbpage`), the read transaction ends, the replica is rebuilt at the TXID, and the
///    two files are compared page by page: every byte, except in page 1 the header fields the
///    backup itself rewrites (change counter, size, schema cookie, version-valid-for, SQLite
///    version) and the lock-byte page SQLite never uses.
///
/// Blocking: call off the cooperative pool. See https://www.sqlite.org/backup.html and
/// https://www.sqlite.org/fileformat2.html#the_database_header
public enum ReplicaVerifier {
    public static func verify(
        database db: DatabaseConfig, options: VerifyOptions = VerifyOptions(),
        logger: Logger = Logger(label: "vfsreplication.verify")
    ) throws -> VerificationRecord {
        let started = Date()
        let deadline = ContinuousClock.now + options.timeout
        let files = ReplicationFiles(databasePath: db.path)
        guard FileManager.default.fileExists(atPath: db.path) else {
            throw ReplicationError(.invalidArgument, "database \(db.path) does not exist")
        }
        guard try LocalReplicationState.readView(files) != nil else {
            throw ReplicationError(
                .invalidArgument,
                "database \(db.path): no replication state; it was never opened by a replicating process")
        }
        let client = try makeReplicaClient(db.replica)
        try ReplicatedVFS.registerDatabase(path: db.path)
        let state = SharedStateReader(databasePath: db.path)

        let work = try makeWorkDirectory(options.temporaryDirectory ?? files.stateDirectory)
        defer { try? FileManager.default.removeItem(atPath: work) }
        let livePath = work + "/live.db"
        let restoredPath = work + "/replica.db"

        // Read connection first: while it is open, no other connection of this process can take
        // the exclusive lock a checkpoint-on-close needs.
        let reader = try SQLiteConnection(path: uri(db.path, readOnly: true), flags: [.readOnly, .uri])
        vr_status_no_checkpoint_on_close(reader.handle)
        var snapshot: Snapshot
        do {
            let writer = try SQLiteConnection(path: db.path, flags: [.readWrite], vfs: ReplicatedVFS.name)
            vr_status_no_checkpoint_on_close(writer.handle)
            snapshot = try takeSnapshot(
                db: db, files: files, client: client, state: state, reader: reader, writer: writer,
                options: options, deadline: deadline, logger: logger)
        }
        // The read transaction is still open: copy exactly what it sees, then let it go.
        var err = [CChar](repeating: 0, count: 512)
        let rc = vr_status_backup(reader.handle, livePath, &err, err.count)
        try? reader.exec("ROLLBACK")
        guard rc == Int32(VR_SQL_OK) else {
            throw ReplicationError(.sqlite, "database \(db.path): copying the read snapshot: \(cText(err))")
        }

        let result = try ReplicaRestorer.restore(
            from: client, to: restoredPath,
            options: RestoreOptions(target: .txid(snapshot.txid), force: true, verify: true), logger: logger)
        guard result.txid == snapshot.txid else {
            throw ReplicationError(
                .gap, "database \(db.path): the replica restored to TXID \(result.txid), not \(snapshot.txid)")
        }
        let comparison = try compare(live: livePath, replica: restoredPath, pageSize: Int(snapshot.pageSize))
        var record = VerificationRecord(
            passed: comparison.differing.isEmpty && comparison.livePages == comparison.replicaPages,
            txid: snapshot.txid, startedAt: started, finishedAt: Date(), pageSize: snapshot.pageSize,
            pageCount: UInt32(comparison.livePages), differingPages: Array(comparison.differing.prefix(20)),
            differingPageCount: comparison.differing.count, replicaFiles: result.files.count,
            attempts: snapshot.attempts, message: "")
        if record.passed {
            record.message =
                "the replica at TXID \(snapshot.txid) equals the live database (\(comparison.livePages) pages of \(snapshot.pageSize) bytes; "
                + (result.checksumVerified
                    ? "database checksums verified)" : "database checksum not checked: \(result.checksumUnavailable ?? "none recorded"))")
        } else if comparison.livePages != comparison.replicaPages {
            record.message =
                "the replica at TXID \(snapshot.txid) has \(comparison.replicaPages) pages, the live database \(comparison.livePages)"
        } else {
            let list = record.differingPages.map(String.init).joined(separator: ", ")
            let more = comparison.differing.count > record.differingPages.count ? ", ..." : ""
            record.message =
                "the replica at TXID \(snapshot.txid) differs from the live database in \(comparison.differing.count) pages (\(list)\(more))"
        }
        logger.info(
            "verified",
            metadata: ["db.path": "\(db.path)", "verify.passed": "\(record.passed)", "verify.txid": "\(snapshot.txid)"])
        if options.record {
            try record.write(path: files.verificationFile)
        }
        return record
    }

    struct Snapshot {
        var txid: UInt64
        var pageSize: UInt32
        var attempts: Int
    }

    /// Opens the read transaction at a TXID that is durable and a restore point (see the type's
    /// documentation); on return `reader` holds it.
    private static func takeSnapshot(
        db: DatabaseConfig, files: ReplicationFiles, client: any ReplicaClient, state: SharedStateReader,
        reader: SQLiteConnection, writer: SQLiteConnection, options: VerifyOptions,
        deadline: ContinuousClock.Instant, logger: Logger
    ) throws -> Snapshot {
        var attempts = 0
        var lastMiss = ""
        while true {
            attempts += 1
            let holding = attempts > options.attemptsBeforeHolding
            try writer.exec("BEGIN IMMEDIATE")
            var txid: UInt64 = 0
            var boundary = false
            do {
                defer { try? writer.exec("ROLLBACK") }
                guard let view = state.view() else {
                    throw ReplicationError(.io, "database \(db.path): the replication state disappeared")
                }
                txid = view.lastTxid
                guard txid > 0 else {
                    throw ReplicationError(
                        .invalidArgument, "database \(db.path): nothing captured yet; write something first")
                }
                // Everything captured is shipped: the last shipped file ends here.
                boundary = view.shippedTxid == txid
                try reader.exec("BEGIN")
                _ = try reader.scalar("SELECT count(*) FROM sqlite_schema")
                if holding && !boundary {
                    // Nothing can be captured while the write lock is held, so the batch the
                    // uploader ships next ends at `txid`.
                    let holdUntil = min(deadline, ContinuousClock.now + options.maxWriteHold)
                    boundary = try waitDurable(
                        txid, db: db, files: files, state: state, until: holdUntil, throwing: false)
                }
            }
            if !holding || boundary {
                if !boundary {
                    guard try waitDurable(txid, db: db, files: files, state: state, until: deadline, throwing: true)
                    else {
                        throw ReplicationError(.timeout, "database \(db.path): TXID \(txid) not durable in time")
                    }
                    let listed = try ReplicaRestorer.listFiles(client)
                    boundary = listed.contains { $0.maxTXID == txid }
                    if !boundary {
                        let inside = listed.first { $0.minTXID <= txid && txid <= $0.maxTXID }
                        lastMiss = "TXID \(txid) lies inside \(inside.map { "\($0)" } ?? "a shipped batch")"
                    }
                }
                if boundary {
                    let pageSize = try reader.scalar("PRAGMA page_size").flatMap { UInt32($0) } ?? 4096
                    return Snapshot(txid: txid, pageSize: pageSize, attempts: attempts)
                }
            } else {
                lastMiss = "TXID \(txid) did not ship within \(options.maxWriteHold) of holding the write lock"
            }
            try? reader.exec("ROLLBACK")
            logger.debug(
                "no restore point at the read snapshot; trying again", metadata: ["verify.miss": "\(lastMiss)"])
            guard ContinuousClock.now < deadline else {
                throw ReplicationError(
                    .timeout,
                    "database \(db.path): no read snapshot fell on a replica restore point in \(attempts) attempts (\(lastMiss)); the database is written faster than its max-delay ships: try again when it is quieter, or with a longer hold"
                )
            }
            Thread.sleep(forTimeInterval: 0.05)
        }
    }

    /// Polls the shared state until `txid` is durable. Fails fast when no uploader is running.
    private static func waitDurable(
        _ txid: UInt64, db: DatabaseConfig, files: ReplicationFiles, state: SharedStateReader,
        until deadline: ContinuousClock.Instant, throwing: Bool
    ) throws -> Bool {
        var noUploaderSince: ContinuousClock.Instant?
        while true {
            if let v = state.view(), v.shippedTxid >= txid { return true }
            let now = ContinuousClock.now
            if now >= deadline { return false }
            if case .none = UploaderPresence.probe(files) {
                let since = noUploaderSince ?? now
                noUploaderSince = since
                if throwing, now - since > .seconds(5) {
                    throw ReplicationError(
                        .timeout,
                        "database \(db.path): TXID \(txid) is not durable and no uploader is running (start the app or vfs-replicate)"
                    )
                }
            } else {
                noUploaderSince = nil
            }
            Thread.sleep(forTimeInterval: 0.02)
        }
    }

    struct Comparison {
        var livePages: Int
        var replicaPages: Int
        var differing: [UInt32]
    }

    /// Page-by-page comparison (see the type's documentation for what is skipped).
    static func compare(live: String, replica: String, pageSize: Int) throws -> Comparison {
        let a = try FileHandle(forReadingFrom: URL(fileURLWithPath: live))
        let b = try FileHandle(forReadingFrom: URL(fileURLWithPath: replica))
        defer {
            try? a.close()
            try? b.close()
        }
        let livePages = Int(try a.seekToEnd()) / pageSize
        let replicaPages = Int(try b.seekToEnd()) / pageSize
        try a.seek(toOffset: 0)
        try b.seek(toOffset: 0)
        let lockPage = UInt32(LTX.lockPageNumber(pageSize: UInt32(pageSize)))
        let pagesPerRead = max(1, (1 << 20) / pageSize)
        var differing: [UInt32] = []
        var pgno: UInt32 = 1
        while Int(pgno) <= min(livePages, replicaPages) {
            guard let x = try a.read(upToCount: pagesPerRead * pageSize),
                let y = try b.read(upToCount: pagesPerRead * pageSize)
            else { break }
            let n = min(x.count, y.count) / pageSize
            if n == 0 { break }
            x.withUnsafeBytes { xb in
                y.withUnsafeBytes { yb in
                    for i in 0..<n {
                        let p = pgno + UInt32(i)
                        if p == lockPage { continue }
                        let xs = UnsafeRawBufferPointer(rebasing: xb[(i * pageSize)..<((i + 1) * pageSize)])
                        let ys = UnsafeRawBufferPointer(rebasing: yb[(i * pageSize)..<((i + 1) * pageSize)])
                        if !pagesEqual(xs, ys, isFirst: p == 1) { differing.append(p) }
                    }
                }
            }
            pgno += UInt32(n)
        }
        return Comparison(livePages: livePages, replicaPages: replicaPages, differing: differing)
    }

    /// Header bytes of page 1 that `sqlite3_backup` rewrites in its copy.
    static let backupRewrittenHeader: [Range<Int>] = [24..<32, 40..<44, 92..<100]

    static func pagesEqual(_ x: UnsafeRawBufferPointer, _ y: UnsafeRawBufferPointer, isFirst: Bool) -> Bool {
        guard isFirst else { return memcmp(x.baseAddress!, y.baseAddress!, x.count) == 0 }
        var start = 0
        for skip in backupRewrittenHeader {
            if memcmp(x.baseAddress! + start, y.baseAddress! + start, skip.lowerBound - start) != 0 { return false }
            start = skip.upperBound
        }
        return memcmp(x.baseAddress! + start, y.baseAddress! + start, x.count - start) == 0
    }

    private static func makeWorkDirectory(_ parent: String) throws -> String {
        var template = Array((parent + "/verify-XXXXXX").utf8CString)
        guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw ReplicationError(.io, "cannot create a folder in \(parent): \(String(cString: strerror(errno)))")
        }
        return String(cString: made)
    }

    private static func cText(_ buffer: [CChar]) -> String {
        String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// A `file:` URI for `path` (https://www.sqlite.org/uri.html).
    static func uri(_ path: String, readOnly: Bool) -> String {
        var encoded = ""
        for ch in path.unicodeScalars {
            switch ch {
            case "%": encoded += "%25"
            case "?": encoded += "%3f"
            case "#": encoded += "%23"
            default: encoded.unicodeScalars.append(ch)
            }
        }
        return "file:" + encoded + (readOnly ? "?mode=ro" : "")
    }
}
