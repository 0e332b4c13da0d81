import Foundation

/// A replica whose listing dates files only roughly but can read one file's LTX header with a
/// small request. S3 is one: LastModified has whole seconds and is the upload time, while a
/// point-in-time restore needs the millisecond commit time of the header.
public protocol RoughlyDatedReplica: ReplicaClient {
    /// The file's LTX header (validated), read without downloading the file.
    func readHeader(_ file: LTXFileInfo) throws -> LTXHeader
}

/// Dates the files of a roughly dated replica for a restore to a time, with as few header reads
/// as possible: within a level, header times grow with the TXIDs (each file is stamped with its
/// newest commit), so a binary search per level finds the last file at or before the target in
/// about log2(files) reads, whatever LastModified says (a file shipped late, a server clock
/// that differs from the writer's). Files read get their header time; the others get a time on
/// the right side of the target (their LastModified, or the nearest header time read when that
/// would put them on the wrong side), so the planner picks exactly the files it would pick from
/// every header. The newest file at or before the target, where a restore ends, is always read.
enum HeaderTimes {
    static func resolve(_ files: [LTXFileInfo], target: Date, replica: any RoughlyDatedReplica) throws
        -> [LTXFileInfo]
    {
        var dated: [LTXFileInfo] = []
        for level in Set(files.map(\.level)).sorted() {
            var run = files.filter { $0.level == level }.sorted { ($0.minTXID, $0.maxTXID) < ($1.minTXID, $1.maxTXID) }
            var read: [Int: Date] = [:]
            func time(_ i: Int) throws -> Date {
                if let known = read[i] { return known }
                do {
                    read[i] = try replica.readHeader(run[i]).date
                } catch let error as ReplicationError where error.code == .corruptReplicaFile {
                    // Compared by its listed time; the restore reports the file if it uses it.
                    return run[i].createdAt ?? target
                }
                return read[i]!
            }
            var low = 0
            var high = run.count
            while low < high {
                let mid = (low + high) / 2
                if try time(mid) <= target { low = mid + 1 } else { high = mid }
            }
            // run[..<low] is at or before the target, run[low...] after it.
            let lastBefore = low > 0 ? read[low - 1] : nil
            let firstAfter = low < run.count ? read[low] : nil
            for i in run.indices {
                if let exact = read[i] {
                    run[i].createdAt = exact
                } else if i < low, let bound = lastBefore {
                    run[i].createdAt = min(run[i].createdAt ?? bound, bound)
                } else if i >= low, let bound = firstAfter {
                    run[i].createdAt = max(run[i].createdAt ?? bound, bound)
                }
            }
            dated += run
        }
        return dated
    }
}
