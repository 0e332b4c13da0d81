import Foundation
import HeapModule

/// The point a restore should reach.
public enum RestoreTarget: Sendable, Equatable, CustomStringConvertible {
    /// The newest state the replica holds.
    case latest
    /// The state right after this transaction.
    case txid(UInt64)
    /// The newest state whose LTX timestamp is at or before this time.
    case timestamp(Date)

    public var description: String {
        switch self {
        case .latest: return "latest"
        case .txid(let txid): return "TXID \(hex16(txid))"
        case .timestamp(let date): return "time \(RestorePlanner.format(date))"
        }
    }
}

/// Which files to apply, in order, to rebuild a database, and the point that gives.
public struct RestorePlan: Sendable, Equatable {
    public var target: RestoreTarget
    /// A snapshot (minTXID 1) first, then files each continuing the chain.
    public var files: [LTXFileInfo]
    /// The restore point: max TXID of the last file.
    public var txid: UInt64 { files.last?.maxTXID ?? 0 }
    /// Timestamp of the last file (its `createdAt`).
    public var timestamp: Date? { files.last?.createdAt }
    /// Bytes to download.
    public var bytes: Int64 { files.reduce(0) { $0 + $1.size } }
    /// GET requests to download the files (one per file; the listing is not counted).
    public var requests: Int { files.count }

    public init(target: RestoreTarget, files: [LTXFileInfo]) {
        self.target = target
        self.files = files
    }
}

/// Chooses the LTX files for a restore, from listings alone (no I/O).
///
/// ```swift
/// let plan = try RestorePlanner.plan(files: allLevels, target: .txid(42), location: "file:///backups/app")
/// for file in plan.files { ... apply ... }
/// ```
///
/// The restore point is the furthest TXID (at most the target) that a chain of files can reach:
/// a chain starts with a snapshot (a file with minTXID 1, normally level 9), and each next file
/// overlaps the TXID after the chain's end (minTXID <= next <= maxTXID), from any level. Among
/// the chains that reach that point it takes the cheapest: bytes to download plus
/// `requestCostBytes` per file (ties: fewer files, then higher levels), which in a compacted
/// replica is the newest snapshot at or before the target, then the compacted files, then level
/// 0 — as Litestream 0.5 picks (replica.go `CalcRestorePlan`), but by cost rather than greedily.
/// A time target only uses files stamped at or before it. It never returns a silently shorter
/// chain: files past the restore point that the target would want are a gap, an error naming the
/// missing TXIDs and the neighbouring files. `excluding` removes files (say, a corrupt compacted
/// file) so that lower levels can stand in for them.
public enum RestorePlanner {
    public static let snapshotLevel = 9
    /// What one more file (one more GET) is worth, in bytes, when comparing chains.
    public static let requestCostBytes: Int64 = 256 << 10

    public static func plan(
        files: [LTXFileInfo], target: RestoreTarget, location: String = "replica",
        excluding excluded: [LTXFileInfo] = []
    ) throws -> RestorePlan {
        guard !files.isEmpty else {
            throw ReplicationError(.missingReplica, "no LTX files in \(location)")
        }
        if case .txid(let txid) = target, txid == 0 {
            throw ReplicationError(.invalidArgument, "TXID 0 is not a restore point (TXIDs start at 1)")
        }
        if case .timestamp = target, let undated = files.first(where: { $0.createdAt == nil }) {
            throw ReplicationError(
                .invalidArgument, "\(location): \(undated) has no timestamp; cannot restore to a time")
        }

        func eligible(_ f: LTXFileInfo) -> Bool {
            switch target {
            case .latest: return true
            case .txid(let txid): return f.maxTXID <= txid
            case .timestamp(let date): return f.createdAt! <= date
            }
        }
        let skipped = Set(excluded.map(FileKey.init))
        let usable = files.filter { !skipped.contains(FileKey($0)) }
        let candidates = usable.filter(eligible)
        let chain = cheapestChain(candidates)
        let reached = chain.last?.maxTXID ?? 0
        try checkReached(reached, chain: chain, files: usable, eligible: eligible, target: target, location: location)
        // Left-out files would have taken the restore further: never return a shorter chain.
        if let lost = files.filter({ skipped.contains(FileKey($0)) && eligible($0) && $0.maxTXID > reached })
            .min(by: { $0.minTXID < $1.minTXID })
        {
            throw ReplicationError(
                .gap,
                "\(location): \(lost) cannot be used and no other files cover TXIDs "
                    + "\(hex16(max(reached + 1, lost.minTXID)))-\(hex16(lost.maxTXID)); cannot restore \(target)")
        }
        return RestorePlan(target: target, files: chain)
    }

    /// Identity of a replica file, whatever its listed size or time.
    private struct FileKey: Hashable {
        var level: Int
        var minTXID: UInt64
        var maxTXID: UInt64
        init(_ f: LTXFileInfo) {
            level = f.level
            minTXID = f.minTXID
            maxTXID = f.maxTXID
        }
    }

    /// A way to reach a TXID: its cost and the last file used (and where that file was applied).
    private struct Step {
        var cost: Int64
        var count: Int
        var file: LTXFileInfo
        var from: UInt64

        func isBetter(than other: Step) -> Bool {
            if cost != other.cost { return cost < other.cost }
            if count != other.count { return count < other.count }
            if file.level != other.file.level { return file.level > other.file.level }
            return file.minTXID < other.file.minTXID
        }
    }

    /// Every TXID some chain of `files` reaches: the replica's restore points.
    public static func restorePoints(files: [LTXFileInfo]) -> Set<UInt64> {
        Set(cheapestSteps(files).keys)
    }

    /// The cheapest chain to the furthest reachable TXID.
    private static func cheapestChain(_ files: [LTXFileInfo]) -> [LTXFileInfo] {
        let best = cheapestSteps(files)
        var chain: [LTXFileInfo] = []
        var position = best.keys.max() ?? 0
        while position > 0, let step = best[position] {
            chain.append(step.file)
            position = step.from
        }
        return chain.reversed()
    }

    /// The cheapest way to reach each reachable TXID. Positions (TXIDs reached) only grow along
    /// a chain, so they are settled in ascending order (a shortest path in a DAG).
    private static func cheapestSteps(_ files: [LTXFileInfo]) -> [UInt64: Step] {
        var best: [UInt64: Step] = [:]
        var queue = PositionQueue()
        func relax(_ position: UInt64, _ step: Step) {
            if let current = best[position], !step.isBetter(than: current) { return }
            if best[position] == nil { queue.push(position) }
            best[position] = step
        }
        for f in files where f.minTXID == 1 {
            relax(f.maxTXID, Step(cost: f.size + requestCostBytes, count: 1, file: f, from: 0))
        }
        let incremental = files.filter { $0.minTXID > 1 }.sorted {
            ($0.minTXID, $0.maxTXID) < ($1.minTXID, $1.maxTXID)
        }
        var nextIncremental = 0
        var active: [LTXFileInfo] = []
        while let position = queue.pop() {
            guard let here = best[position] else { continue }
            let next = position + 1
            while nextIncremental < incremental.count, incremental[nextIncremental].minTXID <= next {
                active.append(incremental[nextIncremental])
                nextIncremental += 1
            }
            active.removeAll { $0.maxTXID < next }
            for f in active {
                relax(
                    f.maxTXID,
                    Step(cost: here.cost + f.size + requestCostBytes, count: here.count + 1, file: f, from: position))
            }
        }
        return best
    }

    /// Ascending, duplicate-free queue of TXIDs.
    private struct PositionQueue {
        private var heap = Heap<UInt64>()
        private var queued = Set<UInt64>()

        mutating func push(_ value: UInt64) {
            guard queued.insert(value).inserted else { return }
            heap.insert(value)
        }

        mutating func pop() -> UInt64? {
            guard let top = heap.popMin() else { return nil }
            queued.remove(top)
            return top
        }
    }

    private static func checkReached(
        _ reached: UInt64, chain: [LTXFileInfo], files: [LTXFileInfo], eligible: (LTXFileInfo) -> Bool,
        target: RestoreTarget, location: String
    ) throws {
        // Files beyond the chain's end that the target would want: a gap (or a missing start).
        let wanted = files.filter { $0.maxTXID > reached && eligible($0) }
        let beyond = files.filter { $0.maxTXID > reached }.sorted {
            ($0.minTXID, $0.maxTXID) < ($1.minTXID, $1.maxTXID)
        }

        func gapError(after last: LTXFileInfo?, next: LTXFileInfo) -> ReplicationError {
            let missing =
                "TXID \(hex16(reached + 1))" + (next.minTXID - 1 > reached + 1 ? "-\(hex16(next.minTXID - 1))" : "")
            if let last {
                return ReplicationError(
                    .gap,
                    "\(location): gap in the replica: \(missing) missing between \(last) and \(next); "
                        + "cannot restore \(target)"
                )
            }
            return ReplicationError(
                .gap,
                "\(location): no snapshot to start from: \(missing) missing before \(next) "
                    + "(the earliest usable file); cannot restore \(target)"
            )
        }

        switch target {
        case .latest, .timestamp:
            if let next = wanted.min(by: { ($0.minTXID, $0.maxTXID) < ($1.minTXID, $1.maxTXID) }) {
                throw gapError(after: chain.last, next: next)
            }
            if chain.isEmpty {
                if case .timestamp(let date) = target {
                    let earliest = files.compactMap(\.createdAt).min().map(format) ?? "unknown"
                    throw ReplicationError(
                        .gap,
                        "\(location): no restore point at or before \(format(date)); "
                            + "the earliest file is from \(earliest)"
                    )
                }
                throw ReplicationError(.missingReplica, "no usable LTX files in \(location)")
            }
        case .txid(let txid):
            if reached >= txid { return }
            if let next = beyond.first, next.minTXID > reached + 1 { throw gapError(after: chain.last, next: next) }
            if let covering = beyond.first {
                let points = restorePoints(files: files)
                var nearest: [String] = []
                if let below = points.filter({ $0 < txid }).max() { nearest.append("TXID \(hex16(below))") }
                if let above = points.filter({ $0 > txid }).min() { nearest.append("TXID \(hex16(above))") }
                throw ReplicationError(
                    .gap,
                    "\(location): no restore point at TXID \(hex16(txid)): it lies inside \(covering) "
                        + "(TXIDs \(hex16(covering.minTXID))-\(hex16(covering.maxTXID)) compacted), "
                        + "and no file ends there"
                        + (nearest.isEmpty
                            ? "" : "; the nearest restore points are " + nearest.joined(separator: " and "))
                )
            }
            let end = files.map(\.maxTXID).max() ?? 0
            throw ReplicationError(
                .gap, "\(location): TXID \(hex16(txid)) is beyond the end of the replica (last TXID \(hex16(end)))")
        }
    }

    /// ISO 8601 with milliseconds, UTC: `2025-01-31T12:00:00.000Z`.
    public static func format(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone(identifier: "UTC")
        return formatter.string(from: date)
    }
}
