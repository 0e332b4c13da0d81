import CVFSShim
import Foundation
import Testing

@testable import VFSReplication

/// The shim's CRC-32C (record headers) against the check value of the Castagnoli CRC and a
/// bitwise reference, at every length around the 8-byte steps of the crc32 instruction.
@Suite("CRC-32C")
struct CRC32CTests {
    static func reference(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes {
            c ^= UInt32(b)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        }
        return ~c
    }

    @Test func matchesTheCheckValueAndABitwiseReference() {
        let check = Array("123456789".utf8)
        #expect(vr_crc32c(0, check, check.count) == 0xE306_9283)
        var rng = SystemRandomNumberGenerator()
        for n in Array(0...70) + [4096, 4096 + 24, 65_537] {
            let bytes = (0..<n).map { _ in UInt8.random(in: 0...255, using: &rng) }
            #expect(vr_crc32c(0, bytes, n) == Self.reference(bytes), "length \(n)")
            // Chained: a CRC continued over a second part equals the CRC of the whole.
            let cut = n / 3
            let first = vr_crc32c(0, Array(bytes[..<cut]), cut)
            #expect(vr_crc32c(first, Array(bytes[cut...]), n - cut) == Self.reference(bytes), "length \(n) cut at \(cut)")
        }
    }
}
