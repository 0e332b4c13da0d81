internal import CLZ4

/// LZ4 compression of single pages, in the two forms LTX files use.
///
/// Frames are written as ltx <= 0.5.1 (pierrec/lz4) wrote them: independent blocks of at
/// most 64 KiB and a content checksum, so the frame ends in exactly 8 bytes (end mark +
/// checksum) — the footer size ltx's decoder expects. https://github.com/lz4/lz4/blob/dev/doc/lz4_Frame_format.md
enum LZ4Pages {
    private static func framePreferences() -> LZ4F_preferences_t {
        var prefs = LZ4F_preferences_t()
        prefs.frameInfo.blockSizeID = LZ4F_max64KB
        prefs.frameInfo.blockMode = LZ4F_blockIndependent
        prefs.frameInfo.contentChecksumFlag = LZ4F_contentChecksumEnabled
        prefs.compressionLevel = 0
        return prefs
    }

    static func frameBound(pageSize: Int) -> Int {
        var prefs = framePreferences()
        return Int(LZ4F_compressFrameBound(pageSize, &prefs))
    }

    static func blockBound(pageSize: Int) -> Int {
        Int(LZ4_compressBound(Int32(pageSize)))
    }

    /// Compresses `page` as one LZ4 frame into `dst`; returns the frame size.
    static func compressFrame(_ page: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws
        -> Int
    {
        var prefs = framePreferences()
        let n = LZ4F_compressFrame(dst.baseAddress, dst.count, page.baseAddress, page.count, &prefs)
        if LZ4F_isError(n) != 0 {
            throw ReplicationError(.io, "lz4 frame compression failed: \(String(cString: LZ4F_getErrorName(n)))")
        }
        return n
    }

    /// Compresses `page` as a raw LZ4 block into `dst`; returns the block size.
    static func compressBlock(_ page: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = LZ4_compress_default(
            page.baseAddress!.assumingMemoryBound(to: CChar.self), dst.baseAddress!.assumingMemoryBound(to: CChar.self),
            Int32(page.count), Int32(dst.count))
        if n <= 0 { throw ReplicationError(.io, "lz4 block compression failed") }
        return Int(n)
    }

    /// Decompresses a raw block that must expand to exactly `dst.count` bytes.
    static func decompressBlock(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer)
        throws(LTXFormatError)
    {
        let n = LZ4_decompress_safe(
            src.baseAddress?.assumingMemoryBound(to: CChar.self), dst.baseAddress!.assumingMemoryBound(to: CChar.self),
            Int32(src.count), Int32(dst.count))
        if n < 0 { throw LTXFormatError("corrupt LZ4 block") }
        if Int(n) != dst.count { throw LTXFormatError("LZ4 block expands to \(n) bytes, expected \(dst.count)") }
    }

    /// Length of the LZ4 frame at the start of `bytes`, or nil if `bytes` does not hold all of it
    /// yet. Throws on a malformed frame. Walks the frame descriptor and block sizes only.
    static func frameLength(_ bytes: UnsafeRawBufferPointer) throws(LTXFormatError) -> Int? {
        guard bytes.count >= 7 else { return nil }
        let magic = UInt32(littleEndian: bytes.loadUnaligned(as: UInt32.self))
        guard magic == 0x184D_2204 else { throw LTXFormatError("page data is not an LZ4 frame") }
        let flg = bytes[4]
        guard flg >> 6 == 1 else { throw LTXFormatError("unsupported LZ4 frame version") }
        let blockChecksum = flg & 0x10 != 0
        let contentSize = flg & 0x08 != 0
        let contentChecksum = flg & 0x04 != 0
        let dictID = flg & 0x01 != 0
        var pos = 4 + 2 + (contentSize ? 8 : 0) + (dictID ? 4 : 0) + 1
        while true {
            guard bytes.count >= pos + 4 else { return nil }
            let word = UInt32(littleEndian: bytes.loadUnaligned(fromByteOffset: pos, as: UInt32.self))
            pos += 4
            if word == 0 { break }
            pos += Int(word & 0x7FFF_FFFF) + (blockChecksum ? 4 : 0)
        }
        pos += contentChecksum ? 4 : 0
        return bytes.count >= pos ? pos : nil
    }

    /// Decompresses whole LZ4 frames with one reusable context.
    final class FrameDecoder {
        private var context: OpaquePointer?

        init() throws {
            var ctx: OpaquePointer?
            let r = LZ4F_createDecompressionContext(&ctx, UInt32(LZ4F_VERSION))
            if LZ4F_isError(r) != 0 { throw ReplicationError(.io, "cannot create an LZ4 decompression context") }
            context = ctx
        }

        deinit { LZ4F_freeDecompressionContext(context) }

        /// Decodes the complete frame `src`, which must expand to exactly `dst.count` bytes.
        func decode(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer) throws(LTXFormatError) {
            LZ4F_resetDecompressionContext(context)
            var consumed = 0
            var produced = 0
            var hint = 1
            while hint != 0 {
                var dstSize = dst.count - produced
                var srcSize = src.count - consumed
                hint = LZ4F_decompress(
                    context, dst.baseAddress! + produced, &dstSize, src.baseAddress! + consumed, &srcSize, nil)
                if LZ4F_isError(hint) != 0 {
                    throw LTXFormatError("corrupt LZ4 frame: \(String(cString: LZ4F_getErrorName(hint)))")
                }
                consumed += srcSize
                produced += dstSize
                if hint != 0 && srcSize == 0 && dstSize == 0 {
                    throw LTXFormatError(
                        produced == dst.count ? "LZ4 frame expands past one page" : "truncated LZ4 frame")
                }
            }
            if produced != dst.count {
                throw LTXFormatError("LZ4 frame expands to \(produced) bytes, expected \(dst.count)")
            }
            if consumed != src.count { throw LTXFormatError("trailing bytes after LZ4 frame") }
        }
    }
}
