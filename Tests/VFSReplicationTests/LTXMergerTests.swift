import Foundation
import Testing

@testable import VFSReplication

/// Merging LTX files (compaction): the result must equal applying the inputs one after the other.
@Suite("LTX merger")
struct LTXMergerTests {
    static let pageSize = 512

    static func page(_ tag: UInt64) -> [UInt8] { TestSupport.pageBytes(seed: tag, count: pageSize) }

    /// Writes an LTX file holding `pages` (pgno -> content tag).
    @discardableResult
    static func write(
        _ path: String, minTXID: UInt64, maxTXID: UInt64, commit: UInt32, pages: [UInt32: UInt64],
        time: Double = 1_700_000_000, flags: LTXHeader.Flags = .noChecksum
    ) throws -> String {
        let tracked = !flags.contains(.noChecksum) && minTXID != 1
        let header = LTXHeader(
            flags: flags, pageSize: UInt32(pageSize), commit: commit, minTXID: minTXID, maxTXID: maxTXID,
            timestamp: Date(timeIntervalSince1970: time), preApplyChecksum: tracked ? LTX.checksumFlag | 1 : 0)
        let encoder = try LTXEncoder(path: path, header: header)
        for pgno in pages.keys.sorted() { try encoder.writePage(pgno, page(pages[pgno]!)) }
        try encoder.finish(
            postApplyChecksum: flags.contains(.noChecksum) || minTXID == 1 ? nil : LTX.checksumFlag | 1, sync: false)
        return path
    }

    /// A database as pages, and what applying an LTX file does to it (write pages, then set the size).
    struct Database: Equatable {
        var pages: [[UInt8]]

        mutating func apply(_ path: String) throws {
            let decoder = try LTXDecoder(path: path)
            var buffer = [UInt8](repeating: 0, count: LTXMergerTests.pageSize)
            var written: [UInt32: [UInt8]] = [:]
            while let pgno = try decoder.nextPage(into: &buffer) { written[pgno] = buffer }
            let commit = Int(decoder.header.commit)
            for (pgno, content) in written {
                while pages.count < Int(pgno) { pages.append([UInt8](repeating: 0, count: LTXMergerTests.pageSize)) }
                pages[Int(pgno) - 1] = content
            }
            if pages.count > commit { pages.removeLast(pages.count - commit) }
            while pages.count < commit { pages.append([UInt8](repeating: 0, count: LTXMergerTests.pageSize)) }
        }
    }

    static func pagesOf(_ path: String) throws -> [UInt32: [UInt8]] {
        let decoder = try LTXDecoder(path: path)
        var buffer = [UInt8](repeating: 0, count: pageSize)
        var pages: [UInt32: [UInt8]] = [:]
        while let pgno = try decoder.nextPage(into: &buffer) { pages[pgno] = buffer }
        return pages
    }

    @Test func newestVersionWinsAndTheRangeIsFirstMinToLastMax() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let a = try Self.write(
                dir + "/a", minTXID: 5, maxTXID: 6, commit: 10, pages: [1: 11, 2: 12, 3: 13], time: 1)
            let b = try Self.write(dir + "/b", minTXID: 7, maxTXID: 7, commit: 10, pages: [2: 22, 9: 29], time: 2)
            let c = try Self.write(
                dir + "/c", minTXID: 8, maxTXID: 9, commit: 12, pages: [3: 33, 11: 41, 12: 42], time: 3)
            let merged = try LTXMerger.merge(inputs: [a, b, c], to: dir + "/out")
            #expect(merged.header.minTXID == 5)
            #expect(merged.header.maxTXID == 9)
            #expect(merged.header.commit == 12)
            #expect(merged.header.timestamp == 3000)
            #expect(merged.header.noChecksum)
            #expect(merged.header.nodeID == 0)
            #expect(merged.pageCount == 6)
            let pages = try Self.pagesOf(dir + "/out")
            #expect(
                pages == [
                    1: Self.page(11), 2: Self.page(22), 3: Self.page(33), 9: Self.page(29), 11: Self.page(41),
                    12: Self.page(42),
                ])
            #expect(merged.size == (try FileManager.default.attributesOfItem(atPath: dir + "/out")[.size] as! Int64))
        }
    }

    @Test func pagesTruncatedAwayAreDroppedOrZeroed() throws {
        try TestSupport.withTemporaryDirectory { dir in
            // a writes 8-10; b shrinks the database to 6 pages; c grows it to 10 writing only page 10.
            let a = try Self.write(dir + "/a", minTXID: 2, maxTXID: 2, commit: 10, pages: [8: 8, 9: 9, 10: 10])
            let b = try Self.write(dir + "/b", minTXID: 3, maxTXID: 3, commit: 6, pages: [1: 101])
            let c = try Self.write(dir + "/c", minTXID: 4, maxTXID: 4, commit: 10, pages: [10: 210])
            _ = try LTXMerger.merge(inputs: [a, b, c], to: dir + "/out")
            let zero = [UInt8](repeating: 0, count: Self.pageSize)
            #expect(
                try Self.pagesOf(dir + "/out") == [1: Self.page(101), 7: zero, 8: zero, 9: zero, 10: Self.page(210)])

            // Equivalent to applying them one by one, whatever the base.
            var base = Database(pages: (1...12).map { Self.page(1000 + UInt64($0)) })
            var sequential = base
            for input in [a, b, c] { try sequential.apply(input) }
            try base.apply(dir + "/out")
            #expect(base == sequential)

            // A final shrink simply drops what lies beyond.
            let d = try Self.write(dir + "/d", minTXID: 5, maxTXID: 5, commit: 3, pages: [2: 302])
            let shrunk = try LTXMerger.merge(inputs: [a, b, c, d], to: dir + "/out2")
            #expect(shrunk.header.commit == 3)
            #expect(try Self.pagesOf(dir + "/out2") == [1: Self.page(101), 2: Self.page(302)])
        }
    }

    @Test func aMergedSnapshotHoldsEveryPage() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let snapshot = try Self.write(
                dir + "/s", minTXID: 1, maxTXID: 3, commit: 5, pages: [1: 1, 2: 2, 3: 3, 4: 4, 5: 5])
            // Grows to 8 pages but (unusually) leaves page 8 unwritten: it reads as zeros.
            let more = try Self.write(dir + "/m", minTXID: 4, maxTXID: 4, commit: 8, pages: [2: 20, 6: 6, 7: 7])
            let merged = try LTXMerger.merge(inputs: [snapshot, more], to: dir + "/out")
            #expect(merged.header.isSnapshot)
            #expect(merged.header.maxTXID == 4)
            let verified = try LTXDecoder.verify(path: dir + "/out")  // a snapshot must hold 1...commit
            #expect(verified.pageCount == 8)
            let pages = try Self.pagesOf(dir + "/out")
            #expect(pages[2] == Self.page(20))
            #expect(pages[8] == [UInt8](repeating: 0, count: Self.pageSize))
        }
    }

    @Test func randomSequencesEqualSequentialApplication() throws {
        try TestSupport.withTemporaryDirectory { dir in
            var random = SplitMix64(seed: 99)
            for round in 0..<40 {
                var inputs: [String] = []
                var txid: UInt64 = 10
                var size = random.next(in: 5...30)
                let count = random.next(in: 1...12)
                for i in 0..<count {
                    let roll = random.next() % 10
                    if roll < 2 {
                        size = max(2, size - random.next(in: 1...6))
                    } else if roll < 4 {
                        size += random.next(in: 1...8)
                    }
                    var pages: [UInt32: UInt64] = [:]
                    for _ in 0..<random.next(in: 0...6) {
                        pages[UInt32(random.next(in: 1...size))] = random.next()
                    }
                    let minTXID = txid + 1
                    // Sometimes overlapping the previous file's range, as compacted files may.
                    let start = i > 0 && random.next() % 5 == 0 ? minTXID - 1 : minTXID
                    txid += UInt64(random.next(in: 1...3))
                    inputs.append(
                        try Self.write(
                            dir + "/r\(round)-\(i)", minTXID: start, maxTXID: txid, commit: UInt32(size), pages: pages))
                }
                let out = dir + "/r\(round)-out"
                let fanIn = random.next(in: 2...5)
                _ = try LTXMerger.merge(inputs: inputs, to: out, maxOpenInputs: fanIn)
                var base = Database(pages: (1...random.next(in: 1...40)).map { Self.page(5000 + UInt64($0)) })
                var sequential = base
                for input in inputs { try sequential.apply(input) }
                try base.apply(out)
                #expect(base == sequential, "round \(round)")
            }
        }
    }

    @Test func manyInputsAreMergedInStages() throws {
        try TestSupport.withTemporaryDirectory { dir in
            var inputs: [String] = []
            for i in 0..<300 {
                inputs.append(
                    try Self.write(
                        dir + "/in-\(i)", minTXID: UInt64(i + 2), maxTXID: UInt64(i + 2), commit: 100,
                        pages: [UInt32(i % 100 + 1): UInt64(i)]))
            }
            let staged = try LTXMerger.merge(inputs: inputs, to: dir + "/staged", maxOpenInputs: 16)
            let direct = try LTXMerger.merge(inputs: inputs, to: dir + "/direct", maxOpenInputs: 1000)
            #expect(staged.header == direct.header)
            #expect(try Self.pagesOf(dir + "/staged") == Self.pagesOf(dir + "/direct"))
            #expect(staged.pageCount == 100)
            // No stage files are left behind.
            #expect(try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains(".stage-") }.isEmpty)
        }
    }

    @Test func refusesInputsThatDoNotFollowEachOther() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let a = try Self.write(dir + "/a", minTXID: 2, maxTXID: 3, commit: 4, pages: [1: 1])
            let gap = try Self.write(dir + "/gap", minTXID: 5, maxTXID: 5, commit: 4, pages: [1: 2])
            var error = #expect(throws: ReplicationError.self) {
                try LTXMerger.merge(inputs: [a, gap], to: dir + "/o")
            }
            #expect(error?.message.contains("does not continue") == true)
            let snapshot = try Self.write(dir + "/s", minTXID: 1, maxTXID: 4, commit: 1, pages: [1: 3])
            error = #expect(throws: ReplicationError.self) {
                try LTXMerger.merge(inputs: [a, snapshot], to: dir + "/o")
            }
            #expect(error?.code == .invalidArgument)
            let header = LTXHeader(pageSize: 1024, commit: 1, minTXID: 4, maxTXID: 4, timestamp: Date())
            let other = dir + "/other"
            let encoder = try LTXEncoder(path: other, header: header)
            try encoder.writePage(1, [UInt8](repeating: 1, count: 1024))
            try encoder.finish(sync: false)
            error = #expect(throws: ReplicationError.self) { try LTXMerger.merge(inputs: [a, other], to: dir + "/o") }
            #expect(error?.message.contains("page size") == true)
        }
    }

    @Test func aCorruptInputFailsTheMergeAndIsNamed() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let a = try Self.write(dir + "/a", minTXID: 2, maxTXID: 2, commit: 4, pages: [1: 1, 2: 2])
            let b = try Self.write(dir + "/b", minTXID: 3, maxTXID: 3, commit: 4, pages: [3: 3])
            var bytes = try TestSupport.readFile(b)
            bytes[bytes.count - 3] ^= 0x40
            try TestSupport.writeFile(b, bytes)
            let error = #expect(throws: ReplicationError.self) { try LTXMerger.merge(inputs: [a, b], to: dir + "/o") }
            #expect(error?.code == .corruptReplicaFile)
            #expect(error?.message.contains(b) == true)
        }
    }

    /// A lineage continued after a restore in place changes the node id; the second file's
    /// pre-apply checksum proves the continuation. Without checksums the change is refused.
    @Test func theLastInputsNodeIDIsKept() throws {
        try TestSupport.withTemporaryDirectory { dir in
            func write(_ name: String, checksums: Bool) throws -> [String] {
                var paths: [String] = []
                let sums: [UInt64] = [LTX.checksumFlag | 1, LTX.checksumFlag | 2, LTX.checksumFlag | 3]
                for (i, node) in [UInt64(7), 9].enumerated() {
                    let header = LTXHeader(
                        pageSize: 512, commit: 1, minTXID: UInt64(2 + i), maxTXID: UInt64(2 + i), timestamp: 1000,
                        nodeID: node)
                    let path = dir + "/\(name)\(i)"
                    let encoder = try LTXEncoder(path: path, header: header)
                    try encoder.writePage(1, Self.page(UInt64(i)))
                    try encoder.finish(
                        checksums: checksums ? LTXHeader.DatabaseChecksums(pre: sums[i], post: sums[i + 1]) : nil,
                        sync: false)
                    paths.append(path)
                }
                return paths
            }
            // The uploader recognises its own lineage by the node id of the replica's newest file.
            let merged = try LTXMerger.merge(inputs: try write("c", checksums: true), to: dir + "/o")
            #expect(merged.header.nodeID == 9)
            #expect(merged.header.checksums == LTXHeader.DatabaseChecksums(pre: LTX.checksumFlag | 1, post: LTX.checksumFlag | 3))
            let error = #expect(throws: ReplicationError.self) {
                try LTXMerger.merge(inputs: try write("n", checksums: false), to: dir + "/p")
            }
            #expect(error?.message.contains("another lineage") == true)
        }
    }

    @Test func checksummedInputsGiveANoChecksumOutput() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let snapshot = try Self.write(
                dir + "/s", minTXID: 1, maxTXID: 1, commit: 2, pages: [1: 1, 2: 2], flags: [])
            let next = try Self.write(dir + "/n", minTXID: 2, maxTXID: 2, commit: 2, pages: [2: 3], flags: [])
            let merged = try LTXMerger.merge(inputs: [snapshot, next], to: dir + "/o")
            #expect(merged.header.noChecksum)
            #expect(merged.trailer.postApplyChecksum == 0)
            try LTXDecoder.verify(path: dir + "/o")
        }
    }
}
