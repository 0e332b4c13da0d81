#if canImport(Glibc)
    import Glibc
#endif

/// The LTX database checksum: XOR over all pages (lock page excluded) of
/// CRC-64-ISO(page number as big-endian u32 || page bytes) with bit 63 set, and bit 63 set on
/// the result. Adding the same page twice removes it, so the sum can be updated in place.
///
/// ```swift
/// var sum = LTXDatabaseChecksum()
/// sum.add(pgno: 1, page: page1)
/// let post = sum.value          // compare with LTXTrailer.postApplyChecksum
/// ```
///
/// https://github.com/superfly/ltx (checksum.go)
public struct LTXDatabaseChecksum: Sendable, Equatable {
    private var sum: UInt64 = 0

    public init() {}

    public var value: UInt64 { LTX.checksumFlag | sum }

    /// The checksum of a single page.
    public static func page(pgno: UInt32, page: UnsafeRawBufferPointer) -> UInt64 {
        var crc = CRC64()
        crc.updateBigEndian(pgno)
        crc.update(page)
        return LTX.checksumFlag | crc.value
    }

    public mutating func add(pgno: UInt32, page: UnsafeRawBufferPointer) {
        sum ^= LTXDatabaseChecksum.page(pgno: pgno, page: page)
    }

    /// Adds (or, added again, removes) a page by its checksum from `page(pgno:page:)`.
    public mutating func add(checksum: UInt64) {
        sum ^= checksum
    }

    public mutating func add(pgno: UInt32, page: [UInt8]) {
        page.withUnsafeBytes { add(pgno: pgno, page: $0) }
    }

    /// Removes a page's previous contents (XOR is its own inverse).
    public mutating func remove(pgno: UInt32, page: UnsafeRawBufferPointer) {
        add(pgno: pgno, page: page)
    }

    /// Checksum of the first `pageCount` pages of a database file (lock page excluded).
    public static func ofDatabase(path: String, pageSize: UInt32, pageCount: UInt32) throws -> UInt64 {
        let fd = try LTXIO.open(path, O_RDONLY)
        defer { LTXIO.close(fd) }
        return try ofDatabase(fd: fd, path: path, pageSize: pageSize, pageCount: pageCount)
    }

    /// Checksum of a whole SQLite database file, with page size and count taken from the file.
    public static func ofDatabase(path: String) throws -> UInt64 {
        let fd = try LTXIO.open(path, O_RDONLY)
        defer { LTXIO.close(fd) }
        let (pageSize, pageCount) = try SQLiteFileGeometry.read(fd: fd, path: path)
        return try ofDatabase(fd: fd, path: path, pageSize: pageSize, pageCount: pageCount)
    }

    static func ofDatabase(fd: Int32, path: String, pageSize: UInt32, pageCount: UInt32) throws -> UInt64 {
        var sum = LTXDatabaseChecksum()
        let lock = LTX.lockPageNumber(pageSize: pageSize)
        let pagesPerRead = max(1, (1 << 20) / Int(pageSize))
        var buffer = [UInt8](repeating: 0, count: pagesPerRead * Int(pageSize))
        var pgno: UInt32 = 1
        while pgno <= pageCount {
            let count = min(pagesPerRead, Int(pageCount - pgno + 1))
            try buffer.withUnsafeMutableBytes { buf in
                let want = UnsafeMutableRawBufferPointer(rebasing: buf[0..<(count * Int(pageSize))])
                let n = try LTXIO.pread(fd, want, offset: Int64(pgno - 1) * Int64(pageSize), path: path)
                guard n == want.count else {
                    throw ReplicationError(.io, "\(path): file ends before page \(pageCount)")
                }
                for i in 0..<count {
                    let p = pgno + UInt32(i)
                    if p == lock { continue }
                    let start = i * Int(pageSize)
                    sum.add(pgno: p, page: UnsafeRawBufferPointer(rebasing: want[start..<(start + Int(pageSize))]))
                }
            }
            pgno += UInt32(count)
        }
        return sum.value
    }
}
