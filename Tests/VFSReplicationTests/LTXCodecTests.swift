import Foundation
import Testing

@testable import VFSReplication

@Suite("LTX codec")
struct LTXCodecTests {
    // MARK: CRC-64

    /// Bit-at-a-time reference, independent of the table code.
    static func referenceCRC(_ bytes: [UInt8]) -> UInt64 {
        var crc: UInt64 = ~0
        for b in bytes {
            crc ^= UInt64(b)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xD800_0000_0000_0000 : crc >> 1 }
        }
        return ~crc
    }

    @Test func crc64CheckValue() {
        #expect(CRC64.checksum(Array("123456789".utf8)) == 0xb909_56c7_75a4_1001)
        #expect(CRC64.checksum([]) == 0)
    }

    @Test func crc64MatchesReferenceAtEveryLengthAndSplit() {
        let data = TestSupport.pageBytes(seed: 7, count: 200)
        for length in 0...data.count {
            let slice = Array(data[0..<length])
            let expected = Self.referenceCRC(slice)
            #expect(CRC64.checksum(slice) == expected)
            let split = length / 3
            var crc = CRC64()
            crc.update(slice[0..<split])
            crc.update(slice[split...])
            #expect(crc.value == expected)
        }
    }

    // MARK: Header

    @Test func headerRoundTrip() throws {
        let header = LTXHeader(
            flags: .noChecksum, pageSize: 4096, commit: 77, minTXID: 5, maxTXID: 9,
            timestamp: 1_700_000_000_123, walOffset: 32, walSize: 4128, walSalt1: 0xdead_beef, walSalt2: 7, nodeID: 42)
        let bytes = header.encoded()
        #expect(bytes.count == 100)
        #expect(Array(bytes[0..<4]) == Array("LTX1".utf8))
        #expect(bytes[4..<8] == [0, 0, 0, 2])
        #expect(bytes[8..<12] == [0, 0, 0x10, 0])
        #expect(bytes[80..<100].allSatisfy { $0 == 0 })
        #expect(try LTXHeader(decoding: bytes) == header)
        #expect(header.date == Date(timeIntervalSince1970: 1_700_000_000.123))
    }

    @Test func headerValidation() {
        let good = LTXHeader(pageSize: 4096, commit: 1, minTXID: 1, maxTXID: 1, timestamp: Int64(0))
        var bad = good.encoded()
        bad[0] = UInt8(ascii: "X")
        #expect(throws: LTXFormatError.self) { try LTXHeader(decoding: bad) }
        var h = good
        h.pageSize = 3000
        #expect(throws: LTXFormatError.self) { try h.validate() }
        h = good
        h.flags = LTXHeader.Flags(rawValue: 0x10)
        #expect(throws: LTXFormatError.self) { try h.validate() }
        h = good
        h.minTXID = 3
        h.maxTXID = 2
        #expect(throws: LTXFormatError.self) { try h.validate() }
        h = good
        h.flags = []
        h.preApplyChecksum = LTX.checksumFlag | 5
        #expect(throws: LTXFormatError.self) { try h.validate() }  // a snapshot has no pre-apply checksum
        h.minTXID = 2
        h.maxTXID = 2
        #expect(throws: Never.self) { try h.validate() }
        h.preApplyChecksum = 0
        #expect(throws: LTXFormatError.self) { try h.validate() }  // incremental with checksums needs one
    }

    @Test func lockPageNumbers() {
        #expect(LTX.lockPageNumber(pageSize: 4096) == 262_145)
        #expect(LTX.lockPageNumber(pageSize: 512) == 2_097_153)
        #expect(LTX.lockPageNumber(pageSize: 65536) == 16_385)
    }

    // MARK: Round trips

    static func page(_ pgno: UInt32, _ pageSize: Int, generation: UInt64 = 0) -> [UInt8] {
        TestSupport.pageBytes(seed: UInt64(pgno) &* 1000 &+ generation, count: pageSize)
    }

    static func decodeAll(_ path: String) throws -> (LTXHeader, LTXTrailer, [(UInt32, [UInt8])]) {
        let dec = try LTXDecoder(path: path)
        var page = [UInt8](repeating: 0, count: Int(dec.header.pageSize))
        var pages: [(UInt32, [UInt8])] = []
        while let pgno = try dec.nextPage(into: &page) { pages.append((pgno, page)) }
        return (dec.header, try #require(dec.trailer), pages)
    }

    @Test(arguments: [LTXPageEncoding.lz4Frame, .lz4Block])
    func snapshotRoundTrip(encoding: LTXPageEncoding) throws {
        try TestSupport.withTemporaryDirectory { dir in
            let path = dir + "/snap.ltx"
            let header = LTXHeader(
                pageSize: 4096, commit: 20, minTXID: 1, maxTXID: 3, timestamp: Int64(1_700_000_000_000))
            let enc = try LTXEncoder(path: path, header: header, pageEncoding: encoding)
            for pgno in UInt32(1)...20 { try enc.writePage(pgno, Self.page(pgno, 4096)) }
            let written = try enc.finish()
            #expect(written.postApplyChecksum == 0)
            #expect(written.fileChecksum & LTX.checksumFlag != 0)

            let (h, t, pages) = try Self.decodeAll(path)
            #expect(h == header)
            #expect(t == written)
            #expect(pages.map(\.0) == Array(1...20))
            for (pgno, data) in pages { #expect(data == Self.page(pgno, 4096)) }

            // Page flags on disk: 0 for frames, 1 (size-prefixed block) for blocks.
            let bytes = try TestSupport.readFile(path)
            let flags = UInt16(bytes[104]) << 8 | UInt16(bytes[105])
            #expect(flags == (encoding == .lz4Frame ? 0 : 1))
            if encoding == .lz4Frame { #expect(Array(bytes[106..<110]) == [0x04, 0x22, 0x4D, 0x18]) }
        }
    }

    @Test(arguments: [LTXPageEncoding.lz4Frame, .lz4Block])
    func incrementalRoundTripWithChecksums(encoding: LTXPageEncoding) throws {
        try TestSupport.withTemporaryDirectory { dir in
            let path = dir + "/inc.ltx"
            let pre = LTX.checksumFlag | 0x1234
            let post = LTX.checksumFlag | 0x5678
            let header = LTXHeader(
                flags: [], pageSize: 1024, commit: 40, minTXID: 4, maxTXID: 6, timestamp: Int64(5),
                preApplyChecksum: pre)
            let enc = try LTXEncoder(path: path, header: header, pageEncoding: encoding)
            for pgno: UInt32 in [2, 9, 33, 40] { try enc.writePage(pgno, Self.page(pgno, 1024, generation: 1)) }
            #expect(throws: ReplicationError.self) { try enc.writePage(39, Self.page(39, 1024)) }  // out of order
            let trailer = try enc.finish(postApplyChecksum: post)
            let (h, t, pages) = try Self.decodeAll(path)
            #expect(h.preApplyChecksum == pre)
            #expect(t.postApplyChecksum == post && t == trailer)
            #expect(pages.map(\.0) == [2, 9, 33, 40])
            for (pgno, data) in pages { #expect(data == Self.page(pgno, 1024, generation: 1)) }
        }
    }

    @Test func snapshotWithChecksumsCarriesTheDatabaseChecksum() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let path = dir + "/snap.ltx"
            let header = LTXHeader(flags: [], pageSize: 512, commit: 5, minTXID: 1, maxTXID: 1, timestamp: Int64(0))
            let enc = try LTXEncoder(path: path, header: header)
            var sum = LTXDatabaseChecksum()
            for pgno in UInt32(1)...5 {
                try enc.writePage(pgno, Self.page(pgno, 512))
                sum.add(pgno: pgno, page: Self.page(pgno, 512))
            }
            let trailer = try enc.finish()
            #expect(trailer.postApplyChecksum == sum.value)
            let dec = try LTXDecoder(path: path)
            var page = [UInt8](repeating: 0, count: 512)
            while try dec.nextPage(into: &page) != nil {}
            #expect(dec.snapshotChecksum == sum.value)

            // A snapshot whose stated checksum does not match its pages is rejected.
            let bad = dir + "/bad.ltx"
            let enc2 = try LTXEncoder(path: bad, header: header)
            for pgno in UInt32(1)...5 { try enc2.writePage(pgno, Self.page(pgno, 512)) }
            try enc2.finish(postApplyChecksum: LTX.checksumFlag | 99)
            let error = #expect(throws: ReplicationError.self) { try LTXDecoder.verify(path: bad) }
            #expect(error?.code == .corruptReplicaFile)
            #expect(error?.message.contains(bad) == true)
        }
    }

    @Test func encoderRejectsIncompleteSnapshotsAndLockPage() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let header = LTXHeader(pageSize: 4096, commit: 3, minTXID: 1, maxTXID: 1, timestamp: Int64(0))
            let enc = try LTXEncoder(path: dir + "/a.ltx", header: header)
            try enc.writePage(1, Self.page(1, 4096))
            #expect(throws: ReplicationError.self) { try enc.writePage(3, Self.page(3, 4096)) }  // gap
            let enc2 = try LTXEncoder(path: dir + "/b.ltx", header: header)
            try enc2.writePage(1, Self.page(1, 4096))
            #expect(throws: ReplicationError.self) { try enc2.finish() }  // pages 2, 3 missing
            let lock = LTX.lockPageNumber(pageSize: 4096)
            let inc = LTXHeader(pageSize: 4096, commit: lock + 5, minTXID: 2, maxTXID: 2, timestamp: Int64(0))
            let enc3 = try LTXEncoder(path: dir + "/c.ltx", header: inc)
            #expect(throws: ReplicationError.self) { try enc3.writePage(lock, Self.page(1, 4096)) }
            try enc3.writePage(lock + 1, Self.page(1, 4096))
            try enc3.finish()
            let (_, _, pages) = try Self.decodeAll(dir + "/c.ltx")
            #expect(pages.map(\.0) == [lock + 1])
        }
    }

    /// A full snapshot across the lock page (1 GiB of 64 KiB pages, sparse and mostly zero):
    /// the encoder skips from lock-1 to lock+1, the decoder accepts it, and the database
    /// checksum leaves the lock page out.
    @Test func snapshotAcrossTheLockPage() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let pageSize = 65536
            let lock = LTX.lockPageNumber(pageSize: UInt32(pageSize))
            let commit = lock + 1
            let path = dir + "/big.ltx"
            let header = LTXHeader(
                flags: [], pageSize: UInt32(pageSize), commit: commit, minTXID: 1, maxTXID: 1, timestamp: Int64(0))
            let enc = try LTXEncoder(path: path, header: header, pageEncoding: .lz4Block)
            let zero = [UInt8](repeating: 0, count: pageSize)
            let first = Self.page(1, pageSize)
            let last = Self.page(commit, pageSize)
            var sum = LTXDatabaseChecksum()
            var pgno: UInt32 = 1
            while pgno <= commit {
                if pgno == lock {
                    #expect(throws: ReplicationError.self) { try enc.writePage(pgno, zero) }
                    pgno += 1
                    continue
                }
                let data = pgno == 1 ? first : pgno == commit ? last : zero
                try enc.writePage(pgno, data)
                sum.add(pgno: pgno, page: data)
                pgno += 1
            }
            let trailer = try enc.finish()
            #expect(trailer.postApplyChecksum == sum.value)

            let dec = try LTXDecoder(path: path)
            var page = [UInt8](repeating: 0, count: pageSize)
            var count = 0
            var previous: UInt32 = 0
            while let p = try dec.nextPage(into: &page) {
                #expect(p != lock)
                if p == commit { #expect(page == last) }
                previous = p
                count += 1
            }
            #expect(previous == commit)
            #expect(count == Int(commit) - 1)
            #expect(dec.snapshotChecksum == sum.value)
        }
    }

    // MARK: Corruption

    static func smallFile(_ dir: String, _ encoding: LTXPageEncoding) throws -> String {
        let path = dir + "/small-\(encoding).ltx"
        let header = LTXHeader(pageSize: 512, commit: 3, minTXID: 2, maxTXID: 2, timestamp: Int64(1000))
        let enc = try LTXEncoder(path: path, header: header, pageEncoding: encoding)
        try enc.writePage(1, page(1, 512))
        try enc.writePage(3, page(3, 512))
        try enc.finish()
        return path
    }

    @Test(arguments: [LTXPageEncoding.lz4Frame, .lz4Block])
    func everyFlippedByteIsDetectedAndNamesTheFile(encoding: LTXPageEncoding) throws {
        try TestSupport.withTemporaryDirectory { dir in
            let path = try Self.smallFile(dir, encoding)
            let original = try TestSupport.readFile(path)
            try LTXDecoder.verify(path: path)
            var undetected: [Int] = []
            for offset in 0..<original.count {
                var bytes = original
                bytes[offset] ^= 0x01
                try TestSupport.writeFile(path, bytes)
                do {
                    // LZ4 can encode the same bytes in several ways (a match inside a run of equal
                    // bytes may take another offset), so a flip in compressed data may be benign:
                    // then the pages must come out unchanged.
                    let (_, _, pages) = try Self.decodeAll(path)
                    if pages.map(\.0) != [1, 3] || pages[0].1 != Self.page(1, 512) || pages[1].1 != Self.page(3, 512) {
                        undetected.append(offset)
                    }
                } catch let error as ReplicationError {
                    #expect(error.code == .corruptReplicaFile, "offset \(offset): \(error)")
                    #expect(error.message.contains(path), "offset \(offset): \(error)")
                }
            }
            #expect(undetected.isEmpty, "flips that changed data undetected at offsets \(undetected)")
        }
    }

    @Test(arguments: [LTXPageEncoding.lz4Frame, .lz4Block])
    func everyTruncationIsDetected(encoding: LTXPageEncoding) throws {
        try TestSupport.withTemporaryDirectory { dir in
            let path = try Self.smallFile(dir, encoding)
            let original = try TestSupport.readFile(path)
            for length in 0..<original.count {
                try TestSupport.writeFile(path, Array(original[0..<length]))
                let error = #expect(throws: ReplicationError.self, "length \(length)") {
                    try LTXDecoder.verify(path: path)
                }
                #expect(error?.code == .corruptReplicaFile)
                #expect(error?.message.contains(path) == true)
            }
            try TestSupport.writeFile(path, original + [0])
            #expect(throws: ReplicationError.self) { try LTXDecoder.verify(path: path) }
        }
    }

    // MARK: Database checksum

    @Test(.enabled(if: TestSupport.sqlite3Path != nil, "needs the sqlite3 CLI"))
    func snapshotOfARealDatabase() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let db = dir + "/src.db"
            try TestSupport.sqlite(
                db,
                """
                PRAGMA page_size=1024;
                CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
                WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 500)
                INSERT INTO t SELECT i, printf('%0100d', i) FROM n;
                """)
            let ltx = dir + "/snap.ltx"
            let (header, trailer) = try LTXEncoder.writeSnapshot(
                databasePath: db, to: ltx, maxTXID: 1, timestamp: Date(), flags: [])
            #expect(header.pageSize == 1024)
            #expect(
                Int64(header.commit) * 1024 == (try FileManager.default.attributesOfItem(atPath: db)[.size] as! Int64))
            #expect(trailer.postApplyChecksum == (try LTXDatabaseChecksum.ofDatabase(path: db)))
            let (_, _, pages) = try Self.decodeAll(ltx)
            #expect(pages.count == Int(header.commit))
        }
    }
}
