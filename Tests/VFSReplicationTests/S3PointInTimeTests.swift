import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// Point-in-time restores from a real S3 server (SeaweedFS) at the millisecond precision of
/// LTX headers, although S3 dates objects (LastModified) to the second only: several commits
/// shipped inside one second, targets at and between their times.
@Suite(
    "S3 point-in-time restore", .serialized,
    .enabled(if: SeaweedFS.weedPath != nil, "SeaweedFS not found at .venv/bin/weed")
)
struct S3PointInTimeTests {
    @Test func targetsInsideOneSecondRestoreTheStateOfThatMillisecond() throws {
        let server = try SeaweedFS.shared()
        let bucket = try server.makeBucket("pitr")
        let replica = try S3ReplicaClient(config: server.replicaConfig(bucket: bucket, prefix: "db"))
        try withFastTemporaryDirectory { dir in
            let history = SyntheticHistory(seed: 3)
            var shipped = [try history.ship(to: replica, work: dir, at: Date(), snapshot: true)]
            for _ in 0..<24 {
                usleep(40_000)
                history.transaction()
                shipped.append(try history.ship(to: replica, work: dir, at: Date()))
            }
            // S3 dates them to the second: several files share each LastModified.
            let listed = try ReplicaRestorer.listFiles(replica)
            let perSecond = Dictionary(grouping: listed) { $0.createdAt!.timeIntervalSince1970.rounded(.down) }
            #expect(perSecond.values.contains { $0.count >= 3 }, "\(listed.map { $0.createdAt! })")

            // Each file's header time, and halfway to the next one.
            var targets: [(time: Date, txid: UInt64)] = []
            for (i, file) in shipped.enumerated() {
                targets.append((file.createdAt!, file.maxTXID))
                if i + 1 < shipped.count {
                    let gap = shipped[i + 1].createdAt!.timeIntervalSince(file.createdAt!)
                    targets.append((file.createdAt!.addingTimeInterval(gap / 2), file.maxTXID))
                }
            }
            for (time, txid) in targets {
                let out = dir + "/restored.db"
                let before = replica.client.requestCounts
                let result = try ReplicaRestorer.restore(
                    from: replica, to: out, options: RestoreOptions(target: .timestamp(time), force: true, verify: false))
                #expect(result.txid == txid, "restore to \(RestorePlanner.format(time))")
                #expect(result.timestamp <= time)
                #expect(try TestSupport.readFile(out) == history.bytes(at: txid), "restore to \(RestorePlanner.format(time))")
                // Header reads beyond the files applied: a few per level, not one per file.
                let extra = replica.client.requestCounts.get - before.get - result.files.count
                #expect(extra <= 8, "\(extra) extra GETs for a restore to \(RestorePlanner.format(time))")
            }

            // Before the first file: a clear error naming the earliest time.
            let early = shipped[0].createdAt!.addingTimeInterval(-0.001)
            let error = #expect(throws: ReplicationError.self) {
                try ReplicaRestorer.restore(
                    from: replica, to: dir + "/early.db",
                    options: RestoreOptions(target: .timestamp(early), force: true, verify: false))
            }
            #expect(error?.message.contains(RestorePlanner.format(shipped[0].createdAt!)) == true, "\(String(describing: error))")
        }
    }
}
