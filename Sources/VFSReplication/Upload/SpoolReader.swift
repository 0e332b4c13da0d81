internal import CVFSShim
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A position in the spool: segment number and byte offset inside it.
struct SpoolPosition: Comparable, Hashable, Sendable, CustomStringConvertible {
    var segment: UInt64
    var offset: UInt64

    static func < (a: SpoolPosition, b: SpoolPosition) -> Bool {
        (a.segment, a.offset) < (b.segment, b.offset)
    }

    var description: String { "\(segment):\(offset)" }
}

/// A WAL state: salts and the last frame (0: empty WAL). `firstFrame` is the first frame of the
/// transaction that led to it (1: the transaction started a new WAL generation).
struct WALPosition: Sendable, Equatable {
    var salt1: UInt32
    var salt2: UInt32
    var frame: UInt32
    var firstFrame: UInt32 = 0
}

/// Where one page image lives in the spool.
struct SpoolPageLocation: Sendable, Equatable {
    var segment: UInt64
    var offset: UInt64  // of the page data (after the 24-byte frame header)
}

/// A record read from the spool, already validated (header CRC, WAL checksum chain, salts).
enum SpoolRecord: Sendable, Equatable {
    /// Frames of one transaction: (pgno, where the page is) in WAL order.
    case frames(txid: UInt64, pageSize: UInt32, pages: [(UInt32, SpoolPageLocation)])
    case commit(txid: UInt64, commitPages: UInt32, pageSize: UInt32, timestampMs: Int64, wal: WALPosition)
    case reset(txid: UInt64, timestampMs: Int64, wal: WALPosition)
    case snapshot(txid: UInt64, timestampMs: Int64)

    static func == (a: SpoolRecord, b: SpoolRecord) -> Bool {
        switch (a, b) {
        case let (.frames(t1, p1, x1), .frames(t2, p2, x2)):
            return t1 == t2 && p1 == p2 && x1.count == x2.count
                && zip(x1, x2).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        case let (.commit(a1, b1, c1, d1, e1), .commit(a2, b2, c2, d2, e2)):
            return a1 == a2 && b1 == b2 && c1 == c2 && d1 == d2 && e1 == e2
        case let (.reset(a1, b1, c1), .reset(a2, b2, c2)): return a1 == a2 && b1 == b2 && c1 == c2
        case let (.snapshot(a1, b1), .snapshot(a2, b2)): return a1 == a2 && b1 == b2
        default: return false
        }
    }
}

/// Reads spool segments sequentially with large reads, validating every record.
///
/// The end of the readable spool is the committed position published in the shared state;
/// bytes after it belong to a capture that has not finished (or died) and are ignored.
final class SpoolReader {
    private let spool: SpoolHandle
    private var fd: Int32 = -1
    private var fdSegment: UInt64 = 0
    private var buffer: [UInt8] = []

    init(spool: SpoolHandle) { self.spool = spool }

    /// Bytes the read buffer holds (kept between reads; `releaseBuffer` frees it).
    var bufferBytes: Int { buffer.count }

    /// Frees the read buffer: an idle database keeps no memory for reads it is not doing.
    func releaseBuffer() { buffer = [] }

    /// Frames recorded before this position have their WAL checksum chain verified; later ones
    /// only their salts. Records appended while this process runs were written into this boot's
    /// page cache by the shim, from the bytes SQLite checksummed as it wrote them (or verified
    /// by the shim when it read them back from the WAL): only a power cut or a crash of the
    /// machine can tear them, and such records are older than any process reading them after
    /// the restart. The uploader sets this to the spool's end at its first read. Verifying them
    /// again cost more instructions per commit than SQLite's own checksum (benchmarks/counts).
    var verifyBefore = SpoolPosition(segment: UInt64.max, offset: 0)

    deinit { if fd >= 0 { close(fd) } }

    private func open(segment: UInt64) throws -> Int32 {
        if fd >= 0, fdSegment == segment { return fd }
        if fd >= 0 { close(fd) }
        let path = spool.segmentPath(segment)
        fd = Glibc.open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw ReplicationError(.corruptSpool, "spool segment \(path): cannot open: \(String(cString: strerror(errno)))")
        }
        fdSegment = segment
        return fd
    }

    private func segmentSize(_ segment: UInt64) throws -> UInt64 {
        let fd = try open(segment: segment)
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw ReplicationError(.io, "fstat spool segment: \(errno)") }
        return UInt64(st.st_size)
    }

    private func readExactly(_ segment: UInt64, _ offset: UInt64, _ count: Int, into buf: UnsafeMutableRawBufferPointer)
        throws
    {
        let fd = try open(segment: segment)
        var done = 0
        while done < count {
            let n = pread(fd, buf.baseAddress! + done, count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw ReplicationError(.io, "spool segment \(spool.segmentPath(segment)): read failed: \(errno)")
            }
            if n == 0 {
                throw ReplicationError(
                    .corruptSpool, "spool segment \(spool.segmentPath(segment)) is truncated at \(offset + UInt64(done))")
            }
            done += n
        }
    }

    /// Reads one page image.
    func readPage(_ loc: SpoolPageLocation, pageSize: Int, into buf: UnsafeMutableRawBufferPointer) throws {
        try readExactly(loc.segment, loc.offset, pageSize, into: buf)
    }

    /// Visits every record from `from` up to `to` (the committed end). Segment ends before `to`
    /// come from the segment files' sizes (a segment is truncated to its committed end when the
    /// spool rotates).
    func scan(from: SpoolPosition, to: SpoolPosition, _ visit: (SpoolRecord, SpoolPosition) throws -> Void) throws {
        var pos = from
        while pos < to {
            let end: UInt64 = pos.segment == to.segment ? to.offset : try segmentSize(pos.segment)
            if pos.offset >= end {
                pos = SpoolPosition(segment: pos.segment + 1, offset: 0)
                continue
            }
            var hdr = vr_rec_header()
            let hsize = MemoryLayout<vr_rec_header>.size
            try withUnsafeMutableBytes(of: &hdr) { try readExactly(pos.segment, pos.offset, hsize, into: $0) }
            guard vr_rec_valid(&hdr, pos.segment) != 0 else {
                throw ReplicationError(
                    .corruptSpool, "spool segment \(spool.segmentPath(pos.segment)): bad record header at offset \(pos.offset)")
            }
            var next = SpoolPosition(segment: pos.segment, offset: pos.offset + UInt64(hsize))
            switch UInt32(hdr.kind) {
            case VR_REC_FRAMES:
                let pages = try readFrames(hdr, segment: pos.segment, dataOffset: next.offset, verify: pos < verifyBefore)
                next.offset += UInt64(hdr.nFrame) * UInt64(24 + hdr.pageSize)
                guard next.offset <= end else {
                    throw ReplicationError(.corruptSpool, "spool segment \(spool.segmentPath(pos.segment)): frames run past the committed end")
                }
                try visit(.frames(txid: hdr.txid, pageSize: hdr.pageSize, pages: pages), next)
            case VR_REC_COMMIT:
                let wal = WALPosition(salt1: hdr.salt1, salt2: hdr.salt2, frame: hdr.walFrame, firstFrame: hdr.firstFrame)
                try visit(.commit(txid: hdr.txid, commitPages: hdr.commitPages, pageSize: hdr.pageSize, timestampMs: hdr.timestampMs, wal: wal), next)
            case VR_REC_RESET:
                let wal = WALPosition(salt1: hdr.salt1, salt2: hdr.salt2, frame: hdr.walFrame)
                try visit(.reset(txid: hdr.txid, timestampMs: hdr.timestampMs, wal: wal), next)
            case VR_REC_SNAPSHOT:
                try visit(.snapshot(txid: hdr.txid, timestampMs: hdr.timestampMs), next)
            default:
                throw ReplicationError(.corruptSpool, "spool segment \(spool.segmentPath(pos.segment)): unknown record kind \(hdr.kind)")
            }
            pos = next
        }
    }

    /// Validates the WAL checksum chain and salts of a FRAMES record and returns its pages.
    private func readFrames(_ hdr: vr_rec_header, segment: UInt64, dataOffset: UInt64, verify: Bool) throws
        -> [(UInt32, SpoolPageLocation)]
    {
        let frameSize = 24 + Int(hdr.pageSize)
        let bigEnd: Int32 = (UInt32(hdr.flags) & VR_FRAMES_BIGENDIAN_CKSUM) != 0 ? 1 : 0
        var ck: [UInt32] = [hdr.ck1, hdr.ck2]
        var out: [(UInt32, SpoolPageLocation)] = []
        out.reserveCapacity(Int(hdr.nFrame))
        let perRead = max(1, (1 << 20) / frameSize)
        let total = Int(hdr.nFrame)
        // Sized by what this record needs, up to 1 MiB: a database of small transactions holds a
        // few KiB, not a zero-filled MiB (1000 idle databases held 1 GiB that way).
        let need = min(perRead, max(total, 1)) * frameSize
        if buffer.count < need { buffer = [UInt8](repeating: 0, count: need) }
        var i = 0
        while i < total {
            let k = min(perRead, total - i)
            let base = dataOffset + UInt64(i * frameSize)
            try buffer.withUnsafeMutableBytes { buf in
                try readExactly(segment, base, k * frameSize, into: buf)
                for j in 0..<k {
                    let f = buf.baseAddress! + j * frameSize
                    let pgno = UInt32(bigEndianBytes: f)
                    let s1 = UInt32(bigEndianBytes: f + 8), s2 = UInt32(bigEndianBytes: f + 12)
                    guard s1 == hdr.salt1, s2 == hdr.salt2 else {
                        throw ReplicationError(.corruptSpool, "spool segment \(spool.segmentPath(segment)): frame salts differ at offset \(base + UInt64(j * frameSize))")
                    }
                    if verify {
                        ck.withUnsafeMutableBufferPointer { c in
                            vr_wal_checksum(bigEnd, f, 8, c.baseAddress!)
                            vr_wal_checksum(bigEnd, f + 24, Int(hdr.pageSize), c.baseAddress!)
                        }
                    }
                    guard !verify || (ck[0] == UInt32(bigEndianBytes: f + 16) && ck[1] == UInt32(bigEndianBytes: f + 20)) else {
                        throw ReplicationError(
                            .corruptSpool, "spool segment \(spool.segmentPath(segment)): WAL checksum mismatch at offset \(base + UInt64(j * frameSize)) (torn or corrupted record)")
                    }
                    out.append((pgno, SpoolPageLocation(segment: segment, offset: base + UInt64(j * frameSize) + 24)))
                }
            }
            i += k
        }
        return out
    }
}

extension UInt32 {
    @inline(__always)
    init(bigEndianBytes p: UnsafeMutableRawPointer) {
        self = UInt32(p.load(as: UInt8.self)) << 24 | UInt32(p.load(fromByteOffset: 1, as: UInt8.self)) << 16
            | UInt32(p.load(fromByteOffset: 2, as: UInt8.self)) << 8 | UInt32(p.load(fromByteOffset: 3, as: UInt8.self))
    }
}
