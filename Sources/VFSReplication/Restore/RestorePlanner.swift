import Foundation

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
/// Like Litestream 0.5 (replica.go `CalcRestorePlan`): start from the newest level-9 snapshot
/// at or below the target, then repeatedly take — from any of levels 0-8 — the file that
/// overlaps the next TXID (minTXID <= next <= maxTXID) and reaches furthest without passing the
/// target (ties: smaller minTXID, then higher level). A file with minTXID 1 is itself a full
/// snapshot (our level-0 snapshots), and restarts the chain. Unlike Litestream it never returns
/// a silently shorter chain: any gap between the chain's end and later files is an error naming
/// the missing TXIDs and the neighbouring files.
public enum RestorePlanner {
    public static let snapshotLevel = 9

    public static func plan(files: [LTXFileInfo], target: RestoreTarget, location: String = "replica") throws
        -> RestorePlan
    {
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
        func better(_ a: LTXFileInfo, than b: LTXFileInfo) -> Bool {
            if a.maxTXID != b.maxTXID { return a.maxTXID > b.maxTXID }
            if a.minTXID != b.minTXID { return a.minTXID < b.minTXID }
            return a.level > b.level
        }

        var chain: [LTXFileInfo] = []
        if let snapshot = files.filter({ $0.level == snapshotLevel && $0.minTXID == 1 && eligible($0) })
            .max(by: { better($1, than: $0) })
        {
            chain.append(snapshot)
        }
        var reached = chain.last?.maxTXID ?? 0
        let incremental = files.filter { $0.level != snapshotLevel && eligible($0) }
        while true {
            if case .txid(let txid) = target, reached >= txid { break }
            let next = reached + 1
            let candidates = incremental.filter { $0.minTXID <= next && $0.maxTXID >= next }
            guard let pick = candidates.max(by: { better($1, than: $0) }) else { break }
            if pick.minTXID == 1 { chain.removeAll() }  // a full snapshot: earlier files are moot
            chain.append(pick)
            reached = pick.maxTXID
        }

        try checkReached(reached, chain: chain, files: files, eligible: eligible, target: target, location: location)
        return RestorePlan(target: target, files: chain)
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
                throw ReplicationError(
                    .gap,
                    "\(location): no restore point at TXID \(hex16(txid)): it lies inside \(covering) "
                        + "(TXIDs \(hex16(covering.minTXID))-\(hex16(covering.maxTXID)) compacted), "
                        + "and no file ends there"
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
