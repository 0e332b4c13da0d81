import CSQLite
import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// Kill -9 at random points of a writer that also uploads (mid-transaction, between the WAL
/// write and the spool append, during an upload, during a checkpoint), then of a sidecar
/// uploader: after a restart and a flush the replica rebuilds to exactly the committed state,
/// with no phantom transaction and no gap. `VFS_SOAK_TRIALS` raises the trial count.
@Suite("Kill -9 trials", .serialized)
struct KillTrialTests {
    static let trials = Int(ProcessInfo.processInfo.environment["VFS_SOAK_TRIALS"] ?? "") ?? 50

    /// Rows carry consecutive transaction numbers (vfs-bench write): the restored table must hold
    /// 1...n without a hole and equal the source.
    private func verify(_ dir: String, sourceLocation: SourceLocation = #_sourceLocation) throws {
        let out = dir + "/restored.db"
        let result = try ReplicaRestorer.restore(
            from: FileReplicaClient(directory: dir + "/replica"), to: out, options: RestoreOptions(force: true))
        #expect(result.integrityChecked, sourceLocation: sourceLocation)
        #expect(try TestSupport.dump(out) == TestSupport.dump(dir + "/app.db"), "restored differs from the source", sourceLocation: sourceLocation)
        let shape = try TestSupport.sqlite(out, "SELECT count(DISTINCT tx), coalesce(min(tx),0), coalesce(max(tx),0) FROM bench")
            .trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "|").map { Int($0) ?? -1 }
        #expect(shape.count == 3 && shape[0] == shape[2] && (shape[0] == 0 || shape[1] == 1), "transactions 1...n without gaps: \(shape)", sourceLocation: sourceLocation)
    }

    @Test func killWriterThatUploads() throws {
        guard let bench = TestSupport.builtProduct("vfs-bench") else {
            Issue.record("vfs-bench is not built next to the tests")
            return
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try writeReplicationConfig(dir: dir, maxDelay: "5ms")
        var rng = SystemRandomNumberGenerator()
        var kills = 0
        for trial in 0..<Self.trials {
            // Small checkpoints and a mix of transaction sizes put the kill in every phase.
            let rows = [1, 1, 3, 40][trial % 4]
            let p = try TestSupport.BackgroundProcess(
                bench,
                ["write", "--config", config, "--database", dir + "/app.db", "--transactions", "100000",
                 "--rows-per-transaction", "\(rows)", "--payload-bytes", "\(trial % 3 == 0 ? 3000 : 120)"],
                logPath: dir + "/trial.log")
            Thread.sleep(forTimeInterval: Double.random(in: 0.03...0.25, using: &rng))
            kill(p.process.processIdentifier, SIGKILL)
            p.process.waitUntilExit()
            if p.process.terminationReason == .uncaughtSignal { kills += 1 }
        }
        #expect(kills >= Self.trials * 9 / 10, "most trials must end by the kill (\(kills) of \(Self.trials))")
        // Restart once more, commit a little, flush.
        let r = try TestSupport.run(bench, ["write", "--config", config, "--database", dir + "/app.db", "--transactions", "5"])
        #expect(r.status == 0, "\(r)")
        try verify(dir)
    }

    @Test func killSidecarUploader() throws {
        guard let bench = TestSupport.builtProduct("vfs-bench"), let replicate = TestSupport.builtProduct("vfs-replicate")
        else {
            Issue.record("vfs-bench / vfs-replicate are not built next to the tests")
            return
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try writeReplicationConfig(dir: dir, maxDelay: "2ms")
        var rng = SystemRandomNumberGenerator()
        // A writer that only captures, running throughout.
        let writer = try TestSupport.BackgroundProcess(
            bench,
            ["write", "--config", config, "--database", dir + "/app.db", "--transactions", "40000",
             "--payload-bytes", "600", "--no-upload"],
            logPath: dir + "/writer.log")
        var trials = 0
        while writer.process.isRunning && trials < max(10, Self.trials / 2) {
            let sidecar = try TestSupport.BackgroundProcess(replicate, ["--config", config], logPath: dir + "/sidecar.log")
            Thread.sleep(forTimeInterval: Double.random(in: 0.05...0.3, using: &rng))
            kill(sidecar.process.processIdentifier, SIGKILL)
            sidecar.process.waitUntilExit()
            trials += 1
        }
        writer.process.waitUntilExit()
        #expect(writer.process.terminationStatus == 0, "\((try? String(contentsOfFile: dir + "/writer.log", encoding: .utf8)) ?? "")")
        let r = try TestSupport.run(replicate, ["--config", config, "--once"])
        #expect(r.status == 0, "\(r)")
        #expect(trials >= 5)
        try verify(dir)
    }
}

@Suite("Spool damage", .serialized)
struct SpoolDamageTests {
    @Test func tornSpoolTailIsDetectedAndReplacedBySnapshot() throws {
        guard let bench = TestSupport.builtProduct("vfs-bench") else {
            Issue.record("vfs-bench is not built next to the tests")
            return
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = dir + "/replication.yml"
        try """
        databases:
          - path: app.db
            replica:
              url: file://\(dir)/replica
            max-delay: 10ms
        """.write(toFile: config, atomically: true, encoding: .utf8)
        var r = try TestSupport.run(bench, ["write", "--config", config, "--database", dir + "/app.db", "--transactions", "30"])
        #expect(r.status == 0, "\(r)")
        // Capture only (no uploader), then tear the tail of the spool as a power loss would.
        r = try TestSupport.run(
            bench, ["write", "--config", config, "--database", dir + "/app.db", "--transactions", "30", "--no-upload"])
        #expect(r.status == 0, "\(r)")
        let spoolDir = dir + "/app.db-vfsrepl/spool"
        let segment = try #require(try FileManager.default.contentsOfDirectory(atPath: spoolDir).sorted().last)
        let path = spoolDir + "/" + segment
        var bytes = try TestSupport.readFile(path)
        let tear = bytes.count - 3000
        for i in tear..<min(tear + 1000, bytes.count) { bytes[i] = 0 }
        try TestSupport.writeFile(path, bytes)
        // The uploader detects it, says so, and ships a snapshot of the real database.
        r = try TestSupport.run(bench, ["write", "--config", config, "--database", dir + "/app.db", "--transactions", "3"])
        #expect(r.status == 0, "\(r)")
        #expect(r.stderr.contains("corrupt spool"), "the repair is reported: \(r.stderr)")
        let out = dir + "/restored.db"
        _ = try ReplicaRestorer.restore(from: FileReplicaClient(directory: dir + "/replica"), to: out, options: RestoreOptions(force: true))
        #expect(try TestSupport.dump(out) == TestSupport.dump(dir + "/app.db"))
        #expect(try FileReplicaClient(directory: dir + "/replica").listFiles(level: 9).count == 2)
    }
}
