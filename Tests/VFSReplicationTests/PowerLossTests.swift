import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// Simulated power loss: a writer runs under an LD_PRELOAD shim that keeps, for every file of
/// the local machine (database, WAL, spool, state), only what was fsynced; after the "cut" the
/// machine restarts from those bytes. The replica lives on the other side of the network and
/// keeps what it acknowledged. After the restart the database and the replica must agree on a
/// state the database really has: its latest rebuild equals the database, or a new lineage starts
/// with a snapshot; never a silent divergence.
@Suite("Power loss", .serialized)
struct PowerLossTests {
    static let trials = Int(ProcessInfo.processInfo.environment["VFS_POWERLOSS_TRIALS"] ?? "") ?? 8

    private func buildShim(_ dir: String) throws -> String {
        let source = TestSupport.packageRoot + "/Tests/Fixtures/powerloss.c"
        let lib = dir + "/powerloss.so"
        let r = try TestSupport.run("/usr/bin/cc", ["-shared", "-fPIC", "-O1", "-o", lib, source, "-ldl"])
        guard r.status == 0 else { throw TestFailure("cannot build the power-loss shim: \(r)") }
        return lib
    }

    /// Replaces every file under `root` by its last synced bytes, or removes it.
    private func cutPower(root: String, shadow: String) throws {
        let fm = FileManager.default
        guard let walker = fm.enumerator(atPath: root) else { return }
        var files: [String] = []
        while let rel = walker.nextObject() as? String {
            var isDir: ObjCBool = false
            if fm.fileExists(atPath: root + "/" + rel, isDirectory: &isDir), !isDir.boolValue { files.append(rel) }
        }
        for rel in files {
            let path = root + "/" + rel
            let saved = shadow + "/" + rel.replacingOccurrences(of: "/", with: "%2F")
            try? fm.removeItem(atPath: path)
            // The -shm file is shared memory: nothing of it survives a restart.
            if !rel.hasSuffix("-shm"), fm.fileExists(atPath: saved) { try fm.copyItem(atPath: saved, toPath: path) }
        }
        // The shadow is the disk: it keeps what was synced for the next cut.
    }

    /// After a clean restart everything on the machine is on disk: the shadow becomes a copy of
    /// the machine (processes run without the shim do not report their syncs).
    private func settle(root: String, shadow: String) throws {
        let fm = FileManager.default
        try? fm.removeItem(atPath: shadow)
        try fm.createDirectory(atPath: shadow, withIntermediateDirectories: true)
        guard let walker = fm.enumerator(atPath: root) else { return }
        while let rel = walker.nextObject() as? String {
            var isDir: ObjCBool = false
            let path = root + "/" + rel
            if fm.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue {
                try fm.copyItem(atPath: path, toPath: shadow + "/" + rel.replacingOccurrences(of: "/", with: "%2F"))
            }
        }
    }

    @Test(arguments: ["normal", "full"])
    func restartAfterPowerCut(_ synchronous: String) throws {
        guard let bench = TestSupport.builtProduct("vfs-bench") else {
            Issue.record("vfs-bench is not built next to the tests")
            return
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let lib = try buildShim(dir)
        let root = dir + "/machine", shadow = dir + "/shadow", replica = dir + "/replica"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: shadow, withIntermediateDirectories: true)
        let config = root + "/replication.yml"
        try """
        databases:
          - path: app.db
            replica:
              url: file://\(replica)
            max-delay: 5ms
        """.write(toFile: config, atomically: true, encoding: .utf8)
        // The config file itself is durable.
        try FileManager.default.copyItem(atPath: config, toPath: shadow + "/replication.yml")
        var env = TestSupport.childEnvironment()
        env["LD_PRELOAD"] = lib
        env["POWERLOSS_ROOT"] = root
        env["POWERLOSS_SHADOW"] = shadow
        var rng = SystemRandomNumberGenerator()
        var snapshotsBefore = 0
        for trial in 0..<Self.trials {
            let p = try TestSupport.BackgroundProcess(
                bench,
                ["write", "--config", config, "--database", root + "/app.db", "--transactions", "100000",
                 "--synchronous", synchronous, "--payload-bytes", "\(trial % 2 == 0 ? 200 : 2500)"],
                environment: env, logPath: dir + "/writer.log")
            Thread.sleep(forTimeInterval: Double.random(in: 0.15...0.6, using: &rng))
            kill(p.process.processIdentifier, SIGKILL)
            p.process.waitUntilExit()
            try cutPower(root: root, shadow: shadow)
            // Restart (no more power cuts): commit a little, flush, compare.
            let r = try TestSupport.run(
                bench, ["write", "--config", config, "--database", root + "/app.db", "--transactions", "3",
                        "--synchronous", synchronous])
            #expect(r.status == 0, "trial \(trial): \(r)")
            let out = dir + "/restored.db"
            let result = try ReplicaRestorer.restore(
                from: FileReplicaClient(directory: replica), to: out, options: RestoreOptions(force: true))
            #expect(result.integrityChecked)
            #expect(
                try TestSupport.dump(out) == TestSupport.dump(root + "/app.db"),
                "trial \(trial) (\(synchronous)): the replica's latest state differs from the database after the restart")
            snapshotsBefore = try FileReplicaClient(directory: replica).listFiles(level: 9).count
            try settle(root: root, shadow: shadow)
        }
        #expect(snapshotsBefore >= 1)
    }
}
