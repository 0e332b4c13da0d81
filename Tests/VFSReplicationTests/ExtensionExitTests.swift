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
    private func slowReplica(_ dir: String, delay: Double) throws -> (config: String, bucket: String, proxy: TestSupport.BackgroundProcess) {
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("exit")
        let upstream = server.endpoint.replacingOccurrences(of: "http://", with: "")
        let proxy = try TestSupport.BackgroundProcess(
            "/usr/bin/python3",
            [TestSupport.packageRoot + "/Tests/Fixtures/s3_fault_proxy.py", "--upstream", upstream,
             "--port-file", dir + "/port", "--slow-rate", "1", "--slow-seconds", "\(delay)"],
            logPath: dir + "/proxy.log")
        guard TestSupport.waitUntil(timeout: 10, { FileManager.default.fileExists(atPath: dir + "/port") }) else {
            proxy.stop()
            throw ReplicationError(.io, "the fault proxy did not start: \(dir)/proxy.log")
        }
        let port = try String(contentsOfFile: dir + "/port", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        let config = dir + "/replication.yml"
        try """
        databases:
          - path: app.db
            max-delay: 50ms
            replica:
              url: s3://\(bucket)/app
              endpoint: http://127.0.0.1:\(port)
              region: us-east-1
              force-path-style: true
              access-key-id: \(SeaweedFS.accessKeyID)
              secret-access-key: \(SeaweedFS.secretAccessKey)
        """.write(toFile: config, atomically: true, encoding: .utf8)
        return (config, bucket, proxy)
    }

    private func environment(_ config: String) -> [String: String] {
        var e = TestSupport.childEnvironment()
        e["VFS_REPLICATION_CONFIG"] = config
        return e
    }

    private func expectRestoredEqual(_ dir: String, bucket: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
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
        guard let cc = ["/usr/bin/cc", "/usr/bin/gcc", "/usr/bin/clang"].first(where: { FileManager.default.isExecutableFile(atPath: $0) })
        else {
            Issue.record("no C compiler (cc) to build Tests/Fixtures/exit_host.c")
            return
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let host = dir + "/exit_host"
        let built = try TestSupport.run(cc, ["-O1", "-o", host, TestSupport.packageRoot + "/Tests/Fixtures/exit_host.c", "-lsqlite3"])
        try #require(built.status == 0, "\(built)")
        let (config, bucket, proxy) = try slowReplica(dir, delay: 0.2)
        defer { proxy.stop(timeout: 1) }  // it holds no state worth a graceful stop
        let r = try TestSupport.run(host, [lib, dir + "/app.db", "40"], environment: environment(config))
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
        defer { proxy.stop(timeout: 1) }  // it holds no state worth a graceful stop
        let script = """
            .load \(lib)
            .log stderr
            .open 'file:\(dir)/app.db?vfs=replicated'
            PRAGMA journal_mode=WAL;
            CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT);
            INSERT INTO t(x) SELECT 'row ' || value FROM generate_series(1, 300);
            DELETE FROM t WHERE id % 7 = 0;
            """
        let r = try TestSupport.run(sqlite3, [], environment: environment(config), input: script)
        #expect(r.status == 0, "\(r)")
        #expect(!r.stderr.contains("flush at exit failed"), "\(r.stderr)")
        try expectRestoredEqual(dir, bucket: bucket)
    }
}
