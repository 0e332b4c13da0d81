import Foundation
import Testing

@testable import VFSReplication

/// Restores from real replica directories into real SQLite files.
@Suite("Restore", .enabled(if: TestSupport.sqlite3Path != nil, "sqlite3 CLI not found"))
struct RestoreTests {
    static func history(_ dir: String, flags: LTXHeader.Flags = .noChecksum, encoding: LTXPageEncoding = .lz4Frame)
        throws -> (TestSupport.ReplicaBuilder, [UInt64: String])
    {
        var builder = TestSupport.ReplicaBuilder(
            replicaDirectory: dir + "/replica", work: dir, flags: flags, encoding: encoding)
        let (_, dumps) = try TestSupport.makeHistory(dir, &builder)
        return (builder, dumps)
    }

    @Test(arguments: [LTXPageEncoding.lz4Frame, .lz4Block])
    func restoresLatest(encoding: LTXPageEncoding) throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, dumps) = try Self.history(dir, encoding: encoding)
            let out = dir + "/out.db"
            let result = try ReplicaRestorer.restore(from: builder.replica, to: out)
            #expect(result.txid == 5)
            #expect(result.files.count == 5)
            #expect(result.pageSize == 4096)
            #expect(
                Int64(result.pageCount) * 4096
                    == (try FileManager.default.attributesOfItem(atPath: out)[.size] as! Int64))
            #expect(result.timestamp == builder.timestamp)
            #expect(result.integrityChecked)
            #expect(!result.checksumVerified)
            #expect(try TestSupport.dump(out) == dumps[5])
            // Nothing left behind but the output.
            #expect(
                try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains("out.db") } == ["out.db"])
        }
    }

    @Test func restoresEveryEarlierTXIDAndTime() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, dumps) = try Self.history(dir)
            for txid in UInt64(1)...5 {
                let out = dir + "/out-\(txid).db"
                let result = try ReplicaRestorer.restore(
                    from: builder.replica, to: out, options: RestoreOptions(target: .txid(txid)))
                #expect(result.txid == txid)
                #expect(try TestSupport.dump(out) == dumps[txid], "TXID \(txid)")
            }
            // TXID t was stamped 1_750_000_000 + 10 t; aim between TXIDs 3 and 4.
            let out = dir + "/out-time.db"
            let result = try ReplicaRestorer.restore(
                from: builder.replica, to: out,
                options: RestoreOptions(target: .timestamp(Date(timeIntervalSince1970: 1_750_000_035))))
            #expect(result.txid == 3)
            #expect(result.timestamp == Date(timeIntervalSince1970: 1_750_000_030))
            #expect(try TestSupport.dump(out) == dumps[3])
        }
    }

    @Test func verifiesRealDatabaseChecksums() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, dumps) = try Self.history(dir, flags: [])
            let result = try ReplicaRestorer.restore(from: builder.replica, to: dir + "/out.db")
            #expect(result.checksumVerified)
            #expect(try TestSupport.dump(dir + "/out.db") == dumps[5])
        }
    }

    @Test func refusesToOverwriteWithoutForce() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, dumps) = try Self.history(dir)
            let out = dir + "/out.db"
            try TestSupport.writeFile(out, Array("precious".utf8))
            let error = #expect(throws: ReplicationError.self) {
                try ReplicaRestorer.restore(from: builder.replica, to: out)
            }
            #expect(error?.code == .invalidArgument)
            #expect(try TestSupport.readFile(out) == Array("precious".utf8))

            // A stale -wal next to a missing output would be replayed by SQLite: refused too.
            try FileManager.default.removeItem(atPath: out)
            try TestSupport.writeFile(out + "-wal", [1, 2, 3])
            #expect(throws: ReplicationError.self) { try ReplicaRestorer.restore(from: builder.replica, to: out) }

            let result = try ReplicaRestorer.restore(
                from: builder.replica, to: out, options: RestoreOptions(force: true))
            #expect(result.txid == 5)
            #expect(!FileManager.default.fileExists(atPath: out + "-wal"))
            #expect(try TestSupport.dump(out) == dumps[5])
        }
    }

    @Test func corruptFileFailsTheRestoreAndNamesIt() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, _) = try Self.history(dir)
            let victim = try #require(try builder.replica.listFiles(level: 0).first { $0.minTXID == 3 })
            let path = builder.replica.path(of: victim)
            var bytes = try TestSupport.readFile(path)
            bytes[bytes.count - 20] ^= 0xFF  // inside the page index
            try TestSupport.writeFile(path, bytes)
            let out = dir + "/out.db"
            let error = #expect(throws: ReplicationError.self) {
                try ReplicaRestorer.restore(from: builder.replica, to: out)
            }
            #expect(error?.code == .corruptReplicaFile)
            #expect(error?.message.contains(path) == true)
            #expect(!FileManager.default.fileExists(atPath: out))
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains("out.db") }.isEmpty)
            // An earlier point before the damaged file still restores.
            let result = try ReplicaRestorer.restore(
                from: builder.replica, to: out, options: RestoreOptions(target: .txid(2)))
            #expect(result.txid == 2)
        }
    }

    @Test func gapFailsTheRestore() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let (builder, _) = try Self.history(dir)
            let victim = try #require(try builder.replica.listFiles(level: 0).first { $0.minTXID == 3 })
            try builder.replica.delete([victim])
            let out = dir + "/out.db"
            let error = #expect(throws: ReplicationError.self) {
                try ReplicaRestorer.restore(from: builder.replica, to: out)
            }
            #expect(error?.code == .gap)
            #expect(error?.message.contains("TXID 0000000000000003 missing") == true)
            #expect(!FileManager.default.fileExists(atPath: out))
        }
    }

    @Test func emptyOrMissingReplica() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let replica = FileReplicaClient(directory: dir + "/nothing-here")
            let error = #expect(throws: ReplicationError.self) {
                try ReplicaRestorer.restore(from: replica, to: dir + "/o.db")
            }
            #expect(error?.code == .missingReplica)
            #expect(error?.message.contains(dir + "/nothing-here") == true)
        }
    }
}
