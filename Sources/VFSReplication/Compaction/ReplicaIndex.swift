import Foundation

/// What the maintainer knows of a replica's files, kept in memory so that deciding what to do
/// needs no request. Every file has a `createdAt` (the LTX header time for files we wrote or
/// were told about; the listing's time otherwise). Pure value type.
///
/// ```swift
/// var index = ReplicaIndex(files: try ReplicaRestorer.listFiles(replica))
/// index.insert(LTXFileInfo(level: 0, minTXID: 8, maxTXID: 9, size: 4200, createdAt: Date()))
/// ```
public struct ReplicaIndex: Sendable, Equatable {
    /// Files per level, each sorted by (minTXID, maxTXID).
    public private(set) var levels: [Int: [LTXFileInfo]] = [:]
    /// The last snapshot this index's maintainer wrote, and when (a listing cannot say: a
    /// snapshot is stamped with its newest commit). The planner counts files shipped after it
    /// from then, for one snapshot per interval.
    public private(set) var snapshotWritten: SnapshotWrite?

    public struct SnapshotWrite: Sendable, Equatable {
        public var txid: UInt64
        public var at: Date
    }

    /// `undatedTime` stands in for files listed without a time.
    public init(files: [LTXFileInfo] = [], undatedTime: Date = Date()) {
        for var file in files {
            if file.createdAt == nil { file.createdAt = undatedTime }
            levels[file.level, default: []].append(file)
        }
        for level in levels.keys { levels[level]!.sort(by: ReplicaIndex.order) }
    }

    static func order(_ a: LTXFileInfo, _ b: LTXFileInfo) -> Bool {
        (a.minTXID, a.maxTXID) < (b.minTXID, b.maxTXID)
    }

    public func files(level: Int) -> [LTXFileInfo] { levels[level] ?? [] }

    /// Every file, by level then TXID range.
    public var allFiles: [LTXFileInfo] { levels.keys.sorted().flatMap { levels[$0]! } }

    public var count: Int { levels.values.reduce(0) { $0 + $1.count } }
    public var bytes: Int64 { levels.values.reduce(0) { $0 + $1.reduce(0) { $0 + $1.size } } }

    /// The highest TXID any file reaches.
    public var latestTXID: UInt64 { levels.values.compactMap { $0.map(\.maxTXID).max() }.max() ?? 0 }

    /// The level-9 snapshot reaching furthest.
    public var newestSnapshot: LTXFileInfo? {
        files(level: MaintenancePolicy.snapshotLevel).max { $0.maxTXID < $1.maxTXID }
    }

    /// Adds a file, replacing one with the same level and TXID range.
    public mutating func insert(_ file: LTXFileInfo, now: Date = Date()) {
        var file = file
        if file.createdAt == nil { file.createdAt = now }
        var list = levels[file.level] ?? []
        list.removeAll { $0.minTXID == file.minTXID && $0.maxTXID == file.maxTXID }
        let position = list.firstIndex { ReplicaIndex.order(file, $0) } ?? list.count
        list.insert(file, at: position)
        levels[file.level] = list
    }

    /// Records that `snapshot` (already inserted) was written at `time`.
    public mutating func noteSnapshotWritten(_ snapshot: LTXFileInfo, at time: Date) {
        snapshotWritten = SnapshotWrite(txid: snapshot.maxTXID, at: time)
    }

    public mutating func remove(_ files: [LTXFileInfo]) {
        for file in files {
            levels[file.level]?.removeAll { $0.minTXID == file.minTXID && $0.maxTXID == file.maxTXID }
            if levels[file.level]?.isEmpty == true { levels[file.level] = nil }
        }
    }

    public func contains(_ file: LTXFileInfo) -> Bool {
        files(level: file.level).contains { $0.minTXID == file.minTXID && $0.maxTXID == file.maxTXID }
    }

    /// The highest TXID that compaction into `level` has reached: the furthest file at that
    /// level or any compaction level above it (lower levels are cleared first, so this survives
    /// retention).
    func compactedThrough(level: Int, topLevel: Int) -> UInt64 {
        guard level <= topLevel else { return 0 }
        var highest: UInt64 = 0
        for l in level...max(level, topLevel) {
            if let last = levels[l]?.map(\.maxTXID).max() { highest = max(highest, last) }
        }
        return highest
    }

    /// Files at compaction levels above `file`'s (up to `topLevel`) whose range contains its range.
    func coverers(of file: LTXFileInfo, topLevel: Int) -> [LTXFileInfo] {
        guard file.level < topLevel else { return [] }
        var found: [LTXFileInfo] = []
        for level in (file.level + 1)...topLevel {
            guard let list = levels[level] else { continue }
            // The last file starting at or before file.minTXID is the only candidate among
            // non-overlapping files; scan back a little in case files overlap.
            var low = 0
            var high = list.count
            while low < high {
                let mid = (low + high) / 2
                if list[mid].minTXID <= file.minTXID { low = mid + 1 } else { high = mid }
            }
            var i = low - 1
            while i >= 0 && i >= low - 4 {
                if list[i].minTXID <= file.minTXID && list[i].maxTXID >= file.maxTXID { found.append(list[i]) }
                i -= 1
            }
        }
        return found
    }
}
