import Foundation
import Testing

@testable import VFSReplication

/// Hosts that end with `exit()` after main() returned, with a replica slow enough that the base
/// snapshot is still to be taken when the host closes its database.
///
/// The sqlite3 CLI gives SQLite a log callback whose argument lives in main()'s frame; a log
/// message from an exit handler reads a dead frame. The extension's exit flush used to take the
/// base snapshot there, through SQLite (CI crashed with SIGSEGV and "glibc detected an invalid
/// stdio handle" under load). Now the host's last close waits for the snapshot, and nothing of
/// ours runs SQLite once the process exits.
@Suite("Loadable extension at process exit", .serialized)
struct ExtensionExitTests {
    /// SeaweedFS behind the fault proxy, every request delayed by `delay` seconds.
    private func slowReplica(_ dir: String, delay: Double) throws -> (config: String, bucket: String, proxy: FaultProxy)
    {
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("exit")
        let proxy = try FaultProxy(server, dir: dir, arguments: ["--slow-rate", "1", "--slow-seconds", "\(delay)"])
        let config = try SeaweedFS.writeReplicationConfig(
            dir: dir, bucket: bucket, endpoint: proxy.endpoint, maxDelay: "50ms")
        return (config, bucket, proxy)
    }

    private func expectRestoredEqual(_ dir: String, bucket: String, sourceLocation: SourceLocation = #_sourceLocation)
        throws
    {
        let server = try SeaweedFS.shared()
        let out = dir + "/restored.db"
        _ = try ReplicaRestorer.restore(
            from: try S3ReplicaClient(config: server.replicaConfig(bucket: bucket, prefix: "app")), to: out,
            options: RestoreOptions(force: true))
        #expect(try TestSupport.dump(out) == TestSupport.dump(dir + "/app.db"), sourceLocation: sourceLocation)
    }

    /// A C host that fails (exit 70) the moment SQLite logs or opens a file after main()
    /// returned: what the CLI's dead log callback does by chance, made certain. Failed before
    /// the fix: "exit_host: SQLite opened a file after main() returned: .../app.db".
    @Test func nothingRunsSQLiteAfterMainReturned() throws {
        guard let lib = ExtensionTests.library else {
            Issue.record("libvfsreplication.so is not built (scripts/test builds it into .build-ext/release)")
            return
        }
        guard
            let cc = ["/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/clang"].first(where: {
                FileManager.default.isExecutableFile(atPath: $0)
            })
        else {
            Issue.record("no C compiler (cc) to build Tests/Fixtures/exit_host.c")
            return
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let host = dir + "/exit_host"
        let built = try TestSupport.run(
            cc, ["-O1", "-o", host, TestSupport.packageRoot + "/Tests/Fixtures/exit_host.c", "-lsqlite3"])
        try #require(built.status == 0, "\(built)")
        let (config, bucket, proxy) = try slowReplica(dir, delay: 0.2)
        defer { withExtendedLifetime(proxy) {} }  // serving until the test ends
        let r = try TestSupport.run(
            host, [lib, dir + "/app.db", "40"], environment: TestSupport.extensionEnvironment(config: config))
        #expect(r.status == 0, "\(r)")
        #expect(!r.stderr.contains("after main() returned"), "\(r.stderr)")
        #expect(!r.stderr.contains("flush at exit failed"), "\(r.stderr)")
        try expectRestoredEqual(dir, bucket: bucket)
    }

    /// The real sqlite3 CLI with the same slow replica: exits 0 and its replica restores equal.
    @Test func sqlite3CLIWithASlowReplica() throws {
        guard let lib = ExtensionTests.library, let sqlite3 = TestSupport.sqlite3Path else {
            Issue.record("libvfsreplication.so or sqlite3 is missing")
            return
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let (config, bucket, proxy) = try slowReplica(dir, delay: 0.2)
        defer { withExtendedLifetime(proxy) {} }  // serving until the test ends
        let script = """
            .load \(lib)
            .log stderr
            .open 'file:\(dir)/app.db?vfs=replicated'
            PRAGMA journal_mode=WAL;
            CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT);
            INSERT INTO t(x) SELECT 'row ' || value FROM generate_series(1, 300);
            DELETE FROM t WHERE id % 7 = 0;
            """
        let r = try TestSupport.run(
            sqlite3, [], environment: TestSupport.extensionEnvironment(config: config), input: script)
        #expect(r.status == 0, "\(r)")
        #expect(!r.stderr.contains("flush at exit failed"), "\(r.stderr)")
        try expectRestoredEqual(dir, bucket: bucket)
    }
}
