import Foundation

/// Static S3 credentials. `description` and `dump` never show the secret.
public struct S3Credentials: Sendable, Equatable, CustomStringConvertible, CustomReflectable {
    public var accessKeyID: String
    public var secretAccessKey: String
    public var sessionToken: String?

    public init(accessKeyID: String, secretAccessKey: String, sessionToken: String? = nil) {
        self.accessKeyID = accessKeyID
        self.secretAccessKey = secretAccessKey
        self.sessionToken = sessionToken
    }

    public var description: String { "S3Credentials(accessKeyID: \(accessKeyID), secretAccessKey: <redacted>)" }

    public var customMirror: Mirror {
        Mirror(
            self, children: ["accessKeyID": accessKeyID, "secretAccessKey": "<redacted>"], displayStyle: .struct)
    }
}

/// When and how long to retry a failed request: exponential backoff with full jitter
/// (`delay = random(0, min(maxDelay, baseDelay * 2^(attempt-1)))`), bounded both by the number
/// of attempts and by the total time spent.
///
/// Retried: HTTP 5xx, 429, S3's `RequestTimeout` / `SlowDown` / `InternalError`, timeouts,
/// connection refused / reset, DNS failures. Never retried: other 4xx (a `RequestTimeTooSkewed`
/// is re-signed once with the server's clock). A 412 is an answer, not a failure.
///
/// https://aws.amazon.com/blogs/architecture/exponential-backoff-and-jitter/
public struct S3RetryPolicy: Sendable, Equatable {
    /// Attempts in all, the first included (1 = never retry).
    public var maxAttempts: Int
    public var baseDelay: Duration
    public var maxDelay: Duration
    /// No new attempt starts once this much time has passed since the first one.
    public var maxTotalTime: Duration

    public init(
        maxAttempts: Int = 6, baseDelay: Duration = .milliseconds(200), maxDelay: Duration = .seconds(5),
        maxTotalTime: Duration = .seconds(60)
    ) {
        self.maxAttempts = max(1, maxAttempts)
        self.baseDelay = baseDelay
        self.maxDelay = maxDelay
        self.maxTotalTime = maxTotalTime
    }

    /// The delay before attempt `attempt + 1`, after `attempt` attempts failed; `random` is a
    /// number in [0, 1) (injected so the policy is a pure function).
    public func delay(afterAttempt attempt: Int, random: Double) -> Duration {
        let exponent = min(max(attempt - 1, 0), 30)
        let ceiling = min(maxDelay.s3Seconds, baseDelay.s3Seconds * Double(1 << exponent))
        return .nanoseconds(Int64(ceiling * min(max(random, 0), 1) * 1e9))
    }

    /// Whether attempt `attempt + 1` may start `elapsed + delay` after the first one began.
    public func allowsAnotherAttempt(after attempt: Int, elapsed: Duration, delay: Duration) -> Bool {
        attempt < maxAttempts && elapsed + delay < maxTotalTime
    }
}

/// How an `S3Client` reaches its endpoint.
///
/// ```swift
/// var options = S3ClientOptions(endpoint: "https://ACCOUNT.r2.cloudflarestorage.com")  // region "auto"
/// options.multipartThreshold = 64 << 20
/// ```
public struct S3ClientOptions: Sendable, Equatable {
    /// `scheme://host[:port][/base-path]`; nil means AWS S3 (`https://s3.<region>.amazonaws.com`).
    public var endpoint: String?
    /// Signing region; nil or empty means `auto` for R2 endpoints and `us-east-1` elsewhere.
    public var region: String?
    /// Path-style (`endpoint/bucket/key`) rather than virtual-host (`bucket.endpoint/key`)
    /// addressing; nil picks path-style for custom endpoints (R2, SeaweedFS, MinIO) and
    /// virtual-host for AWS.
    public var forcePathStyle: Bool?
    /// PEM bundle of CA certificates to trust; nil uses libcurl's default bundle. TLS
    /// verification itself cannot be turned off.
    public var caFile: String?
    public var connectTimeout: Duration = .seconds(10)
    /// A transfer slower than `lowSpeedLimit` bytes per second for `lowSpeedTime` is aborted
    /// (and retried): catches servers that stop answering without a fixed cap on big transfers.
    public var lowSpeedTime: Duration = .seconds(30)
    public var lowSpeedLimit: Int = 1
    /// A cap on each request as a whole; nil for none (the low-speed limit still applies).
    public var requestTimeout: Duration?
    public var retry: S3RetryPolicy = S3RetryPolicy()
    /// Objects larger than this go up as multipart uploads.
    public var multipartThreshold: Int64 = 64 << 20
    /// Part size of multipart uploads (at least 5 MiB; grown when an object would need more
    /// than 10,000 parts). All parts but the last have this size, as R2 requires.
    public var partSize: Int64 = 16 << 20
    /// Idle connections (curl easy handles) kept for reuse.
    public var maxIdleConnections: Int = 4

    public static let minimumPartSize: Int64 = 5 << 20

    public init(
        endpoint: String? = nil, region: String? = nil, forcePathStyle: Bool? = nil, caFile: String? = nil
    ) {
        self.endpoint = endpoint
        self.region = region
        self.forcePathStyle = forcePathStyle
        self.caFile = caFile
    }

    /// Options for a replica from the configuration: its endpoint (R2's derived from
    /// `r2AccountID`), region, addressing, and CA file. Without `caFile`, the CA bundle named by
    /// `AWS_CA_BUNDLE`, then `CURL_CA_BUNDLE`, then `SSL_CERT_FILE` is used when set, as the
    /// AWS SDKs and curl do.
    public init(config: ReplicaConfig, environment: [String: String] = ProcessInfo.processInfo.environment) {
        self.init(
            endpoint: config.resolvedEndpoint, region: config.region, forcePathStyle: config.forcePathStyle,
            caFile: config.caFile ?? S3ClientOptions.caBundle(environment: environment))
    }

    /// The CA bundle named by the environment, if any.
    public static func caBundle(environment: [String: String]) -> String? {
        for name in ["AWS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE"] {
            if let value = environment[name], !value.isEmpty { return value }
        }
        return nil
    }

    /// The region requests are signed for.
    public var signingRegion: String {
        if let region, !region.isEmpty { return region }
        if let endpoint, endpoint.lowercased().contains(".r2.cloudflarestorage.com") { return "auto" }
        return "us-east-1"
    }

    /// Whether requests name the bucket in the path.
    public var usesPathStyle: Bool { forcePathStyle ?? (endpoint != nil) }
}

extension S3Credentials {
    /// The replica's keys, else `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` (and
    /// `AWS_SESSION_TOKEN`) from the environment. Throws `.invalidConfig` when neither has both.
    public init(config: ReplicaConfig, environment: [String: String] = ProcessInfo.processInfo.environment) throws {
        if let id = config.accessKeyID, let secret = config.secretAccessKey, !id.isEmpty, !secret.isEmpty {
            self.init(accessKeyID: id, secretAccessKey: secret)
        } else if config.accessKeyID == nil, config.secretAccessKey == nil,
            let id = environment["AWS_ACCESS_KEY_ID"], let secret = environment["AWS_SECRET_ACCESS_KEY"],
            !id.isEmpty, !secret.isEmpty
        {
            self.init(accessKeyID: id, secretAccessKey: secret, sessionToken: environment["AWS_SESSION_TOKEN"])
        } else {
            throw ReplicationError(
                .invalidConfig,
                "replica \(config.url): no S3 credentials: set both 'access-key-id' and 'secret-access-key' "
                    + "(or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY in the environment)")
        }
    }
}

/// The kinds of request an `S3Client` counts. R2 bills `put`, `list` and `multipart` as
/// Class A, `get` and `head` as Class B; deletes are free.
public enum S3RequestKind: String, Sendable, CaseIterable {
    case put = "PUT"
    case get = "GET"
    case head = "HEAD"
    case list = "LIST"
    case delete = "DELETE"
    /// CreateMultipartUpload, UploadPart, CompleteMultipartUpload, AbortMultipartUpload.
    case multipart = "MULTIPART"
    /// Bucket operations (CreateBucket).
    case other = "OTHER"
}

/// Requests sent so far, by kind; every attempt counts (retries included).
public struct S3RequestCounts: Sendable, Equatable, CustomStringConvertible {
    public var put = 0
    public var get = 0
    public var head = 0
    public var list = 0
    public var delete = 0
    public var multipart = 0
    public var other = 0
    /// Attempts that were retries of an earlier failed attempt.
    public var retries = 0

    public init() {}

    public subscript(kind: S3RequestKind) -> Int {
        get {
            switch kind {
            case .put: put
            case .get: get
            case .head: head
            case .list: list
            case .delete: delete
            case .multipart: multipart
            case .other: other
            }
        }
        set {
            switch kind {
            case .put: put = newValue
            case .get: get = newValue
            case .head: head = newValue
            case .list: list = newValue
            case .delete: delete = newValue
            case .multipart: multipart = newValue
            case .other: other = newValue
            }
        }
    }

    public var total: Int { S3RequestKind.allCases.reduce(0) { $0 + self[$1] } }

    /// Requests R2 bills as Class A (writes, lists, multipart calls, bucket calls).
    public var classA: Int { put + list + multipart + other }
    /// Requests R2 bills as Class B (reads).
    public var classB: Int { self.get + self.head }

    public static func - (lhs: S3RequestCounts, rhs: S3RequestCounts) -> S3RequestCounts {
        var out = S3RequestCounts()
        for kind in S3RequestKind.allCases { out[kind] = lhs[kind] - rhs[kind] }
        out.retries = lhs.retries - rhs.retries
        return out
    }

    public var description: String {
        "PUT \(put), GET \(get), HEAD \(head), LIST \(list), DELETE \(delete), multipart \(multipart), "
            + "other \(other) (retries \(retries))"
    }
}

/// What S3 says about one object (HEAD, GET, PUT).
public struct S3ObjectInfo: Sendable, Equatable {
    public var key: String
    public var size: Int64
    /// As sent by the server, quotes included (`"d41d8cd9..."`).
    public var etag: String?
    public var lastModified: Date?
    /// `x-amz-meta-*` headers, names lower-cased without the prefix.
    public var metadata: [String: String]

    public init(
        key: String, size: Int64, etag: String? = nil, lastModified: Date? = nil, metadata: [String: String] = [:]
    ) {
        self.key = key
        self.size = size
        self.etag = etag
        self.lastModified = lastModified
        self.metadata = metadata
    }
}

/// One entry of a ListObjectsV2 page.
public struct S3ListedObject: Sendable, Equatable {
    public var key: String
    public var size: Int64
    public var lastModified: Date?
    public var etag: String?
}

/// One ListObjectsV2 page.
public struct S3ListPage: Sendable, Equatable {
    public var objects: [S3ListedObject]
    /// Keys rolled up by the delimiter (`prefix/0000/`), when one was given.
    public var commonPrefixes: [String]
    /// Pass to the next call to continue; nil on the last page.
    public var nextContinuationToken: String?
}

/// How a conditional write (`If-None-Match: *`) ended.
public enum S3PutOutcome: Sendable, Equatable {
    /// The object was written; its ETag as the server sent it.
    case created(etag: String?)
    /// The key already existed (HTTP 412): nothing was written. `identical` says whether the
    /// existing object has our bytes (same ETag): a retried upload whose first answer was lost.
    case alreadyExists(identical: Bool)
}

/// What `putObject` uploads.
public enum S3Body: Sendable {
    case bytes([UInt8])
    /// A whole file.
    case file(path: String)
}

extension Duration {
    /// This duration in (fractional) seconds.
    var s3Seconds: Double {
        let parts = components
        return Double(parts.seconds) + Double(parts.attoseconds) / 1e18
    }
}
