internal import COpenSSLCrypto
import Foundation

/// The digests S3 needs, from OpenSSL's libcrypto: SHA-256 and HMAC-SHA256 for SigV4, MD5 for
/// ETags and `Content-MD5`.
///
/// ```swift
/// S3Crypto.hex(S3Crypto.sha256(Array("".utf8)))   // "e3b0c442...b855"
/// ```
///
/// https://docs.openssl.org/3.0/man3/EVP_DigestInit/
enum S3Crypto {
    enum Algorithm {
        case sha256
        case md5
    }

    /// The hex SHA-256 of an empty payload, sent as `x-amz-content-sha256` on bodiless requests.
    static let emptyPayloadSHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    static func sha256(_ bytes: [UInt8]) -> [UInt8] {
        digest(.sha256, bytes)
    }

    static func md5(_ bytes: [UInt8]) -> [UInt8] {
        digest(.md5, bytes)
    }

    static func digest(_ algorithm: Algorithm, _ bytes: [UInt8]) -> [UInt8] {
        let hasher = StreamingDigest(algorithm)
        bytes.withUnsafeBytes { hasher.update($0) }
        return hasher.finish()
    }

    static func hmacSHA256(key: [UInt8], _ data: [UInt8]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(copenssl_max_md_size()))
        var length: UInt32 = 0
        let ok = key.withUnsafeBytes { keyBytes in
            data.withUnsafeBytes { dataBytes in
                out.withUnsafeMutableBytes { outBytes in
                    HMAC(
                        EVP_sha256(), keyBytes.baseAddress, Int32(keyBytes.count),
                        dataBytes.baseAddress?.assumingMemoryBound(to: UInt8.self), dataBytes.count,
                        outBytes.baseAddress?.assumingMemoryBound(to: UInt8.self), &length) != nil
                }
            }
        }
        precondition(ok && length == 32, "HMAC-SHA256 failed in libcrypto")
        return Array(out[0..<Int(length)])
    }

    static func hex(_ bytes: [UInt8]) -> String {
        let digits = Array("0123456789abcdef".utf8)
        var out = [UInt8]()
        out.reserveCapacity(bytes.count * 2)
        for b in bytes {
            out.append(digits[Int(b >> 4)])
            out.append(digits[Int(b & 0xF)])
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func base64(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
    }
}

/// An incremental SHA-256 or MD5 (an `EVP_MD_CTX`), for payloads read from files.
final class StreamingDigest {
    private let context: OpaquePointer

    init(_ algorithm: S3Crypto.Algorithm) {
        guard let context = EVP_MD_CTX_new() else { fatalError("EVP_MD_CTX_new failed: out of memory") }
        self.context = context
        let md = algorithm == .sha256 ? EVP_sha256() : EVP_md5()
        precondition(EVP_DigestInit_ex(context, md, nil) == 1, "EVP_DigestInit_ex failed")
    }

    func update(_ bytes: UnsafeRawBufferPointer) {
        guard bytes.count > 0 else { return }
        precondition(EVP_DigestUpdate(context, bytes.baseAddress, bytes.count) == 1, "EVP_DigestUpdate failed")
    }

    func finish() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: Int(copenssl_max_md_size()))
        var length: UInt32 = 0
        let ok = out.withUnsafeMutableBytes {
            EVP_DigestFinal_ex(context, $0.baseAddress?.assumingMemoryBound(to: UInt8.self), &length)
        }
        precondition(ok == 1, "EVP_DigestFinal_ex failed")
        return Array(out[0..<Int(length)])
    }

    deinit { EVP_MD_CTX_free(context) }
}
