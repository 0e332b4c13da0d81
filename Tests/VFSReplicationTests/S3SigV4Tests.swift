import Foundation
import Testing

@testable import VFSReplication

/// SigV4 against published vectors: the AWS Signature Version 4 test suite (credentials
/// AKIDEXAMPLE, 2015-08-30T12:36:00Z, us-east-1, service "service") and the S3 examples of
/// "Authenticating Requests: Using the Authorization Header" (AKIAIOSFODNN7EXAMPLE,
/// 2013-05-24, us-east-1, s3). Plus the pure pieces of the S3 client: encoding, retry delays,
/// error hints, timestamps, part sizes.
@Suite("S3 SigV4 and pure pieces")
struct S3SigV4Tests {
    static let suiteSigner = SigV4Signer(
        accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", region: "us-east-1",
        service: "service")
    static let suiteDate = Date(timeIntervalSince1970: 1_440_938_160)  // 2015-08-30T12:36:00Z
    static let s3Signer = SigV4Signer(
        accessKeyID: "AKIAIOSFODNN7EXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        region: "us-east-1", service: "s3")
    static let s3Date = Date(timeIntervalSince1970: 1_369_353_600)  // 2013-05-24T00:00:00Z
    static let empty = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

    @Test func dates() {
        #expect(SigV4Signer.amzDate(Self.suiteDate) == "20150830T123600Z")
        #expect(SigV4Signer.amzDate(Self.s3Date) == "20130524T000000Z")
        #expect(S3Crypto.hex(S3Crypto.sha256([])) == Self.empty)
    }

    @Test func getVanilla() {
        let signed = Self.suiteSigner.sign(
            method: "GET", encodedPath: "/", query: [], headers: [("Host", "example.amazonaws.com")],
            payloadHash: Self.empty, date: Self.suiteDate)
        #expect(
            signed.canonicalRequest
                == "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n\(Self.empty)"
        )
        #expect(
            signed.stringToSign
                == "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n"
                + "bb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63")
        #expect(
            signed.authorization
                == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
                + "SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        )
    }

    @Test func getVanillaQueryOrderKeyCase() {
        let signed = Self.suiteSigner.sign(
            method: "GET", encodedPath: "/", query: [("Param2", "value2"), ("Param1", "value1")],
            headers: [("Host", "example.amazonaws.com")], payloadHash: Self.empty, date: Self.suiteDate)
        #expect(signed.canonicalQuery == "Param1=value1&Param2=value2")
        #expect(signed.signature == "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500")
    }

    @Test func postVanilla() {
        let signed = Self.suiteSigner.sign(
            method: "POST", encodedPath: "/", query: [], headers: [("Host", "example.amazonaws.com")],
            payloadHash: Self.empty, date: Self.suiteDate)
        #expect(signed.signature == "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b")
    }

    @Test func postXWWWFormURLEncoded() {
        let body = Array("Param1=value1".utf8)
        let hash = S3Crypto.hex(S3Crypto.sha256(body))
        #expect(hash == "9095672bbd1f56dfc5b65f3e153adc8731a4a654192329106275f4c7b24d0b6e")
        let signed = Self.suiteSigner.sign(
            method: "POST", encodedPath: "/", query: [],
            headers: [("Content-Type", "application/x-www-form-urlencoded"), ("Host", "example.amazonaws.com")],
            payloadHash: hash, date: Self.suiteDate)
        #expect(signed.signedHeaders == "content-type;host;x-amz-date")
        #expect(signed.signature == "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a")
    }

    @Test func s3GetObjectExample() {
        let signed = Self.s3Signer.sign(
            method: "GET", encodedPath: "/test.txt", query: [],
            headers: [
                ("Host", "examplebucket.s3.amazonaws.com"), ("Range", "bytes=0-9"),
                ("x-amz-content-sha256", Self.empty),
            ], payloadHash: Self.empty, date: Self.s3Date)
        #expect(signed.signedHeaders == "host;range;x-amz-content-sha256;x-amz-date")
        #expect(
            signed.stringToSign
                == "AWS4-HMAC-SHA256\n20130524T000000Z\n20130524/us-east-1/s3/aws4_request\n"
                + "7344ae5b7ee6c3e7e6b0fe0640412a37625d1fbfff95c48bbb2dc43964946972")
        #expect(signed.signature == "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41")
    }

    @Test func s3PutObjectExample() {
        let hash = S3Crypto.hex(S3Crypto.sha256(Array("Welcome to Amazon S3.".utf8)))
        #expect(hash == "44ce7dd67c959e0d3524ffac1771dfbba87d2b6b4b4e99e42034a8b803f8b072")
        let path = SigV4Signer.encodePath("/test$file.text")
        #expect(path == "/test%24file.text")
        let signed = Self.s3Signer.sign(
            method: "PUT", encodedPath: path, query: [],
            headers: [
                ("Host", "examplebucket.s3.amazonaws.com"), ("Date", "Fri, 24 May 2013 00:00:00 GMT"),
                ("x-amz-storage-class", "REDUCED_REDUNDANCY"), ("x-amz-content-sha256", hash),
            ], payloadHash: hash, date: Self.s3Date)
        #expect(signed.signedHeaders == "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class")
        #expect(signed.signature == "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd")
    }

    @Test func s3ListObjectsExample() {
        let signed = Self.s3Signer.sign(
            method: "GET", encodedPath: "/", query: [("prefix", "J"), ("max-keys", "2")],
            headers: [("Host", "examplebucket.s3.amazonaws.com"), ("x-amz-content-sha256", Self.empty)],
            payloadHash: Self.empty, date: Self.s3Date)
        #expect(signed.canonicalQuery == "max-keys=2&prefix=J")
        #expect(signed.signature == "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7")
    }

    @Test func uriEncodingFollowsS3() {
        #expect(SigV4Signer.uriEncode("a b+c/d~e_f.g-h", encodeSlash: false) == "a%20b%2Bc/d~e_f.g-h")
        #expect(SigV4Signer.uriEncode("a/b=c&d", encodeSlash: true) == "a%2Fb%3Dc%26d")
        #expect(SigV4Signer.uriEncode("é", encodeSlash: true) == "%C3%A9")
        // Already-encoded text is encoded again only if asked: the path is encoded exactly once.
        #expect(SigV4Signer.encodePath("/b/100%") == "/b/100%25")
        #expect(SigV4Signer.canonicalQuery([("uploads", ""), ("a", "1")]) == "a=1&uploads=")
        #expect(
            SigV4Signer.canonicalQuery([("prefix", "db/0000/"), ("list-type", "2"), ("continuation-token", "x+y=")])
                == "continuation-token=x%2By%3D&list-type=2&prefix=db%2F0000%2F")
        #expect(SigV4Signer.normalizeHeaderValue("  a   b  c ") == "a b c")
    }

    @Test func sessionTokenIsSigned() {
        let signer = SigV4Signer(
            accessKeyID: "AKIDEXAMPLE", secretAccessKey: "secret", sessionToken: "token", region: "auto")
        let signed = signer.sign(
            method: "GET", encodedPath: "/", query: [], headers: [("host", "h")], payloadHash: Self.empty,
            date: Self.suiteDate)
        #expect(signed.signedHeaders == "host;x-amz-date;x-amz-security-token")
        #expect(signed.headers.contains { $0.name == "x-amz-security-token" && $0.value == "token" })
        #expect(signed.authorization.contains("/20150830/auto/s3/aws4_request"))
    }

    @Test func secretsNeverShow() {
        let text = "\(Self.s3Signer) \(String(reflecting: Self.s3Signer))"
        #expect(!text.contains("EXAMPLEKEY"))
        var dumped = ""
        dump(Self.s3Signer, to: &dumped)
        dump(SeaweedFS.credentials, to: &dumped)
        dumped += "\(SeaweedFS.credentials)"
        #expect(!dumped.contains("EXAMPLEKEY"))
        #expect(!dumped.contains(SeaweedFS.secretAccessKey))
    }

    @Test func regionAndAddressing() throws {
        #expect(S3ClientOptions(endpoint: "https://acct.r2.cloudflarestorage.com").signingRegion == "auto")
        #expect(S3ClientOptions(endpoint: "https://acct.r2.cloudflarestorage.com", region: "").signingRegion == "auto")
        #expect(S3ClientOptions(endpoint: "http://127.0.0.1:9000").signingRegion == "us-east-1")
        #expect(S3ClientOptions(region: "eu-west-3").signingRegion == "eu-west-3")
        #expect(S3ClientOptions(endpoint: "http://127.0.0.1:9000").usesPathStyle)
        #expect(!S3ClientOptions().usesPathStyle)

        let config = ReplicaConfig(
            kind: .s3(bucket: "b", prefix: "p"), accessKeyID: "id", secretAccessKey: "s", r2AccountID: "acct")
        let options = S3ClientOptions(config: config, environment: ["AWS_CA_BUNDLE": "/ca.pem"])
        #expect(options.endpoint == "https://acct.r2.cloudflarestorage.com")
        #expect(options.signingRegion == "auto")
        #expect(options.caFile == "/ca.pem")
        #expect(S3ClientOptions(config: config, environment: [:]).caFile == nil)
        #expect(S3ClientOptions(config: config, environment: ["SSL_CERT_FILE": "/x.pem"]).caFile == "/x.pem")

        let pathStyle = try S3Endpoint(options: S3ClientOptions(endpoint: "http://127.0.0.1:8333/"), bucket: "bk")
        #expect(pathStyle.location(key: "db/0000/a b.ltx") == ("/bk/db/0000/a%20b.ltx", "127.0.0.1:8333"))
        #expect(pathStyle.location(key: nil) == ("/bk", "127.0.0.1:8333"))
        let virtual = try S3Endpoint(options: S3ClientOptions(region: "us-west-2"), bucket: "bk")
        #expect(virtual.origin == "https://bk.s3.us-west-2.amazonaws.com")
        #expect(virtual.location(key: "k") == ("/k", "bk.s3.us-west-2.amazonaws.com"))
        #expect(virtual.location(key: nil) == ("/", "bk.s3.us-west-2.amazonaws.com"))
        #expect(throws: ReplicationError.self) {
            try S3Endpoint(options: S3ClientOptions(endpoint: "ftp://x"), bucket: "b")
        }
    }

    @Test func credentialsFromConfigOrEnvironment() throws {
        var config = ReplicaConfig(kind: .s3(bucket: "b", prefix: ""))
        let fromEnv = try S3Credentials(
            config: config, environment: ["AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "secret"])
        #expect(fromEnv.accessKeyID == "id")
        #expect(throws: ReplicationError.self) { try S3Credentials(config: config, environment: [:]) }
        config.accessKeyID = "cid"
        config.secretAccessKey = "csecret"
        #expect(try S3Credentials(config: config, environment: [:]).accessKeyID == "cid")
    }

    @Test func retryDelaysAreBoundedFullJitter() {
        let policy = S3RetryPolicy(
            maxAttempts: 5, baseDelay: .milliseconds(100), maxDelay: .seconds(1), maxTotalTime: .seconds(10))
        #expect(policy.delay(afterAttempt: 1, random: 0) == .zero)
        #expect(policy.delay(afterAttempt: 1, random: 0.5) == .milliseconds(50))
        #expect(policy.delay(afterAttempt: 3, random: 0.5) == .milliseconds(200))
        #expect(policy.delay(afterAttempt: 20, random: 0.999_999) <= .seconds(1))
        #expect(policy.allowsAnotherAttempt(after: 4, elapsed: .seconds(1), delay: .seconds(1)))
        #expect(!policy.allowsAnotherAttempt(after: 5, elapsed: .seconds(1), delay: .seconds(1)))
        #expect(!policy.allowsAnotherAttempt(after: 1, elapsed: .seconds(9.5), delay: .seconds(1)))
        #expect(S3Client.isRetryable(status: 503, s3Code: "SlowDown"))
        #expect(S3Client.isRetryable(status: 429, s3Code: nil))
        #expect(S3Client.isRetryable(status: 400, s3Code: "RequestTimeout"))
        #expect(S3Client.isRetryable(status: 200, s3Code: "InternalError"))
        #expect(!S3Client.isRetryable(status: 403, s3Code: "SignatureDoesNotMatch"))
        #expect(!S3Client.isRetryable(status: 404, s3Code: "NoSuchKey"))
        #expect(!S3Client.isRetryable(status: 501, s3Code: "NotImplemented"))
        #expect(!S3Client.isRetryable(status: 403, s3Code: "RequestTimeTooSkewed"))
    }

    func failure(_ cause: S3Failure.Cause, caFile: String? = nil) -> ReplicationError {
        S3Failure(
            operation: "PutObject", target: "s3://bk/db/0000/x.ltx", bucket: "bk", endpoint: "https://e.example",
            region: "auto", caFile: caFile, cause: cause
        ).error
    }

    @Test func errorMessagesNameTheObjectStatusCodeAndHint() {
        let signature = failure(.http(status: 403, code: "SignatureDoesNotMatch", message: "The request signature..."))
        #expect(signature.code == .invalidConfig)
        #expect(signature.message.contains("S3 PutObject s3://bk/db/0000/x.ltx (endpoint https://e.example)"))
        #expect(signature.message.contains("HTTP 403 SignatureDoesNotMatch"))
        #expect(signature.message.contains("check access-key-id / secret-access-key"))
        #expect(failure(.http(status: 403, code: "InvalidAccessKeyId", message: nil)).message.contains("access-key-id"))
        let denied = failure(.http(status: 403, code: "AccessDenied", message: "Access Denied"))
        #expect(denied.message.contains("may not perform PutObject"))
        let bucket = failure(.http(status: 404, code: "NoSuchBucket", message: nil))
        #expect(bucket.message.contains("bucket 'bk' does not exist"))
        let skew = failure(.http(status: 403, code: "RequestTimeTooSkewed", message: nil))
        #expect(skew.message.contains("clock skew"))
        #expect(failure(.http(status: 404, code: "NoSuchKey", message: nil)).code == .missingReplica)
        #expect(failure(.http(status: 403, code: nil, message: nil)).message.contains("access denied to PutObject"))

        let refused = failure(
            .transport(HTTPTransportError(kind: .connectionRefused, code: 7, detail: "Connection refused")))
        #expect(refused.message.contains("connection refused") && refused.message.contains("is the endpoint up"))
        let dns = failure(.transport(HTTPTransportError(kind: .dns, code: 6, detail: "Could not resolve host: e")))
        #expect(dns.message.contains("could not resolve the host"))
        let timeout = failure(.transport(HTTPTransportError(kind: .timeout, code: 28, detail: "Operation timed out")))
        #expect(timeout.code == .timeout)
        let tls = failure(
            .transport(
                HTTPTransportError(kind: .tls, code: 60, detail: "SSL certificate problem: self-signed certificate")))
        #expect(tls.message.contains("certificate") && tls.message.contains("'ca-file'"))
        let tlsWithCA = failure(
            .transport(HTTPTransportError(kind: .tls, code: 60, detail: "SSL certificate problem")), caFile: "/ca.pem")
        #expect(tlsWithCA.message.contains("not trusted by ca-file /ca.pem"))
        var retried = S3Failure(
            operation: "GetObject", target: "s3://bk/k", bucket: "bk", endpoint: "http://127.0.0.1:1",
            region: "us-east-1",
            cause: .http(status: 503, code: "SlowDown", message: "Reduce your request rate"))
        retried.attempts = 4
        retried.elapsed = .milliseconds(2500)
        #expect(retried.error.message.hasSuffix("(gave up after 4 attempts in 2.5 s)"))
    }

    @Test func litestreamTimestamps() {
        let date = Date(timeIntervalSince1970: 1_750_000_000.123)
        #expect(S3ReplicaClient.formatTimestamp(date) == "2025-06-15T15:06:40.123Z")
        #expect(
            S3ReplicaClient.formatTimestamp(Date(timeIntervalSince1970: 1_750_000_000.5)) == "2025-06-15T15:06:40.5Z")
        #expect(S3ReplicaClient.formatTimestamp(Date(timeIntervalSince1970: 1_750_000_000)) == "2025-06-15T15:06:40Z")
        #expect(S3ReplicaClient.parseTimestamp("2025-06-15T15:06:40.123Z") == date)
        #expect(
            S3ReplicaClient.parseTimestamp("2025-06-15T15:06:40.123456789Z")?.timeIntervalSince1970 == 1_750_000_000.123
        )
        #expect(S3ReplicaClient.parseTimestamp("2025-06-15T15:06:40Z")?.timeIntervalSince1970 == 1_750_000_000)
    }

    @Test func partSizes() {
        let mib: Int64 = 1 << 20
        #expect(S3Client.partSize(forLength: 65 * mib, preferred: 16 * mib) == 16 * mib)
        #expect(S3Client.partSize(forLength: 65 * mib, preferred: 1 * mib) == 5 * mib)
        // 100 GiB in at most 10,000 parts: 10.24 MiB -> 11 MiB.
        #expect(S3Client.partSize(forLength: 100 * 1024 * mib, preferred: 5 * mib) == 11 * mib)
        let md5a = S3Crypto.md5(Array("a".utf8))
        #expect(S3Client.multipartETag(partMD5s: [md5a]).hasSuffix("-1\""))
    }

    @Test func xmlParsing() throws {
        let body = Array(
            """
            <?xml version="1.0" encoding="UTF-8"?>
            <ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>b</Name><IsTruncated>true</IsTruncated>\
            <Contents><Key>a&amp;b</Key><Size>12</Size><LastModified>2025-06-15T15:06:40.123Z</LastModified></Contents>\
            <CommonPrefixes><Prefix>p/0000/</Prefix></CommonPrefixes>\
            <NextContinuationToken>tok</NextContinuationToken></ListBucketResult>
            """.utf8)
        let root = try #require(S3XML.parse(body))
        #expect(root.name == "ListBucketResult")
        #expect(root.children("Contents").first?.value("Key") == "a&b")
        #expect(root.value("NextContinuationToken") == "tok")
        #expect(root.child("CommonPrefixes")?.value("Prefix") == "p/0000/")
        #expect(S3XML.parseTimestamp("2025-06-15T15:06:40.123Z")?.timeIntervalSince1970 == 1_750_000_000.123)
        #expect(S3XML.parse(Array("not xml".utf8)) == nil)
        #expect(S3XML.escape("<a & 'b'>") == "&lt;a &amp; &apos;b&apos;&gt;")
    }

    @Test func replicaKeyLayout() throws {
        let client = try S3Client(
            bucket: "bk", credentials: S3Credentials(accessKeyID: "a", secretAccessKey: "b"),
            options: S3ClientOptions(endpoint: "http://127.0.0.1:1"))
        let replica = S3ReplicaClient(client: client, prefix: "/app/db/")
        #expect(replica.prefix == "app/db")
        #expect(replica.location == "s3://bk/app/db")
        #expect(
            replica.key(level: 0, minTXID: 1, maxTXID: 0x2a) == "app/db/0000/0000000000000001-000000000000002a.ltx")
        #expect(replica.key(level: 9, minTXID: 1, maxTXID: 1) == "app/db/0009/0000000000000001-0000000000000001.ltx")
        #expect(replica.levelPrefix(10) == "app/db/000a/")
        let root = S3ReplicaClient(client: client, prefix: "")
        #expect(root.key(level: 1, minTXID: 2, maxTXID: 3) == "0001/0000000000000002-0000000000000003.ltx")
        #expect(root.location == "s3://bk")
    }
}
