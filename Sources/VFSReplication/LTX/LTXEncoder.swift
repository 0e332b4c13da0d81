internal import CVFSShim
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Writes one LTX file, streaming: pages go to disk as they come (memory holds one page, a
/// write buffer and the page index — a few bytes per page).
///
/// ```swift
/// let enc = try LTXEncoder(path: "/tmp/0000000000000001-0000000000000001.ltx",
///                          header: LTXHeader(pageSize: 4096, commit: 2, minTXID: 1, maxTXID: 1, timestamp: Date()))
/// try enc.writePage(1, page1)
/// try enc.writePage(2, page2)
/// let trailer = try enc.finish()
/// ```
///
/// Pages must come in ascending page-number order, never the lock page, and a snapshot
/// (minTXID 1) must contain every page 1...commit except the lock page. The file checksum is
/// computed exactly as ltx's Go encoder does (https://github.com/superfly/ltx, encoder.go).
public final class LTXEncoder {
    /// The header as written; `finish(checksums:)` adds the database checksums to it.
    public private(set) var header: LTXHeader
    public let pageEncoding: LTXPageEncoding
    /// The file being written (used in error messages).
    public let path: String

    private let fd: Int32
    private let ownsDescriptor: Bool
    private var buffer: [UInt8] = []
    private var flushedBytes: Int64 = 0
    /// File checksum of everything after the header (the header is hashed at `finish`, when it
    /// is final, and combined with this).
    private var crc = CRC64()
    private var hashedAfterHeader: Int64 = 0
    private var index: [UInt8] = []
    private var lastPgno: UInt32 = 0
    private var scratch: [UInt8]
    private var databaseChecksum = LTXDatabaseChecksum()
    private var state: State = .pages

    private enum State { case pages, finished, failed }

    private static let flushThreshold = 1 << 20

    /// Number of page frames written so far.
    public private(set) var pageCount = 0

    /// The LTX database checksum of the last page written (`LTXDatabaseChecksum.page`), for
    /// callers that keep per-page checksums of a database.
    public private(set) var lastPageChecksum: UInt64 = 0

    /// XOR of the database checksums of every page written: for a snapshot, the database
    /// checksum of the state it holds.
    public var pagesChecksum: UInt64 { databaseChecksum.value }

    /// Bytes written so far (including buffered ones).
    public var size: Int64 { flushedBytes + Int64(buffer.count) }

    /// Creates (or truncates) `path` and writes the header.
    public convenience init(path: String, header: LTXHeader, pageEncoding: LTXPageEncoding = .lz4Frame) throws {
        let fd = try LTXIO.open(path, O_WRONLY | O_CREAT | O_TRUNC)
        do {
            try self.init(fileDescriptor: fd, path: path, header: header, pageEncoding: pageEncoding, owns: true)
        } catch {
            LTXIO.close(fd)
            throw error
        }
    }

    /// Writes into an open descriptor from offset 0; the caller keeps ownership of `fileDescriptor`.
    public convenience init(
        fileDescriptor: Int32, path: String, header: LTXHeader, pageEncoding: LTXPageEncoding = .lz4Frame
    ) throws {
        try self.init(
            fileDescriptor: fileDescriptor, path: path, header: header, pageEncoding: pageEncoding, owns: false)
    }

    private init(fileDescriptor: Int32, path: String, header: LTXHeader, pageEncoding: LTXPageEncoding, owns: Bool)
        throws
    {
        do {
            try header.validate()
        } catch {
            throw ReplicationError(.invalidArgument, "\(path): cannot encode LTX header: \(error.message)")
        }
        self.fd = fileDescriptor
        self.ownsDescriptor = owns
        self.path = path
        self.header = header
        self.pageEncoding = pageEncoding
        let pageSize = Int(header.pageSize)
        let bound =
            pageEncoding == .lz4Frame
            ? LZ4Pages.frameBound(pageSize: pageSize) : LZ4Pages.blockBound(pageSize: pageSize)
        // Compression output only (never read past what the compressor wrote): not zero-filled.
        self.scratch = [UInt8](unsafeUninitializedCapacity: bound) { _, count in count = bound }
        buffer.reserveCapacity(LTXEncoder.flushThreshold + bound + 16)
        buffer += header.encoded()
    }

    deinit {
        if ownsDescriptor { LTXIO.close(fd) }
    }

    /// Appends page `pgno` (exactly `pageSize` bytes).
    public func writePage(_ pgno: UInt32, _ page: UnsafeRawBufferPointer) throws {
        guard state == .pages else { throw misuse("page written after finish") }
        guard page.count == Int(header.pageSize) else {
            throw misuse("page \(pgno) is \(page.count) bytes, page size is \(header.pageSize)")
        }
        guard pgno >= 1, pgno <= header.commit else {
            throw misuse("page \(pgno) is outside the database (commit \(header.commit) pages)")
        }
        let lock = header.lockPageNumber
        guard pgno != lock else { throw misuse("page \(pgno) is the lock page and is never stored") }
        if header.isSnapshot {
            let expected = lastPgno + 1 == lock ? lastPgno + 2 : lastPgno + 1
            guard pgno == expected else {
                throw misuse("snapshot pages must be consecutive: page \(pgno) after page \(lastPgno)")
            }
        } else if pgno <= lastPgno {
            throw misuse("pages out of order: page \(pgno) after page \(lastPgno)")
        }

        let frameOffset = size
        var pageHeader = [UInt8]()
        pageHeader.reserveCapacity(10)
        pageHeader.ltxAppendBigEndian(pgno)
        let compressedCount: Int
        do {
            switch pageEncoding {
            case .lz4Frame:
                pageHeader.ltxAppendBigEndian(UInt16(0))
                compressedCount = try scratch.withUnsafeMutableBytes { try LZ4Pages.compressFrame(page, into: $0) }
            case .lz4Block:
                pageHeader.ltxAppendBigEndian(LTXPageEncoding.sizeFlag)
                compressedCount = try scratch.withUnsafeMutableBytes { try LZ4Pages.compressBlock(page, into: $0) }
                pageHeader.ltxAppendBigEndian(UInt32(compressedCount))
            }
        } catch {
            state = .failed
            throw ReplicationError(.io, "\(path): \(error)")
        }
        hash(pageHeader)
        buffer += pageHeader
        buffer += scratch[0..<compressedCount]
        crc.update(page)
        hashedAfterHeader += Int64(page.count)
        lastPageChecksum = LTXDatabaseChecksum.page(pgno: pgno, page: page)
        databaseChecksum.add(checksum: lastPageChecksum)

        index.ltxAppendUvarint(UInt64(pgno))
        index.ltxAppendUvarint(UInt64(frameOffset))
        index.ltxAppendUvarint(UInt64(size - frameOffset))
        lastPgno = pgno
        pageCount += 1
        if buffer.count >= LTXEncoder.flushThreshold { try flush() }
    }

    public func writePage(_ pgno: UInt32, _ page: [UInt8]) throws {
        try page.withUnsafeBytes { try writePage(pgno, $0) }
    }

    /// Ends the page block, writes the page index and trailer, and (by default) fsyncs.
    ///
    /// - Parameter postApplyChecksum: database checksum after applying this file. Must be nil or 0
    ///   when the header says NoChecksum; for a snapshot with checksums, nil means "the checksum of
    ///   the pages written" (computed here); otherwise it is required.
    /// - Parameter checksums: pre/post-apply database checksums to record in the header's
    ///   reserved bytes (`LTXHeader.DatabaseChecksums`); the header is rewritten with them. For a
    ///   snapshot, `post` must be the checksum of the pages written.
    @discardableResult
    public func finish(
        postApplyChecksum: UInt64? = nil, checksums: LTXHeader.DatabaseChecksums? = nil, sync: Bool = true
    ) throws -> LTXTrailer {
        guard state == .pages else { throw misuse("finish called twice or after a failure") }
        if header.isSnapshot {
            let lock = header.lockPageNumber
            let complete = lastPgno == header.commit || (header.commit == lock && lastPgno == lock - 1)
            guard complete else {
                throw misuse("snapshot ends at page \(lastPgno) but the database has \(header.commit) pages")
            }
        }
        let post: UInt64
        if header.noChecksum {
            guard (postApplyChecksum ?? 0) == 0 else {
                throw misuse("post-apply checksum given but header says NoChecksum")
            }
            post = 0
        } else if let given = postApplyChecksum {
            guard given & LTX.checksumFlag != 0 else { throw misuse("malformed post-apply checksum") }
            post = given
        } else if header.isSnapshot {
            post = databaseChecksum.value
        } else {
            throw misuse("post-apply checksum required (header tracks checksums)")
        }

        if let checksums {
            var final = header
            final.checksums = checksums
            do {
                try final.validate()
            } catch {
                throw misuse("cannot record database checksums: \(error.message)")
            }
            if header.isSnapshot && checksums.post != databaseChecksum.value {
                throw misuse(
                    "snapshot post-apply checksum \(hex16(checksums.post)) is not that of its pages "
                        + "(\(hex16(databaseChecksum.value)))")
            }
            header = final
            let bytes = header.encoded()
            if flushedBytes == 0 {
                buffer.replaceSubrange(0..<LTX.headerSize, with: bytes)
            } else {
                try bytes.withUnsafeBytes { try LTXIO.pwrite(fd, $0, offset: 0, path: path) }
            }
        }

        var tail = [UInt8](repeating: 0, count: LTX.pageHeaderSize)
        tail += index
        tail.append(0)
        tail.ltxAppendBigEndian(UInt64(index.count + 1))
        tail.ltxAppendBigEndian(post)
        hash(tail)
        let headerCRC = CRC64.checksum(header.encoded())
        let fileChecksum = LTX.checksumFlag | CRC64.combine(headerCRC, crc.value, lengthB: hashedAfterHeader)
        tail.ltxAppendBigEndian(fileChecksum)
        buffer += tail
        if sync {
            try flushAndSync()
        } else {
            try flush()
        }
        state = .finished
        index = []
        return LTXTrailer(postApplyChecksum: post, fileChecksum: fileChecksum)
    }

    private func hash(_ bytes: [UInt8]) {
        crc.update(bytes)
        hashedAfterHeader += Int64(bytes.count)
    }

    private func flush() throws {
        guard !buffer.isEmpty else { return }
        do {
            try buffer.withUnsafeBytes { try LTXIO.pwrite(fd, $0, offset: flushedBytes, path: path) }
        } catch {
            state = .failed
            throw error
        }
        flushedBytes += Int64(buffer.count)
        buffer.removeAll(keepingCapacity: true)
    }

    /// The last write and the fsync as one linked io_uring submission (a plain pwrite + fsync
    /// where io_uring is refused): the file is durable when this returns.
    private func flushAndSync() throws {
        let rc = buffer.withUnsafeBytes { raw -> Int32 in
            var usedUring: Int32 = 0
            guard let base = raw.baseAddress else { return vr_io_write_and_sync(fd, [UInt8](), 0, flushedBytes, &usedUring) }
            return vr_io_write_and_sync(fd, base, raw.count, flushedBytes, &usedUring)
        }
        guard rc == 0 else {
            state = .failed
            throw ReplicationError(.io, "\(path): write and fsync failed: \(String(cString: strerror(rc)))")
        }
        flushedBytes += Int64(buffer.count)
        buffer.removeAll(keepingCapacity: true)
    }

    private func misuse(_ message: String) -> ReplicationError {
        ReplicationError(.invalidArgument, "\(path): \(message)")
    }
}

extension LTXEncoder {
    /// Writes a snapshot LTX file (minTXID 1) holding every page of the SQLite database file at
    /// `databasePath`, skipping the lock page. The database must not change meanwhile.
    ///
    /// ```swift
    /// let header = try LTXEncoder.writeSnapshot(databasePath: "app.db", to: "snap.ltx", maxTXID: 7, timestamp: Date())
    /// ```
    @discardableResult
    public static func writeSnapshot(
        databasePath: String, to ltxPath: String, maxTXID: UInt64, timestamp: Date,
        flags: LTXHeader.Flags = .noChecksum, pageEncoding: LTXPageEncoding = .lz4Frame
    ) throws -> (header: LTXHeader, trailer: LTXTrailer) {
        let fd = try LTXIO.open(databasePath, O_RDONLY)
        defer { LTXIO.close(fd) }
        let (pageSize, pageCount) = try SQLiteFileGeometry.read(fd: fd, path: databasePath)
        let header = LTXHeader(
            flags: flags, pageSize: pageSize, commit: pageCount, minTXID: 1, maxTXID: maxTXID, timestamp: timestamp)
        let encoder = try LTXEncoder(path: ltxPath, header: header, pageEncoding: pageEncoding)
        var page = [UInt8](repeating: 0, count: Int(pageSize))
        let lock = header.lockPageNumber
        var pgno: UInt32 = 1
        while pgno <= pageCount {
            if pgno != lock {
                try page.withUnsafeMutableBytes { buf in
                    let n = try LTXIO.pread(fd, buf, offset: Int64(pgno - 1) * Int64(pageSize), path: databasePath)
                    if n != buf.count {
                        throw ReplicationError(.io, "\(databasePath): short read of page \(pgno)")
                    }
                }
                try encoder.writePage(pgno, page)
            }
            pgno += 1
        }
        let trailer = try encoder.finish(
            checksums: flags.contains(.noChecksum) ? LTXHeader.DatabaseChecksums(pre: 0, post: encoder.pagesChecksum) : nil)
        return (encoder.header, trailer)
    }
}

/// Page size and page count of a SQLite database file, from its header and size.
/// https://www.sqlite.org/fileformat.html#the_database_header
enum SQLiteFileGeometry {
    static func read(fd: Int32, path: String) throws -> (pageSize: UInt32, pageCount: UInt32) {
        var header = [UInt8](repeating: 0, count: 100)
        let n = try header.withUnsafeMutableBytes { try LTXIO.pread(fd, $0, offset: 0, path: path) }
        guard n == 100, header.starts(with: Array("SQLite format 3\0".utf8)) else {
            throw ReplicationError(.invalidArgument, "\(path) is not a SQLite database")
        }
        let raw = UInt32(header[16]) << 8 | UInt32(header[17])
        let pageSize = raw == 1 ? 65536 : raw
        guard LTX.isValidPageSize(pageSize) else {
            throw ReplicationError(.invalidArgument, "\(path): invalid page size \(raw)")
        }
        let size = try LTXIO.fileSize(fd, path: path)
        guard size % Int64(pageSize) == 0 else {
            throw ReplicationError(.invalidArgument, "\(path): size \(size) is not a multiple of the page size")
        }
        return (pageSize, UInt32(size / Int64(pageSize)))
    }
}
