import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The LTX database checksum of every page of the replica's current state, so the uploader can
/// give each batch its pre- and post-apply checksums without reading the database: the
/// checksum is an XOR over pages (`LTXDatabaseChecksum`), so a batch XORs out the old checksum
/// of each page it writes and XORs in the new one.
///
/// `<db>-vfsrepl/pagesums`, memory-mapped, written by the uploader only (one process holds the
/// uploader lock): a 64-byte header (magic, state, page size, page count, TXID, lineage id, XOR
/// of the entries), then 8 bytes per page (2 MiB for 1 GiB of 4 KiB pages). The entries are
/// trusted only for the TXID and lineage recorded, when the header says consistent (an update
/// in progress says "updating": a crash then leaves it untrusted) and the entries XOR to the
/// recorded total (a torn write after a power loss). Whatever cannot be trusted is rebuilt by the
/// next snapshot; a database rebuilt from its replica gets a map written by `RestoreMarker`
/// (lineage 0: adopted by whichever writer continues that TXID).
///
/// ```swift
/// let map = try PageChecksumMap(path: dir + "/pagesums")
/// if let pre = map.trusted(txid: 41, lineage: id, pageSize: 4096) {
///     let post = map.postApply(pre: pre, changes: [(3, sum3)], commit: 10)
///     // ... ship the batch with (pre, post), then:
///     map.apply(changes: [(3, sum3)], commit: 10, txid: 42, lineage: id)
/// }
/// ```
final class PageChecksumMap {
    let path: String
    private let fd: Int32
    private var base: UnsafeMutableRawPointer?
    private var mappedBytes = 0
    /// Whether the entries were checked against the total since the file was opened.
    private var checked = false

    private static let magic: UInt64 = 0x3155_534D_4750_5256  // "VRPGMSU1" little-endian
    private static let headerBytes = 64
    private static let consistent: UInt32 = 1
    private static let updating: UInt32 = 2

    init(path: String) throws {
        self.path = path
        fd = try LTXIO.open(path, O_RDWR | O_CREAT, mode: 0o644)
        do {
            let size = try LTXIO.fileSize(fd, path: path)
            try map(bytes: max(Int(size), PageChecksumMap.headerBytes))
        } catch {
            LTXIO.close(fd)
            throw error
        }
    }

    deinit {
        if let base { munmap(base, mappedBytes) }
        LTXIO.close(fd)
    }

    // MARK: - Header fields

    private func field<T: FixedWidthInteger>(_ offset: Int, _ type: T.Type) -> T {
        base!.load(fromByteOffset: offset, as: T.self)
    }
    private func setField<T: FixedWidthInteger>(_ offset: Int, _ value: T) {
        base!.storeBytes(of: value, toByteOffset: offset, as: T.self)
    }
    private var state: UInt32 {
        get { field(8, UInt32.self) }
        set { setField(8, newValue) }
    }
    var pageSize: UInt32 { field(12, UInt32.self) }
    var pageCount: UInt32 { UInt32(truncatingIfNeeded: field(16, UInt64.self)) }
    var txid: UInt64 { field(24, UInt64.self) }
    var lineage: UInt64 { field(32, UInt64.self) }
    /// XOR of the entries (the database checksum without its flag bit).
    private var total: UInt64 { field(40, UInt64.self) }

    /// The checksum of page `pgno` in the recorded state (0 beyond it and for the lock page).
    func entry(_ pgno: UInt32) -> UInt64 {
        guard pgno >= 1, pgno <= pageCount else { return 0 }
        return field(PageChecksumMap.headerBytes + Int(pgno - 1) * 8, UInt64.self)
    }
    private func setEntry(_ pgno: UInt32, _ value: UInt64) {
        setField(PageChecksumMap.headerBytes + Int(pgno - 1) * 8, value)
    }

    // MARK: - Use

    /// The database checksum of the state at `txid` of `lineage`, if the map holds exactly that
    /// state; nil if it cannot be trusted (then the next snapshot rebuilds it).
    func trusted(txid: UInt64, lineage: UInt64, pageSize: UInt32) -> UInt64? {
        guard field(0, UInt64.self) == PageChecksumMap.magic, state == PageChecksumMap.consistent,
            self.txid == txid, self.lineage == lineage || self.lineage == 0, self.pageSize == pageSize,
            mappedBytes >= PageChecksumMap.headerBytes + Int(pageCount) * 8
        else { return nil }
        if !checked {
            var sum: UInt64 = 0
            for p in 0..<pageCount { sum ^= entry(p + 1) }
            guard sum == total else { return nil }
            checked = true
        }
        return LTX.checksumFlag | total
    }

    /// The database checksum after writing `changes` (page, its `LTXDatabaseChecksum.page`, in
    /// any order, each page once) with a database size of `commit` pages, from the trusted state.
    /// Pages past `commit` leave the sum; pages between the old size and `commit` that the
    /// batch does not write read as zeros after a restore and enter it as zero pages.
    func postApply(changes: [(pgno: UInt32, checksum: UInt64)], commit: UInt32) -> UInt64 {
        var sum = total
        forEachChange(changes, commit: commit) { pgno, old, new in sum ^= old ^ new }
        return LTX.checksumFlag | sum
    }

    /// Records the state after a shipped batch (see `postApply`).
    func apply(changes: [(pgno: UInt32, checksum: UInt64)], commit: UInt32, txid: UInt64, lineage: UInt64) throws {
        var sum = total
        var updates: [(UInt32, UInt64)] = []
        updates.reserveCapacity(changes.count)
        forEachChange(changes, commit: commit) { pgno, old, new in
            sum ^= old ^ new
            updates.append((pgno, new))
        }
        try ensureCapacity(pages: max(commit, pageCount))
        state = PageChecksumMap.updating
        for (pgno, value) in updates { setEntry(pgno, value) }
        setField(16, UInt64(commit))
        setField(40, sum)
        setField(24, txid)
        setField(32, lineage)
        state = PageChecksumMap.consistent
    }

    /// Starts recording a snapshot: the map is untrusted until `finishSnapshot`.
    func beginSnapshot(pageSize: UInt32, commit: UInt32) throws {
        try ensureCapacity(pages: commit)
        setField(0, PageChecksumMap.magic)
        state = PageChecksumMap.updating
        setField(12, pageSize)
        setField(16, UInt64(commit))
        memset(base! + PageChecksumMap.headerBytes, 0, Int(commit) * 8)
    }

    /// Page `pgno`'s checksum in the snapshot being recorded.
    func setSnapshotPage(_ pgno: UInt32, checksum: UInt64) { setEntry(pgno, checksum) }

    func finishSnapshot(txid: UInt64, lineage: UInt64) {
        var sum: UInt64 = 0
        for p in 0..<pageCount { sum ^= entry(p + 1) }
        setField(40, sum)
        setField(24, txid)
        setField(32, lineage)
        state = PageChecksumMap.consistent
        checked = true
    }

    /// Marks the map untrusted (the replica's state is no longer the one recorded).
    func invalidate() {
        if mappedBytes >= PageChecksumMap.headerBytes { state = PageChecksumMap.updating }
    }

    /// Writes the map of a whole database file (a restore), for `txid` and lineage 0.
    static func write(path: String, database: String, txid: UInt64) throws {
        let fd = try LTXIO.open(database, O_RDONLY)
        defer { LTXIO.close(fd) }
        let (pageSize, pageCount) = try SQLiteFileGeometry.read(fd: fd, path: database)
        let map = try PageChecksumMap(path: path)
        try map.beginSnapshot(pageSize: pageSize, commit: pageCount)
        let lock = LTX.lockPageNumber(pageSize: pageSize)
        var page = [UInt8](repeating: 0, count: Int(pageSize))
        for pgno in 1...max(1, pageCount) where pgno <= pageCount && pgno != lock {
            try page.withUnsafeMutableBytes { buf in
                let n = try LTXIO.pread(fd, buf, offset: Int64(pgno - 1) * Int64(pageSize), path: database)
                guard n == buf.count else { throw ReplicationError(.io, "\(database): short read of page \(pgno)") }
            }
            map.setSnapshotPage(pgno, checksum: page.withUnsafeBytes { LTXDatabaseChecksum.page(pgno: pgno, page: $0) })
        }
        map.finishSnapshot(txid: txid, lineage: 0)
        try map.sync()
    }

    func sync() throws {
        guard let base, msync(base, mappedBytes, MS_SYNC) == 0 else { throw LTXIO.error("msync", path) }
    }

    // MARK: - Internals

    private func forEachChange(
        _ changes: [(pgno: UInt32, checksum: UInt64)], commit: UInt32, _ body: (UInt32, UInt64, UInt64) -> Void
    ) {
        let oldCount = pageCount
        var written = Set<UInt32>()
        for (pgno, checksum) in changes where pgno <= commit {
            body(pgno, entry(pgno), checksum)
            if pgno > oldCount { written.insert(pgno) }
        }
        if commit < oldCount {
            for pgno in (commit + 1)...oldCount where entry(pgno) != 0 { body(pgno, entry(pgno), 0) }
        } else if commit > oldCount {
            let lock = LTX.lockPageNumber(pageSize: pageSize)
            let zero = [UInt8](repeating: 0, count: Int(pageSize))
            for pgno in (oldCount + 1)...commit where pgno != lock && !written.contains(pgno) {
                body(pgno, 0, zero.withUnsafeBytes { LTXDatabaseChecksum.page(pgno: pgno, page: $0) })
            }
        }
    }

    private func ensureCapacity(pages: UInt32) throws {
        let need = PageChecksumMap.headerBytes + Int(pages) * 8
        if need <= mappedBytes { return }
        try map(bytes: (need + (1 << 20) - 1) / (1 << 20) * (1 << 20))
    }

    private func map(bytes: Int) throws {
        if try LTXIO.fileSize(fd, path: path) < Int64(bytes) { try LTXIO.ftruncate(fd, size: Int64(bytes), path: path) }
        if let base { munmap(base, mappedBytes) }
        base = nil
        guard let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0), p != MAP_FAILED else {
            throw LTXIO.error("mmap", path)
        }
        base = p
        mappedBytes = bytes
    }
}
