import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// `vfs-rebuild` from a real S3 server (SeaweedFS) through a proxy on loopback that injects one
/// kind of fault at a time, on the first try of every request it may touch (so each request
/// meets its fault once and its retry passes): a response cut inside its headers, a 200 answer
/// with an HTML page, flipped bytes in an object's body, a reset, a body cut in half. The restore
/// must retry through each and rebuild exactly the source database. A file damaged in the bucket
/// itself is downloaded again before the restore gives up, and the error names its S3 key.
@Suite(
    "S3 restore through faults", .serialized,
    .enabled(if: TestSupport.builtProduct("vfs-rebuild") != nil, "vfs-rebuild binary not built next to the tests"),
    .enabled(if: TestSupport.sqlite3Path != nil, "sqlite3 CLI not found"),
    .enabled(if: SeaweedFS.weedPath != nil, "SeaweedFS not found at .venv/bin/weed")
)
struct S3RestoreFaultTests {
    /// A bucket holding a real database's history (a snapshot and four level-0 files), copied
    /// from a directory replica, and the `.dump` of every state by TXID.
    struct Fixture {
        var bucket: String
        var files: [LTXFileInfo]
        var dumps: [UInt64: String]
        var s3: S3ReplicaClient
    }

    static func makeFixture(_ server: SeaweedFS, dir: String) throws -> Fixture {
        var builder = TestSupport.ReplicaBuilder(
            replicaDirectory: dir + "/replica", work: dir, flags: [], encoding: .lz4Frame)
        let (_, dumps) = try TestSupport.makeHistory(dir, &builder)
        let bucket = try server.makeBucket("restore-faults")
        let s3 = try S3ReplicaClient(config: server.replicaConfig(bucket: bucket, prefix: "app"))
        let files = try ReplicaRestorer.listFiles(builder.replica)
        for file in files {
            try s3.publish(
                level: file.level, minTXID: file.minTXID, maxTXID: file.maxTXID,
                localPath: builder.replica.path(of: file), timestamp: file.createdAt!)
        }
        return Fixture(bucket: bucket, files: files, dumps: dumps, s3: s3)
    }

    static func rebuild(_ arguments: [String]) throws -> TestSupport.ProcessResult {
        try TestSupport.run(
            TestSupport.builtProduct("vfs-rebuild")!, arguments, environment: TestSupport.childEnvironment())
    }

    /// One fault kind: its proxy options and the stats counter that shows it happened.
    struct Fault: CustomTestStringConvertible, Sendable {
        var name: String
        var arguments: [String]
        var counter: String
        var testDescription: String { name }
    }

    static let faults: [Fault] = [
        Fault(name: "response cut inside its headers", arguments: ["--cut-headers-rate", "1"], counter: "cut_headers"),
        Fault(
            name: "HTML page with status 200 to a listing", arguments: ["--html-rate", "1", "--match", "list"],
            counter: "html"),
        Fault(
            name: "HTML page with status 200 to a GET", arguments: ["--html-rate", "1", "--match", "get"],
            counter: "html"),
        Fault(name: "flipped body bytes", arguments: ["--flip-rate", "1", "--match", "get"], counter: "flip"),
        Fault(name: "connection reset", arguments: ["--reset-rate", "1"], counter: "reset"),
        Fault(name: "body cut in half", arguments: ["--truncate-rate", "1", "--match", "get"], counter: "truncate"),
    ]

    @Test(arguments: Self.faults)
    func rebuildRetriesThroughOneFaultKind(_ fault: Fault) throws {
        let server = try SeaweedFS.shared()
        try TestSupport.withTemporaryDirectory { dir in
            let fixture = try Self.makeFixture(server, dir: dir)
            let proxy = try FaultProxy(server, dir: dir, arguments: fault.arguments + ["--first-try-only"])
            let config = try SeaweedFS.writeReplicationConfig(
                dir: dir, bucket: fixture.bucket, endpoint: proxy.endpoint)
            let out = dir + "/restored.db"
            let r = try Self.rebuild(["--config", config, "--database", dir + "/app.db", "--output", out, "--json"])
            #expect(r.status == 0, "\(fault.name): \(r)")
            #expect((proxy.stats()[fault.counter] ?? 0) >= 2, "\(fault.name): \(proxy.stats())")
            if r.status == 0 {
                #expect(try TestSupport.dump(out) == fixture.dumps[5], "\(fault.name)")
                // Every file was used: faults were retried, not planned around.
                let object = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
                #expect((object?["skipped_files"] as? [Any])?.isEmpty ?? true, "\(fault.name): \(r.stdout)")
            }
        }
    }

    @Test func aFileDamagedInTheBucketIsDownloadedAgainThenNamedByItsKey() throws {
        let server = try SeaweedFS.shared()
        try TestSupport.withTemporaryDirectory { dir in
            let fixture = try Self.makeFixture(server, dir: dir)
            // The newest level-0 file, flipped in the bucket itself: nothing else covers TXID 5.
            let victim = try #require(fixture.files.last)
            let key = fixture.s3.key(of: victim)
            var bytes = try fixture.s3.client.getObjectBytes(key: key).bytes
            bytes[bytes.count / 2] ^= 0xFF
            try TestSupport.writeFile(dir + "/damaged.ltx", bytes)
            try fixture.s3.client.putObject(key: key, body: .file(path: dir + "/damaged.ltx"))
            // Through the proxy (no faults), to count the GETs of that key.
            let proxy = try FaultProxy(server, dir: dir, arguments: [])
            let config = try SeaweedFS.writeReplicationConfig(
                dir: dir, bucket: fixture.bucket, endpoint: proxy.endpoint)
            let r = try Self.rebuild(["--config", config, "--database", dir + "/app.db", "--output", dir + "/out.db"])
            #expect(r.status != 0, "\(r)")
            // The error line (progress lines come before it).
            let message = r.stderr.split(separator: "\n").last { $0.hasPrefix("vfs-rebuild:") }.map(String.init) ?? ""
            #expect(message.contains("s3://\(fixture.bucket)/\(key)"), "\(r)")
            #expect(!r.stderr.contains("vfsrepl-s3-"), "names a temporary file: \(r)")
            #expect(message.contains("downloaded 3 times"), "\(r)")
            let gets = try Self.requestLog(proxy).filter { $0 == "GET /\(fixture.bucket)/\(key)" }.count
            #expect(gets == 3, "GETs of the damaged file: \(gets)")
        }
    }

    /// The requests the proxy forwarded (`METHOD /path`, without the query), from its log.
    static func requestLog(_ proxy: FaultProxy) throws -> [String] {
        proxy.process.log.split(separator: "\n").filter { $0.hasPrefix("request ") }.map { String($0.dropFirst(8)) }
    }
}
