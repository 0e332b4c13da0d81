import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// The S3 client against a real SeaweedFS (`weed mini`, SigV4 enforced) on loopback: one shared
/// server for the process, one fresh bucket per test.
@Suite("S3 client (SeaweedFS)", .enabled(if: SeaweedFS.weedPath != nil, "SeaweedFS not installed: run scripts/setup"))
struct S3ClientTests {
    @Test func putHeadGetRangedGetRoundTrip() throws {
        let server = try SeaweedFS.shared()
        let s3 = try server.client(bucket: try server.makeBucket("rt"))
        let bytes = TestSupport.pageBytes(seed: 1, count: 100_000)
        let before = s3.requestCounts
        let outcome = try s3.putObject(
            key: "dir/a b+c.bin", body: .bytes(bytes), metadata: ["Litestream-Timestamp": "2025-06-15T15:06:40.123Z"])
        guard case .created(let etag) = outcome else {
            Issue.record("not created: \(outcome)")
            return
        }
        #expect(etag?.lowercased() == "\"\(S3Crypto.hex(S3Crypto.md5(bytes)))\"")

        let head = try #require(try s3.headObject(key: "dir/a b+c.bin"))
        #expect(head.size == Int64(bytes.count))
        #expect(head.etag == etag)
        #expect(head.metadata["litestream-timestamp"] == "2025-06-15T15:06:40.123Z")
        #expect(head.lastModified.map { abs($0.timeIntervalSinceNow) < 300 } == true)

        let whole = try s3.getObjectBytes(key: "dir/a b+c.bin")
        #expect(whole.bytes == bytes)
        #expect(whole.info.metadata["litestream-timestamp"] == "2025-06-15T15:06:40.123Z")
        let ranged = try s3.getObjectBytes(key: "dir/a b+c.bin", range: 1000..<1100)
        #expect(ranged.bytes == Array(bytes[1000..<1100]))
        #expect(ranged.info.size == Int64(bytes.count))
        let header = try s3.getObjectBytes(key: "dir/a b+c.bin", range: 0..<100)
        #expect(header.bytes == Array(bytes[0..<100]))

        try TestSupport.withTemporaryDirectory { dir in
            let path = dir + "/out.bin"
            let info = try s3.getObject(key: "dir/a b+c.bin", toFile: path)
            #expect(info.size == Int64(bytes.count))
            #expect(try TestSupport.readFile(path) == bytes)
            // Upload from a file too.
            try s3.putObject(key: "from-file", body: .file(path: path))
            #expect(try s3.getObjectBytes(key: "from-file").bytes == bytes)
        }
        let used = s3.requestCounts - before
        #expect(used.put == 2 && used.head == 1 && used.get == 5 && used.retries == 0)
        #expect(used.classA == 2 && used.classB == 6)
    }

    @Test func missingKeys() throws {
        let server = try SeaweedFS.shared()
        let s3 = try server.client(bucket: try server.makeBucket("missing"))
        #expect(try s3.headObject(key: "nope") == nil)
        let error = try #require(throws: ReplicationError.self) { try s3.getObjectBytes(key: "nope") }
        #expect(error.code == .missingReplica)
        #expect(error.message.contains("NoSuchKey"))
        #expect(error.message.contains("s3://\(s3.bucket)/nope"))
        try TestSupport.withTemporaryDirectory { dir in
            #expect(throws: ReplicationError.self) { try s3.getObject(key: "nope", toFile: dir + "/x") }
            #expect(!FileManager.default.fileExists(atPath: dir + "/x"))
        }
        #expect(s3.requestCounts.retries == 0)
    }

    @Test func listingPaginatesWithContinuationTokensAndDelimiters() throws {
        let server = try SeaweedFS.shared()
        let s3 = try server.client(bucket: try server.makeBucket("list"))
        var keys: [String] = []
        for i in 0..<23 { keys.append("db/0000/\(String(format: "%016x", i)).ltx") }
        for i in 0..<3 { keys.append("db/0009/\(String(format: "%016x", i)).ltx") }
        keys.append("other/x")
        for key in keys { try s3.putObject(key: key, body: .bytes(Array(key.utf8))) }

        let before = s3.requestCounts
        var token: String?
        var pages: [[String]] = []
        repeat {
            let page = try s3.listObjects(prefix: "db/0000/", maxKeys: 10, continuationToken: token)
            pages.append(page.objects.map(\.key))
            token = page.nextContinuationToken
        } while token != nil
        #expect(pages.map(\.count) == [10, 10, 3])
        #expect(pages.flatMap { $0 } == keys.filter { $0.hasPrefix("db/0000/") }.sorted())
        #expect((s3.requestCounts - before).list == 3)

        let all = try s3.listAllObjects(prefix: "db/", maxKeysPerPage: 7)
        #expect(all.objects.count == 26)
        #expect(all.objects.allSatisfy { $0.size == Int64($0.key.utf8.count) && $0.lastModified != nil })
        let levels = try s3.listAllObjects(prefix: "db/", delimiter: "/")
        #expect(levels.objects.isEmpty)
        #expect(levels.commonPrefixes.sorted() == ["db/0000/", "db/0009/"])
        #expect(try s3.listAllObjects(prefix: "nothing/").objects.isEmpty)
    }

    @Test func deleteObjectsInBatches() throws {
        let server = try SeaweedFS.shared()
        let s3 = try server.client(bucket: try server.makeBucket("delete"))
        let present = (0..<5).map { "k/\($0)" }
        for key in present { try s3.putObject(key: key, body: .bytes([1, 2, 3])) }
        // 1,005 keys, most of them missing (not an error): two DeleteObjects requests.
        let keys = present + (5..<1005).map { "k/\($0)" }
        let before = s3.requestCounts
        try s3.deleteObjects(keys: keys)
        #expect((s3.requestCounts - before).delete == 2)
        #expect(try s3.listAllObjects(prefix: "k/").objects.isEmpty)
        try s3.deleteObjects(keys: [])
    }

    @Test func conditionalPutNeverOverwrites() throws {
        let server = try SeaweedFS.shared()
        let s3 = try server.client(bucket: try server.makeBucket("cond"))
        let first = Array("first writer".utf8)
        #expect(try s3.putObject(key: "x", body: .bytes(first), ifNoneMatch: true) != .alreadyExists(identical: false))
        let before = s3.requestCounts
        #expect(
            try s3.putObject(key: "x", body: .bytes(Array("second".utf8)), ifNoneMatch: true)
                == .alreadyExists(identical: false))
        #expect(try s3.putObject(key: "x", body: .bytes(first), ifNoneMatch: true) == .alreadyExists(identical: true))
        let used = s3.requestCounts - before
        #expect(used.put == 2 && used.head == 2 && used.retries == 0)
        #expect(try s3.getObjectBytes(key: "x").bytes == first)
    }

    @Test func multipartAboveTheDefaultThreshold() throws {
        let server = try SeaweedFS.shared()
        let s3 = try server.client(bucket: try server.makeBucket("mp"))
        #expect(s3.options.multipartThreshold == 64 << 20)
        try TestSupport.withTemporaryDirectory { dir in
            let path = dir + "/big"
            let size = (65 << 20) + 12345
            var bytes = TestSupport.pageBytes(seed: 7, count: 1 << 20)
            let handle = try FileHandle(
                forWritingTo: URL(
                    fileURLWithPath: {
                        _ = FileManager.default.createFile(atPath: path, contents: nil)
                        return path
                    }()))
            var written = 0
            while written < size {
                bytes[0] = UInt8(truncatingIfNeeded: written >> 20)
                let n = min(bytes.count, size - written)
                handle.write(Data(bytes[0..<n]))
                written += n
            }
            try handle.close()

            let before = s3.requestCounts
            let started = Date()
            let outcome = try s3.putObject(key: "big.ltx", body: .file(path: path), ifNoneMatch: true)
            let seconds = Date().timeIntervalSince(started)
            guard case .created = outcome else {
                Issue.record("\(outcome)")
                return
            }
            let used = s3.requestCounts - before
            #expect(used.put == 0)
            #expect(used.multipart == 1 + 5 + 1)  // create, 5 parts of 16 MiB, complete
            let out = dir + "/out"
            let getStarted = Date()
            let info = try s3.getObject(key: "big.ltx", toFile: out)
            let getSeconds = Date().timeIntervalSince(getStarted)
            #expect(info.size == Int64(size))
            #expect(FileManager.default.contentsEqual(atPath: path, andPath: out))
            print(
                "S3 multipart: \(size >> 20) MiB up in \(String(format: "%.2f", seconds)) s, down in "
                    + "\(String(format: "%.2f", getSeconds)) s (SeaweedFS on loopback)")
            // A second writer of the same key is refused at CompleteMultipartUpload, and its
            // upload is aborted.
            let small = try server.client(bucket: s3.bucket) {
                $0.multipartThreshold = 6 << 20
                $0.partSize = 5 << 20
            }
            let other = TestSupport.pageBytes(seed: 9, count: (13 << 20) + 1)
            #expect(
                try small.putObject(key: "big.ltx", body: .bytes(other), ifNoneMatch: true)
                    == .alreadyExists(identical: false))
            #expect(FileManager.default.contentsEqual(atPath: path, andPath: out))
        }
    }

    @Test func multipartWithASmallThreshold() throws {
        let server = try SeaweedFS.shared()
        let s3 = try server.client(bucket: try server.makeBucket("mps")) {
            $0.multipartThreshold = 6 << 20
            $0.partSize = 5 << 20
        }
        let bytes = TestSupport.pageBytes(seed: 3, count: (13 << 20) + 1)
        let before = s3.requestCounts
        let outcome = try s3.putObject(
            key: "p/obj", body: .bytes(bytes), ifNoneMatch: true,
            metadata: ["litestream-timestamp": "2025-01-01T00:00:00Z"])
        guard case .created(let etag) = outcome else {
            Issue.record("\(outcome)")
            return
        }
        #expect((s3.requestCounts - before).multipart == 1 + 3 + 1)
        #expect(try s3.getObjectBytes(key: "p/obj").bytes == bytes)
        let head = try #require(try s3.headObject(key: "p/obj"))
        #expect(head.size == Int64(bytes.count))
        #expect(head.metadata["litestream-timestamp"] == "2025-01-01T00:00:00Z")
        // The same bytes again: the existing object is recognised as ours (same multipart ETag),
        // or, if the server computes ETags differently, reported as someone else's.
        let again = try s3.putObject(key: "p/obj", body: .bytes(bytes), ifNoneMatch: true)
        let expected = S3Client.multipartETag(partMD5s: [
            S3Crypto.md5(Array(bytes[0..<(5 << 20)])), S3Crypto.md5(Array(bytes[(5 << 20)..<(10 << 20)])),
            S3Crypto.md5(Array(bytes[(10 << 20)...])),
        ])
        #expect(again == .alreadyExists(identical: etag == expected))
        // Below the threshold: a single PUT.
        let small = s3.requestCounts
        try s3.putObject(key: "p/small", body: .bytes(Array(bytes[0..<(6 << 20)])))
        #expect((s3.requestCounts - small).put == 1)
    }

    /// A process with many databases talks to one server through few connections: transports
    /// (one per database's client) share the process's easy handles, so a connection opened for
    /// one database is reused by the next instead of each keeping its own handle, buffers and
    /// idle connection.
    @Test func transportsShareHandlesAndConnections() throws {
        let server = try SeaweedFS.shared()
        let pool = CurlHandlePool()  // this test's own, so other tests' requests do not count
        let settings = HTTPTransportSettings(
            connectTimeout: .seconds(5), lowSpeedTime: .seconds(10), lowSpeedLimit: 1, requestTimeout: .seconds(30),
            caFile: nil, maxIdleHandles: 4)
        let transports = (0..<10).map { _ in CurlTransport(settings: settings, handles: pool) }
        var opened = 0
        for t in transports {
            let request = HTTPRequest(method: "GET", url: server.endpoint + "/", headers: [], body: .none)
            let response = try t.execute(request).get()  // unsigned: 403 is an answer too
            #expect(response.status > 0)
            opened += response.newConnections
        }
        #expect(opened == 1, "ten transports opened \(opened) connections to one server, one after another")
        #expect(pool.liveHandles == 1, "ten transports hold \(pool.liveHandles) easy handles")
    }

    @Test func wrongSecretKeySaysSignatureDoesNotMatch() throws {
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("auth")
        let s3 = try server.client(
            bucket: bucket,
            credentials: S3Credentials(accessKeyID: SeaweedFS.accessKeyID, secretAccessKey: "wrong-secret"))
        let error = try #require(throws: ReplicationError.self) {
            try s3.putObject(key: "x", body: .bytes([1]))
        }
        #expect(error.code == .invalidConfig)
        #expect(error.message.contains("HTTP 403 SignatureDoesNotMatch"))
        #expect(error.message.contains("check access-key-id / secret-access-key"))
        #expect(error.message.contains("s3://\(bucket)/x"))
        #expect(!error.message.contains("wrong-secret"))
        #expect(s3.requestCounts.put == 1 && s3.requestCounts.retries == 0)

        let unknown = try server.client(
            bucket: bucket, credentials: S3Credentials(accessKeyID: "NOSUCHKEY", secretAccessKey: "whatever"))
        let listError = try #require(throws: ReplicationError.self) { try unknown.listObjects(prefix: "") }
        #expect(listError.message.contains("InvalidAccessKeyId"))
        #expect(listError.message.contains("check access-key-id / secret-access-key"))
        // HEAD answers carry no body, hence no code: the hint still names the credentials.
        let headError = try #require(throws: ReplicationError.self) { try unknown.headObject(key: "x") }
        #expect(headError.message.contains("HTTP 403") && headError.message.contains("access-key-id"))
    }

    @Test func missingBucketIsAClearError() throws {
        let server = try SeaweedFS.shared()
        let s3 = try server.client(bucket: "no-such-bucket-\(UInt32.random(in: 0...UInt32.max))")
        let error = try #require(throws: ReplicationError.self) { try s3.listObjects(prefix: "db/") }
        #expect(error.message.contains("NoSuchBucket"))
        #expect(error.message.contains("bucket '\(s3.bucket)' does not exist at \(server.endpoint)"))
        #expect(s3.requestCounts.retries == 0)
    }

    @Test func connectionRefusedAfterBoundedRetries() throws {
        let port = try SeaweedFS.freePorts(1)[0]  // nothing listens there
        var options = S3ClientOptions(endpoint: "http://127.0.0.1:\(port)", region: "us-east-1")
        options.retry = S3RetryPolicy(maxAttempts: 3, baseDelay: .milliseconds(20), maxDelay: .milliseconds(50))
        let s3 = try S3Client(bucket: "b", credentials: SeaweedFS.credentials, options: options)
        let started = Date()
        let error = try #require(throws: ReplicationError.self) { try s3.putObject(key: "k", body: .bytes([1])) }
        #expect(Date().timeIntervalSince(started) < 10)
        #expect(error.code == .io)
        #expect(error.message.contains("connection refused"))
        #expect(error.message.contains("is the endpoint up"))
        #expect(error.message.contains("127.0.0.1:\(port)"))
        #expect(error.message.contains("gave up after 3 attempts"))
        #expect(s3.requestCounts.put == 3 && s3.requestCounts.retries == 2)
    }

    @Test func stoppedServerIsRefusedToo() throws {
        // A private server (not the shared one), stopped: its port now refuses connections.
        let server = try SeaweedFS()
        let bucket = try server.makeBucket("stop")
        let s3 = try server.client(bucket: bucket) {
            $0.retry = S3RetryPolicy(maxAttempts: 2, baseDelay: .milliseconds(20), maxDelay: .milliseconds(50))
        }
        try s3.putObject(key: "k", body: .bytes([1]))
        server.stop()
        let error = try #require(throws: ReplicationError.self) { try s3.getObjectBytes(key: "k") }
        #expect(error.message.contains("connection refused"))
        #expect(error.message.contains("gave up after 2 attempts"))
    }

    @Test func silentServerTimesOut() throws {
        // A socket that accepts connections (the kernel does) but never answers.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) }
        }
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        #expect(listen(listener, 16) == 0)
        let port = Int(UInt16(bigEndian: address.sin_port))
        var options = S3ClientOptions(endpoint: "http://127.0.0.1:\(port)", region: "us-east-1")
        options.lowSpeedTime = .seconds(1)
        options.retry = S3RetryPolicy(maxAttempts: 2, baseDelay: .milliseconds(10), maxDelay: .milliseconds(20))
        let s3 = try S3Client(bucket: "b", credentials: SeaweedFS.credentials, options: options)
        let error = try #require(throws: ReplicationError.self) { try s3.headObject(key: "k") }
        #expect(error.code == .timeout)
        #expect(error.message.contains("timed out"))
        #expect(error.message.contains("gave up after 2 attempts"))
    }

    @Test func clockSkewIsCorrectedOnce() throws {
        let server = try SeaweedFS.shared()
        let s3 = try server.client(bucket: try server.makeBucket("skew"))
        s3.setClockOffsetForTesting(-3 * 3600)
        let before = s3.requestCounts
        try s3.putObject(key: "k", body: .bytes([1, 2]))
        let used = s3.requestCounts - before
        // SeaweedFS refuses the skewed signature, the client learns the server's clock from the
        // answer and re-signs: two attempts, then success.
        #expect(used.put == 2)
        #expect(try s3.getObjectBytes(key: "k").bytes == [1, 2])
    }

    /// Our counters against SeaweedFS's own (Prometheus, per bucket): what we count is what
    /// reached the server.
    @Test func countersMatchTheServersMetrics() throws {
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("count")  // one PUT by another client
        let s3 = try server.client(bucket: bucket)
        for i in 0..<5 { try s3.putObject(key: "k\(i)", body: .bytes([UInt8(i)]), ifNoneMatch: true) }
        #expect(try s3.putObject(key: "k0", body: .bytes([9]), ifNoneMatch: true) == .alreadyExists(identical: false))
        for i in 0..<3 { _ = try s3.headObject(key: "k\(i)") }
        _ = try s3.getObjectBytes(key: "k1")
        _ = try s3.getObjectBytes(key: "k1", range: 0..<1)
        _ = try s3.listAllObjects(prefix: "", maxKeysPerPage: 2)
        try s3.deleteObjects(keys: ["k3", "k4"])
        let ours = s3.requestCounts
        #expect(ours.put == 6 && ours.head == 4 && ours.get == 2 && ours.list == 3 && ours.delete == 1)
        var theirs: [String: Int] = [:]
        let expected = ["PUT": ours.put + 1, "GET": ours.get + ours.head, "LIST": ours.list, "DELETE": ours.delete]
        _ = try TestSupport.waitUntil(timeout: 5) {
            theirs = try server.requestCounts(bucket: bucket)
            return theirs == expected
        }
        #expect(theirs == expected)
    }

    @Test func virtualHostAddressing() throws {
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("vhost")
        let port = try #require(URLComponents(string: server.endpoint)?.port)
        let s3 = try server.client(bucket: bucket) {
            $0.endpoint = "http://localhost:\(port)"
            $0.forcePathStyle = false
        }
        #expect(!s3.options.usesPathStyle)
        try s3.putObject(key: "v/k", body: .bytes([7, 7]))
        #expect(try s3.getObjectBytes(key: "v/k").bytes == [7, 7])
        #expect(try s3.listAllObjects(prefix: "v/").objects.map(\.key) == ["v/k"])
        // The same object, path-style.
        #expect(try server.client(bucket: bucket).getObjectBytes(key: "v/k").bytes == [7, 7])
    }

    @Test func connectionsAreReused() throws {
        let server = try SeaweedFS.shared()
        let s3 = try server.client(bucket: try server.makeBucket("reuse"))
        try s3.putObject(key: "k", body: .bytes([1]))
        let started = Date()
        for _ in 0..<200 { _ = try s3.headObject(key: "k") }
        let perRequest = Date().timeIntervalSince(started) / 200 * 1000
        print(
            "S3 HEAD on a reused connection: \(String(format: "%.2f", perRequest)) ms per request (SeaweedFS on loopback)"
        )
        #expect(s3.requestCounts.head == 200)
    }

    @Test func concurrentRequestsFromManyThreads() throws {
        let server = try SeaweedFS.shared()
        let s3 = try server.client(bucket: try server.makeBucket("conc")) { $0.maxIdleConnections = 3 }
        let failures = S3Locked<[String]>([])
        // Blocking calls on plain threads (never on the cooperative pool), more threads than
        // pooled handles.
        DispatchQueue.concurrentPerform(iterations: 8) { worker in
            do {
                for i in 0..<10 {
                    let key = "w\(worker)/\(i)"
                    try s3.putObject(key: key, body: .bytes(Array(key.utf8)))
                    let got = try s3.getObjectBytes(key: key).bytes
                    if got != Array(key.utf8) { failures.withLock { $0.append("\(key): wrong bytes") } }
                }
                // XML responses parsed on many threads at once.
                for _ in 0..<10 {
                    let listed = try s3.listObjects(prefix: "w\(worker)/").objects.count
                    if listed != 10 { failures.withLock { $0.append("w\(worker): listed \(listed)") } }
                }
            } catch {
                failures.withLock { $0.append("\(error)") }
            }
        }
        #expect(failures.withLock { $0 } == [])
        #expect(s3.requestCounts.put == 80 && s3.requestCounts.get == 80 && s3.requestCounts.list == 80)
        #expect(try s3.listAllObjects(prefix: "").objects.count == 80)
    }
}

/// HTTPS: a SeaweedFS serving a self-signed certificate.
@Suite("S3 client over TLS (SeaweedFS)", .enabled(if: SeaweedFS.weedPath != nil, "SeaweedFS not installed"))
struct S3TLSTests {
    @Test func trustedThroughCAFile() throws {
        let server = try SeaweedFS.sharedHTTPS()
        let bucket = try server.makeBucket("tls")
        let s3 = try server.client(bucket: bucket, https: true)
        #expect(s3.endpointURL.hasPrefix("https://127.0.0.1:"))
        try s3.putObject(key: "secure", body: .bytes(Array("over tls".utf8)))
        #expect(try s3.getObjectBytes(key: "secure").bytes == Array("over tls".utf8))
        // A replica configured with ca-file works the same way.
        let replica = try S3ReplicaClient(
            config: server.replicaConfig(bucket: bucket, prefix: "db", https: true), environment: [:])
        #expect(try replica.listLevels() == [])
    }

    @Test func untrustedCertificateFailsWithAHint() throws {
        let server = try SeaweedFS.sharedHTTPS()
        let bucket = try server.makeBucket("tlsbad")
        // The system bundle (or libcurl's default) does not hold our self-signed certificate.
        let s3 = try server.client(bucket: bucket, https: true) { $0.caFile = nil }
        let error = try #require(throws: ReplicationError.self) { try s3.listObjects(prefix: "") }
        #expect(error.message.contains("certificate"))
        #expect(error.message.contains("'ca-file'"))
        #expect(s3.requestCounts.retries == 0)
        // A CA file that is not the server's.
        try TestSupport.withTemporaryDirectory { dir in
            let other = try TestSupport.run(
                "/usr/bin/openssl",
                [
                    "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", dir + "/k.pem", "-out", dir + "/c.pem",
                    "-days", "1", "-subj", "/CN=127.0.0.1",
                ])
            #expect(other.status == 0)
            let wrong = try server.client(bucket: bucket, https: true) { $0.caFile = dir + "/c.pem" }
            let wrongError = try #require(throws: ReplicationError.self) { try wrong.listObjects(prefix: "") }
            #expect(wrongError.message.contains("not trusted by ca-file \(dir)/c.pem"))
            let missing = try server.client(bucket: bucket, https: true) { $0.caFile = dir + "/none.pem" }
            let missingError = try #require(throws: ReplicationError.self) { try missing.listObjects(prefix: "") }
            #expect(missingError.message.contains("ca-file") || missingError.message.contains("CA certificate file"))
        }
    }
}
