internal import COpenSSLCrypto
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The format of an encrypted replica object (`EncryptedReplicaClient`): an LTX file sealed in
/// 64 KiB chunks with AES-256-GCM (OpenSSL's libcrypto).
///
/// ```
/// header, 64 bytes:  "VFSRENC1" | version 1 | key id length | key id (32, zero padded)
///                    | chunk size u32 | plaintext length u64 | key check (8) | 0 0
/// chunk i:           nonce (12) | ciphertext (chunk size, the last one shorter) | tag (16)
/// ```
///
/// Integers are big-endian. There is always at least one chunk (an empty file has one empty
/// chunk), so every object carries a tag. Each chunk's authenticated data is the whole header,
/// the object's name (`<level>/<min>-<max>.ltx`, the same for a directory and an S3 replica),
/// the chunk index and a last-chunk flag: a chunk moved within or between objects, an object
/// renamed or copied over another, a header edited (key id, lengths), or an object cut or
/// extended all fail authentication, and the plaintext length in the header fixes the object's
/// size exactly. The key check (8 bytes of an HMAC of the key over a label) tells "this id is
/// another key" apart from "changed bytes"; it does not help open anything.
///
/// Nonces. A retried upload must produce the same bytes (S3 compares an existing object with
/// what it was about to create, and a lost answer followed by a retry must not fence the
/// writer), so nonces cannot be random. A counter would need state that survives crashes and
/// is shared by every process. So each chunk's nonce is derived, synthetic-IV style: the first
/// 12 bytes of HMAC-SHA256, under a subkey of its own, over (object name, chunk index,
/// last-chunk flag, the chunk's plaintext), and stored in front of the chunk. The same input
/// gives the same nonce and the same bytes; different plaintext under the same key gets a
/// different nonce except with the probability of a 96-bit collision (about 2^-33 after 2^32
/// chunks, 256 TiB), so the GCM rule "never one nonce for two plaintexts" holds without
/// coordination. What this reveals: that two objects with the same name hold the same chunk,
/// which only a re-upload of the same batch produces.
///
/// Sizes: the sealed size is `64 + plaintext + 28 per chunk`, so a listing gives the plaintext
/// size exactly (`plaintextLength(sealedLength:)`) without reading anything.
public enum SealedObject {
    public static let magic: [UInt8] = Array("VFSRENC1".utf8)
    static let version: UInt8 = 1
    public static let headerSize = 64
    /// The chunk size writers use; readers take the header's (1 KiB to 16 MiB).
    public static let chunkSize = 64 * 1024
    static let nonceSize = 12
    static let tagSize = 16
    public static let chunkOverhead = nonceSize + tagSize

    /// The object name bound into every chunk: the same for every kind of replica.
    public static func name(of file: LTXFileInfo) -> String { "\(file.level)/\(file.name)" }

    public static func name(level: Int, minTXID: UInt64, maxTXID: UInt64) -> String {
        "\(level)/\(LTXFileInfo.fileName(minTXID: minTXID, maxTXID: maxTXID))"
    }

    struct Header: Equatable {
        var keyID: String
        var chunkSize: Int
        var plaintextLength: UInt64
        var keyCheck: [UInt8]

        var chunkCount: UInt64 { max(1, (plaintextLength + UInt64(chunkSize) - 1) / UInt64(chunkSize)) }
        var sealedLength: UInt64 {
            UInt64(SealedObject.headerSize) + chunkCount * UInt64(SealedObject.chunkOverhead) + plaintextLength
        }
        /// Plaintext bytes of chunk `index`.
        func length(ofChunk index: UInt64) -> Int {
            let start = index * UInt64(chunkSize)
            return Int(min(UInt64(chunkSize), plaintextLength - min(start, plaintextLength)))
        }

        var encoded: [UInt8] {
            var b = SealedObject.magic
            b.append(SealedObject.version)
            let id = Array(keyID.utf8)
            b.append(UInt8(id.count))
            b += id + [UInt8](repeating: 0, count: EncryptionKey.maxIDLength - id.count)
            b += bigEndian(UInt32(chunkSize))
            b += bigEndian(plaintextLength)
            b += keyCheck
            b += [0, 0]
            return b
        }

        /// Parses a header; `object` names the object in errors.
        init(decoding bytes: [UInt8], object: String) throws {
            guard bytes.count >= SealedObject.headerSize else {
                throw SealedObject.corrupt(
                    object, "\(bytes.count) bytes, shorter than the encryption header (\(SealedObject.headerSize))")
            }
            guard bytes.starts(with: SealedObject.magic) else {
                let what = bytes.starts(with: LTX.magic) ? "a plain LTX file" : "not a sealed object"
                throw SealedObject.corrupt(
                    object,
                    "is not encrypted (\(what)) but the replica is configured with encryption; refusing it "
                        + "(anyone with write access could have put it there; an existing unencrypted replica "
                        + "needs a new location when encryption is turned on)")
            }
            guard bytes[8] == SealedObject.version else {
                throw SealedObject.corrupt(object, "unknown encryption format version \(bytes[8])")
            }
            let idLength = Int(bytes[9])
            guard idLength >= 1, idLength <= EncryptionKey.maxIDLength,
                bytes[(10 + idLength)..<42].allSatisfy({ $0 == 0 }), bytes[62] == 0, bytes[63] == 0
            else {
                throw SealedObject.corrupt(object, "bad encryption header")
            }
            let id = String(decoding: bytes[10..<(10 + idLength)], as: UTF8.self)
            guard EncryptionKey.isValidID(id) else { throw SealedObject.corrupt(object, "bad key id in its header") }
            let chunk = Int(readBigEndian(bytes, at: 42, count: 4))
            guard chunk >= 1024, chunk <= 16 << 20 else {
                throw SealedObject.corrupt(object, "bad chunk size \(chunk) in its encryption header")
            }
            keyID = id
            chunkSize = chunk
            plaintextLength = readBigEndian(bytes, at: 46, count: 8)
            guard plaintextLength < 1 << 50 else {
                throw SealedObject.corrupt(object, "bad plaintext length in its encryption header")
            }
            keyCheck = Array(bytes[54..<62])
        }

        init(keyID: String, chunkSize: Int, plaintextLength: UInt64, keyCheck: [UInt8]) {
            self.keyID = keyID
            self.chunkSize = chunkSize
            self.plaintextLength = plaintextLength
            self.keyCheck = keyCheck
        }
    }

    /// The plaintext size of a sealed object of `sealedLength` bytes written with the standard
    /// chunk size; nil when no such object has that size (then the listing shows the raw size and
    /// opening the object says what is wrong).
    public static func plaintextLength(sealedLength: Int64) -> Int64? {
        let body = sealedLength - Int64(headerSize)
        guard body >= Int64(chunkOverhead) else { return nil }
        let full = Int64(chunkSize + chunkOverhead)
        let chunks = body / full
        let rest = body % full
        if rest == 0 { return chunks * Int64(chunkSize) }
        // A partial last chunk holds at least one byte, unless it is the only (empty) chunk.
        if rest == Int64(chunkOverhead) { return chunks == 0 ? 0 : nil }
        guard rest > Int64(chunkOverhead) else { return nil }
        return chunks * Int64(chunkSize) + rest - Int64(chunkOverhead)
    }

    /// The sealed size of `plaintextLength` bytes.
    public static func sealedLength(plaintextLength: Int64) -> Int64 {
        Int64(Header(keyID: "x", chunkSize: chunkSize, plaintextLength: UInt64(plaintextLength), keyCheck: []).sealedLength)
    }

    // MARK: - Bytes

    /// Seals `plaintext` as the object `name` (`chunkSize` only for tests of other sizes).
    public static func seal(_ plaintext: [UInt8], name: String, key: EncryptionKey, chunkSize: Int = chunkSize)
        -> [UInt8]
    {
        let header = Header(
            keyID: key.id, chunkSize: chunkSize, plaintextLength: UInt64(plaintext.count), keyCheck: key.check)
        let cipher = ChunkCipher(key: key, header: header, name: name, sealing: true)
        var out = header.encoded
        var sealed = [UInt8](repeating: 0, count: chunkSize + chunkOverhead)
        plaintext.withUnsafeBytes { all in
            for index in 0..<header.chunkCount {
                let start = Int(index) * chunkSize
                let n = header.length(ofChunk: index)
                let chunk = UnsafeRawBufferPointer(rebasing: all[start..<(start + n)])
                sealed.withUnsafeMutableBytes { cipher.seal(index: index, chunk, into: $0) }
                out += sealed[0..<(n + chunkOverhead)]
            }
        }
        return out
    }

    /// Opens a sealed object; `object` names it in errors (an URL or path).
    public static func open(_ sealed: [UInt8], name: String, encryption: ReplicaEncryption, object: String) throws
        -> [UInt8]
    {
        let header = try Header(decoding: sealed, object: object)
        let key = try self.key(for: header, encryption: encryption, object: object)
        guard UInt64(sealed.count) == header.sealedLength else {
            throw sizeMismatch(object, actual: Int64(sealed.count), header: header)
        }
        let cipher = ChunkCipher(key: key, header: header, name: name, sealing: false)
        var out = [UInt8](repeating: 0, count: Int(header.plaintextLength))
        try sealed.withUnsafeBytes { all in
            try out.withUnsafeMutableBytes { plain in
                var offset = headerSize
                for index in 0..<header.chunkCount {
                    let n = header.length(ofChunk: index)
                    let chunk = UnsafeRawBufferPointer(rebasing: all[offset..<(offset + n + chunkOverhead)])
                    let start = Int(index) * header.chunkSize
                    guard cipher.open(index: index, chunk, into: UnsafeMutableRawBufferPointer(rebasing: plain[start..<(start + n)]))
                    else { throw authenticationFailure(object, chunk: index, of: header.chunkCount) }
                    offset += n + chunkOverhead
                }
            }
        }
        return out
    }

    /// The first chunk's plaintext from the start of an object (at least its header and first
    /// chunk: `prefixLength` bytes), for reading an LTX header without the whole object.
    public static func openFirstChunk(
        _ prefix: [UInt8], name: String, encryption: ReplicaEncryption, object: String
    ) throws -> [UInt8] {
        let header = try Header(decoding: prefix, object: object)
        let key = try self.key(for: header, encryption: encryption, object: object)
        let n = header.length(ofChunk: 0)
        guard prefix.count >= headerSize + n + chunkOverhead else {
            throw sizeMismatch(object, actual: Int64(prefix.count), header: header)
        }
        let cipher = ChunkCipher(key: key, header: header, name: name, sealing: false)
        var out = [UInt8](repeating: 0, count: n)
        let ok = prefix.withUnsafeBytes { all in
            out.withUnsafeMutableBytes { plain in
                cipher.open(
                    index: 0, UnsafeRawBufferPointer(rebasing: all[headerSize..<(headerSize + n + chunkOverhead)]),
                    into: plain)
            }
        }
        guard ok else { throw authenticationFailure(object, chunk: 0, of: header.chunkCount) }
        return out
    }

    /// Bytes to read from the start of an object for `openFirstChunk` (standard chunk size).
    public static let prefixLength = headerSize + chunkSize + chunkOverhead

    // MARK: - Files

    /// Seals the file at `source` into a new file at `destination` (created exclusively, 0600).
    static func sealFile(_ source: String, to destination: String, name: String, key: EncryptionKey) throws {
        let input = try LTXIO.open(source, O_RDONLY)
        defer { LTXIO.close(input) }
        let length = try LTXIO.fileSize(input, path: source)
        let header = Header(
            keyID: key.id, chunkSize: chunkSize, plaintextLength: UInt64(length), keyCheck: key.check)
        let output = try LTXIO.open(destination, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        defer { LTXIO.close(output) }
        let cipher = ChunkCipher(key: key, header: header, name: name, sealing: true)
        let plain = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
        defer { plain.deallocate() }
        let sealed = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize + chunkOverhead, alignment: 16)
        defer { sealed.deallocate() }
        try header.encoded.withUnsafeBytes { try LTXIO.pwrite(output, $0, offset: 0, path: destination) }
        var outOffset = Int64(headerSize)
        for index in 0..<header.chunkCount {
            let n = header.length(ofChunk: index)
            let got = n == 0 ? 0 : try LTXIO.pread(input, UnsafeMutableRawBufferPointer(rebasing: plain[0..<n]), offset: Int64(index) * Int64(chunkSize), path: source)
            guard got == n else {
                throw ReplicationError(.io, "seal \(source): the file changed size while it was read")
            }
            cipher.seal(index: index, UnsafeRawBufferPointer(rebasing: plain[0..<n]), into: sealed)
            try LTXIO.pwrite(
                output, UnsafeRawBufferPointer(rebasing: sealed[0..<(n + chunkOverhead)]), offset: outOffset,
                path: destination)
            outOffset += Int64(n + chunkOverhead)
        }
        // No fsync: the sealed copy is only read by the publish that follows (which makes the
        // replica's copy durable); after a crash it is a leftover in a temporary directory.
    }

    /// Opens the sealed file at `source` into a new file at `destination`. Every chunk is
    /// authenticated before its plaintext is written; on any failure `destination` is removed
    /// and nothing of it may be used.
    static func openFile(
        _ source: String, to destination: String, name: String, encryption: ReplicaEncryption, object: String
    ) throws {
        let input = try LTXIO.open(source, O_RDONLY)
        defer { LTXIO.close(input) }
        var headerBytes = [UInt8](repeating: 0, count: headerSize)
        let got = try headerBytes.withUnsafeMutableBytes { try LTXIO.pread(input, $0, offset: 0, path: source) }
        let header = try Header(decoding: Array(headerBytes[0..<got]), object: object)
        let key = try self.key(for: header, encryption: encryption, object: object)
        let size = try LTXIO.fileSize(input, path: source)
        guard UInt64(size) == header.sealedLength else { throw sizeMismatch(object, actual: size, header: header) }
        let output = try LTXIO.open(destination, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600)
        var done = false
        defer {
            LTXIO.close(output)
            if !done { LTXIO.unlink(destination) }
        }
        let cipher = ChunkCipher(key: key, header: header, name: name, sealing: false)
        let sealed = UnsafeMutableRawBufferPointer.allocate(byteCount: header.chunkSize + chunkOverhead, alignment: 16)
        defer { sealed.deallocate() }
        let plain = UnsafeMutableRawBufferPointer.allocate(byteCount: header.chunkSize, alignment: 16)
        defer { plain.deallocate() }
        var inOffset = Int64(headerSize)
        for index in 0..<header.chunkCount {
            let n = header.length(ofChunk: index)
            let want = n + chunkOverhead
            let read = try LTXIO.pread(input, UnsafeMutableRawBufferPointer(rebasing: sealed[0..<want]), offset: inOffset, path: source)
            guard read == want else { throw sizeMismatch(object, actual: inOffset + Int64(read), header: header) }
            guard cipher.open(index: index, UnsafeRawBufferPointer(rebasing: sealed[0..<want]), into: UnsafeMutableRawBufferPointer(rebasing: plain[0..<n]))
            else { throw authenticationFailure(object, chunk: index, of: header.chunkCount) }
            if n > 0 {
                try LTXIO.pwrite(
                    output, UnsafeRawBufferPointer(rebasing: plain[0..<n]), offset: Int64(index) * Int64(header.chunkSize),
                    path: destination)
            }
            inOffset += Int64(want)
        }
        done = true
    }

    // MARK: - Keys and errors

    /// The configured key that sealed an object: its id must be configured, and be that key.
    static func key(for header: Header, encryption: ReplicaEncryption, object: String) throws -> EncryptionKey {
        guard let key = encryption.keys[header.keyID] else {
            let known = encryption.keys.keys.sorted().map { "'\($0)'" }.joined(separator: ", ")
            throw ReplicationError(
                .encryptionKey,
                "replica object \(object) was sealed with key id '\(header.keyID)', which the config does not have "
                    + "(configured: \(known)); add that key to the replica's encryption keys")
        }
        guard key.check == header.keyCheck else {
            throw ReplicationError(
                .encryptionKey,
                "replica object \(object) was sealed with key id '\(header.keyID)', but the configured key "
                    + "'\(header.keyID)' (\(key.source)) is a different key")
        }
        return key
    }

    static func corrupt(_ object: String, _ message: String) -> ReplicationError {
        ReplicationError(.corruptReplicaFile, "corrupt replica object \(object): \(message)")
    }

    static func authenticationFailure(_ object: String, chunk: UInt64, of count: UInt64) -> ReplicationError {
        ReplicationError(
            .corruptReplicaFile,
            "replica object \(object) failed authentication (chunk \(chunk + 1) of \(count)): wrong key or tampered; "
                + "nothing of it was used")
    }

    static func sizeMismatch(_ object: String, actual: Int64, header: Header) -> ReplicationError {
        ReplicationError(
            .corruptReplicaFile,
            "replica object \(object) failed authentication: it has \(actual) bytes but its header says "
                + "\(header.sealedLength) (truncated or extended); nothing of it was used")
    }
}

/// AES-256-GCM over the chunks of one object, with the derived nonces (see `SealedObject`).
/// One per object and thread: it keeps an OpenSSL context and work buffers.
final class ChunkCipher {
    private let context: OpaquePointer
    private let nonceKey: [UInt8]
    /// header | name | index u64 | last flag: the authenticated data of a chunk.
    private var aad: [UInt8]
    /// name | index u64 | last flag | plaintext: what the nonce is an HMAC of.
    private let macInput: UnsafeMutableRawBufferPointer
    private let nameLength: Int
    private let header: SealedObject.Header

    init(key: EncryptionKey, header: SealedObject.Header, name: String, sealing: Bool) {
        guard let context = EVP_CIPHER_CTX_new() else { fatalError("EVP_CIPHER_CTX_new failed: out of memory") }
        self.context = context
        let ok = key.cipherKey.withUnsafeBufferPointer { copenssl_gcm_init(context, $0.baseAddress, sealing ? 1 : 0) }
        precondition(ok == 1, "AES-256-GCM setup failed in libcrypto")
        self.header = header
        nonceKey = key.nonceKey
        let nameBytes = Array(name.utf8)
        nameLength = nameBytes.count
        aad = header.encoded + nameBytes + [UInt8](repeating: 0, count: 9)
        macInput = UnsafeMutableRawBufferPointer.allocate(
            byteCount: nameBytes.count + 9 + (sealing ? header.chunkSize : 0), alignment: 16)
        macInput.copyBytes(from: nameBytes)
    }

    deinit {
        EVP_CIPHER_CTX_free(context)
        macInput.deallocate()
    }

    private func setPosition(_ index: UInt64) {
        let last: UInt8 = index + 1 == header.chunkCount ? 1 : 0
        let position = bigEndian(index) + [last]
        aad.replaceSubrange((aad.count - 9)..., with: position)
        for (i, b) in position.enumerated() { macInput[nameLength + i] = b }
    }

    /// Seals chunk `index` into `out`: nonce | ciphertext | tag (`chunk.count + 28` bytes).
    func seal(index: UInt64, _ chunk: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) {
        setPosition(index)
        let prefix = nameLength + 9
        if chunk.count > 0 {
            UnsafeMutableRawBufferPointer(rebasing: macInput[prefix..<(prefix + chunk.count)]).copyMemory(from: chunk)
        }
        var mac = [UInt8](repeating: 0, count: Int(copenssl_max_md_size()))
        var macLength: UInt32 = 0
        let macOK = nonceKey.withUnsafeBytes { keyBytes in
            mac.withUnsafeMutableBytes { macBytes in
                HMAC(
                    EVP_sha256(), keyBytes.baseAddress, Int32(keyBytes.count),
                    macInput.baseAddress?.assumingMemoryBound(to: UInt8.self), prefix + chunk.count,
                    macBytes.baseAddress?.assumingMemoryBound(to: UInt8.self), &macLength) != nil
            }
        }
        precondition(macOK && macLength == 32, "HMAC-SHA256 failed in libcrypto")
        let base = out.baseAddress!.assumingMemoryBound(to: UInt8.self)
        for i in 0..<SealedObject.nonceSize { base[i] = mac[i] }
        let ok = aad.withUnsafeBufferPointer { aadBytes in
            copenssl_gcm_seal(
                context, base, aadBytes.baseAddress, Int32(aadBytes.count),
                chunk.baseAddress?.assumingMemoryBound(to: UInt8.self), Int32(chunk.count),
                base + SealedObject.nonceSize, base + SealedObject.nonceSize + chunk.count)
        }
        precondition(ok == 1, "AES-256-GCM sealing failed in libcrypto")
    }

    /// Opens chunk `index` (nonce | ciphertext | tag) into `out` (`sealed.count - 28` bytes).
    /// False when it does not authenticate; `out` then holds nothing usable.
    func open(index: UInt64, _ sealed: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Bool {
        setPosition(index)
        let n = sealed.count - SealedObject.chunkOverhead
        guard n >= 0, out.count == n else { return false }
        let base = sealed.baseAddress!.assumingMemoryBound(to: UInt8.self)
        let ok = aad.withUnsafeBufferPointer { aadBytes in
            copenssl_gcm_open(
                context, base, aadBytes.baseAddress, Int32(aadBytes.count), base + SealedObject.nonceSize, Int32(n),
                base + SealedObject.nonceSize + n, out.baseAddress?.assumingMemoryBound(to: UInt8.self))
        }
        return ok == 1
    }
}

private func bigEndian(_ v: UInt32) -> [UInt8] { (0..<4).map { UInt8(truncatingIfNeeded: v >> (24 - 8 * $0)) } }
private func bigEndian(_ v: UInt64) -> [UInt8] { (0..<8).map { UInt8(truncatingIfNeeded: v >> (56 - 8 * $0)) } }
private func readBigEndian(_ b: [UInt8], at offset: Int, count: Int) -> UInt64 {
    var v: UInt64 = 0
    for i in 0..<count { v = v << 8 | UInt64(b[offset + i]) }
    return v
}
