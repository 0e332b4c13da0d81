#if canImport(Glibc)
    import Glibc
#endif

/// Reads one local LTX file with `pread`, page by page, verifying as it goes.
///
/// ```swift
/// let dec = try LTXDecoder(path: path)              // header read and validated
/// var page = [UInt8](repeating: 0, count: Int(dec.header.pageSize))
/// while let pgno = try dec.nextPage(into: &page) { ... }
/// // here the page index, trailer and file checksum have been verified
/// ```
///
/// Both page encodings are read: flags 0 + LZ4 frame, and flags 0x1 + u32 size + LZ4 block.
/// Any structural problem, truncation or checksum mismatch throws
/// `ReplicationError(.corruptReplicaFile, ...)` naming the file. Memory is bounded by a read
/// window of a few hundred KiB. https://github.com/superfly/ltx (decoder.go)
public final class LTXDecoder {
    public let path: String
    public let header: LTXHeader
    public let fileSize: Int64
    /// Available once `nextPage` has returned nil.
    public private(set) var trailer: LTXTrailer?
    /// Pages decoded so far.
    public private(set) var pageCount = 0
    /// Database checksum of the pages of a snapshot, if the header tracks checksums.
    public private(set) var snapshotChecksum: UInt64?
    /// Bytes of the file consumed so far (for progress reports).
    public var bytesConsumed: Int64 { position }

    private let fd: Int32
    private var window: [UInt8]
    private var windowStart: Int64 = 0  // file offset of window[0]
    private var windowCount = 0  // valid bytes in window
    private var position: Int64 = 0  // next file offset to consume
    private var crc = CRC64()
    private var framesSeen = FrameListDigest()
    private var lastPgno: UInt32 = 0
    private var frameDecoder: LZ4Pages.FrameDecoder?
    private var databaseChecksum: LTXDatabaseChecksum?
    private var finished = false
    private let maxCompressedPage: Int

    /// Opens `path` and reads and validates its header. `readBufferSize` is the read window
    /// (at least two compressed pages); merges that keep many decoders open pass a small one.
    public init(path: String, readBufferSize: Int = 256 << 10) throws {
        self.path = path
        let fd = try LTXIO.open(path, O_RDONLY)
        self.fd = fd
        do {
            fileSize = try LTXIO.fileSize(fd, path: path)
            var bytes = [UInt8](repeating: 0, count: LTX.headerSize)
            let n = try bytes.withUnsafeMutableBytes { try LTXIO.pread(fd, $0, offset: 0, path: path) }
            guard n == LTX.headerSize else {
                throw LTXDecoder.corrupt(path, "truncated: \(fileSize) bytes, shorter than the LTX header")
            }
            do {
                header = try LTXHeader(decoding: bytes)
            } catch {
                throw LTXDecoder.corrupt(path, "bad header: \(error.message)")
            }
            crc.update(bytes)
            position = Int64(LTX.headerSize)
            windowStart = position
            maxCompressedPage = LZ4Pages.blockBound(pageSize: Int(header.pageSize)) + 1024
            window = [UInt8](repeating: 0, count: max(readBufferSize, 2 * (maxCompressedPage + 16)))
            if header.isSnapshot && (!header.noChecksum || header.checksums != nil) {
                databaseChecksum = LTXDatabaseChecksum()
            }
        } catch {
            LTXIO.close(fd)
            throw error
        }
    }

    deinit { LTXIO.close(fd) }

    /// Reads only the 100-byte header of `path` (validated, checksum not checked).
    public static func readHeader(path: String) throws -> LTXHeader {
        let fd = try LTXIO.open(path, O_RDONLY)
        defer { LTXIO.close(fd) }
        var bytes = [UInt8](repeating: 0, count: LTX.headerSize)
        let n = try bytes.withUnsafeMutableBytes { try LTXIO.pread(fd, $0, offset: 0, path: path) }
        guard n == LTX.headerSize else { throw corrupt(path, "truncated: shorter than the LTX header") }
        do {
            return try LTXHeader(decoding: bytes)
        } catch {
            throw corrupt(path, "bad header: \(error.message)")
        }
    }

    /// Decodes the whole file, checking everything; returns header, trailer and page count.
    @discardableResult
    public static func verify(path: String) throws -> (header: LTXHeader, trailer: LTXTrailer, pageCount: Int) {
        let dec = try LTXDecoder(path: path)
        var page = [UInt8](repeating: 0, count: Int(dec.header.pageSize))
        while try dec.nextPage(into: &page) != nil {}
        return (dec.header, dec.trailer!, dec.pageCount)
    }

    public func nextPage(into page: inout [UInt8]) throws -> UInt32? {
        try page.withUnsafeMutableBytes { try nextPage(into: $0) }
    }

    /// Decodes the next page into `page` (exactly `pageSize` bytes) and returns its number; at
    /// the end of the page block reads and verifies index and trailer, then returns nil.
    public func nextPage(into page: UnsafeMutableRawBufferPointer) throws -> UInt32? {
        guard !finished else { return nil }
        guard page.count == Int(header.pageSize) else {
            throw ReplicationError(
                .invalidArgument, "\(path): page buffer of \(page.count) bytes, need \(header.pageSize)")
        }
        do {
            return try decodeNext(into: page)
        } catch let error as LTXFormatError {
            throw LTXDecoder.corrupt(path, error.message)
        }
    }

    private func decodeNext(into page: UnsafeMutableRawBufferPointer) throws -> UInt32? {
        let frameOffset = position
        let pageHeader = try consume(LTX.pageHeaderSize, hashed: true)
        let pgno = pageHeader.ltxUInt32(at: 0)
        let flags = UInt16(pageHeader[4]) << 8 | UInt16(pageHeader[5])
        if pgno == 0 && flags == 0 {
            try finishFile()
            return nil
        }
        guard pgno != 0 else { throw LTXFormatError("page frame with page number 0 at offset \(frameOffset)") }
        guard flags & ~LTXPageEncoding.sizeFlag == 0 else {
            throw LTXFormatError("page \(pgno): unknown page flags 0x\(String(flags, radix: 16))")
        }
        try checkOrder(pgno)

        if flags & LTXPageEncoding.sizeFlag != 0 {
            let size = Int(try consume(4, hashed: true).ltxUInt32(at: 0))
            guard size <= maxCompressedPage else { throw LTXFormatError("page \(pgno): block of \(size) bytes") }
            try withContiguous(size, at: "page \(pgno)") { try LZ4Pages.decompressBlock($0, into: page) }
        } else {
            let length = try frameLength(pgno: pgno)
            if frameDecoder == nil { frameDecoder = try LZ4Pages.FrameDecoder() }
            let decoder = frameDecoder!
            try withContiguous(length, at: "page \(pgno)") { try decoder.decode($0, into: page) }
        }
        crc.update(UnsafeRawBufferPointer(page))
        databaseChecksum?.add(pgno: pgno, page: UnsafeRawBufferPointer(page))
        framesSeen.add(pgno: pgno, offset: UInt64(frameOffset), size: UInt64(position - frameOffset))
        lastPgno = pgno
        pageCount += 1
        return pgno
    }

    private func checkOrder(_ pgno: UInt32) throws {
        let lock = header.lockPageNumber
        guard pgno != lock else { throw LTXFormatError("contains the lock page \(pgno)") }
        guard pgno <= header.commit else {
            throw LTXFormatError("page \(pgno) beyond the database size of \(header.commit) pages")
        }
        if header.isSnapshot {
            let expected = lastPgno + 1 == lock ? lastPgno + 2 : lastPgno + 1
            guard pgno == expected else {
                throw LTXFormatError("snapshot skips from page \(lastPgno) to page \(pgno)")
            }
        } else if pgno <= lastPgno {
            throw LTXFormatError("pages out of order: \(pgno) after \(lastPgno)")
        }
    }

    private func frameLength(pgno: UInt32) throws -> Int {
        let remaining = fileSize - position
        let want = Int(min(Int64(maxCompressedPage), remaining))
        try fill(want)
        let available = window.withUnsafeBytes { buf in
            UnsafeRawBufferPointer(rebasing: buf[Int(position - windowStart)..<windowCount])
        }
        if let length = try LZ4Pages.frameLength(available) { return length }
        if Int64(want) == remaining { throw LTXFormatError("truncated inside page \(pgno)") }
        throw LTXFormatError("page \(pgno): LZ4 frame larger than \(maxCompressedPage) bytes")
    }

    private func finishFile() throws {
        if header.isSnapshot {
            let lock = header.lockPageNumber
            let complete = lastPgno == header.commit || (header.commit == lock && lastPgno == lock - 1)
            guard complete else {
                throw LTXFormatError("snapshot ends at page \(lastPgno), database has \(header.commit) pages")
            }
        }
        // Page index: (pgno, offset, size) varints, 0 terminator, u64 length.
        let indexStart = position
        var listed = FrameListDigest()
        while true {
            let pgno = try readUvarint()
            if pgno == 0 { break }
            let offset = try readUvarint()
            let size = try readUvarint()
            listed.add(pgno: UInt32(truncatingIfNeeded: pgno), offset: offset, size: size)
        }
        let indexLength = try consume(8, hashed: true).ltxUInt64(at: 0)
        guard indexLength == UInt64(position - 8 - indexStart) else {
            throw LTXFormatError(
                "page index length field says \(indexLength), index is \(position - 8 - indexStart) bytes")
        }
        guard listed == framesSeen else {
            throw LTXFormatError(
                "page index does not match the page frames (\(listed.count) entries, \(framesSeen.count) frames)")
        }
        let post = try consume(8, hashed: true).ltxUInt64(at: 0)
        let expected = LTX.checksumFlag | crc.value
        let stored = try consume(8, hashed: false).ltxUInt64(at: 0)
        guard position == fileSize else {
            throw LTXFormatError("\(fileSize - position) unexpected bytes after the trailer")
        }
        guard stored == expected else {
            throw LTXFormatError(
                "file checksum mismatch: trailer says \(hex16(stored)), content gives \(hex16(expected))")
        }
        if header.noChecksum {
            guard post == 0 else { throw LTXFormatError("post-apply checksum set although NoChecksum") }
            if let recorded = header.checksums?.post, let sum = databaseChecksum?.value {
                guard sum == recorded else {
                    throw LTXFormatError(
                        "snapshot post-apply checksum \(hex16(recorded)) (header) does not match its pages (\(hex16(sum)))")
                }
                snapshotChecksum = sum
            }
        } else {
            guard post & LTX.checksumFlag != 0 else { throw LTXFormatError("missing post-apply checksum") }
            if let sum = databaseChecksum?.value {
                guard sum == post else {
                    throw LTXFormatError(
                        "snapshot post-apply checksum \(hex16(post)) does not match its pages (\(hex16(sum)))")
                }
                snapshotChecksum = sum
            }
        }
        trailer = LTXTrailer(postApplyChecksum: post, fileChecksum: stored)
        finished = true
    }

    // MARK: - Buffered reading

    /// Makes at least `count` bytes from `position` available in the window.
    private func fill(_ count: Int) throws {
        let have = windowCount - Int(position - windowStart)
        if have >= count { return }
        if Int64(count) > fileSize - position {
            throw LTXFormatError("truncated at offset \(position): file is \(fileSize) bytes")
        }
        if count > window.count { window = [UInt8](repeating: 0, count: count) }
        // Move unread bytes to the front, then read after them.
        let unreadStart = Int(position - windowStart)
        let path = self.path
        let fd = self.fd
        window.withUnsafeMutableBytes { buf in
            if have > 0 { memmove(buf.baseAddress!, buf.baseAddress! + unreadStart, have) }
        }
        windowStart = position
        windowCount = have
        let readOffset = windowStart + Int64(have)
        let n = try window.withUnsafeMutableBytes { buf in
            let toRead = Int(min(Int64(buf.count - have), fileSize - readOffset))
            return try LTXIO.pread(
                fd, UnsafeMutableRawBufferPointer(rebasing: buf[have..<(have + toRead)]), offset: readOffset, path: path
            )
        }
        windowCount += n
        if windowCount < count { throw LTXFormatError("truncated at offset \(readOffset + Int64(n)) (file shrank?)") }
    }

    /// Consumes `count` bytes and returns a copy (for small fields).
    private func consume(_ count: Int, hashed: Bool) throws -> [UInt8] {
        try fill(count)
        let start = Int(position - windowStart)
        let bytes = Array(window[start..<(start + count)])
        if hashed { crc.update(bytes) }
        position += Int64(count)
        return bytes
    }

    /// Consumes `count` bytes and passes them to `body` without copying (not hashed).
    private func withContiguous<T>(_ count: Int, at context: String, _ body: (UnsafeRawBufferPointer) throws -> T)
        throws -> T
    {
        try fill(count)
        let start = Int(position - windowStart)
        let result = try window.withUnsafeBytes {
            try body(UnsafeRawBufferPointer(rebasing: $0[start..<(start + count)]))
        }
        position += Int64(count)
        return result
    }

    private func readUvarint() throws -> UInt64 {
        var value: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            let byte = try consume(1, hashed: true)[0]
            if shift == 63 && byte > 1 { throw LTXFormatError("page index varint overflows") }
            value |= UInt64(byte & 0x7F) << shift
            if byte & 0x80 == 0 { return value }
            shift += 7
            if shift > 63 { throw LTXFormatError("page index varint overflows") }
        }
    }

    static func corrupt(_ path: String, _ message: String) -> ReplicationError {
        ReplicationError(.corruptReplicaFile, "corrupt LTX file \(path): \(message)")
    }
}

/// Order-sensitive digest of (pgno, offset, size) triples, so the page index can be checked
/// against the frames actually read without keeping a list of them.
private struct FrameListDigest: Equatable {
    var crc = CRC64()
    var count = 0

    mutating func add(pgno: UInt32, offset: UInt64, size: UInt64) {
        var triple = [UInt8]()
        triple.reserveCapacity(20)
        triple.ltxAppendBigEndian(pgno)
        triple.ltxAppendBigEndian(offset)
        triple.ltxAppendBigEndian(size)
        crc.update(triple)
        count += 1
    }
}
