import Foundation

/// Constants of the LTX file format (version 3, as written by Litestream 0.5).
///
/// See docs/ARCHITECTURE.md ("LTX files") and https://github.com/superfly/ltx (ltx.go).
public enum LTX {
    public static let magic: [UInt8] = Array("LTX1".utf8)
    public static let headerSize = 100
    public static let pageHeaderSize = 6
    public static let trailerSize = 16
    /// Set on every checksum (file, page, database) so that a real checksum is never zero.
    public static let checksumFlag: UInt64 = 1 << 63
    /// SQLite's PENDING_BYTE: the page that holds it (the lock page) is never stored.
    public static let pendingByte: Int64 = 0x4000_0000

    /// Page number of the lock page for a page size (https://www.sqlite.org/fileformat.html#the_lock_byte_page).
    public static func lockPageNumber(pageSize: UInt32) -> UInt32 {
        UInt32(pendingByte / Int64(pageSize)) + 1
    }

    /// True for 512, 1024, ..., 65536.
    public static func isValidPageSize(_ size: UInt32) -> Bool {
        size >= 512 && size <= 65536 && (size & (size - 1)) == 0
    }
}

/// The 100-byte header of an LTX file. All integers are big-endian on disk.
///
/// ```swift
/// let h = LTXHeader(pageSize: 4096, commit: 2, minTXID: 1, maxTXID: 1, timestamp: Date())
/// let bytes = h.encoded()            // 100 bytes starting with "LTX1"
/// let back = try LTXHeader(decoding: bytes)
/// ```
public struct LTXHeader: Sendable, Equatable {
    public struct Flags: OptionSet, Sendable, Hashable {
        public let rawValue: UInt32
        public init(rawValue: UInt32) { self.rawValue = rawValue }
        /// Pre/post-apply database checksums are not tracked (both must be zero).
        public static let noChecksum = Flags(rawValue: 1 << 1)
        /// Every flag this implementation (and ltx v0.5) knows.
        public static let known: Flags = [.noChecksum]
    }

    public var flags: Flags
    public var pageSize: UInt32
    /// Database size in pages after applying the file.
    public var commit: UInt32
    public var minTXID: UInt64
    public var maxTXID: UInt64
    /// Milliseconds since the Unix epoch.
    public var timestamp: Int64
    /// Database checksum before applying the file (0 for snapshots and when `noChecksum`).
    public var preApplyChecksum: UInt64
    public var walOffset: Int64
    public var walSize: Int64
    public var walSalt1: UInt32
    public var walSalt2: UInt32
    public var nodeID: UInt64
    /// Our database checksums in the header's reserved bytes (see `DatabaseChecksums`), nil when
    /// the file carries none (Litestream's files, files written before they were added).
    public var checksums: DatabaseChecksums?

    /// Pre/post-apply database checksums kept in the 20 reserved header bytes (80...99): the tag
    /// "vrck", the pre-apply checksum (0 for a snapshot), the post-apply checksum, big-endian.
    ///
    /// Why not the format's own fields: every Litestream 0.5 restore (0.5.17, ltx 0.5.2) merges
    /// its files through ltx's compactor with NoChecksum set on the output and the last input's
    /// post-apply checksum copied into it, whose trailer validation then rejects any non-zero
    /// value (LTXInteropTests.litestreamRejectsFilesWithRealChecksums). So our files keep the
    /// NoChecksum flag and zero format checksums, and carry the same values, computed exactly as
    /// the format defines them (`LTXDatabaseChecksum`), where ltx ignores them: the reserved bytes
    /// are covered by the file checksum and not checked by ltx's decoder.
    public struct DatabaseChecksums: Sendable, Equatable {
        public var pre: UInt64
        public var post: UInt64
        public init(pre: UInt64, post: UInt64) {
            self.pre = pre
            self.post = post
        }
        static let tag: [UInt8] = Array("vrck".utf8)
        static let offset = 80
    }

    public init(
        flags: Flags = .noChecksum, pageSize: UInt32, commit: UInt32, minTXID: UInt64, maxTXID: UInt64,
        timestamp: Int64, preApplyChecksum: UInt64 = 0, walOffset: Int64 = 0, walSize: Int64 = 0,
        walSalt1: UInt32 = 0, walSalt2: UInt32 = 0, nodeID: UInt64 = 0, checksums: DatabaseChecksums? = nil
    ) {
        self.flags = flags
        self.pageSize = pageSize
        self.commit = commit
        self.minTXID = minTXID
        self.maxTXID = maxTXID
        self.timestamp = timestamp
        self.preApplyChecksum = preApplyChecksum
        self.walOffset = walOffset
        self.walSize = walSize
        self.walSalt1 = walSalt1
        self.walSalt2 = walSalt2
        self.nodeID = nodeID
        self.checksums = checksums
    }

    /// Convenience initializer taking a `Date` (stored with millisecond precision).
    public init(
        flags: Flags = .noChecksum, pageSize: UInt32, commit: UInt32, minTXID: UInt64, maxTXID: UInt64,
        timestamp: Date, preApplyChecksum: UInt64 = 0
    ) {
        self.init(
            flags: flags, pageSize: pageSize, commit: commit, minTXID: minTXID, maxTXID: maxTXID,
            timestamp: LTXHeader.milliseconds(timestamp), preApplyChecksum: preApplyChecksum)
    }

    /// A snapshot holds every page 1...commit (except the lock page): exactly when minTXID is 1.
    public var isSnapshot: Bool { minTXID == 1 }
    public var noChecksum: Bool { flags.contains(.noChecksum) }
    public var lockPageNumber: UInt32 { LTX.lockPageNumber(pageSize: pageSize) }
    public var date: Date { Date(timeIntervalSince1970: Double(timestamp) / 1000) }

    /// The database checksum this file expects before it is applied, if it says (the format's
    /// field, else ours); 0 for a snapshot with checksums.
    public var expectedPreApplyChecksum: UInt64? {
        if !noChecksum { return preApplyChecksum }
        return checksums?.pre
    }

    /// The database checksum after applying this file, if it carries one (the trailer's field
    /// when the header tracks checksums, else ours).
    public func postApplyChecksum(_ trailer: LTXTrailer?) -> UInt64? {
        if !noChecksum { return trailer?.postApplyChecksum }
        return checksums?.post
    }

    public static func milliseconds(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
    }

    /// The 100 on-disk bytes.
    public func encoded() -> [UInt8] {
        var b = [UInt8]()
        b.reserveCapacity(LTX.headerSize)
        b += LTX.magic
        b.ltxAppendBigEndian(flags.rawValue)
        b.ltxAppendBigEndian(pageSize)
        b.ltxAppendBigEndian(commit)
        b.ltxAppendBigEndian(minTXID)
        b.ltxAppendBigEndian(maxTXID)
        b.ltxAppendBigEndian(UInt64(bitPattern: timestamp))
        b.ltxAppendBigEndian(preApplyChecksum)
        b.ltxAppendBigEndian(UInt64(bitPattern: walOffset))
        b.ltxAppendBigEndian(UInt64(bitPattern: walSize))
        b.ltxAppendBigEndian(walSalt1)
        b.ltxAppendBigEndian(walSalt2)
        b.ltxAppendBigEndian(nodeID)
        if let checksums {
            b += DatabaseChecksums.tag
            b.ltxAppendBigEndian(checksums.pre)
            b.ltxAppendBigEndian(checksums.post)
        }
        b += [UInt8](repeating: 0, count: LTX.headerSize - b.count)
        return b
    }

    /// Parses and validates a header. Throws `LTXFormatError` describing the problem.
    public init(decoding bytes: [UInt8]) throws(LTXFormatError) {
        guard bytes.count >= LTX.headerSize else {
            throw LTXFormatError("header is \(bytes.count) bytes, expected \(LTX.headerSize)")
        }
        guard Array(bytes[0..<4]) == LTX.magic else {
            // A sealed object (EncryptedReplicaClient) read without the replica's encryption.
            if bytes.starts(with: SealedObject.magic) {
                throw LTXFormatError(
                    "encrypted (a sealed replica object): configure the replica's 'encryption' keys to read it")
            }
            throw LTXFormatError("bad magic (not an LTX file)")
        }
        self.init(
            flags: Flags(rawValue: bytes.ltxUInt32(at: 4)),
            pageSize: bytes.ltxUInt32(at: 8),
            commit: bytes.ltxUInt32(at: 12),
            minTXID: bytes.ltxUInt64(at: 16),
            maxTXID: bytes.ltxUInt64(at: 24),
            timestamp: Int64(bitPattern: bytes.ltxUInt64(at: 32)),
            preApplyChecksum: bytes.ltxUInt64(at: 40),
            walOffset: Int64(bitPattern: bytes.ltxUInt64(at: 48)),
            walSize: Int64(bitPattern: bytes.ltxUInt64(at: 56)),
            walSalt1: bytes.ltxUInt32(at: 64),
            walSalt2: bytes.ltxUInt32(at: 68),
            nodeID: bytes.ltxUInt64(at: 72))
        let at = DatabaseChecksums.offset
        if Array(bytes[at..<(at + 4)]) == DatabaseChecksums.tag {
            checksums = DatabaseChecksums(pre: bytes.ltxUInt64(at: at + 4), post: bytes.ltxUInt64(at: at + 12))
        }
        try validate()
    }

    /// The same rules ltx v0.5 applies, so that what we write Litestream accepts.
    public func validate() throws(LTXFormatError) {
        if !Flags.known.isSuperset(of: flags) {
            throw LTXFormatError("unknown header flags 0x\(String(flags.rawValue, radix: 16))")
        }
        if !LTX.isValidPageSize(pageSize) { throw LTXFormatError("invalid page size \(pageSize)") }
        if minTXID == 0 || maxTXID == 0 { throw LTXFormatError("TXID 0 in header") }
        if minTXID > maxTXID { throw LTXFormatError("min TXID \(hex16(minTXID)) > max TXID \(hex16(maxTXID))") }
        if walOffset < 0 || walSize < 0 { throw LTXFormatError("negative WAL offset or size") }
        if (walSalt1 != 0 || walSalt2 != 0) && walOffset == 0 { throw LTXFormatError("WAL salt without WAL offset") }
        if walOffset == 0 && walSize != 0 { throw LTXFormatError("WAL size without WAL offset") }
        if isSnapshot {
            if preApplyChecksum != 0 { throw LTXFormatError("snapshot with a pre-apply checksum") }
        } else if noChecksum {
            if preApplyChecksum != 0 { throw LTXFormatError("pre-apply checksum set although NoChecksum") }
        } else if preApplyChecksum & LTX.checksumFlag == 0 {
            throw LTXFormatError("missing or malformed pre-apply checksum")
        }
        if let checksums {
            let preValid = isSnapshot ? checksums.pre == 0 : checksums.pre & LTX.checksumFlag != 0
            guard preValid, checksums.post & LTX.checksumFlag != 0 else {
                throw LTXFormatError(
                    "malformed database checksums in the header (pre \(hex16(checksums.pre)), post \(hex16(checksums.post)))")
            }
        }
    }
}

/// The 16-byte trailer: post-apply database checksum and file checksum.
public struct LTXTrailer: Sendable, Equatable {
    public var postApplyChecksum: UInt64
    public var fileChecksum: UInt64
    public init(postApplyChecksum: UInt64, fileChecksum: UInt64) {
        self.postApplyChecksum = postApplyChecksum
        self.fileChecksum = fileChecksum
    }
}

/// How page data is compressed in a page frame.
public enum LTXPageEncoding: Sendable, Equatable {
    /// Page flags 0, then a complete LZ4 frame: readable by every Litestream 0.5.x.
    case lz4Frame
    /// Page flags 0x1, a big-endian u32 size, then a raw LZ4 block (ltx >= 0.5.2, Litestream >= 0.5.16).
    case lz4Block

    /// Page-header flag that announces the size-prefixed block form.
    public static let sizeFlag: UInt16 = 1 << 0
}

/// A structural problem in LTX bytes, without the file name (callers add it).
public struct LTXFormatError: Error, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

// MARK: - Byte helpers

extension Array where Element == UInt8 {
    @inline(__always)
    mutating func ltxAppendBigEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.bigEndian) { append(contentsOf: $0) }
    }

    /// Appends `value` as an unsigned LEB128 varint (Go's `binary.AppendUvarint`).
    @inline(__always)
    mutating func ltxAppendUvarint(_ value: UInt64) {
        var v = value
        while v >= 0x80 {
            append(UInt8(truncatingIfNeeded: v) | 0x80)
            v >>= 7
        }
        append(UInt8(v))
    }

    func ltxUInt32(at offset: Int) -> UInt32 {
        var v: UInt32 = 0
        for i in 0..<4 { v = v << 8 | UInt32(self[offset + i]) }
        return v
    }

    func ltxUInt64(at offset: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<8 { v = v << 8 | UInt64(self[offset + i]) }
        return v
    }
}
