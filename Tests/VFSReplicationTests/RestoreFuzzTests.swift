import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// Fuzzes the restore path: replica files damaged at random (seeded), restored to the latest
/// point and to a TXID in the middle. Each restore gives exactly the database file the writer had
/// at that TXID (its own record of every commit), or throws a one-line error naming a file or
/// TXID range: never a wrong database, a crash or a hang.
///
/// `VFS_FUZZ_TRIALS` (default 300) sets the number of trials, `VFS_FUZZ_SEED` the seed (printed
/// on failure). Every 25th trial also runs the `vfs-rebuild` binary for its exit code and message.
@Suite("Restore fuzz", .serialized, .enabled(if: TestSupport.sqlite3Path != nil, "sqlite3 CLI not found"))
struct RestoreFuzzTests {
    static var trials: Int { ProcessInfo.processInfo.environment["VFS_FUZZ_TRIALS"].flatMap { Int($0) } ?? 300 }
    static var seed: UInt64 {
        ProcessInfo.processInfo.environment["VFS_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0x5eed_1157
    }

    /// SplitMix64: small, seeded, the same everywhere.
    struct Random {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        mutating func below(_ n: Int) -> Int { Int(next() % UInt64(max(1, n))) }
    }

    /// Eight states of a database, captured as a snapshot and level-0 files with our checksums
    /// (as the uploader writes them), plus a compacted level-1 file over TXIDs 2-4 (as the merger
    /// writes it); and the same number of states of another database, for foreign files: the
    /// same statements with other values of the same length, so that its pages fit ours and
    /// `PRAGMA integrity_check` alone would not notice them.
    static func makeReplica(_ dir: String, name: String, nodeID: UInt64, variant: Int) throws -> TestSupport.ReplicaBuilder {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        var builder = TestSupport.ReplicaBuilder(
            replicaDirectory: dir + "/replica", work: dir, flags: .noChecksum, encoding: .lz4Frame)
        builder.recordChecksums = true
        builder.nodeID = nodeID
        let db = dir + "/\(name).db"
        let steps = [
            "PRAGMA page_size=4096; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);"
                + "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 200)"
                + "INSERT INTO t SELECT i, printf('row %d %0200d', i, i + \(variant)) FROM n;",
            "UPDATE t SET v = 'changed ' || id WHERE id % 7 = 0;",
            "CREATE INDEX t_v ON t(v);"
                + "WITH RECURSIVE n(i) AS (SELECT 301 UNION ALL SELECT i+1 FROM n WHERE i < 500)"
                + "INSERT INTO t SELECT i, printf('more %d %0300d', i, i) FROM n;",
            "DELETE FROM t WHERE id > 250; VACUUM;",
            "INSERT INTO t(v) VALUES ('one \(variant)');",
            "WITH RECURSIVE n(i) AS (SELECT 1000 UNION ALL SELECT i+1 FROM n WHERE i < 1150)"
                + "INSERT INTO t SELECT i, printf('again %d %0100d', i, i) FROM n;",
            "UPDATE t SET v = upper(v) WHERE id % 3 = 0;",
            "DELETE FROM t WHERE id % 5 = 1;",
        ]
        for sql in steps {
            try TestSupport.sqlite(db, sql)
            try builder.capture(db)
        }
        let l0 = try builder.replica.listFiles(level: 0).filter { $0.minTXID >= 2 && $0.maxTXID <= 4 }
        let merged = dir + "/merged.ltx"
        _ = try LTXMerger.merge(inputs: l0.map { builder.replica.path(of: $0) }, to: merged)
        try builder.replica.publish(level: 1, minTXID: 2, maxTXID: 4, localPath: merged, timestamp: Date())
        return builder
    }

    enum Mutation: CaseIterable {
        case flipBytes, flipHeader, flipTail, truncate, empty, garbage, otherFileContent, foreignFile, delete
    }

    @Test(.timeLimit(.minutes(20))) func damagedReplicasRestoreExactlyOrFailNamingTheFile() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let ours = try Self.makeReplica(dir + "/ours", name: "ours", nodeID: 0x1111, variant: 0)
            let foreign = try Self.makeReplica(dir + "/foreign", name: "foreign", nodeID: 0x2222, variant: 3)
            let pristine = try ReplicaRestorer.listFiles(ours.replica)
            let foreignFiles = try ReplicaRestorer.listFiles(foreign.replica)
            let latest = ours.txid
            let middle = latest / 2
            // VFS_FUZZ_REBUILD=<path> VFS_FUZZ_TOOL_EVERY=1 runs every trial through another
            // vfs-rebuild binary (e.g. an older build, to show what it gets wrong).
            let environment = ProcessInfo.processInfo.environment
            let tool = environment["VFS_FUZZ_REBUILD"] ?? TestSupport.builtProduct("vfs-rebuild")
            let toolEvery = environment["VFS_FUZZ_TOOL_EVERY"].flatMap { Int($0) } ?? 25
            var random = Random(state: Self.seed)
            var outcomes: [String: Int] = [:]

            for trial in 0..<Self.trials {
                let trialDir = dir + "/trial"
                try? FileManager.default.removeItem(atPath: trialDir)
                let replica = FileReplicaClient(directory: trialDir + "/replica")
                for file in pristine {
                    let path = replica.path(of: file)
                    try FileManager.default.createDirectory(
                        atPath: LTXIO.directory(of: path), withIntermediateDirectories: true)
                    try TestSupport.writeFile(path, try TestSupport.readFile(ours.replica.path(of: file)))
                }
                var applied: [String] = []
                for _ in 0...random.below(3) {
                    let file = pristine[random.below(pristine.count)]
                    let path = replica.path(of: file)
                    let mutation = Mutation.allCases[random.below(Mutation.allCases.count)]
                    guard var bytes = try? TestSupport.readFile(path) else { continue }
                    switch mutation {
                    case .flipBytes, .flipHeader, .flipTail:
                        guard !bytes.isEmpty else { continue }
                        for _ in 0...random.below(4) {
                            let at: Int
                            switch mutation {
                            case .flipHeader: at = random.below(min(bytes.count, LTX.headerSize))
                            case .flipTail: at = max(0, bytes.count - 1 - random.below(min(bytes.count, 80)))
                            default: at = random.below(bytes.count)
                            }
                            bytes[at] ^= UInt8(1 + random.below(255))
                        }
                    case .truncate: bytes = Array(bytes.prefix(random.below(bytes.count)))
                    case .empty: bytes = []
                    case .garbage: bytes = (0..<(1 + random.below(3000))).map { _ in UInt8(truncatingIfNeeded: random.next()) }
                    case .otherFileContent:
                        bytes = try TestSupport.readFile(ours.replica.path(of: pristine[random.below(pristine.count)]))
                    case .foreignFile:
                        let same = foreignFiles.first { $0.level == file.level && $0.name == file.name } ?? foreignFiles[random.below(foreignFiles.count)]
                        bytes = try TestSupport.readFile(foreign.replica.path(of: same))
                    case .delete:
                        unlink(path)
                        applied.append("delete \(file)")
                        continue
                    }
                    try TestSupport.writeFile(path, bytes)
                    applied.append("\(mutation) \(file)")
                }
                let context = "trial \(trial) (seed \(Self.seed)): \(applied.joined(separator: ", "))"

                for target in [RestoreTarget.latest, .txid(middle)] {
                    let out = trialDir + "/out.db"
                    unlink(out)
                    let useTool = tool != nil && trial % max(1, toolEvery) == 0
                    if useTool {
                        var args = ["--replica", replica.location, "--output", out, "--quiet"]
                        if case .txid(let t) = target { args += ["--txid", String(t)] }
                        let r = try TestSupport.run(tool!, args)
                        if r.status == 0 {
                            let txid = try #require(
                                UInt64(
                                    r.stdout.split(separator: "\n").last { $0.hasPrefix("restored ") }?
                                        .split(separator: "(").dropFirst().first?.split(separator: ")").first ?? ""),
                                "\(context): \(r)")
                            try Self.expectState(out, txid: txid, target: target, ours: ours, context: context)
                            outcomes["restored", default: 0] += 1
                        } else {
                            #expect(r.status == 1, "\(context): \(r)")
                            let lines = r.stderr.split(separator: "\n")
                            #expect(lines.count == 1, "\(context): \(r)")
                            #expect(r.stderr.contains(".ltx") || r.stderr.contains("TXID"), "\(context): \(r)")
                            #expect(!LTXIO.exists(out), "\(context)")
                            outcomes["refused", default: 0] += 1
                        }
                        continue
                    }
                    do {
                        let result = try ReplicaRestorer.restore(
                            from: replica, to: out, options: RestoreOptions(target: target, verify: true))
                        try Self.expectState(out, txid: result.txid, target: target, ours: ours, context: context)
                        outcomes[result.skipped.isEmpty ? "restored" : "restored around damage", default: 0] += 1
                    } catch let error as ReplicationError {
                        #expect(!error.message.contains("\n"), "\(context): \(error.message)")
                        #expect(
                            error.message.contains(".ltx") || error.message.contains("TXID"),
                            "\(context): \(error.message)")
                        #expect(!LTXIO.exists(out), "\(context)")
                        outcomes["refused", default: 0] += 1
                    }
                }
            }
            print("restore fuzz: \(Self.trials) trials, seed \(Self.seed): \(outcomes.sorted { $0.key < $1.key })")
        }
    }

    /// The restored file must be byte for byte the writer's database at the TXID restored, and
    /// that TXID the one asked for (or, for latest, one the writer had).
    static func expectState(
        _ out: String, txid: UInt64, target: RestoreTarget, ours: TestSupport.ReplicaBuilder, context: String
    ) throws {
        if case .txid(let wanted) = target {
            #expect(txid == wanted, "\(context): restored TXID \(txid), asked for \(wanted)")
        }
        let expected = try #require(ours.states[txid], "\(context): restored to TXID \(txid), which never existed")
        let restored = try TestSupport.readFile(out)
        let same = restored == expected
        #expect(same, "\(context): the database restored at TXID \(txid) is not the writer's")
    }
}
