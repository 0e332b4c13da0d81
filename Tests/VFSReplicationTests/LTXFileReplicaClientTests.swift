import Foundation
import Testing

@testable import VFSReplication

@Suite("Directory replica client")
struct LTXFileReplicaClientTests {
    /// Writes a small valid LTX file and returns its path.
    static func ltx(_ dir: String, min: UInt64, max: UInt64, time: Date) throws -> String {
        let path = dir + "/staged-\(min)-\(max).ltx"
        let header = LTXHeader(pageSize: 512, commit: 1, minTXID: min, maxTXID: max, timestamp: time)
        let enc = try LTXEncoder(path: path, header: header)
        try enc.writePage(1, [UInt8](repeating: UInt8(truncatingIfNeeded: max), count: 512))
        try enc.finish()
        return path
    }

    @Test func publishListsFetchAndDelete() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let replica = FileReplicaClient(directory: dir + "/replica/")
            #expect(try replica.listLevels() == [])
            #expect(try replica.listFiles(level: 0) == [])
            let t1 = Date(timeIntervalSince1970: 1_700_000_001.5)
            let t2 = Date(timeIntervalSince1970: 1_700_000_002.25)
            try replica.publish(
                level: 0, minTXID: 2, maxTXID: 2, localPath: try Self.ltx(dir, min: 2, max: 2, time: t2), timestamp: t2)
            try replica.publish(
                level: 0, minTXID: 1, maxTXID: 1, localPath: try Self.ltx(dir, min: 1, max: 1, time: t1), timestamp: t1)
            try replica.publish(
                level: 9, minTXID: 1, maxTXID: 2, localPath: try Self.ltx(dir, min: 1, max: 2, time: t2), timestamp: t2)

            #expect(
                FileManager.default.fileExists(atPath: dir + "/replica/ltx/0/0000000000000001-0000000000000001.ltx"))
            #expect(
                FileManager.default.fileExists(atPath: dir + "/replica/ltx/9/0000000000000001-0000000000000002.ltx"))
            #expect(try replica.listLevels() == [0, 9])
            let files = try replica.listFiles(level: 0)
            #expect(files.map(\.minTXID) == [1, 2])
            #expect(files[0].createdAt == t1)  // from the header (ms precision)
            #expect(files[1].createdAt == t2)
            #expect(files[0].size == Int64(try TestSupport.readFile(replica.path(of: files[0])).count))
            // mtime is set to the LTX timestamp, as Litestream does.
            let attributes = try FileManager.default.attributesOfItem(atPath: replica.path(of: files[1]))
            #expect(abs((attributes[.modificationDate] as! Date).timeIntervalSince(t2)) < 0.001)

            let local = try replica.fetch(files[0])
            #expect(!local.isTemporary)
            try LTXDecoder.verify(path: local.path)

            try replica.delete([files[0], files[0]])
            #expect(try replica.listFiles(level: 0).map(\.minTXID) == [2])
            let gone = #expect(throws: ReplicationError.self) { try replica.fetch(files[0]) }
            #expect(gone?.code == .missingReplica)
        }
    }

    @Test func publishNeverOverwrites() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let replica = FileReplicaClient(directory: dir + "/replica")
            let t = Date(timeIntervalSince1970: 1_700_000_000)
            let first = try Self.ltx(dir, min: 1, max: 1, time: t)
            try replica.publish(level: 0, minTXID: 1, maxTXID: 1, localPath: first, timestamp: t)
            let original = try TestSupport.readFile(replica.path(level: 0, minTXID: 1, maxTXID: 1))

            let other = dir + "/other.ltx"
            let header = LTXHeader(pageSize: 512, commit: 1, minTXID: 1, maxTXID: 1, timestamp: Int64(5))
            let enc = try LTXEncoder(path: other, header: header)
            try enc.writePage(1, [UInt8](repeating: 9, count: 512))
            try enc.finish()
            let error = #expect(throws: ReplicationError.self) {
                try replica.publish(level: 0, minTXID: 1, maxTXID: 1, localPath: other, timestamp: t)
            }
            #expect(error?.code == .fenced)
            #expect(error?.message.contains("L0/0000000000000001-0000000000000001.ltx") == true)
            #expect(try TestSupport.readFile(replica.path(level: 0, minTXID: 1, maxTXID: 1)) == original)
            // No temporary file is left behind.
            #expect(
                try FileManager.default.contentsOfDirectory(atPath: dir + "/replica/ltx/0") == [
                    "0000000000000001-0000000000000001.ltx"
                ])
        }
    }

    @Test func listingIgnoresTemporaryAndForeignFiles() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let replica = FileReplicaClient(directory: dir)
            let t = Date(timeIntervalSince1970: 1_700_000_000)
            try replica.publish(
                level: 3, minTXID: 5, maxTXID: 9, localPath: try Self.ltx(dir, min: 5, max: 9, time: t), timestamp: t)
            let level = dir + "/ltx/3"
            for name in [
                "0000000000000001-0000000000000004.ltx.tmp", ".0000000000000001-0000000000000004.ltx.1.2.tmp",
                "notes.txt", "0000000000000001-00000000000004.ltx",
            ] {
                try TestSupport.writeFile(level + "/" + name, [0])
            }
            try FileManager.default.createDirectory(atPath: dir + "/ltx/x", withIntermediateDirectories: true)
            try FileManager.default.createDirectory(atPath: dir + "/ltx/4", withIntermediateDirectories: true)
            #expect(try replica.listLevels() == [3])
            #expect(try replica.listFiles(level: 3).map(\.description) == ["L3/0000000000000005-0000000000000009.ltx"])
        }
    }

    @Test func urls() throws {
        #expect(try FileReplicaClient(url: "file:///var/backups/app").directory == "/var/backups/app")
        #expect(try FileReplicaClient(url: "file:///var/back%20ups/").directory == "/var/back ups")
        #expect(FileReplicaClient(directory: "/var/back ups").location == "file:///var/back%20ups")
        #expect(throws: ReplicationError.self) { try FileReplicaClient(url: "s3://bucket/x") }
        #expect(throws: ReplicationError.self) { try FileReplicaClient(url: "file://host/x") }
    }
}
