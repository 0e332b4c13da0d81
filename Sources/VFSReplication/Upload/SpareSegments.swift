internal import CVFSShim
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Pre-touched spare segments for a database that writes faster than shipped segments come
/// back as spares.
///
/// A commit's spool append into fresh file pages costs about twice an append into pages that
/// were written before (benchmarks/README.md "Spool appends"). Shipped segments are reused
/// (`DatabaseUploader.trimSpool`), but they come back once per shipment: a writer filling a
/// 16 MiB segment in less than a second outruns them. Then the uploader's thread, on its own
/// core, writes a segment's worth of zeros into a new file, syncs it (so that the writer's next
/// spool sync does not write those zeros back) and offers it as a spare; the writer's appends
/// then overwrite clean, cached, allocated pages. Never with `spool-max-bytes` (its bound counts
/// bytes on disk).
struct SparePolicy: Equatable {
    /// Writers slower than this are served by reused segments alone.
    static let busyBytesPerSecond: UInt64 = 8 << 20

    private(set) var lastSegment: UInt64 = 0
    private(set) var lastRotationMs: Int64 = 0
    private(set) var busyUntilMs: Int64 = 0

    /// Called on every uploader round with the append segment; `finishedBytes` is the size of
    /// the segment the writer left when it rotated (the shim cuts it to its committed end).
    /// Returns whether a spare should be prepared now.
    mutating func observe(appendSegment: UInt64, nowMs: Int64, finishedBytes: () -> UInt64?, spares: () -> Int)
        -> Bool
    {
        if appendSegment != lastSegment {
            if lastSegment != 0, appendSegment == lastSegment + 1, lastRotationMs > 0,
                let bytes = finishedBytes()
            {
                let elapsedMs = UInt64(max(1, nowMs - lastRotationMs))
                if bytes * 1000 / elapsedMs >= Self.busyBytesPerSecond { busyUntilMs = nowMs + 2000 }
            }
            lastSegment = appendSegment
            lastRotationMs = nowMs
        }
        return nowMs < busyUntilMs && spares() < Int(VR_SPARES_MAX)
    }
}

enum SpareSegments {
    /// Writes a zero-filled, synced segment of `bytes` and offers it as a spare. Returns whether
    /// a slot took it (false also on any I/O error: the writer then appends to fresh pages,
    /// as it would without spares).
    static func prepare(spool: SpoolHandle, bytes: UInt64) -> Bool {
        let tmp = spool.spareTempPath
        guard let fd = try? LTXIO.open(tmp, O_RDWR | O_CREAT | O_TRUNC) else { return false }
        var ok = true
        var off: UInt64 = 0
        zeros.withUnsafeBytes { z in
            while ok && off < bytes {
                let n = Int(min(UInt64(z.count), bytes - off))
                ok = (try? LTXIO.pwrite(fd, UnsafeRawBufferPointer(rebasing: z[0..<n]), offset: Int64(off), path: tmp)) != nil
                off += UInt64(n)
            }
        }
        if ok { ok = fdatasync(fd) == 0 }
        LTXIO.close(fd)
        if ok && spool.offerSpare(tmp) { return true }
        unlink(tmp)
        return false
    }

    private static let zeros = [UInt8](repeating: 0, count: 1 << 20)
}
