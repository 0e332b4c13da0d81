import Foundation
import Testing

@testable import VFSReplication

/// A corrupt or missing compacted file: the restore goes through lower levels when they cover
/// the same transactions, and otherwise fails naming the file.
@Suite("Restore: fallback to lower levels", .enabled(if: TestSupport.sqlite3Path != nil, "sqlite3 CLI not found"))
struct RestoreFallbackTests {
    /// Five states of a real database as L0 files 1...5, plus L1 2-5 merged from them.
    static func replica(_ dir: String) throws -> (TestSupport.ReplicaBuilder, [UInt64: String], LTXFileInfo) {
        var builder = TestSupport.ReplicaBuilder(
            replicaDirectory: dir + "/replica", work: dir, flags: .noChecksum, encoding: .lz4Frame)
        let (_, dumps) = try TestSupport.makeHistory(dir, &builder)
        let inputs = try builder.replica.listFiles(level: 0).filter { $0.minTXID >= 2 }.map(builder.replica.path(of:))
        let merged = try LTXMerger.merge(inputs: inputs, to: dir + "/l1.ltx")
        try builder.replica.publish(
            level: 1, minTXID: 2, maxTXID: 5, localPath: dir + "/l1.ltx", timestamp: merged.header.date)
        let l1 = LTXFileInfo(level: 1, minTXID: 2, maxTXID: 5, size: merged.size, createdAt: merged.header.date)
        return (builder, dumps, l1)
    }

    static func corrupt(_ path: String) throws {
        var bytes = try TestSupport.readFile(path)
        bytes[LTX.headerSize + 40] ^= 0x5A  // inside the first page frame
        try TestSupport.writeFile(path, bytes)
    }

    @Test func compactedFileIsUsedWhenSound() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, dumps, _) = try Self.replica(dir)
            let result = try ReplicaRestorer.restore(from: builder.replica, to: dir + "/out.db")
            #expect(result.files.map(\.level) == [0, 1])
            #expect(result.skipped.isEmpty)
            #expect(try TestSupport.dump(dir + "/out.db") == dumps[5])
        }
    }

    @Test func corruptCompactedFileFallsBackToLevelZero() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, dumps, l1) = try Self.replica(dir)
            try Self.corrupt(builder.replica.path(of: l1))
            let result = try ReplicaRestorer.restore(from: builder.replica, to: dir + "/out.db")
            #expect(result.txid == 5)
            #expect(result.files.map(\.level) == [0, 0, 0, 0, 0])
            #expect(result.skipped.count == 1)
            #expect(result.skipped.first?.contains("L1/0000000000000002-0000000000000005.ltx") == true)
            #expect(result.skipped.first?.contains("corrupt LTX file") == true)
            #expect(try TestSupport.dump(dir + "/out.db") == dumps[5])
        }
    }

    @Test func missingCompactedFileFallsBackToLevelZero() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, dumps, l1) = try Self.replica(dir)
            // Listed, but gone when fetched (deleted by someone in between).
            let client = VanishingReplica(inner: builder.replica, gone: l1)
            let result = try ReplicaRestorer.restore(from: client, to: dir + "/out.db")
            #expect(result.txid == 5)
            #expect(result.skipped.first?.contains("does not exist") == true)
            #expect(try TestSupport.dump(dir + "/out.db") == dumps[5])
        }
    }

    @Test func withoutLowerLevelsTheErrorNamesTheFile() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, _, l1) = try Self.replica(dir)
            try builder.replica.delete(try builder.replica.listFiles(level: 0).filter { $0.minTXID >= 3 })
            let path = builder.replica.path(of: l1)
            try Self.corrupt(path)
            let out = dir + "/out.db"
            let error = #expect(throws: ReplicationError.self) {
                try ReplicaRestorer.restore(from: builder.replica, to: out)
            }
            #expect(error?.code == .corruptReplicaFile)
            #expect(error?.message.contains("corrupt LTX file \(path)") == true)
            #expect(
                error?.message.contains("no other files in the replica cover TXIDs 0000000000000002-0000000000000005")
                    == true)
            #expect(!FileManager.default.fileExists(atPath: out))
            // A TXID target before the damage is fine.
            let result = try ReplicaRestorer.restore(
                from: builder.replica, to: out, options: RestoreOptions(target: .txid(2)))
            #expect(result.txid == 2)
        }
    }

    @Test func fallbackNeverRestoresLessThanAskedFor() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, _, l1) = try Self.replica(dir)
            // Level 0 keeps 2-4 but not 5: without L1 2-5 the latest point would be 4.
            try builder.replica.delete(try builder.replica.listFiles(level: 0).filter { $0.minTXID == 5 })
            try Self.corrupt(builder.replica.path(of: l1))
            let error = #expect(throws: ReplicationError.self) {
                try ReplicaRestorer.restore(from: builder.replica, to: dir + "/out.db")
            }
            #expect(error?.code == .corruptReplicaFile)
            let message = error?.message ?? ""
            #expect(message.contains("L1/0000000000000002-0000000000000005.ltx cannot be used"), "\(message)")
            #expect(message.contains("no other files cover TXIDs 0000000000000005-0000000000000005"), "\(message)")
        }
    }
}

/// A replica whose listing still shows a file that is gone when fetched.
struct VanishingReplica: ReplicaClient {
    let inner: FileReplicaClient
    let gone: LTXFileInfo
    var location: String { inner.location }
    func listFiles(level: Int) throws -> [LTXFileInfo] { try inner.listFiles(level: level) }
    func listLevels() throws -> [Int] { try inner.listLevels() }
    func fetch(_ file: LTXFileInfo) throws -> LocalLTXFile {
        if file.level == gone.level && file.minTXID == gone.minTXID && file.maxTXID == gone.maxTXID {
            throw ReplicationError(.missingReplica, "replica file \(inner.path(of: file)) does not exist")
        }
        return try inner.fetch(file)
    }
    func publish(level: Int, minTXID: UInt64, maxTXID: UInt64, localPath: String, timestamp: Date) throws {
        try inner.publish(level: level, minTXID: minTXID, maxTXID: maxTXID, localPath: localPath, timestamp: timestamp)
    }
    func delete(_ files: [LTXFileInfo]) throws { try inner.delete(files) }
}
