import HeapModule

#if canImport(Glibc)
    import Glibc
#endif

/// Merges LTX files that follow each other (each starts at or before the TXID after the
/// previous one ends) into one file equivalent to applying them in order: compaction.
///
/// ```swift
/// let merged = try LTXMerger.merge(inputs: [l0a, l0b, l0c], to: tmp + "/out.ltx")
/// // merged.header.minTXID == first input's, maxTXID and timestamp == last input's
/// ```
///
/// A k-way merge over the inputs' page streams (each input holds its pages in ascending order),
/// so memory is one page and a small read window per input whatever the file sizes, and each
/// page is written once: the newest version wins. Pages past the last input's database size are
/// dropped. A page that an input in the middle truncated away and no later input wrote again is
/// zero after sequential application, so the merge writes it as zeros (a plain merge would
/// resurrect the older version); a merged snapshot (first input's minTXID 1) holds every page.
/// Every input is decoded to its end, so its checksums are verified before the result is
/// trusted. The output carries the NoChecksum flag, as every Litestream 0.5 writer's does, and
/// our database checksums (`LTXHeader.DatabaseChecksums`) when its first and last inputs carry
/// them: the first input's pre-apply and the last input's post-apply checksum (checked against
/// the pages of a merged snapshot). Inputs must chain (`LTXChain`): a file of another database
/// among them is an error naming it, never merged.
/// https://github.com/superfly/ltx (compactor.go) describes the format's own compactor.
public enum LTXMerger {
    public struct Result: Sendable, Equatable {
        public var header: LTXHeader
        public var trailer: LTXTrailer
        /// Bytes of the merged file.
        public var size: Int64
        public var pageCount: Int
    }

    /// Inputs kept open at once; longer lists are merged in stages through temporary files.
    public static let defaultMaxOpenInputs = 128

    /// Merges `inputs` (paths, in TXID order) into a new file at `outputPath` (created or
    /// truncated). Throws `.corruptReplicaFile` naming an input that fails to decode, and
    /// `.invalidArgument` when the inputs do not follow each other.
    public static func merge(
        inputs: [String], to outputPath: String, pageEncoding: LTXPageEncoding = .lz4Frame,
        maxOpenInputs: Int = defaultMaxOpenInputs, sync: Bool = true
    ) throws -> Result {
        guard !inputs.isEmpty else { throw ReplicationError(.invalidArgument, "nothing to merge into \(outputPath)") }
        let fanIn = max(2, maxOpenInputs)
        if inputs.count <= fanIn {
            return try mergeOpen(inputs: inputs, to: outputPath, pageEncoding: pageEncoding, sync: sync)
        }
        // Stage: the first `fanIn` inputs into a temporary file, then that file and the rest.
        let stage = LTXIO.directory(of: outputPath) + "/.\(LTXIO.lastComponent(of: outputPath)).stage-\(inputs.count)"
        defer { LTXIO.unlink(stage) }
        _ = try mergeOpen(inputs: Array(inputs.prefix(fanIn)), to: stage, pageEncoding: pageEncoding, sync: false)
        return try merge(
            inputs: [stage] + inputs.dropFirst(fanIn), to: outputPath, pageEncoding: pageEncoding,
            maxOpenInputs: fanIn, sync: sync)
    }

    private static func mergeOpen(inputs: [String], to outputPath: String, pageEncoding: LTXPageEncoding, sync: Bool)
        throws -> Result
    {
        // A small read window per input: with k inputs open, memory is about k * 64 KiB.
        let decoders = try inputs.map { try LTXDecoder(path: $0, readBufferSize: 64 << 10) }
        let headers = decoders.map(\.header)
        for i in 1..<max(1, headers.count) {
            let previous = headers[i - 1]
            let current = headers[i]
            guard current.pageSize == previous.pageSize else {
                throw ReplicationError(
                    .invalidArgument,
                    "cannot merge \(inputs[i]) (page size \(current.pageSize)) after \(inputs[i - 1]) "
                        + "(page size \(previous.pageSize))")
            }
            guard !current.isSnapshot, current.minTXID <= previous.maxTXID + 1, current.maxTXID > previous.maxTXID
            else {
                throw ReplicationError(
                    .invalidArgument,
                    "cannot merge \(inputs[i]) (TXIDs \(hex16(current.minTXID))-\(hex16(current.maxTXID))) after "
                        + "\(inputs[i - 1]) (TXIDs \(hex16(previous.minTXID))-\(hex16(previous.maxTXID))): "
                        + "it does not continue it")
            }
            if let problem = LTXChain.problem(previous: previous, previousPost: previous.checksums?.post, next: current) {
                throw ReplicationError(
                    .corruptReplicaFile, "cannot merge \(inputs[i]) after \(inputs[i - 1]): \(problem)")
            }
        }
        let first = headers[0]
        let last = headers[headers.count - 1]
        let checksums: LTXHeader.DatabaseChecksums?
        if let pre = first.isSnapshot ? 0 : first.checksums?.pre, let post = last.checksums?.post {
            checksums = LTXHeader.DatabaseChecksums(pre: pre, post: post)
        } else {
            checksums = nil
        }
        let header = LTXHeader(
            flags: .noChecksum, pageSize: last.pageSize, commit: last.commit, minTXID: first.minTXID,
            maxTXID: last.maxTXID, timestamp: last.timestamp, nodeID: last.nodeID)
        let encoder = try LTXEncoder(path: outputPath, header: header, pageEncoding: pageEncoding)

        // limit[i]: the smallest database size any later input truncates to; a version of page
        // p from input i survives only if p <= limit[i].
        var limit = [UInt32](repeating: .max, count: headers.count)
        for i in stride(from: headers.count - 2, through: 0, by: -1) {
            limit[i] = min(limit[i + 1], headers[i + 1].commit)
        }
        let finalCommit = last.commit
        let minCommit = headers.map(\.commit).min()!
        let lock = header.lockPageNumber
        let pageSize = Int(header.pageSize)
        let zero = [UInt8](repeating: 0, count: pageSize)
        var pages = [[UInt8]](repeating: [UInt8](repeating: 0, count: pageSize), count: decoders.count)
        var heap = Heap<PendingPage>()
        for i in decoders.indices {
            if let pgno = try decoders[i].nextPage(into: &pages[i]) { heap.insert(PendingPage(pgno: pgno, index: i)) }
        }

        // Next page number not yet decided.
        var next: UInt32 = 1
        /// Pages before `end` that no input holds: zeros where sequential application gives
        /// zeros (always in a snapshot; past a truncation otherwise), absent elsewhere.
        func fillZeros(before end: UInt32) throws {
            var p = header.isSnapshot ? next : max(next, minCommit &+ 1)
            let stop = min(end, finalCommit &+ 1)
            while p < stop {
                if p != lock { try encoder.writePage(p, zero) }
                p += 1
            }
        }

        while let top = heap.popMin() {
            let (pgno, winner) = (top.pgno, top.index)
            var others: [Int] = []
            while let same = heap.min, same.pgno == pgno {
                others.append(same.index)
                _ = heap.removeMin()
            }
            try fillZeros(before: pgno)
            if pgno <= finalCommit {
                try encoder.writePage(pgno, pgno <= limit[winner] ? pages[winner] : zero)
            }
            next = max(next, pgno &+ 1)
            for i in [winner] + others {
                if let following = try decoders[i].nextPage(into: &pages[i]) {
                    heap.insert(PendingPage(pgno: following, index: i))
                }
            }
        }
        try fillZeros(before: finalCommit &+ 1)
        if header.isSnapshot, let expected = checksums?.post, encoder.pagesChecksum != expected {
            throw ReplicationError(
                .corruptReplicaFile,
                "merging \(inputs.first!) ... \(inputs.last!) gives a database checksum "
                    + "\(hex16(encoder.pagesChecksum)), not the \(hex16(expected)) \(inputs.last!) records")
        }
        let recorded = header.isSnapshot ? LTXHeader.DatabaseChecksums(pre: 0, post: encoder.pagesChecksum) : checksums
        let trailer = try encoder.finish(checksums: recorded, sync: sync)
        return Result(header: encoder.header, trailer: trailer, size: encoder.size, pageCount: encoder.pageCount)
    }
}

/// A page number waiting in the merge, and the input it comes from. Ordered smallest page
/// first, and among equal pages the highest input index (the newest version) first, so the
/// heap's minimum is the version that wins. Each input has at most one entry in the heap, so
/// no two entries are equal and the order of pops is fully determined.
private struct PendingPage: Comparable {
    let pgno: UInt32
    let index: Int

    static func < (a: PendingPage, b: PendingPage) -> Bool {
        a.pgno != b.pgno ? a.pgno < b.pgno : a.index > b.index
    }
}
