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
    /// the bytes. Lets an encoder rewrite a header after the pages without hashing them again.
    ///
    /// Appending n zero bytes to A multiplies its CRC register by x^(8n) modulo the polynomial, and
    /// the all-ones initial value and final XOR cancel out between the two halves, so
    /// CRC(A + B) = CRC(A) * x^(8n) mod P xor CRC(B). x^(8n) is built by square-and-multiply from
    /// `powers` (x^(8 * 2^k) mod P, computed once), one GF(2) product per set bit of n: a few
    /// thousand instructions for a file, no allocation. (zlib's crc32_combine works the same way
    /// since 1.2.12; written here for 64 bits because no package we may use combines CRC-64s.)
    public static func combine(_ crcA: UInt64, _ crcB: UInt64, lengthB: Int64) -> UInt64 {
        guard lengthB > 0 else { return crcA }
        var power = xPowerZero
        var n = UInt64(lengthB)
        var k = 0
        while n != 0 {
            if n & 1 != 0 { power = multiply(power, powers[k]) }
            n >>= 1
            k += 1
        }
        return multiply(power, crcA) ^ crcB
    }

    /// x^0 in the reflected representation: the coefficient of x^i is bit 63 - i.
    private static let xPowerZero: UInt64 = 1 << 63

    /// a * b mod P for polynomials in the reflected representation. Walks a's coefficients from
    /// x^0 up while `b` is multiplied by x (one shift right, reduced by P when x^63 falls out).
    private static func multiply(_ a: UInt64, _ b: UInt64) -> UInt64 {
        var product: UInt64 = 0
        var a = a
        var b = b
        while a != 0 {
            if a & xPowerZero != 0 { product ^= b }
            a <<= 1
            b = b & 1 != 0 ? (b >> 1) ^ isoPolynomial : b >> 1
        }
        return product
    }

    /// powers[k] = x^(8 * 2^k) mod P, k = 0..<63: one entry per bit of a positive Int64 length.
    private static let powers: [UInt64] = {
        var table = [UInt64](repeating: 0, count: 63)
        var p = xPowerZero >> 8  // x^8
        for k in 0..<63 {
            table[k] = p
            p = multiply(p, p)
        }
        return table
    }()

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
