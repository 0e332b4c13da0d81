import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// Database checksums in every file we write, checked on restore; lineages; one-line errors.
@Suite("Restore checksums and lineage", .serialized)
struct RestoreChecksumTests {
    /// Writes the same transactions into a fixture, each shipped on its own (one TXID per file).
    static func write(_ fixture: ReplicatedFixture, seed: Int) throws {
        let c = try fixture.open()
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        try fixture.flush()
        for round in 0..<6 {
            switch round {
            case 3: try c.exec("DELETE FROM t WHERE id % 2 = \(seed % 2)")
            case 4: try c.exec("VACUUM")  // the database shrinks: pages leave the checksum
            default:
                try c.exec("BEGIN")
                try c.insertBlobs(20 + seed, bytes: 900)
                try c.exec("COMMIT")
            }
            try fixture.flush()
        }
    }

    static func replicaFiles(_ dir: String) throws -> [LTXFileInfo] {
        try ReplicaRestorer.listFiles(FileReplicaClient(directory: dir))
    }

    /// Failed before: every file carried NoChecksum with no database checksum, so a restore
    /// said `checksumVerified == false` and nothing checked the result against the files.
    @Test func everyUploadedFileCarriesDatabaseChecksumsAndRestoresVerifyThem() throws {
        let fixture = try ReplicatedFixture()
        try Self.write(fixture, seed: 1)
        let replica = FileReplicaClient(directory: fixture.replicaDir)
        let files = try Self.replicaFiles(fixture.replicaDir)
        try #require(files.count >= 5)
        for file in files {
            let verified = try LTXDecoder.verify(path: replica.path(of: file))
            #expect(verified.header.checksums != nil, "\(file) carries no database checksums")
        }
        let (out, result) = try fixture.rebuild()
        #expect(result.checksumVerified, "\(result)")
        #expect(result.checksumUnavailable == nil)
        try fixture.expectEqual(out)
        // A point in the middle: the last file of that chain records the state there.
        let middle = files.filter { $0.level == 0 }.map(\.maxTXID).sorted()[2]
        let (_, earlier) = try fixture.rebuild(txid: middle, as: "middle.db")
        #expect(earlier.txid == middle)
        #expect(earlier.checksumVerified)
    }

    /// Failed before: a valid LTX file of another database, under a name that fits its TXIDs,
    /// was applied silently and the restore "verified" a database that never existed.
    @Test func fileOfAnotherDatabaseUnderAFittingNameIsRefused() throws {
        let a = try ReplicatedFixture()
        try Self.write(a, seed: 1)
        let b = try ReplicatedFixture()
        try Self.write(b, seed: 2)
        let ours = try Self.replicaFiles(a.replicaDir).filter { $0.level == 0 }
        let theirs = Set(try Self.replicaFiles(b.replicaDir).filter { $0.level == 0 }.map(\.name))
        let victim = try #require(ours.dropFirst(2).first { theirs.contains($0.name) }, "no common TXID range")
        let source = FileReplicaClient(directory: b.replicaDir).path(of: victim)
        let target = FileReplicaClient(directory: a.replicaDir).path(of: victim)
        try TestSupport.writeFile(target, try TestSupport.readFile(source))

        do {
            let (_, result) = try a.rebuild()
            Issue.record("restored through another database's file: \(result)")
        } catch let error as ReplicationError {
            #expect(error.message.contains(victim.name), "\(error.message)")
            #expect(!error.message.contains("\n"))
        }
        // Through the binary: non-zero exit, one line naming the file.
        if let tool = TestSupport.builtProduct("vfs-rebuild") {
            let r = try TestSupport.run(
                tool, ["--replica", "file://" + a.replicaDir, "--output", a.dir + "/tool.db", "--quiet"])
            #expect(r.status != 0, "\(r)")
            #expect(r.stderr.contains(victim.name), "\(r)")
            #expect(r.stderr.split(separator: "\n").count == 1, "\(r)")
        }
    }

    /// A database rebuilt in place and written on continues the lineage under a new writer id:
    /// its first file's pre-apply checksum proves the continuation.
    @Test func continuationAfterRestoreInPlaceIsAccepted() throws {
        let fixture = try ReplicatedFixture()
        try Self.write(fixture, seed: 1)
        let files = try Self.replicaFiles(fixture.replicaDir)
        let restoredTXID = files.map(\.maxTXID).max()!
        // The adopted map makes the next batch carry the restored state's checksum as pre-apply.
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let db = dir + "/copy.db"
        _ = try ReplicaRestorer.restore(from: FileReplicaClient(directory: fixture.replicaDir), to: db)
        try RestoreMarker.record(databasePath: db, replica: "file://" + fixture.replicaDir, txid: restoredTXID)
        let map = try PageChecksumMap(path: db + "-vfsrepl/pagesums")
        let expected = try LTXDatabaseChecksum.ofDatabase(path: db)
        #expect(map.trusted(txid: restoredTXID, lineage: 12345, pageSize: 4096) == expected)
        #expect(map.trusted(txid: restoredTXID + 1, lineage: 12345, pageSize: 4096) == nil)
    }

    /// Failed before: the integrity_check error was ~20 lines with embedded newlines, naming the
    /// TXID but neither the database nor the files.
    @Test func integrityCheckFailureIsOneLineNamingDatabaseFilesAndTXIDs() throws {
        guard let tool = TestSupport.builtProduct("vfs-rebuild"), TestSupport.sqlite3Path != nil else { return }
        try TestSupport.withTemporaryDirectory { dir in
            var builder = TestSupport.ReplicaBuilder(
                replicaDirectory: dir + "/replica", work: dir, flags: .noChecksum, encoding: .lz4Frame)
            builder.recordChecksums = true
            builder.nodeID = 7
            let (db, _) = try TestSupport.makeHistory(dir, &builder)
            // A damaged b-tree, captured as the next state: every checksum matches it.
            var bytes = try TestSupport.readFile(db)
            for page in 2..<min(12, bytes.count / 4096) {
                for i in 0..<64 { bytes[page * 4096 + 100 + i * 7] = UInt8(truncatingIfNeeded: i &* 37 &+ page) }
            }
            try TestSupport.writeFile(db, bytes)
            try builder.capture(db)
            let last = LTXFileInfo.fileName(minTXID: builder.txid, maxTXID: builder.txid)
            let out = dir + "/out.db"
            let r = try TestSupport.run(tool, ["--replica", builder.replica.location, "--output", out, "--quiet"])
            #expect(r.status != 0, "\(r)")
            let lines = r.stderr.split(separator: "\n")
            #expect(lines.count == 1, "\(r)")
            #expect(r.stderr.contains("integrity_check"), "\(r)")
            #expect(r.stderr.contains(out), "\(r)")
            #expect(r.stderr.contains(last), "\(r)")
            #expect(r.stderr.contains("\(hex16(1))-\(hex16(builder.txid))"), "\(r)")
            #expect(r.stderr.contains("--verbose"), "\(r)")
            #expect(!LTXIO.exists(out))
            let verbose = try TestSupport.run(
                tool, ["--replica", builder.replica.location, "--output", out, "--verbose", "--quiet"])
            #expect(verbose.status != 0)
            #expect(verbose.stderr.split(separator: "\n").count > 1, "\(verbose)")
        }
    }

    /// The restore runs integrity_check on a thread of its own beside the database checksum:
    /// its answer is the same as run in line, for a sound file and for a damaged one, and asking
    /// twice gives the same answer.
    @Test func integrityCheckBesideTheChecksumGivesTheSameAnswer() throws {
        guard TestSupport.sqlite3Path != nil else { return }
        try TestSupport.withTemporaryDirectory { dir in
            var builder = TestSupport.ReplicaBuilder(
                replicaDirectory: dir + "/replica", work: dir, flags: .noChecksum, encoding: .lz4Frame)
            let (db, _) = try TestSupport.makeHistory(dir, &builder)
            let sound = BackgroundIntegrityCheck(path: db)
            #expect(try sound.wait() == nil)
            #expect(try sound.wait() == nil)
            var bytes = try TestSupport.readFile(db)
            for page in 2..<min(12, bytes.count / 4096) {
                for i in 0..<64 { bytes[page * 4096 + 100 + i * 7] = UInt8(truncatingIfNeeded: i &* 37 &+ page) }
            }
            let damaged = dir + "/damaged.db"
            try TestSupport.writeFile(damaged, bytes)
            let inLine = try #require(try IntegrityCheck.run(path: damaged))
            let beside = BackgroundIntegrityCheck(path: damaged)
            #expect(try beside.wait() == inLine)
            #expect(try beside.wait() == inLine)
        }
    }

    @Test func crcCombineEqualsTheCRCOfTheConcatenation() {
        var random = RestoreFuzzTests.Random(state: 42)
        for length in [0, 1, 7, 8, 100, 4096, 70_001] {
            let a = (0..<100).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            let b = (0..<length).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            #expect(
                CRC64.combine(CRC64.checksum(a), CRC64.checksum(b), lengthB: Int64(length)) == CRC64.checksum(a + b),
                "length \(length)")
        }
    }
}
