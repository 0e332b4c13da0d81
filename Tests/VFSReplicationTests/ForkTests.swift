import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// Forking hosts: a process loads the extension (and starts its uploaders), then forks. The
/// child has none of the parent's threads; it must never wait for them, never keep the parent's
/// uploader lock alive, and take over shipping once the parent is gone.
@Suite("Forked processes", .serialized)
struct ForkTests {
    /// Alive and not a zombie (an orphan's zombie may linger when PID 1 does not reap).
    static func isAlive(_ pid: Int32) -> Bool {
        guard kill(pid, 0) == 0 else { return false }
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return false }
        let state = stat[stat.index(close, offsetBy: 2)...].prefix(1)
        return state != "Z" && state != "X"
    }

    /// `vfs-status --json` for the one database of `config`.
    static func statusJSON(_ config: String) throws -> (
        healthy: Bool, local: Int, durable: Int, pid: Int32?, raw: String
    ) {
        guard let status = TestSupport.builtProduct("vfs-status") else { throw TestFailure("vfs-status is not built") }
        let r = try TestSupport.run(status, ["--config", config, "--json"])
        let json = try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any]
        guard let db = (json?["databases"] as? [[String: Any]])?.first else { throw TestFailure("vfs-status: \(r)") }
        let uploader = db["uploader"] as? [String: Any]
        return (
            db["healthy"] as? Bool ?? false, db["localTXID"] as? Int ?? -1, db["durableTXID"] as? Int ?? -2,
            (uploader?["pid"] as? Int).map { Int32($0) }, r.stdout
        )
    }

    /// Debian's python3 loads the extension, writes, forks; the parent leaves (a normal exit, or
    /// kill -9), the child keeps writing on a new connection. The child must become the uploader:
    /// its commits reach the replica while it runs, vfs-status names it (alive) and is healthy.
    @Test(arguments: ["exit", "kill"])
    func pythonChildTakesOverWhenTheParentLeaves(_ parentEnd: String) throws {
        guard let lib = ExtensionTests.library else {
            Issue.record("libvfsreplication.so is not built (scripts/test builds it into .build-ext/release)")
            return
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try writeReplicationConfig(dir: dir)
        let code = """
            import sqlite3, os, sys, time
            boot = sqlite3.connect(":memory:")
            boot.enable_load_extension(True)
            boot.load_extension("\(lib.replacingOccurrences(of: ".so", with: ""))")
            url = "file:\(dir)/app.db?vfs=replicated"
            db = sqlite3.connect(url, uri=True, timeout=30)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("CREATE TABLE t(id INTEGER PRIMARY KEY, who TEXT, x BLOB)")
            for i in range(50):
                db.execute("INSERT INTO t(who, x) VALUES ('parent', randomblob(100))")
                db.commit()
            db.close()
            time.sleep(0.3)  # the parent's uploader is elected and running when it forks
            parent = os.getpid()
            pid = os.fork()
            if pid > 0:
                with open("\(dir)/child.pid", "w") as f:
                    f.write(str(pid))
                if sys.argv[1] == "kill":
                    os.kill(os.getpid(), 9)
                sys.exit(0)
            deadline = time.time() + 30
            while os.getppid() == parent and time.time() < deadline:
                time.sleep(0.01)
            db = sqlite3.connect(url, uri=True, timeout=30)
            for i in range(100):
                db.execute("INSERT INTO t(who, x) VALUES ('child', randomblob(100))")
                db.commit()
            db.close()
            open("\(dir)/child.written", "w").close()
            while not os.path.exists("\(dir)/child.exit") and time.time() < deadline + 60:
                time.sleep(0.05)
            sys.exit(0)
            """
        let parent = try TestSupport.BackgroundProcess(
            "/usr/bin/python3", ["-c", code, parentEnd], environment: TestSupport.extensionEnvironment(config: config),
            logPath: dir + "/python.log")
        // Not waitUntilExit: Foundation sees the exit only once the child (which inherits its
        // monitoring descriptor) exits too.
        #expect(TestSupport.waitUntil(timeout: 60) { !Self.isAlive(parent.process.processIdentifier) }, "\(parent.log)")
        let childPid = Int32((try? String(contentsOfFile: dir + "/child.pid", encoding: .utf8)) ?? "") ?? 0
        #expect(childPid > 0, "\(parent.log)")
        guard childPid > 0 else { return }
        defer {
            _ = FileManager.default.createFile(atPath: dir + "/child.exit", contents: nil)
            _ = TestSupport.waitUntil(timeout: 40) { !Self.isAlive(childPid) }
            if Self.isAlive(childPid) { kill(childPid, SIGKILL) }
        }
        #expect(
            TestSupport.waitUntil(timeout: 40) { FileManager.default.fileExists(atPath: dir + "/child.written") },
            "\(parent.log)")
        #expect(Self.isAlive(childPid))

        // The child's commits reach the replica while it runs (it is the only process left).
        let shipped = try TestSupport.waitUntil(timeout: 20) {
            let s = try Self.statusJSON(config)
            return s.healthy && s.durable == s.local && s.pid == childPid
        }
        let s = try Self.statusJSON(config)
        #expect(shipped, "the child never took over shipping: \(s.raw)\n\(parent.log)")
        if let pid = s.pid { #expect(Self.isAlive(pid), "vfs-status names a dead uploader: \(s.raw)") }
        #expect(try TestSupport.sqlite(dir + "/app.db", "SELECT count(*) FROM t WHERE who = 'child'") == "100\n")

        let out = dir + "/restored.db"
        let rebuild = try #require(TestSupport.builtProduct("vfs-rebuild"))
        let r = try TestSupport.run(rebuild, ["--replica", "file://\(dir)/replica", "--output", out])
        #expect(r.status == 0, "\(r)")
        #expect(try TestSupport.dump(out) == TestSupport.dump(dir + "/app.db"))

        _ = FileManager.default.createFile(atPath: dir + "/child.exit", contents: nil)
        #expect(TestSupport.waitUntil(timeout: 40) { !Self.isAlive(childPid) }, "the child does not exit")
        #expect(!parent.log.contains("flush at exit failed"), "\(parent.log)")
    }

    /// The pids of `parent`'s children (Puma's workers).
    static func children(of parent: Int32) -> Set<Int32> {
        let list = (try? String(contentsOfFile: "/proc/\(parent)/task/\(parent)/children", encoding: .utf8)) ?? ""
        return Set(list.split(separator: " ").compactMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) })
            .filter { isAlive($0) }
    }

    /// Debian's puma in cluster mode with preload_app! and two workers writing the four
    /// databases of a Rails 8 app: a worker killed with kill -9 under load is replaced and
    /// nothing is lost; a graceful stop (SIGTERM) takes under 2 s (the issue's bound: Docker
    /// stops with SIGKILL after 10 s); every database rebuilds equal to its source.
    @Test(
        .enabled(
            if: FileManager.default.isExecutableFile(atPath: "/usr/bin/puma"),
            "Debian's puma is not installed (scripts/setup installs it)"))
    func pumaClusterWithPreload() throws {
        guard let lib = ExtensionTests.library else {
            Issue.record("libvfsreplication.so is not built (scripts/test builds it into .build-ext/release)")
            return
        }
        let names = ["primary", "cache", "queue", "cable"]
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = dir + "/replication.yml"
        try
            (["databases:"]
            + names.map {
                "  - path: \($0).db\n    replica:\n      url: file://\(dir)/replica-\($0)\n    max-delay: 50ms"
            })
            .joined(separator: "\n").write(toFile: config, atomically: true, encoding: .utf8)
        let fixtures = TestSupport.packageRoot + "/Tests/Fixtures/puma"
        let port = try SeaweedFS.freePorts(1)[0]
        var e = TestSupport.extensionEnvironment(config: config)
        e["VFS_EXTENSION"] = lib
        e["APP_DIR"] = dir
        e["PORT"] = "\(port)"
        let puma = try TestSupport.BackgroundProcess(
            "/usr/bin/puma", ["-C", fixtures + "/puma.rb", fixtures + "/config.ru"], environment: e,
            logPath: dir + "/puma.log")
        defer { puma.stop(timeout: 10) }
        let master = puma.process.processIdentifier
        #expect(TestSupport.waitUntil(timeout: 60) { Self.children(of: master).count == 2 }, "\(puma.log)")

        let answers = dir + "/answers"
        let load = try TestSupport.BackgroundProcess(
            "/usr/bin/ruby", [fixtures + "/load.rb", "\(port)", dir + "/load.stop", answers], environment: e,
            logPath: dir + "/load.log")
        defer { load.stop(timeout: 10) }
        func answered() -> [String] {
            ((try? String(contentsOfFile: answers, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        }
        #expect(TestSupport.waitUntil(timeout: 60) { answered().count >= 100 }, "\(puma.log)\n\(load.log)")

        // kill -9 a worker under load: Puma forks a new one; the load goes on.
        let before = Self.children(of: master)
        let victim = try #require(before.sorted().first)
        kill(victim, SIGKILL)
        let countAtKill = answered().count
        #expect(
            TestSupport.waitUntil(timeout: 60) {
                let now = Self.children(of: master)
                return now.count == 2 && !now.contains(victim)
            }, "Puma did not replace the killed worker\n\(puma.log)")
        let replacement = Self.children(of: master).subtracting(before)
        #expect(
            TestSupport.waitUntil(timeout: 60) {
                let a = answered()
                return a.count >= countAtKill + 100 && replacement.allSatisfy { a.contains("\($0)") }
            }, "\(puma.log)\n\(load.log)")
        _ = FileManager.default.createFile(atPath: dir + "/load.stop", contents: nil)
        load.process.waitUntilExit()

        // Graceful stop, as Docker and systemd do it.
        let workers = Self.children(of: master)
        let start = Date()
        kill(master, SIGTERM)
        let stopped = TestSupport.waitUntil(timeout: 30) { !Self.isAlive(master) }
        let elapsed = Date().timeIntervalSince(start)
        #expect(stopped && elapsed < 2, "graceful stop took \(elapsed) s\n\(puma.log)")
        #expect(TestSupport.waitUntil(timeout: 30) { workers.allSatisfy { !Self.isAlive($0) } })
        puma.process.waitUntilExit()
        // Puma 5 re-raises SIGTERM once it has stopped (raise_exception_on_sigterm): dying of it is its clean exit.
        let clean =
            puma.process.terminationReason == .exit
            ? puma.process.terminationStatus == 0 : puma.process.terminationStatus == SIGTERM
        #expect(clean, "puma exited with \(puma.process.terminationStatus)\n\(puma.log)")
        #expect(!puma.log.contains("flush at exit failed"), "\(puma.log)")

        let rebuild = try #require(TestSupport.builtProduct("vfs-rebuild"))
        for name in names {
            let out = dir + "/restored-\(name).db"
            let r = try TestSupport.run(rebuild, ["--replica", "file://\(dir)/replica-\(name)", "--output", out])
            #expect(r.status == 0, "\(name): \(r)")
            #expect(
                try TestSupport.dump(out) == TestSupport.dump(dir + "/\(name).db"), "\(name) differs from its replica")
            let rows = try TestSupport.sqlite(dir + "/\(name).db", "SELECT count(*) FROM hits")
            #expect((Int(rows.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0) >= 200, "\(name): \(rows)")
        }
    }
}
