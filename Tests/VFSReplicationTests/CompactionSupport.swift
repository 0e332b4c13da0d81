import Foundation
import Logging
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// A synthetic database for compaction and restore tests: every page's content is a function
/// of (page number, version), so the database at any TXID can be rebuilt byte for byte from the
/// versions recorded per TXID. Transactions change, add and remove pages at random; batches of
/// them are shipped as level-0 files the way the uploader ships them.
final class SyntheticHistory {
    let pageSize: Int
    private(set) var versions: [UInt32] = []
    private(set) var txid: UInt64 = 0
    /// versions per TXID (index pgno - 1), for every TXID that exists.
    private(set) var states: [UInt64: [UInt32]] = [:]
    /// Pages changed since the last shipment.
    private var dirty = Set<UInt32>()
    private var firstUnshipped: UInt64 = 1
    private var nextVersion: UInt32 = 1
    var random: SplitMix64

    init(seed: UInt64, pageSize: Int = 1024, initialPages: Int = 40) {
        self.pageSize = pageSize
        self.random = SplitMix64(seed: seed)
        txid = 1
        versions = (0..<initialPages).map { _ in bump() }
        dirty = Set((1...UInt32(initialPages)))
        states[1] = versions
    }

    private func bump() -> UInt32 {
        nextVersion += 1
        return nextVersion
    }

    static func page(_ pgno: UInt32, version: UInt32, size: Int) -> [UInt8] {
        TestSupport.pageBytes(seed: UInt64(pgno) << 32 | UInt64(version), count: size)
    }

    /// The database file at `txid`.
    func bytes(at txid: UInt64) -> [UInt8]? {
        guard let state = states[txid] else { return nil }
        var out: [UInt8] = []
        out.reserveCapacity(state.count * pageSize)
        for (i, version) in state.enumerated() { out += Self.page(UInt32(i + 1), version: version, size: pageSize) }
        return out
    }

    /// One random transaction: mostly a few pages rewritten; sometimes growth, shrinkage, or a big update.
    func transaction() {
        txid += 1
        let roll = random.next() % 100
        if roll < 8 {
            let grow = Int(random.next() % 20) + 1
            for _ in 0..<grow {
                versions.append(bump())
                dirty.insert(UInt32(versions.count))
            }
        } else if roll < 13, versions.count > 12 {
            let shrink = Int(random.next() % 10) + 1
            versions.removeLast(shrink)
            dirty = dirty.filter { $0 <= UInt32(versions.count) }
        } else if roll < 15 {
            for i in versions.indices where random.next() % 3 == 0 {
                versions[i] = bump()
                dirty.insert(UInt32(i + 1))
            }
        }
        let touches = Int(random.next() % 5) + 1
        for _ in 0..<touches {
            let pgno = UInt32(random.next() % UInt64(versions.count)) + 1
            versions[Int(pgno) - 1] = bump()
            dirty.insert(pgno)
        }
        states[txid] = versions
    }

    /// Writes the transactions since the last shipment as one LTX file (a snapshot when
    /// `snapshot`), publishes it, and returns its listing entry.
    @discardableResult
    func ship(to replica: any ReplicaClient, work: String, at time: Date, snapshot: Bool = false) throws -> LTXFileInfo
    {
        let minTXID = snapshot ? 1 : firstUnshipped
        let level = snapshot ? 9 : 0
        let header = LTXHeader(
            pageSize: UInt32(pageSize), commit: UInt32(versions.count), minTXID: minTXID, maxTXID: txid,
            timestamp: time)
        let path = work + "/ship-" + LTXFileInfo.fileName(minTXID: minTXID, maxTXID: txid)
        defer { unlink(path) }
        let encoder = try LTXEncoder(path: path, header: header)
        let pages = snapshot ? Array(1...UInt32(versions.count)) : dirty.sorted()
        for pgno in pages {
            try encoder.writePage(pgno, Self.page(pgno, version: versions[Int(pgno) - 1], size: pageSize))
        }
        try encoder.finish(sync: false)
        try replica.publish(level: level, minTXID: minTXID, maxTXID: txid, localPath: path, timestamp: header.date)
        dirty.removeAll()
        firstUnshipped = txid + 1
        let file = LTXFileInfo(
            level: level, minTXID: minTXID, maxTXID: txid, size: encoder.size, createdAt: header.date)
        published?(file, path)
        return file
    }

    /// Called with each shipped file and its local path, before that path is removed.
    var published: ((LTXFileInfo, String) -> Void)?

    /// A lineage change: the database was replaced while nothing captured it (TXIDs skip ahead),
    /// so the next shipment must be a snapshot.
    func replaceDatabase() {
        txid += UInt64(random.next() % 3) + 1
        for i in versions.indices where random.next() % 2 == 0 { versions[i] = bump() }
        states[txid] = versions
    }
}

/// A temporary directory in memory (/dev/shm) when there is one: replica publishes fsync every
/// file, which on a disk makes a simulation of thousands of files slow for no benefit.
func withFastTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    guard LTXIO.isDirectory("/dev/shm") else { return try TestSupport.withTemporaryDirectory(body) }
    var template = Array("/dev/shm/vfsrepl-test-XXXXXX".utf8CString)
    guard let made = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
        return try TestSupport.withTemporaryDirectory(body)
    }
    let dir = String(cString: made)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    return try body(dir)
}

/// Small deterministic PRNG (SplitMix64).
struct SplitMix64 {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func next(in range: ClosedRange<Int>) -> Int {
        range.lowerBound + Int(next() % UInt64(range.count))
    }
}

/// Drives a `ReplicaMaintainer` the way the uploader does, on a simulated clock: ship a batch,
/// tell the maintainer, wake up whenever it says work is due.
struct MaintenanceSimulation {
    let replica: FileReplicaClient
    /// What ships and maintains: the directory client, or a wrapper around it (encryption).
    let client: any ReplicaClient
    let maintainer: ReplicaMaintainer
    let history: SyntheticHistory
    let work: String
    var now: Date
    /// Every file that ever existed (uploaded or written by the maintainer), for checking promises.
    var everCreated: [LTXFileInfo] = []
    var reports: [MaintenanceReport] = []
    /// Called after every tick with the simulation (to check invariants).
    var afterTick: ((MaintenanceSimulation) throws -> Void)?

    init(
        directory: String, policy: MaintenancePolicy, seed: UInt64, start: Date,
        wrap: (FileReplicaClient) -> any ReplicaClient = { $0 }
    ) throws {
        replica = FileReplicaClient(directory: directory + "/replica")
        client = wrap(replica)
        work = directory
        history = SyntheticHistory(seed: seed)
        var logger = Logger(label: "test.maintainer")
        logger.logLevel = .warning
        maintainer = ReplicaMaintainer(
            replica: client, policy: policy, logger: logger, tempDirectory: directory + "/maintainer-tmp")
        now = start
        let maintainer = self.maintainer
        history.published = { file, path in maintainer.noteUploaded(file, localCopy: path) }
        try maintainer.loadIndex()
        let first = try history.ship(to: client, work: work, at: now, snapshot: true)
        everCreated.append(first)
    }

    /// Runs every tick due up to `time`, then moves the clock there.
    mutating func advance(to time: Date) throws {
        while let due = maintainer.nextDue(now: now), due <= time {
            now = max(now, due)
            let report = try maintainer.tick(now: now)
            #expect(report.failures.isEmpty, "\(report.failures)")
            everCreated += report.compacted + report.snapshots
            reports.append(report)
            try afterTick?(self)
            if report.isEmpty && maintainer.nextDue(now: now) == due { break }  // nothing happened: avoid spinning
        }
        now = max(now, time)
    }

    /// Some transactions, shipped as one batch at the current time.
    mutating func batch(transactions: Int) throws {
        for _ in 0..<transactions { history.transaction() }
        let file = try history.ship(to: client, work: work, at: now)
        everCreated.append(file)
    }

    /// The database is replaced; a snapshot starts a new lineage.
    mutating func replaceDatabase() throws {
        history.replaceDatabase()
        let file = try history.ship(to: client, work: work, at: now, snapshot: true)
        everCreated.append(file)
    }
}
