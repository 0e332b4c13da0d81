import Foundation

/// Transactions read from the spool and not yet shipped, merged into one LTX file's worth of
/// pages: the newest image of each page, the final database size and the TXID range.
///
/// Pure: no I/O. The uploader feeds it records in spool order.
struct PendingBatch: Sendable {
    private(set) var minTXID: UInt64 = 0
    private(set) var maxTXID: UInt64 = 0
    private(set) var commitPages: UInt32 = 0
    private(set) var pageSize: UInt32 = 0
    private(set) var timestampMs: Int64 = 0
    /// Wall-clock time of the oldest commit in the batch (the max-delay clock starts there).
    private(set) var oldestCommitMs: Int64?
    private(set) var transactions = 0
    /// Bytes of page images the batch holds (newest version of each page).
    var pageBytes: Int { pages.count * Int(pageSize) }
    /// pgno -> newest committed image.
    private(set) var pages: [UInt32: SpoolPageLocation] = [:]
    /// Frames of the transaction being read (not committed until its COMMIT record).
    private var open: [(UInt32, SpoolPageLocation)] = []
    private var openTXID: UInt64 = 0

    var isEmpty: Bool { transactions == 0 }

    enum Violation: Error, Equatable {
        case txidGap(expected: UInt64, found: UInt64)
        case pageSizeChanged(UInt32, UInt32)
        case framesWithoutCommit(UInt64)
    }

    /// The TXID the next transaction must have, given what has been shipped before.
    var nextExpected: UInt64?

    mutating func addFrames(txid: UInt64, pageSize: UInt32, pages newPages: [(UInt32, SpoolPageLocation)]) throws {
        if !open.isEmpty, openTXID != txid { throw Violation.framesWithoutCommit(openTXID) }
        if self.pageSize != 0, self.pageSize != pageSize { throw Violation.pageSizeChanged(self.pageSize, pageSize) }
        openTXID = txid
        open.append(contentsOf: newPages)
    }

    mutating func commit(txid: UInt64, commitPages: UInt32, pageSize: UInt32, timestampMs: Int64) throws {
        if let expected = nextExpected, txid != expected { throw Violation.txidGap(expected: expected, found: txid) }
        if !open.isEmpty, openTXID != txid { throw Violation.framesWithoutCommit(openTXID) }
        if self.pageSize != 0, self.pageSize != pageSize { throw Violation.pageSizeChanged(self.pageSize, pageSize) }
        self.pageSize = pageSize
        for (pgno, loc) in open { pages[pgno] = loc }
        open.removeAll(keepingCapacity: true)
        if transactions == 0 {
            minTXID = txid
            oldestCommitMs = timestampMs
        }
        maxTXID = txid
        self.commitPages = commitPages
        self.timestampMs = timestampMs
        transactions += 1
        nextExpected = txid + 1
    }

    /// Pages to write, ascending, without pages past the final database size.
    func sortedPages() -> [(UInt32, SpoolPageLocation)] {
        pages.filter { $0.key <= commitPages }.sorted { $0.key < $1.key }
    }

    /// Empties the batch after it shipped; the TXID chain continues.
    mutating func reset(nextExpected: UInt64?) {
        self = PendingBatch()
        self.nextExpected = nextExpected
    }
}

/// When to ship: `maxDelay` after the oldest unshipped commit, at once when the batch holds
/// `maxBatchBytes` of pages, or when a flush is requested. Pure.
struct ShipPolicy: Sendable, Equatable {
    var maxDelay: Duration
    var maxBatchBytes: Int = 64 << 20

    enum Decision: Equatable {
        case ship
        /// Nothing to ship before this time (ms since the epoch); nil: idle, nothing pending.
        case wait(untilMs: Int64?)
    }

    func decide(batch: PendingBatch, nowMs: Int64, flushRequested: Bool) -> Decision {
        guard !batch.isEmpty, let oldest = batch.oldestCommitMs else { return .wait(untilMs: nil) }
        if flushRequested || batch.pageBytes >= maxBatchBytes { return .ship }
        let delayMs = maxDelay.milliseconds
        let due = oldest + delayMs
        return nowMs >= due ? .ship : .wait(untilMs: due)
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (s, atto) = components
        return s * 1000 + atto / 1_000_000_000_000_000
    }
}
