import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// AWS Signature Version 4 for header-based authentication, as S3 (and R2, SeaweedFS, MinIO)
/// expect it: the canonical path is URI-encoded once (S3 never double-encodes), query
/// parameters are encoded and sorted, every header given is signed, and the payload hash is the
/// hex SHA-256 of the body (signed payloads only: no `UNSIGNED-PAYLOAD`, no aws-chunked).
///
/// ```swift
/// let signer = SigV4Signer(accessKeyID: "AKID", secretAccessKey: "...", region: "auto", service: "s3")
/// let signed = signer.sign(
///     method: "GET", encodedPath: "/bucket", query: [("list-type", "2")],
///     headers: [("host", "acct.r2.cloudflarestorage.com"), ("x-amz-content-sha256", S3Crypto.emptyPayloadSHA256)],
///     payloadHash: S3Crypto.emptyPayloadSHA256, date: Date())
/// // send signed.headers (x-amz-date and authorization added) with the query `signed.canonicalQuery`
/// ```
///
/// https://docs.aws.amazon.com/AmazonS3/latest/API/sig-v4-header-based-auth.html
public struct SigV4Signer: Sendable {
    public let accessKeyID: String
    private let secretAccessKey: String
    public let sessionToken: String?
    public let region: String
    public let service: String

    public init(
        accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil, region: String,
        service: String = "s3"
    ) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
        self.region = region
        self.service = service
    }

    /// What a request needs to carry once signed, and the intermediate strings (for tests and
    /// for debugging a `SignatureDoesNotMatch`; none of them holds the secret).
    public struct Signed: Sendable {
        /// The headers to send: the caller's, plus `x-amz-date`, `x-amz-security-token` when a
        /// session token is set, and `authorization`.
        public var headers: [(name: String, value: String)]
        /// The encoded, sorted query string to put after `?` in the URL (may be empty).
        public var canonicalQuery: String
        public var canonicalRequest: String
        public var stringToSign: String
        public var signedHeaders: String
        public var signature: String
        public var authorization: String
    }

    /// Signs a request.
    ///
    /// - Parameters:
    ///   - encodedPath: the path exactly as it goes on the wire, already URI-encoded once
    ///     (see `encodePath(_:)`); it is used as the canonical URI unchanged.
    ///   - query: raw (not encoded) parameter names and values, in any order.
    ///   - headers: every header to sign, including `host` (and for S3 `x-amz-content-sha256`);
    ///     names in any case. `x-amz-date` is added from `date` when absent.
    ///   - payloadHash: hex SHA-256 of the body.
    public func sign(
        method: String, encodedPath: String, query: [(String, String)], headers: [(String, String)],
        payloadHash: String, date: Date
    ) -> Signed {
        let amzDate = SigV4Signer.amzDate(date)
        let day = String(amzDate.prefix(8))
        var all = headers.map { (name: $0.0, value: $0.1) }
        if !all.contains(where: { $0.name.lowercased() == "x-amz-date" }) {
            all.append((name: "x-amz-date", value: amzDate))
        }
        if let sessionToken, !all.contains(where: { $0.name.lowercased() == "x-amz-security-token" }) {
            all.append((name: "x-amz-security-token", value: sessionToken))
        }

        // Canonical headers: lower-case names, trimmed values with inner runs of spaces
        // collapsed, sorted by name, repeated names joined with commas.
        var merged: [String: [String]] = [:]
        for header in all {
            merged[header.name.lowercased(), default: []].append(SigV4Signer.normalizeHeaderValue(header.value))
        }
        let names = merged.keys.sorted()
        let canonicalHeaders = names.map { "\($0):\(merged[$0]!.joined(separator: ","))\n" }.joined()
        let signedHeaders = names.joined(separator: ";")
        let canonicalQuery = SigV4Signer.canonicalQuery(query)

        let canonicalRequest = [
            method.uppercased(), encodedPath.isEmpty ? "/" : encodedPath, canonicalQuery, canonicalHeaders,
            signedHeaders, payloadHash,
        ].joined(separator: "\n")
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = [
            "AWS4-HMAC-SHA256", amzDate, scope, S3Crypto.hex(S3Crypto.sha256(Array(canonicalRequest.utf8))),
        ].joined(separator: "\n")

        var key = S3Crypto.hmacSHA256(key: Array("AWS4\(secretAccessKey)".utf8), Array(day.utf8))
        key = S3Crypto.hmacSHA256(key: key, Array(region.utf8))
        key = S3Crypto.hmacSHA256(key: key, Array(service.utf8))
        key = S3Crypto.hmacSHA256(key: key, Array("aws4_request".utf8))
        let signature = S3Crypto.hex(S3Crypto.hmacSHA256(key: key, Array(stringToSign.utf8)))

        let authorization =
            "AWS4-HMAC-SHA256 Credential=\(accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), "
            + "Signature=\(signature)"
        all.append((name: "authorization", value: authorization))
        return Signed(
            headers: all, canonicalQuery: canonicalQuery, canonicalRequest: canonicalRequest,
            stringToSign: stringToSign, signedHeaders: signedHeaders, signature: signature,
            authorization: authorization)
    }

    /// `yyyyMMdd'T'HHmmss'Z'` in UTC.
    public static func amzDate(_ date: Date) -> String {
        var seconds = time_t(date.timeIntervalSince1970.rounded(.down))
        var parts = tm()
        gmtime_r(&seconds, &parts)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(parts.tm_year + 1900)\(two(parts.tm_mon + 1))\(two(parts.tm_mday))T"
            + "\(two(parts.tm_hour))\(two(parts.tm_min))\(two(parts.tm_sec))Z"
    }

    /// Encodes and sorts query parameters: `A=1&b=x%2Fy` (names, then values, by byte order).
    public static func canonicalQuery(_ query: [(String, String)]) -> String {
        query.map { (uriEncode($0.0, encodeSlash: true), uriEncode($0.1, encodeSlash: true)) }
            .sorted {
                $0.0 != $1.0
                    ? $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) : $0.1.utf8.lexicographicallyPrecedes($1.1.utf8)
            }
            .map { "\($0.0)=\($0.1)" }
            .joined(separator: "&")
    }

    /// Encodes an S3 object path (`/bucket/key`) once, keeping `/`: `/a b/c$` -> `/a%20b/c%24`.
    public static func encodePath(_ path: String) -> String {
        uriEncode(path, encodeSlash: false)
    }

    /// RFC 3986 encoding as SigV4 defines it: every byte of the UTF-8 form except
    /// `A-Z a-z 0-9 - _ . ~` becomes `%XX` (upper-case hex); `/` is kept unless `encodeSlash`.
    public static func uriEncode(_ text: String, encodeSlash: Bool) -> String {
        let hex = Array("0123456789ABCDEF".utf8)
        var out = [UInt8]()
        out.reserveCapacity(text.utf8.count)
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: "~"):
                out.append(byte)
            case UInt8(ascii: "/") where !encodeSlash:
                out.append(byte)
            default:
                out.append(UInt8(ascii: "%"))
                out.append(hex[Int(byte >> 4)])
                out.append(hex[Int(byte & 0xF)])
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    static func normalizeHeaderValue(_ value: String) -> String {
        var out = ""
        var lastWasSpace = false
        for ch in value.trimmingCharacters(in: .whitespaces) {
            if ch == " " {
                if !lastWasSpace { out.append(ch) }
                lastWasSpace = true
            } else {
                out.append(ch)
                lastWasSpace = false
            }
        }
        return out
    }
}

extension SigV4Signer: CustomStringConvertible, CustomReflectable {
    /// Never shows the secret key (nor does `dump`).
    public var description: String {
        "SigV4Signer(accessKeyID: \(accessKeyID), region: \(region), service: \(service), secretAccessKey: <redacted>)"
    }

    public var customMirror: Mirror {
        Mirror(
            self,
            children: [
                "accessKeyID": accessKeyID, "region": region, "service": service, "secretAccessKey": "<redacted>",
                "sessionToken": (sessionToken == nil ? nil : "<redacted>") as Any,
            ], displayStyle: .struct)
    }
}
