import Foundation
import Testing

@testable import VFSReplication

/// The encrypted object format (SealedObject) in memory: round trips, every kind of tampering,
/// truncation, wrong and rotated keys, deterministic bytes, sizes.
@Suite("Sealed objects")
struct SealedObjectTests {
    let k1 = try! EncryptionKey(id: "k1", material: Array(repeating: 0x11, count: 32), source: "env:K1")
    let k2 = try! EncryptionKey(id: "k2", material: (0..<32).map { UInt8($0) }, source: "file:/run/k2")
    let name = "0/0000000000000001-0000000000000003.ltx"

    func bytes(_ count: Int, seed: UInt64 = 7) -> [UInt8] {
        var state = seed
        return (0..<count).map { _ in
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return UInt8(truncatingIfNeeded: state >> 33)
        }
    }

    func only(_ key: EncryptionKey) -> ReplicaEncryption { try! ReplicaEncryption(currentKeyID: key.id, keys: [key]) }

    @Test(arguments: [0, 1, 100, 65535, 65536, 65537, 3 * 65536, 200_000])
    func roundTripsAnySize(count: Int) throws {
        let plain = bytes(count)
        let sealed = SealedObject.seal(plain, name: name, key: k1)
        #expect(Int64(sealed.count) == SealedObject.sealedLength(plaintextLength: Int64(count)))
        #expect(SealedObject.plaintextLength(sealedLength: Int64(sealed.count)) == Int64(count))
        #expect(try SealedObject.open(sealed, name: name, encryption: only(k1), object: "o") == plain)
        #expect(!sealed.isEmpty && sealed.count > count)
        // The plaintext does not appear in the object.
        if count >= 64 {
            let window = Array(plain[0..<32])
            #expect(!(0...(sealed.count - 32)).contains { Array(sealed[$0..<($0 + 32)]) == window })
        }
    }

    @Test func sizesThatNoObjectHasAreNotTakenForPlaintextSizes() {
        #expect(SealedObject.plaintextLength(sealedLength: 10) == nil)
        #expect(SealedObject.plaintextLength(sealedLength: 64 + 28) == 0)
        #expect(SealedObject.plaintextLength(sealedLength: 64 + 65536 + 28 + 28) == nil)  // an empty last chunk
        #expect(SealedObject.plaintextLength(sealedLength: 64 + 65536 + 28 + 20) == nil)  // shorter than a tag
    }

    @Test func identicalInputGivesIdenticalBytesAndOtherInputOtherNonces() {
        let plain = bytes(150_000)
        let a = SealedObject.seal(plain, name: name, key: k1)
        #expect(a == SealedObject.seal(plain, name: name, key: k1))
        // Another name, or another key: other bytes throughout (the nonces differ).
        let renamed = SealedObject.seal(plain, name: "1/0000000000000001-0000000000000003.ltx", key: k1)
        #expect(Array(renamed[64..<76]) != Array(a[64..<76]))
        var changed = plain
        changed[70_000] ^= 1
        let b = SealedObject.seal(changed, name: name, key: k1)
        // Chunk 0 is the same plaintext at the same place: same bytes; chunk 1 differs: new nonce.
        let chunk1 = 64 + 65536 + 28
        #expect(Array(a[64..<chunk1]) == Array(b[64..<chunk1]))
        #expect(Array(a[chunk1..<(chunk1 + 12)]) != Array(b[chunk1..<(chunk1 + 12)]))
    }

    @Test func everyChangedByteFailsAuthenticationOrTheHeaderChecks() throws {
        let plain = bytes(70_000)
        let sealed = SealedObject.seal(plain, name: name, key: k1)
        // Each region: header fields, nonce, ciphertext, tag of the first and last chunk.
        let offsets = [0, 8, 9, 10, 42, 46, 53, 54, 64, 70, 76, 1000, 64 + 12 + 65536, 64 + 65564, 64 + 65564 + 12 + 5, sealed.count - 1]
        for offset in offsets {
            var bad = sealed
            bad[offset] ^= 0x40
            #expect(throws: ReplicationError.self, "byte \(offset)") {
                try SealedObject.open(bad, name: name, encryption: only(k1), object: "s3://b/x")
            }
        }
        // Ciphertext and tags fail authentication, named as such, with the object.
        var bad = sealed
        bad[100] ^= 1
        let error = try #require(throws: ReplicationError.self) {
            try SealedObject.open(bad, name: name, encryption: only(k1), object: "s3://b/0000/x.ltx")
        }
        #expect(error.code == .corruptReplicaFile)
        #expect(error.message.contains("s3://b/0000/x.ltx failed authentication"))
        #expect(error.message.contains("wrong key or tampered"))
    }

    @Test func truncatedExtendedSwappedAndRenamedObjectsAreRefused() throws {
        let plain = bytes(140_000)
        let sealed = SealedObject.seal(plain, name: name, key: k1)
        let chunk = 65536 + 28
        // Cut at a chunk boundary (as if the last chunk never arrived), or anywhere, or extended.
        for cut in [sealed.count - (140_000 - 2 * 65536 + 28), sealed.count - 1, 64, 10] {
            #expect(throws: ReplicationError.self) {
                try SealedObject.open(Array(sealed[0..<cut]), name: name, encryption: only(k1), object: "o")
            }
        }
        #expect(throws: ReplicationError.self) {
            try SealedObject.open(sealed + [0], name: name, encryption: only(k1), object: "o")
        }
        // Two chunks swapped.
        var swapped = Array(sealed[0..<64])
        swapped += sealed[(64 + chunk)..<(64 + 2 * chunk)]
        swapped += sealed[64..<(64 + chunk)]
        swapped += sealed[(64 + 2 * chunk)...]
        let error = try #require(throws: ReplicationError.self) {
            try SealedObject.open(swapped, name: name, encryption: only(k1), object: "o")
        }
        #expect(error.message.contains("failed authentication"))
        // The right bytes under another object's name (copied over it, or moved to another level).
        #expect(throws: ReplicationError.self) {
            try SealedObject.open(sealed, name: "9/0000000000000001-0000000000000003.ltx", encryption: only(k1), object: "o")
        }
        // A plain LTX file where a sealed one belongs.
        let plainError = try #require(throws: ReplicationError.self) {
            try SealedObject.open(Array("LTX1".utf8) + bytes(200), name: name, encryption: only(k1), object: "o")
        }
        #expect(plainError.message.contains("is not encrypted"))
    }

    @Test func aWrongOrUnknownKeyIsNamedAndTheKeyIsNot() throws {
        let sealed = SealedObject.seal(bytes(5000), name: name, key: k1)
        let unknown = try #require(throws: ReplicationError.self) {
            try SealedObject.open(sealed, name: name, encryption: only(k2), object: "s3://b/app/0000/x.ltx")
        }
        #expect(unknown.code == .encryptionKey)
        #expect(unknown.message.contains("s3://b/app/0000/x.ltx was sealed with key id 'k1', which the config does not have"))
        // Same id, other key.
        let impostor = try EncryptionKey(id: "k1", material: Array(repeating: 0x12, count: 32), source: "env:OTHER")
        let wrong = try #require(throws: ReplicationError.self) {
            try SealedObject.open(sealed, name: name, encryption: only(impostor), object: "o")
        }
        #expect(wrong.code == .encryptionKey)
        #expect(wrong.message.contains("env:OTHER"))
        for message in [unknown.message, wrong.message, "\(k1)", "\(only(k1))", String(reflecting: k1)] {
            #expect(!message.contains("1111"))
            #expect(!message.lowercased().contains(SealedObjectTests.hex(Array(repeating: 0x11, count: 4))))
        }
    }

    @Test func rotationOpensObjectsOfTheOldKeyAfterTheNewOneIsCurrent() throws {
        let old = SealedObject.seal(bytes(1000, seed: 1), name: name, key: k1)
        let rotated = try ReplicaEncryption(currentKeyID: "k2", keys: [k2, k1])
        #expect(rotated.currentKey.id == "k2")
        #expect(try SealedObject.open(old, name: name, encryption: rotated, object: "o") == bytes(1000, seed: 1))
        let new = SealedObject.seal(bytes(1000, seed: 2), name: name, key: rotated.currentKey)
        #expect(Array(new[10..<12]) == Array("k2".utf8))
        #expect(try SealedObject.open(new, name: name, encryption: rotated, object: "o") == bytes(1000, seed: 2))
        // Dropping k1 too early names it.
        let error = try #require(throws: ReplicationError.self) {
            try SealedObject.open(old, name: name, encryption: only(k2), object: "o")
        }
        #expect(error.message.contains("key id 'k1'"))
    }

    @Test func theFirstChunkOpensAloneForHeaderReads() throws {
        let plain = bytes(300_000)
        let sealed = SealedObject.seal(plain, name: name, key: k1)
        let prefix = Array(sealed[0..<min(sealed.count, SealedObject.prefixLength)])
        #expect(try SealedObject.openFirstChunk(prefix, name: name, encryption: only(k1), object: "o") == Array(plain[0..<65536]))
        let small = SealedObject.seal(Array(plain[0..<100]), name: name, key: k1)
        #expect(try SealedObject.openFirstChunk(small, name: name, encryption: only(k1), object: "o") == Array(plain[0..<100]))
        var bad = prefix
        bad[200] ^= 1
        #expect(throws: ReplicationError.self) {
            try SealedObject.openFirstChunk(bad, name: name, encryption: only(k1), object: "o")
        }
    }

    @Test func keysAreReadAsHexOrBase64AndBadOnesAreNamedWithoutTheirText() throws {
        let hex = String(repeating: "ab", count: 32)
        let fromHex = try EncryptionKey(id: "a", text: hex + "\n", source: "env:A")
        let fromBase64 = try EncryptionKey(id: "a", text: Data(Array(repeating: 0xAB, count: 32)).base64EncodedString(), source: "env:A")
        #expect(fromHex == fromBase64)
        let short = try #require(throws: ReplicationError.self) {
            try EncryptionKey(id: "k9", text: "deadbeefdeadbeef", source: "env:SECRET_VAR")
        }
        #expect(short.message.contains("'k9'") && short.message.contains("env:SECRET_VAR"))
        #expect(!short.message.contains("deadbeef"))
        let missing = try #require(throws: ReplicationError.self) {
            try EncryptionKey.load(id: "k3", reference: "env:NOPE", environment: [:], baseDirectory: "/")
        }
        #expect(missing.message.contains("'NOPE'") && missing.message.contains("'k3'"))
        let literal = try #require(throws: ReplicationError.self) {
            try EncryptionKey.load(id: "k3", reference: hex, environment: [:], baseDirectory: "/")
        }
        #expect(!literal.message.contains(hex))
        #expect(throws: ReplicationError.self) { try EncryptionKey(id: "bad id", text: hex, source: "x") }
        #expect(throws: ReplicationError.self) { try ReplicaEncryption(currentKeyID: "k5", keys: [k1]) }
        let arguments = try #require(
            try ReplicaEncryption.fromArguments(["k2=env:K2", "k1=env:K1"], environment: ["K2": hex, "K1": hex.uppercased()]))
        #expect(arguments.currentKeyID == "k2" && arguments.keys.count == 2)
    }

    static func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }
}
