import Testing

@testable import VFSReplication

/// `CRC64.combine` against the bytes it stands for, and against the matrix method it replaced.
@Suite("CRC-64 combine")
struct CRC64Tests {
    /// The previous implementation (64x64 GF(2) operator matrices squared for every bit of the
    /// length), kept as an independent reference for lengths too large to hash.
    static func matrixCombine(_ crcA: UInt64, _ crcB: UInt64, lengthB: Int64) -> UInt64 {
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
        odd[0] = CRC64.isoPolynomial
        for n in 1..<64 { odd[n] = 1 << UInt64(n - 1) }
        var even = square(odd)  // two zero bits
        odd = square(even)  // four zero bits
        var crc = crcA
        var length = lengthB
        while true {
            even = square(odd)
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

    static func bytes(_ random: inout RestoreFuzzTests.Random, _ count: Int) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var i = 0
        while i < count {
            var word = random.next()
            for _ in 0..<min(8, count - i) {
                out[i] = UInt8(truncatingIfNeeded: word)
                word >>= 8
                i += 1
            }
        }
        return out
    }

    @Test func combineOfTheCheckStringSplit() {
        let whole = Array("123456789".utf8)
        for split in 0...whole.count {
            let a = Array(whole[..<split])
            let b = Array(whole[split...])
            #expect(
                CRC64.combine(CRC64.checksum(a), CRC64.checksum(b), lengthB: Int64(b.count)) == 0xb909_56c7_75a4_1001,
                "split \(split)")
        }
    }

    @Test func combineEqualsTheCRCOfTheConcatenation() {
        var random = RestoreFuzzTests.Random(state: 0x13)
        let fixed = [0, 1, 7, 8, 9, 63, 64, 65, 4095, 4096, 4097, 65_536, 1 << 20]
        var pairs: [(Int, Int)] = []
        for a in [0, 1, 7, 8, 4096] { for b in fixed { pairs.append((a, b)) } }
        for b in [0, 1, 7, 8, 4096] { pairs.append((1 << 20, b)) }
        for _ in 0..<200 { pairs.append((random.below(20_000), random.below(20_000))) }
        for (lengthA, lengthB) in pairs {
            let a = Self.bytes(&random, lengthA)
            let b = Self.bytes(&random, lengthB)
            let combined = CRC64.combine(CRC64.checksum(a), CRC64.checksum(b), lengthB: Int64(lengthB))
            #expect(combined == CRC64.checksum(a + b), "A \(lengthA) bytes, B \(lengthB) bytes")
        }
    }

    @Test func combineMatchesTheMatrixMethodAtAnyLength() {
        var random = RestoreFuzzTests.Random(state: 0x64)
        var lengths: [Int64] = [0, 1, 2, 7, 8, 100, 4096, 1 << 20, 1 << 31, 1 << 32, (1 << 40) + 12_345]
        lengths += [1 << 62, Int64.max - 1, Int64.max]
        for _ in 0..<40 { lengths.append(Int64(bitPattern: (random.next() >> UInt64(random.below(64))) >> 1)) }
        for length in lengths {
            let crcA = random.next()
            let crcB = random.next()
            #expect(
                CRC64.combine(crcA, crcB, lengthB: length) == Self.matrixCombine(crcA, crcB, lengthB: length),
                "length \(length)")
        }
        // Fixed inputs: the values the matrix method gave before it was replaced.
        let fixed: [(UInt64, UInt64, Int64, UInt64)] = [
            (0x0123_4567_89AB_CDEF, 0, 1, 0x8B91_2345_6789_ABCD),
            (0x0123_4567_89AB_CDEF, 0xFEDC_BA98_7654_3210, 4096, 0x3989_3C2D_4200_FF81),
            (~0, ~0, 123_456_789, 0x6948_AE6F_4580_F875),
            (0x8000_0000_0000_0000, 0, 1 << 40, 0x8C08_048B_8412_DB18),
            (~0, ~0, Int64.max, 0x5000_0000_0000_0004),
        ]
        for (crcA, crcB, length, expected) in fixed {
            #expect(Self.matrixCombine(crcA, crcB, lengthB: length) == expected, "length \(length)")
            #expect(CRC64.combine(crcA, crcB, lengthB: length) == expected, "length \(length)")
        }
    }

    /// Splitting B into B1 + B2 gives the same result, for lengths far past what a test can hash:
    /// combine(combine(a, b1, n1), b2, n2) == combine(a, combine(b1, b2, n2), n1 + n2).
    @Test func combineIsAssociativeForLargeLengths() {
        var random = RestoreFuzzTests.Random(state: 0xA5)
        for _ in 0..<100 {
            let n1 = Int64(random.next() >> 2)
            let n2 = Int64(random.next() >> UInt64(2 + random.below(60)))
            let a = random.next()
            let b1 = random.next()
            let b2 = random.next()
            let left = CRC64.combine(CRC64.combine(a, b1, lengthB: n1), b2, lengthB: n2)
            let right = CRC64.combine(a, CRC64.combine(b1, b2, lengthB: n2), lengthB: n1 + n2)
            #expect(left == right, "n1 \(n1), n2 \(n2)")
        }
    }
}
