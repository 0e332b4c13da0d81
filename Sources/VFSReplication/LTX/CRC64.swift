/// CRC-64 with the ISO 3309 polynomial, bit-reflected, initial value and final XOR all ones
/// — the variant Go's `hash/crc64` computes with `crc64.ISO`, and the one LTX uses for file and
/// page checksums.
///
/// ```swift
/// var crc = CRC64()
/// crc.update([UInt8]("1234".utf8))
/// crc.update([UInt8]("56789".utf8))
/// assert(crc.value == 0xb909_56c7_75a4_1001)
/// ```
///
/// The update loop uses slicing-by-8 (eight 256-entry tables, one 64-bit load per 8 bytes).
/// See https://github.com/superfly/ltx (checksum.go) for where LTX uses it.
public struct CRC64: Sendable, Equatable {
    /// The reflected ISO polynomial (x^64 + x^4 + x^3 + x + 1).
    public static let isoPolynomial: UInt64 = 0xD800_0000_0000_0000

    /// Running register (already inverted; `value` undoes the inversion).
    private var register: UInt64 = ~0

    public init() {}

    /// The CRC of everything passed to `update` so far.
    public var value: UInt64 { ~register }

    public mutating func reset() { register = ~0 }

    public mutating func update(_ buffer: UnsafeRawBufferPointer) {
        register = CRC64.advance(register, buffer)
    }

    public mutating func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    public mutating func update(_ bytes: ArraySlice<UInt8>) {
        bytes.withUnsafeBytes { update($0) }
    }

    /// Feeds `value` as 4 big-endian bytes (how LTX prefixes page numbers).
    public mutating func updateBigEndian(_ value: UInt32) {
        withUnsafeBytes(of: value.bigEndian) { update($0) }
    }

    /// One-shot CRC of `bytes`.
    public static func checksum(_ bytes: [UInt8]) -> UInt64 {
        var crc = CRC64()
        crc.update(bytes)
        return crc.value
    }

    public static func checksum(_ buffer: UnsafeRawBufferPointer) -> UInt64 {
        var crc = CRC64()
        crc.update(buffer)
        return crc.value
    }

    /// The CRC of A followed by B, from `crcA` = CRC(A), `crcB` = CRC(B) and B's length, without
    /// the bytes (the zlib `crc32_combine` method: multiply by x^(8 * lengthB) in GF(2) with
    /// repeated squaring of the one-zero-bit operator). Lets an encoder rewrite a header after
    /// the pages without hashing them again.
    public static func combine(_ crcA: UInt64, _ crcB: UInt64, lengthB: Int64) -> UInt64 {
        guard lengthB > 0 else { return crcA }
        func times(_ matrix: [UInt64], _ vector: UInt64) -> UInt64 {
            var sum: UInt64 = 0
            var v = vector
            var i = 0
            while v != 0 {
                if v & 1 != 0 { sum ^= matrix[i] }
                v >>= 1
                i += 1
            }
            return sum
        }
        func square(_ matrix: [UInt64]) -> [UInt64] { matrix.map { times(matrix, $0) } }
        var odd = [UInt64](repeating: 0, count: 64)  // one zero bit
        odd[0] = isoPolynomial
        for n in 1..<64 { odd[n] = 1 << UInt64(n - 1) }
        var even = square(odd)  // two zero bits
        odd = square(even)  // four zero bits
        var crc = crcA
        var length = lengthB
        while true {
            even = square(odd)  // one more doubling: first 8 bits, i.e. one zero byte
            if length & 1 != 0 { crc = times(even, crc) }
            length >>= 1
            if length == 0 { break }
            odd = square(even)
            if length & 1 != 0 { crc = times(odd, crc) }
            length >>= 1
            if length == 0 { break }
        }
        return crc ^ crcB
    }

    // MARK: - Tables

    /// 8 x 256 entries; table k maps a byte to its contribution k bytes further on.
    private static let tables: [UInt64] = {
        var t = [UInt64](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var crc = UInt64(i)
            for _ in 0..<8 {
                crc = (crc & 1) != 0 ? (crc >> 1) ^ isoPolynomial : crc >> 1
            }
            t[i] = crc
        }
        for k in 1..<8 {
            for i in 0..<256 {
                let prev = t[(k - 1) * 256 + i]
                t[k * 256 + i] = (prev >> 8) ^ t[Int(prev & 0xFF)]
            }
        }
        return t
    }()

    private static func advance(_ start: UInt64, _ buffer: UnsafeRawBufferPointer) -> UInt64 {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return start }
        return tables.withUnsafeBufferPointer { tp -> UInt64 in
            let t = tp.baseAddress!
            var crc = start
            var p = base
            var n = buffer.count
            while n >= 8 {
                crc ^= UInt64(littleEndian: p.loadUnaligned(as: UInt64.self))
                crc =
                    t[0x700 + Int(crc & 0xFF)] ^ t[0x600 + Int((crc >> 8) & 0xFF)]
                    ^ t[0x500 + Int((crc >> 16) & 0xFF)] ^ t[0x400 + Int((crc >> 24) & 0xFF)]
                    ^ t[0x300 + Int((crc >> 32) & 0xFF)] ^ t[0x200 + Int((crc >> 40) & 0xFF)]
                    ^ t[0x100 + Int((crc >> 48) & 0xFF)] ^ t[Int(crc >> 56)]
                p += 8
                n -= 8
            }
            while n > 0 {
                let byte = p.load(as: UInt8.self)
                crc = t[Int((crc ^ UInt64(byte)) & 0xFF)] ^ (crc >> 8)
                p += 1
                n -= 1
            }
            return crc
        }
    }
}
