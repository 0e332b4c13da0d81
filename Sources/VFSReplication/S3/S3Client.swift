internal import CCurl
import Foundation
import Logging

#if canImport(Glibc)
    import Glibc
#endif

/// A small S3 client for one bucket: PutObject (multipart above a threshold, optionally
/// conditional with `If-None-Match: *`), GetObject (whole, to a file, or a byte range),
/// HeadObject, ListObjectsV2, DeleteObjects, CreateBucket. Written for Cloudflare R2 first and
/// any S3-compatible server (AWS S3, SeaweedFS, MinIO).
///
/// ```swift
/// let s3 = try S3Client(
///     bucket: "backups",
///     credentials: S3Credentials(accessKeyID: id, secretAccessKey: secret),
///     options: S3ClientOptions(endpoint: "https://ACCOUNT.r2.cloudflarestorage.com"))
/// switch try s3.putObject(key: "db/0000/x.ltx", body: .file(path: path), ifNoneMatch: true) {
/// case .created: break
/// case .alreadyExists(let identical): ...
/// }
/// print(s3.requestCounts)   // PUT 1, GET 0, ...
/// ```
///
/// Requests are signed here (SigV4, signed payloads) and sent with libcurl over a pool of
/// reusable connections; failures that may pass (5xx, 429, timeouts, refused or reset
/// connections) are retried per `S3ClientOptions.retry`; errors are `ReplicationError`s naming
/// the operation, object, endpoint, status and S3 error code, with a hint. All methods block:
/// call them off the cooperative pool. Credentials never appear in logs, errors or
/// descriptions.
///
/// https://docs.aws.amazon.com/AmazonS3/latest/API/API_Operations_Amazon_Simple_Storage_Service.html
public final class S3Client: Sendable {
    public let bucket: String
    public let options: S3ClientOptions
    let signer: SigV4Signer
    let endpoint: S3Endpoint
    let transport: CurlTransport
    let logger: Logger
    private let counters = S3Locked(S3RequestCounts())
    /// Server clock minus ours, learnt from a `RequestTimeTooSkewed` answer.
    private let clockOffset = S3Locked<TimeInterval>(0)

    public init(
        bucket: String, credentials: S3Credentials, options: S3ClientOptions = S3ClientOptions(),
        logger: Logger = Logger(label: "vfsreplication.s3")
    ) throws {
        guard !bucket.isEmpty else { throw ReplicationError(.invalidConfig, "S3: the bucket name is empty") }
        self.bucket = bucket
        self.options = options
        self.logger = logger
        self.endpoint = try S3Endpoint(options: options, bucket: bucket)
        self.signer = SigV4Signer(
            accessKeyID: credentials.accessKeyID, secretAccessKey: credentials.secretAccessKey,
            sessionToken: credentials.sessionToken, region: options.signingRegion, service: "s3")
        self.transport = CurlTransport(
            settings: HTTPTransportSettings(
                connectTimeout: options.connectTimeout, lowSpeedTime: options.lowSpeedTime,
                lowSpeedLimit: options.lowSpeedLimit, requestTimeout: options.requestTimeout, caFile: options.caFile,
                maxIdleHandles: options.maxIdleConnections))
    }

    /// A client for an `s3://` replica of the configuration (credentials from the replica, else
    /// the AWS_* environment variables; see `S3ClientOptions.init(config:environment:)`).
    public convenience init(
        config: ReplicaConfig, environment: [String: String] = ProcessInfo.processInfo.environment,
        logger: Logger = Logger(label: "vfsreplication.s3")
    ) throws {
        guard case .s3(let bucket, _) = config.kind else {
            throw ReplicationError(.invalidConfig, "replica \(config.url) is not an s3:// replica")
        }
        try self.init(
            bucket: bucket, credentials: try S3Credentials(config: config, environment: environment),
            options: S3ClientOptions(config: config, environment: environment), logger: logger)
    }

    /// Requests sent so far (every attempt), by kind.
    public var requestCounts: S3RequestCounts { counters.withLock { $0 } }

    /// The endpoint requests go to, e.g. `https://ACCOUNT.r2.cloudflarestorage.com`.
    public var endpointURL: String { endpoint.display }

    /// `s3://bucket/key`.
    public func url(key: String) -> String { "s3://\(bucket)/\(key)" }

    /// Shifts the clock requests are signed with by `offset` seconds (tests of the clock-skew
    /// recovery; the client otherwise learns the offset from a `RequestTimeTooSkewed` answer).
    func setClockOffsetForTesting(_ offset: TimeInterval) { clockOffset.withLock { $0 = offset } }

    // MARK: - Objects

    /// Uploads an object: a single PutObject up to `options.multipartThreshold` bytes, a
    /// multipart upload above it. With `ifNoneMatch`, the write only happens if the key does not
    /// exist yet (`If-None-Match: *`, on CompleteMultipartUpload for multipart); if it exists,
    /// the object is compared with ours (ETag) and `.alreadyExists(identical:)` says whether it
    /// holds the same bytes (a retried upload whose first answer was lost).
    /// `metadata` names go out as `x-amz-meta-<name>`.
    @discardableResult
    public func putObject(
        key: String, body: S3Body, ifNoneMatch: Bool = false, metadata: [String: String] = [:],
        contentType: String? = nil
    ) throws -> S3PutOutcome {
        let source = try S3UploadSource(body)
        defer { source.close() }
        if source.length > options.multipartThreshold {
            return try multipartUpload(
                key: key, source: source, ifNoneMatch: ifNoneMatch, metadata: metadata, contentType: contentType)
        }
        let digests = try source.digests(offset: 0, length: source.length)
        var headers: [(String, String)] = [("content-md5", S3Crypto.base64(digests.md5))]
        if let contentType { headers.append(("content-type", contentType)) }
        if ifNoneMatch { headers.append(("if-none-match", "*")) }
        headers += metadataHeaders(metadata)
        let response = try perform(
            S3Call(
                operation: "PutObject", kind: .put, method: "PUT", key: key, headers: headers,
                body: source.body(offset: 0, length: source.length), payloadHash: S3Crypto.hex(digests.sha256),
                accept: ifNoneMatch ? [412] : []))
        if response.status == 412 {
            return try existingOutcome(key: key, expectedETag: "\"\(S3Crypto.hex(digests.md5))\"")
        }
        return .created(etag: response.headers["etag"])
    }

    /// Downloads a whole object into `path` (created or truncated). On failure the file is
    /// removed. A missing key throws `.missingReplica`.
    @discardableResult
    public func getObject(key: String, toFile path: String) throws -> S3ObjectInfo {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw ReplicationError(
                .io, "S3 GetObject \(url(key: key)): create \(path): \(String(cString: strerror(errno)))")
        }
        var ok = false
        defer {
            Glibc.close(fd)
            if !ok { unlink(path) }
        }
        let response = try perform(
            S3Call(
                operation: "GetObject", kind: .get, method: "GET", key: key, responseFile: (fd, path),
                validate: { S3Client.lengthProblem($0, received: $0.bytesToFile) }))
        let info = objectInfo(key: key, response: response, size: response.bytesToFile)
        ok = true
        return info
    }

    /// Downloads an object, or `range` of it (byte offsets, end excluded), into memory.
    public func getObjectBytes(key: String, range: Range<Int64>? = nil) throws -> (info: S3ObjectInfo, bytes: [UInt8]) {
        var headers: [(String, String)] = []
        if let range {
            guard !range.isEmpty else { return (S3ObjectInfo(key: key, size: 0), []) }
            headers.append(("range", "bytes=\(range.lowerBound)-\(range.upperBound - 1)"))
        }
        let response = try perform(
            S3Call(
                operation: "GetObject", kind: .get, method: "GET", key: key, headers: headers,
                validate: { S3Client.lengthProblem($0, received: Int64($0.body.count)) }))
        var bytes = response.body
        if let range, response.status == 200 {
            // The server ignored the Range header: cut the part we asked for.
            let lower = Int(min(range.lowerBound, Int64(bytes.count)))
            let upper = Int(min(range.upperBound, Int64(bytes.count)))
            bytes = Array(bytes[lower..<upper])
        }
        var size = Int64(response.body.count)
        if let total = response.headers["content-range"]?.split(separator: "/").last.flatMap({ Int64($0) }) {
            size = total
        }
        return (objectInfo(key: key, response: response, size: size), bytes)
    }

    /// The object's size, ETag, modification time and metadata; nil if there is no such key.
    public func headObject(key: String) throws -> S3ObjectInfo? {
        let response = try perform(
            S3Call(operation: "HeadObject", kind: .head, method: "HEAD", key: key, accept: [404]))
        if response.status == 404 { return nil }
        let size = response.headers["content-length"].flatMap(Int64.init) ?? 0
        return objectInfo(key: key, response: response, size: size)
    }

    /// One ListObjectsV2 page: keys under `prefix` (rolled up at `delimiter` into
    /// `commonPrefixes`), at most `maxKeys` (the server caps it at 1,000).
    public func listObjects(
        prefix: String, delimiter: String? = nil, maxKeys: Int? = nil, continuationToken: String? = nil
    ) throws -> S3ListPage {
        var query: [(String, String)] = [("list-type", "2"), ("prefix", prefix)]
        if let delimiter { query.append(("delimiter", delimiter)) }
        if let maxKeys { query.append(("max-keys", String(maxKeys))) }
        if let continuationToken { query.append(("continuation-token", continuationToken)) }
        let target = "s3://\(bucket)/\(prefix)"
        let response = try perform(
            S3Call(
                operation: "ListObjectsV2", kind: .list, method: "GET", key: nil, query: query, target: target,
                validate: { response in
                    if let root = S3XML.parse(response.body), root.name == "ListBucketResult" { return nil }
                    let type = response.headers["content-type"].map { " (\($0))" } ?? ""
                    return "the response is not a ListBucketResult\(type): "
                        + (S3Client.snippet(response.body) ?? "empty body")
                }))
        guard let root = S3XML.parse(response.body), root.name == "ListBucketResult" else {
            throw ReplicationError(
                .io, "S3 ListObjectsV2 \(target) (endpoint \(endpointURL)): the response is not a ListBucketResult")
        }
        let objects = root.children("Contents").compactMap { entry -> S3ListedObject? in
            guard let key = entry.value("Key") else { return nil }
            return S3ListedObject(
                key: key, size: entry.value("Size").flatMap { Int64($0) } ?? 0,
                lastModified: entry.value("LastModified").flatMap(S3XML.parseTimestamp), etag: entry.value("ETag"))
        }
        let prefixes = root.children("CommonPrefixes").compactMap { $0.value("Prefix") }
        let truncated = root.value("IsTruncated") == "true"
        let token = root.value("NextContinuationToken").flatMap { $0.isEmpty ? nil : $0 }
        if truncated && token == nil {
            throw ReplicationError(
                .io, "S3 ListObjectsV2 \(target) (endpoint \(endpointURL)): truncated page without a continuation token"
            )
        }
        return S3ListPage(objects: objects, commonPrefixes: prefixes, nextContinuationToken: truncated ? token : nil)
    }

    /// Every page of a listing, concatenated.
    public func listAllObjects(
        prefix: String, delimiter: String? = nil, maxKeysPerPage: Int? = nil
    ) throws -> (objects: [S3ListedObject], commonPrefixes: [String]) {
        var objects: [S3ListedObject] = []
        var prefixes: [String] = []
        var token: String?
        repeat {
            let page = try listObjects(
                prefix: prefix, delimiter: delimiter, maxKeys: maxKeysPerPage, continuationToken: token)
            objects += page.objects
            prefixes += page.commonPrefixes
            token = page.nextContinuationToken
        } while token != nil
        return (objects, prefixes)
    }

    /// Deletes keys with DeleteObjects, 1,000 per request. Missing keys are not an error; any
    /// other per-key error is thrown, naming the key.
    public func deleteObjects(keys: [String]) throws {
        var start = 0
        while start < keys.count {
            let batch = keys[start..<min(start + S3Client.maxKeysPerDelete, keys.count)]
            start += batch.count
            var xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
            xml += "<Delete xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Quiet>true</Quiet>"
            for key in batch { xml += "<Object><Key>\(S3XML.escape(key))</Key></Object>" }
            xml += "</Delete>"
            let body = Array(xml.utf8)
            let target = batch.count == 1 ? url(key: batch.first!) : "s3://\(bucket) (\(batch.count) keys)"
            let response = try perform(
                S3Call(
                    operation: "DeleteObjects", kind: .delete, method: "POST", key: nil, query: [("delete", "")],
                    headers: [
                        ("content-md5", S3Crypto.base64(S3Crypto.md5(body))), ("content-type", "application/xml"),
                    ],
                    body: .bytes(body), payloadHash: S3Crypto.hex(S3Crypto.sha256(body)), target: target))
            guard let root = S3XML.parse(response.body) else { continue }
            let failures = root.children("Error").filter { $0.value("Code") != "NoSuchKey" }
            if let first = failures.first {
                let more = failures.count > 1 ? " (and \(failures.count - 1) more keys)" : ""
                throw ReplicationError(
                    .io,
                    "S3 DeleteObjects \(url(key: first.value("Key") ?? "?")) (endpoint \(endpointURL)): "
                        + "\(first.value("Code") ?? "error"): \(first.value("Message") ?? "")\(more)")
            }
        }
    }

    /// DeleteObjects accepts at most this many keys.
    public static let maxKeysPerDelete = 1000

    /// Creates the bucket (for tests and setup); succeeds if we already own it.
    public func createBucket() throws {
        var body: [UInt8] = []
        if signer.region != "us-east-1" && signer.region != "auto" {
            body = Array(
                ("<CreateBucketConfiguration xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\">"
                    + "<LocationConstraint>\(S3XML.escape(signer.region))</LocationConstraint>"
                    + "</CreateBucketConfiguration>").utf8)
        }
        do {
            _ = try performRetrying(
                S3Call(
                    operation: "CreateBucket", kind: .other, method: "PUT", key: nil, body: .bytes(body),
                    payloadHash: S3Crypto.hex(S3Crypto.sha256(body)), target: "s3://\(bucket)"))
        } catch let error as S3CallError {
            if error.failure.s3Code == "BucketAlreadyOwnedByYou" { return }
            throw error.failure.error
        }
    }

    // MARK: - Helpers

    func metadataHeaders(_ metadata: [String: String]) -> [(String, String)] {
        metadata.sorted { $0.key < $1.key }.map { ("x-amz-meta-\($0.key.lowercased())", $0.value) }
    }

    func objectInfo(key: String, response: HTTPResponse, size: Int64) -> S3ObjectInfo {
        var metadata: [String: String] = [:]
        for (name, value) in response.headers where name.hasPrefix("x-amz-meta-") {
            metadata[String(name.dropFirst("x-amz-meta-".count))] = value
        }
        let modified = response.headers["last-modified"].flatMap { text -> Date? in
            let seconds = curl_getdate(text, nil)
            return seconds < 0 ? nil : Date(timeIntervalSince1970: TimeInterval(seconds))
        }
        return S3ObjectInfo(
            key: key, size: size, etag: response.headers["etag"], lastModified: modified, metadata: metadata)
    }

    /// After a 412 on a conditional write: is the existing object the one we meant to write?
    func existingOutcome(key: String, expectedETag: String) throws -> S3PutOutcome {
        let existing = try headObject(key: key)
        let identical = existing?.etag.map { $0.lowercased() == expectedETag.lowercased() } ?? false
        logger.debug(
            "conditional write found an existing object",
            metadata: ["s3.key": "\(key)", "s3.identical": "\(identical)"])
        return .alreadyExists(identical: identical)
    }

    // MARK: - Sending, signing, retrying

    /// Sends a request, retrying what may pass; returns 2xx responses and those in `accept`.
    /// Throws the `ReplicationError` describing anything else (`performRetrying` throws the
    /// underlying `S3CallError`, for callers that look at the status or S3 code).
    func perform(_ call: S3Call) throws -> HTTPResponse {
        do {
            return try performRetrying(call)
        } catch let error as S3CallError {
            throw error.failure.error
        }
    }

    func performRetrying(_ call: S3Call) throws -> HTTPResponse {
        let policy = options.retry
        let clock = ContinuousClock()
        let start = clock.now
        var attempt = 0
        var resignedForSkew = false
        while true {
            attempt += 1
            counters.withLock {
                $0[call.kind] += 1
                if attempt > 1 { $0.retries += 1 }
            }
            if let file = call.responseFile { _ = ftruncate(file.fd, 0) }
            let request = signedRequest(call)
            var failure: S3Failure
            var retryable: Bool
            switch transport.execute(request) {
            case .success(let response):
                let embedded = call.errorMayComeIn200 && response.status == 200 ? embeddedError(response.body) : nil
                if (200..<300).contains(response.status) && embedded == nil {
                    guard let problem = call.validate?(response) else { return response }
                    // Not what S3 answers (a proxy's page, a body cut short): the next attempt
                    // may reach the server.
                    failure = makeFailure(call, .malformed(problem))
                    retryable = true
                    break
                }
                if call.accept.contains(response.status) { return response }
                let parsed = embedded ?? S3XML.parse(response.body)
                let s3Code = parsed?.value("Code")
                let status = response.status
                failure = makeFailure(
                    call,
                    .http(
                        status: status, code: s3Code,
                        message: parsed?.value("Message") ?? (parsed == nil ? S3Client.snippet(response.body) : nil)))
                if s3Code == "RequestTimeTooSkewed" && !resignedForSkew {
                    resignedForSkew = true
                    if learnClockOffset(response: response, error: parsed) {
                        logger.info(
                            "clock skew: re-signing with the server's time", metadata: ["s3.op": "\(call.operation)"])
                        continue
                    }
                }
                retryable = S3Client.isRetryable(status: status, s3Code: s3Code)
            case .failure(let error):
                failure = makeFailure(call, .transport(error))
                retryable = error.isRetryable
            }
            let elapsed = clock.now - start
            failure.attempts = attempt
            failure.elapsed = elapsed
            let delay = policy.delay(afterAttempt: attempt, random: Double.random(in: 0..<1))
            guard retryable, policy.allowsAnotherAttempt(after: attempt, elapsed: elapsed, delay: delay) else {
                throw S3CallError(failure: failure)
            }
            logger.debug(
                "S3 request failed; retrying",
                metadata: [
                    "s3.op": "\(call.operation)", "s3.target": "\(failure.target)", "s3.attempt": "\(attempt)",
                    "s3.error": "\(failure.error.message)", "s3.delay_ms": "\(Int(delay.s3Seconds * 1000))",
                ])
            Thread.sleep(forTimeInterval: delay.s3Seconds)
        }
    }

    /// Why a 2xx response's body does not have the length its Content-Length announced, or nil.
    static func lengthProblem(_ response: HTTPResponse, received: Int64) -> String? {
        guard let expected = response.headers["content-length"].flatMap(Int64.init), expected != received else {
            return nil
        }
        return "received \(received) of \(expected) bytes"
    }

    static func isRetryable(status: Int, s3Code: String?) -> Bool {
        switch s3Code ?? "" {
        case "RequestTimeout", "SlowDown", "InternalError", "ServiceUnavailable", "Throttling", "ThrottlingException":
            return true
        case "RequestTimeTooSkewed":
            return false
        default:
            return status == 429 || (status >= 500 && status != 501)
        }
    }

    /// The start of a non-XML error body (a proxy's or a plain-HTTP server's text), one line.
    static func snippet(_ body: [UInt8]) -> String? {
        let text = String(decoding: body.prefix(400), as: UTF8.self)
            .split(whereSeparator: { $0.isWhitespace || $0.isNewline }).joined(separator: " ")
        guard !text.isEmpty else { return nil }
        return text.count > 200 ? String(text.prefix(200)) + "..." : text
    }

    private func embeddedError(_ body: [UInt8]) -> S3XMLElement? {
        guard let root = S3XML.parse(body), root.name == "Error" else { return nil }
        return root
    }

    private func makeFailure(_ call: S3Call, _ cause: S3Failure.Cause) -> S3Failure {
        S3Failure(
            operation: call.operation, target: call.target ?? (call.key.map { url(key: $0) } ?? "s3://\(bucket)"),
            bucket: bucket, endpoint: endpointURL, region: signer.region, caFile: options.caFile, cause: cause)
    }

    /// From the `Date` header (or S3's `ServerTime`), how far the server's clock is from ours.
    private func learnClockOffset(response: HTTPResponse, error: S3XMLElement?) -> Bool {
        var server: Date?
        if let text = error?.value("ServerTime") { server = S3XML.parseTimestamp(text) }
        if server == nil, let text = response.headers["date"] {
            let seconds = curl_getdate(text, nil)
            if seconds >= 0 { server = Date(timeIntervalSince1970: TimeInterval(seconds)) }
        }
        guard let server else { return false }
        clockOffset.withLock { $0 = server.timeIntervalSinceNow }
        return true
    }

    private func signedRequest(_ call: S3Call) -> HTTPRequest {
        let (path, host) = endpoint.location(key: call.key)
        var headers: [(String, String)] = [("host", host), ("x-amz-content-sha256", call.payloadHash)]
        headers += call.headers
        let now = Date().addingTimeInterval(clockOffset.withLock { $0 })
        let signed = signer.sign(
            method: call.method, encodedPath: path, query: call.query, headers: headers, payloadHash: call.payloadHash,
            date: now)
        var url = endpoint.origin + path
        if !signed.canonicalQuery.isEmpty { url += "?" + signed.canonicalQuery }
        return HTTPRequest(
            method: call.method, url: url, headers: signed.headers.map { (name: $0.name, value: $0.value) },
            body: call.body, responseFile: call.responseFile)
    }
}

/// One S3 operation to send (and re-send on retry: the body is replayable).
struct S3Call {
    var operation: String
    var kind: S3RequestKind
    var method: String
    /// The object key; nil for bucket-level requests.
    var key: String?
    var query: [(String, String)] = []
    var headers: [(String, String)] = []
    var body: HTTPRequestBody = .none
    var payloadHash: String = S3Crypto.emptyPayloadSHA256
    var responseFile: (fd: Int32, path: String)?
    /// Non-2xx statuses handed back to the caller rather than thrown.
    var accept: Set<Int> = []
    /// CompleteMultipartUpload may answer 200 with an `<Error>` document.
    var errorMayComeIn200 = false
    /// What error messages name; default `s3://bucket/key`.
    var target: String?
    /// Checks a 2xx response; a non-nil answer (what is wrong) makes it a retryable failure.
    var validate: ((HTTPResponse) -> String?)?

    init(
        operation: String, kind: S3RequestKind, method: String, key: String?, query: [(String, String)] = [],
        headers: [(String, String)] = [], body: HTTPRequestBody = .none,
        payloadHash: String = S3Crypto.emptyPayloadSHA256, responseFile: (fd: Int32, path: String)? = nil,
        accept: Set<Int> = [], errorMayComeIn200: Bool = false, target: String? = nil,
        validate: ((HTTPResponse) -> String?)? = nil
    ) {
        self.operation = operation
        self.kind = kind
        self.method = method
        self.key = key
        self.query = query
        self.headers = headers
        self.body = body
        self.payloadHash = payloadHash
        self.responseFile = responseFile
        self.accept = accept
        self.errorMayComeIn200 = errorMayComeIn200
        self.target = target
        self.validate = validate
    }
}

/// A failed call before it is turned into a `ReplicationError` (internal callers look at the
/// status and S3 code).
struct S3CallError: Error {
    var failure: S3Failure
}

/// Where requests go: scheme, host, port, base path, and how the bucket is addressed.
struct S3Endpoint: Sendable {
    /// `scheme://host[:port]`.
    let origin: String
    /// The endpoint as configured (for messages).
    let display: String
    let hostHeader: String
    let basePath: String
    let bucket: String
    let pathStyle: Bool

    init(options: S3ClientOptions, bucket: String) throws {
        let text = options.endpoint ?? "https://s3.\(options.signingRegion).amazonaws.com"
        guard let parts = URLComponents(string: text), let scheme = parts.scheme?.lowercased(),
            scheme == "http" || scheme == "https", var host = parts.host, !host.isEmpty,
            parts.query == nil, parts.fragment == nil, parts.user == nil, parts.password == nil
        else {
            throw ReplicationError(
                .invalidConfig, "S3 endpoint '\(text)': expected http(s)://host[:port] (check 'endpoint')")
        }
        host = host.lowercased()
        if host.contains(":") && !host.hasPrefix("[") { host = "[\(host)]" }
        self.pathStyle = options.usesPathStyle
        if !pathStyle && (bucket.contains(".") && scheme == "https") {
            throw ReplicationError(
                .invalidConfig,
                "S3 bucket '\(bucket)' has dots, which virtual-host addressing over https cannot serve: "
                    + "set force-path-style: true")
        }
        let port = parts.port.map { ":\($0)" } ?? ""
        let bucketHost = pathStyle ? host : "\(bucket).\(host)"
        self.hostHeader = bucketHost + port
        self.origin = "\(scheme)://\(bucketHost)\(port)"
        var base = parts.percentEncodedPath
        while base.hasSuffix("/") { base.removeLast() }
        self.basePath = base
        self.bucket = bucket
        self.display = "\(scheme)://\(host)\(port)\(base)"
    }

    /// The encoded request path and the Host header for an object (or the bucket when `key` is
    /// nil): `/bucket/key` path-style, `/key` virtual-host.
    func location(key: String?) -> (path: String, host: String) {
        var path = basePath
        if pathStyle { path += "/" + SigV4Signer.uriEncode(bucket, encodeSlash: true) }
        if let key { path += "/" + SigV4Signer.encodePath(key) }
        if path.isEmpty { path = "/" }
        return (path, hostHeader)
    }
}
