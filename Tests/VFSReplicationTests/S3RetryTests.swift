import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// Retries against a scripted HTTP server on loopback: which answers are retried (5xx, 429,
/// RequestTimeout, an error inside a 200), which are not (other 4xx), and that bodies are
/// re-sent whole on every attempt.
@Suite("S3 retries (scripted server)")
struct S3RetryTests {
    static let slowDown = """
        <?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Reduce your request rate.</Message></Error>
        """
    static let internalError =
        "<Error><Code>InternalError</Code><Message>We encountered an internal error.</Message></Error>"

    func client(_ server: ScriptedHTTPServer, attempts: Int = 4) throws -> S3Client {
        var options = S3ClientOptions(endpoint: "http://127.0.0.1:\(server.port)", region: "auto")
        options.retry = S3RetryPolicy(maxAttempts: attempts, baseDelay: .milliseconds(5), maxDelay: .milliseconds(20))
        return try S3Client(bucket: "bk", credentials: SeaweedFS.credentials, options: options)
    }

    @Test func serverErrorsAndThrottlingAreRetried() throws {
        let server = try ScriptedHTTPServer([
            .init(status: 503, body: Self.slowDown), .init(status: 429, body: ""),
            .init(status: 500, body: Self.internalError),
            .init(status: 200, body: "", headers: ["ETag": "\"abc\""]),
        ])
        defer { server.stop() }
        let s3 = try client(server)
        let body = TestSupport.pageBytes(seed: 5, count: 70_000)
        #expect(try s3.putObject(key: "k", body: .bytes(body)) == .created(etag: "\"abc\""))
        #expect(s3.requestCounts.put == 4 && s3.requestCounts.retries == 3)
        let requests = server.requests
        #expect(requests.count == 4)
        // Every attempt carried the whole body, signed for region auto, to the path-style key.
        #expect(requests.allSatisfy { $0.body == body && $0.line == "PUT /bk/k HTTP/1.1" })
        #expect(requests.allSatisfy { $0.headers["authorization"]?.contains("/auto/s3/aws4_request") == true })
        #expect(requests.allSatisfy { $0.headers["x-amz-content-sha256"] == S3Crypto.hex(S3Crypto.sha256(body)) })
        #expect(requests.allSatisfy { $0.headers["expect"] == nil && $0.headers["transfer-encoding"] == nil })
    }

    @Test func givingUpReportsTheLastAnswerAndTheAttempts() throws {
        let server = try ScriptedHTTPServer(Array(repeating: .init(status: 503, body: Self.slowDown), count: 3))
        defer { server.stop() }
        let s3 = try client(server, attempts: 3)
        let error = try #require(throws: ReplicationError.self) { try s3.getObjectBytes(key: "x") }
        #expect(error.message.contains("HTTP 503 SlowDown: Reduce your request rate"))
        #expect(error.message.contains("gave up after 3 attempts"))
        #expect(server.requests.count == 3)
    }

    @Test func clientErrorsAreNotRetried() throws {
        let server = try ScriptedHTTPServer([
            .init(status: 403, body: "<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"),
            .init(status: 200, body: ""),
        ])
        defer { server.stop() }
        let s3 = try client(server)
        let error = try #require(throws: ReplicationError.self) { try s3.deleteObjects(keys: ["a", "b"]) }
        #expect(error.message.contains("HTTP 403 AccessDenied"))
        #expect(error.message.contains("may not perform DeleteObjects"))
        #expect(server.requests.count == 1)
        // DeleteObjects carries Content-MD5 and the XML body.
        let request = try #require(server.requests.first)
        #expect(request.line == "POST /bk?delete= HTTP/1.1")
        #expect(request.headers["content-md5"] == S3Crypto.base64(S3Crypto.md5(request.body)))
        #expect(String(decoding: request.body, as: UTF8.self).contains("<Object><Key>b</Key></Object>"))
    }

    @Test func requestTimeoutAndErrorsInside200AreRetried() throws {
        let server = try ScriptedHTTPServer([
            .init(
                status: 400,
                body: "<Error><Code>RequestTimeout</Code><Message>Your socket connection...</Message></Error>"),
            .init(
                status: 200,
                body: "<InitiateMultipartUploadResult><UploadId>U1</UploadId></InitiateMultipartUploadResult>"),
            .init(status: 200, body: "", headers: ["ETag": "\"p1\""]),
            .init(status: 200, body: "", headers: ["ETag": "\"p2\""]),
            .init(status: 200, body: Self.internalError),  // CompleteMultipartUpload failing inside a 200
            .init(
                status: 200,
                body: "<CompleteMultipartUploadResult><ETag>\"done-2\"</ETag></CompleteMultipartUploadResult>"),
        ])
        defer { server.stop() }
        var options = S3ClientOptions(endpoint: "http://127.0.0.1:\(server.port)", region: "auto")
        options.retry = S3RetryPolicy(maxAttempts: 3, baseDelay: .milliseconds(5), maxDelay: .milliseconds(20))
        options.multipartThreshold = 6 << 20
        options.partSize = 5 << 20
        let s3 = try S3Client(bucket: "bk", credentials: SeaweedFS.credentials, options: options)
        let body = TestSupport.pageBytes(seed: 6, count: 7 << 20)
        let outcome = try s3.putObject(key: "big", body: .bytes(body), ifNoneMatch: true)
        #expect(outcome == .created(etag: "\"done-2\""))
        let lines = server.requests.map(\.line)
        #expect(
            lines == [
                "POST /bk/big?uploads= HTTP/1.1", "POST /bk/big?uploads= HTTP/1.1",
                "PUT /bk/big?partNumber=1&uploadId=U1 HTTP/1.1", "PUT /bk/big?partNumber=2&uploadId=U1 HTTP/1.1",
                "POST /bk/big?uploadId=U1 HTTP/1.1", "POST /bk/big?uploadId=U1 HTTP/1.1",
            ])
        let requests = server.requests
        #expect(requests[2].body.count == 5 << 20 && requests[3].body.count == 2 << 20)
        #expect(requests[4].headers["if-none-match"] == "*")
        #expect(requests[1].headers["if-none-match"] == nil)
        #expect(
            String(decoding: requests[5].body, as: UTF8.self).contains(
                "<PartNumber>2</PartNumber><ETag>&quot;p2&quot;</ETag>"))
        #expect(s3.requestCounts.multipart == 6)
    }

    @Test func aFailedPartAbortsTheUpload() throws {
        let server = try ScriptedHTTPServer([
            .init(
                status: 200,
                body: "<InitiateMultipartUploadResult><UploadId>U9</UploadId></InitiateMultipartUploadResult>"),
            .init(status: 400, body: "<Error><Code>InvalidDigest</Code><Message>bad</Message></Error>"),
            .init(status: 204, body: ""),
        ])
        defer { server.stop() }
        var options = S3ClientOptions(endpoint: "http://127.0.0.1:\(server.port)", region: "auto")
        options.multipartThreshold = 6 << 20
        options.partSize = 5 << 20
        let s3 = try S3Client(bucket: "bk", credentials: SeaweedFS.credentials, options: options)
        let error = try #require(throws: ReplicationError.self) {
            try s3.putObject(key: "big", body: .bytes(TestSupport.pageBytes(seed: 8, count: 7 << 20)))
        }
        #expect(error.message.contains("UploadPart s3://bk/big part 1"))
        #expect(error.message.contains("InvalidDigest"))
        #expect(server.requests.map(\.line).last == "DELETE /bk/big?uploadId=U9 HTTP/1.1")
    }
}

/// A one-connection-at-a-time HTTP/1.1 server on loopback that answers from a script (then
/// 500s) and records each request. `Connection: close` on every answer.
final class ScriptedHTTPServer: @unchecked Sendable {
    struct Answer {
        var status: Int
        var body: String
        var headers: [String: String] = [:]
    }

    struct Request {
        var line: String
        var headers: [String: String]
        var body: [UInt8]
    }

    let port: Int
    private let listener: Int32
    private let lock = NSLock()
    private var script: [Answer]
    private var recorded: [Request] = []
    private var thread: Thread?

    init(_ script: [Answer]) throws {
        self.script = script
        listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let listenerFD = listener
        guard
            withUnsafePointer(
                to: &address, { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listenerFD, $0, length) } })
                == 0,
            listen(listener, 16) == 0
        else { throw TestFailure("scripted server: bind/listen failed: errno \(errno)") }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listenerFD, $0, &length) }
        }
        port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [self] in serve() }
        self.thread = thread
        thread.start()
    }

    /// Stops accepting (the serving thread ends) and closes the socket.
    func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        while thread?.isFinished == false { usleep(1000) }
        close(listener)
    }

    var requests: [Request] { lock.withLock { recorded } }

    private func serve() {
        while true {
            let connection = accept(listener, nil, nil)
            if connection < 0 { return }
            handle(connection)
            close(connection)
        }
    }

    private func handle(_ fd: Int32) {
        var data: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        func fill() -> Bool {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n <= 0 { return false }
            data += buffer[0..<n]
            return true
        }
        let separator: [UInt8] = [13, 10, 13, 10]
        var headerEnd: Int?
        while headerEnd == nil {
            if let range = data.firstRange(of: separator) {
                headerEnd = range.lowerBound
                break
            }
            if !fill() { return }
        }
        let head = String(decoding: data[0..<headerEnd!], as: UTF8.self).components(separatedBy: "\r\n")
        var headers: [String: String] = [:]
        for line in head.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(
                in: .whitespaces)
        }
        let length = Int(headers["content-length"] ?? "0") ?? 0
        let bodyStart = headerEnd! + 4
        while data.count < bodyStart + length { if !fill() { return } }
        let request = Request(line: head[0], headers: headers, body: Array(data[bodyStart..<bodyStart + length]))
        let answer = lock.withLock { () -> Answer in
            recorded.append(request)
            return script.isEmpty ? Answer(status: 500, body: "script exhausted") : script.removeFirst()
        }
        var response =
            "HTTP/1.1 \(answer.status) Scripted\r\nContent-Length: \(answer.body.utf8.count)\r\nConnection: close\r\n"
        for (name, value) in answer.headers { response += "\(name): \(value)\r\n" }
        response += "\r\n" + answer.body
        let bytes = Array(response.utf8)
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }
}
