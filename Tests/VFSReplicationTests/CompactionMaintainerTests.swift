import Foundation
import Logging
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// The maintainer against real directory replicas, on a simulated clock: compaction,
/// snapshots and retention, then point-in-time restores compared byte for byte with the
/// source database at the restore point used.
@Suite("Compaction: replica maintainer")
struct CompactionMaintainerTests {
    /// Short intervals so that hours of history take a few seconds.
    static let policy = MaintenancePolicy(
        compactionIntervals: [.seconds(10), .seconds(60), .seconds(600)], snapshotInterval: .seconds(1800),
        retention: .seconds(3600))
    static let start = Date(timeIntervalSince1970: 1_750_000_003.25)

    /// The newest TXID the policy promises a restore to `time` reaches: the furthest file ever
    /// created at or before `time` whose level still keeps its restore points at `now`.
    static func promised(_ time: Date, now: Date, everCreated: [LTXFileInfo], policy: MaintenancePolicy) -> UInt64? {
        everCreated.filter { file in
            let created = file.createdAt!
            let keep = Double(MaintenanceClock.ms(policy.keepDuration(level: file.level))) / 1000
            return created <= time && created >= now.addingTimeInterval(-keep)
        }.map(\.maxTXID).max()
    }

    /// Every restore inside the window still works and reaches at least the promised point.
    static func checkWindow(_ sim: MaintenanceSimulation, samples: Int, random: inout SplitMix64) throws {
        let files = sim.maintainer.files
        let retention = Double(MaintenanceClock.ms(policy.retention)) / 1000
        let windowStart = max(sim.now.addingTimeInterval(-retention), start)
        var times = (0..<samples).map { _ in
            windowStart.addingTimeInterval(
                Double(random.next() % 1_000_000) / 1_000_000 * sim.now.timeIntervalSince(windowStart))
        }
        // Right at file times too: where restore points begin and end.
        let recent = sim.everCreated.compactMap(\.createdAt).filter { $0 >= windowStart }
        for _ in 0..<min(samples, recent.count) { times.append(recent[Int(random.next() % UInt64(recent.count))]) }
        times.append(sim.now)
        for time in times {
            guard let promised = promised(time, now: sim.now, everCreated: sim.everCreated, policy: policy) else {
                continue
            }
            let plan = try RestorePlanner.plan(files: files, target: .timestamp(time))
            #expect(
                plan.txid >= promised,
                "at \(RestorePlanner.format(sim.now)) a restore to \(RestorePlanner.format(time)) reaches TXID \(plan.txid), promised \(promised)"
            )
        }
    }

    static func restoreAndCompare(
        _ sim: MaintenanceSimulation, target: RestoreTarget, into dir: String,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> RestoreResult {
        let out = dir + "/restored.db"
        let result = try ReplicaRestorer.restore(
            from: sim.replica, to: out, options: RestoreOptions(target: target, force: true, verify: false))
        let expected = try #require(sim.history.bytes(at: result.txid), "no state for TXID \(result.txid)")
        let actual = try TestSupport.readFile(out)
        #expect(actual.count == expected.count, "\(target): size", sourceLocation: sourceLocation)
        #expect(
            actual == expected, "\(target): restored TXID \(result.txid) differs from the source",
            sourceLocation: sourceLocation)
        return result
    }

    @Test func pointInTimeRestoresAcrossCompactionBoundaries() throws {
        try withFastTemporaryDirectory { dir in
            var sim = try MaintenanceSimulation(directory: dir, policy: Self.policy, seed: 42, start: Self.start)
            var random = SplitMix64(seed: 7)
            var checks = 0
            sim.afterTick = { sim in
                checks += 1
                var r = SplitMix64(seed: UInt64(checks))
                try Self.checkWindow(sim, samples: 6, random: &r)
            }
            for step in 0..<1500 {
                let roll = random.next() % 1000
                let delay: Double
                if roll < 800 {
                    delay = Double(random.next(in: 500...3000)) / 1000
                } else if roll < 950 {
                    delay = Double(random.next(in: 10...60))
                } else if roll < 995 {
                    delay = Double(random.next(in: 120...1200))
                } else {
                    delay = Double(random.next(in: 3600...7200))
                }
                try sim.advance(to: sim.now.addingTimeInterval(delay))
                if step == 700 || step == 1200 {
                    try sim.replaceDatabase()
                } else {
                    try sim.batch(transactions: random.next(in: 1...4))
                }
            }
            try sim.advance(to: sim.now.addingTimeInterval(30))

            // Everything happened, and the index matches the directory.
            let compacted = sim.reports.flatMap(\.compacted)
            for level in 1...3 {
                #expect(compacted.contains { $0.level == level }, "no compaction into level \(level)")
            }
            #expect(sim.reports.flatMap(\.snapshots).count >= 3)
            #expect(sim.reports.flatMap(\.deleted).count > 100)
            let listed = try ReplicaRestorer.listFiles(sim.replica).map { "\($0)" }.sorted()
            #expect(sim.maintainer.files.map { "\($0)" }.sorted() == listed)
            try Self.checkWindow(sim, samples: 200, random: &random)

            // Restores to many TXIDs and times, compared byte for byte.
            let files = sim.maintainer.files
            let points = RestorePlanner.restorePoints(files: files).sorted()
            #expect(points.count > 20)
            var targets: [RestoreTarget] = [.latest]
            for _ in 0..<25 { targets.append(.txid(points[Int(random.next() % UInt64(points.count))])) }
            // Ends of compacted files and snapshots: the compaction boundaries.
            let boundaries = files.filter { $0.level > 0 }.map(\.maxTXID)
            for _ in 0..<10 { targets.append(.txid(boundaries[Int(random.next() % UInt64(boundaries.count))])) }
            let retention = Double(MaintenanceClock.ms(Self.policy.retention)) / 1000
            for _ in 0..<25 {
                let offset = Double(random.next() % 1_000_000) / 1_000_000 * retention
                targets.append(.timestamp(sim.now.addingTimeInterval(-offset)))
            }
            var levelsUsed = Set<Int>()
            for target in targets {
                let result = try Self.restoreAndCompare(sim, target: target, into: dir)
                if case .txid(let txid) = target { #expect(result.txid == txid) }
                if case .timestamp(let time) = target {
                    #expect(result.timestamp <= time)
                    let promised = Self.promised(time, now: sim.now, everCreated: sim.everCreated, policy: Self.policy)
                    #expect(result.txid >= promised ?? 0)
                }
                levelsUsed.formUnion(result.files.map(\.level))
            }
            #expect(levelsUsed.isSuperset(of: [0, 1, 2, 3, 9]), "\(levelsUsed)")
        }
    }
}

/// A real SQLite database, compacted by the maintainer, restored by Litestream 0.5.17 and by us.
@Suite(
    "Compaction: Litestream restores compacted replicas",
    .enabled(if: TestSupport.litestreamPath != nil, "litestream binary not found at .venv/bin/litestream"),
    .enabled(if: TestSupport.sqlite3Path != nil, "sqlite3 CLI not found")
)
struct CompactionLitestreamTests {
    @Test func litestreamRestoresCompactedFilesAndSnapshots() throws {
        try withFastTemporaryDirectory { dir in
            let policy = MaintenancePolicy(
                compactionIntervals: [.seconds(10), .seconds(60)], snapshotInterval: .seconds(300),
                retention: .seconds(600))
            var builder = TestSupport.ReplicaBuilder(
                replicaDirectory: dir + "/replica", work: dir, flags: .noChecksum, encoding: .lz4Frame)
            var logger = Logger(label: "test.maintainer")
            logger.logLevel = .warning
            let maintainer = ReplicaMaintainer(
                replica: builder.replica, policy: policy, logger: logger, tempDirectory: dir + "/tmp")
            try maintainer.loadIndex()
            let db = dir + "/source.db"
            var now = Date(timeIntervalSince1970: 1_750_000_001)
            var dumps: [UInt64: String] = [:]
            var random = SplitMix64(seed: 3)
            try TestSupport.sqlite(db, "PRAGMA page_size=4096; CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);")

            func capture(level: Int) throws {
                builder.timestamp = now
                try builder.capture(db, level: level)
                let minTXID: UInt64 = level == 9 ? 1 : builder.txid
                let path = builder.replica.path(level: level, minTXID: minTXID, maxTXID: builder.txid)
                let size = try FileManager.default.attributesOfItem(atPath: path)[.size] as! Int64
                maintainer.noteUploaded(
                    LTXFileInfo(level: level, minTXID: minTXID, maxTXID: builder.txid, size: size, createdAt: now))
                dumps[builder.txid] = try TestSupport.dump(db)
            }
            try capture(level: 9)
            var snapshots = 0
            var compacted = 0
            for i in 0..<120 {
                let target = now.addingTimeInterval(Double(random.next(in: 1...25)))
                while let due = maintainer.nextDue(now: now), due <= target {
                    now = max(now, due)
                    let report = try maintainer.tick(now: now)
                    #expect(report.failures.isEmpty, "\(report.failures)")
                    snapshots += report.snapshots.count
                    compacted += report.compacted.count
                }
                now = target
                let sql: String
                switch i % 10 {
                case 3:
                    sql = "DELETE FROM t WHERE id % 3 = 0;"
                case 7:
                    sql = "UPDATE t SET v = upper(v) WHERE id % 5 = 1;"
                case 9:
                    sql = "DELETE FROM t WHERE id < \(i * 10); VACUUM;"
                default:
                    sql = """
                        WITH RECURSIVE n(k) AS (SELECT 1 UNION ALL SELECT k+1 FROM n WHERE k < \(random.next(in: 5...60)))
                        INSERT INTO t(v) SELECT printf('row %d %d %0200d', \(i), k, k) FROM n;
                        """
                }
                try TestSupport.sqlite(db, sql)
                try capture(level: 0)
            }
            #expect(snapshots >= 2 && compacted >= 20, "snapshots \(snapshots), compacted \(compacted)")
            let files = maintainer.files
            #expect(files.contains { $0.level == 2 } && files.contains { $0.level == 1 })

            // Litestream restores the latest state, and the ends of compacted files.
            let litestream = TestSupport.litestreamPath!
            let out = dir + "/litestream.db"
            var r = try TestSupport.run(
                litestream, ["restore", "-o", out, builder.replica.location],
                environment: TestSupport.childEnvironment())
            try #require(r.status == 0, "litestream restore failed: \(r)")
            #expect(try TestSupport.dump(out) == dumps[builder.txid])
            #expect(try TestSupport.sqlite(out, "PRAGMA integrity_check;") == "ok\n")
            let points = RestorePlanner.restorePoints(files: files)
            let boundaries = Set(files.filter { $0.level >= 1 && points.contains($0.maxTXID) }.map(\.maxTXID)).sorted()
            #expect(boundaries.count >= 3)
            for txid in boundaries.suffix(6) {
                let theirs = dir + "/litestream-\(txid).db"
                r = try TestSupport.run(
                    litestream, ["restore", "-txid", hex16(txid), "-o", theirs, builder.replica.location],
                    environment: TestSupport.childEnvironment())
                #expect(r.status == 0, "litestream restore -txid \(hex16(txid)) failed: \(r)")
                #expect(try TestSupport.dump(theirs) == dumps[txid], "litestream at TXID \(txid)")
                let ours = dir + "/ours-\(txid).db"
                let result = try ReplicaRestorer.restore(
                    from: builder.replica, to: ours, options: RestoreOptions(target: .txid(txid)))
                #expect(result.integrityChecked)
                #expect(try TestSupport.dump(ours) == dumps[txid], "ours at TXID \(txid)")
            }
        }
    }
}

/// What the maintainer asks of the replica, and how it behaves when things go wrong.
@Suite("Compaction: requests, fencing, failures")
struct CompactionBehaviourTests {
    static let policy = CompactionMaintainerTests.policy
    static let start = Date(timeIntervalSince1970: 1_750_000_000)

    @Test func idleMeansNoWorkAndNoRequests() throws {
        try withFastTemporaryDirectory { dir in
            var sim = try MaintenanceSimulation(directory: dir, policy: Self.policy, seed: 5, start: Self.start)
            for _ in 0..<30 {
                try sim.advance(to: sim.now.addingTimeInterval(2))
                try sim.batch(transactions: 2)
            }
            // Let the cascade, the snapshot and retention run their course.
            try sim.advance(to: sim.now.addingTimeInterval(5 * 3600))
            #expect(sim.maintainer.nextDue(now: sim.now) == nil)
            let report = try sim.maintainer.tick(now: sim.now.addingTimeInterval(3600))
            #expect(report.isEmpty && report.requests.isEmpty)

            // No LIST after start-up; no GET for files uploaded or written here (local copies),
            // only for inputs of snapshots that live at the top level.
            let requests = sim.reports.reduce(into: [RequestKind: Int]()) { total, report in
                total.merge(report.requests, uniquingKeysWith: +)
            }
            #expect(requests[.list] == nil)
            let topLevelInputs = sim.everCreated.filter { $0.level == Self.policy.topLevel }.count
            #expect((requests[.get] ?? 0) <= topLevelInputs, "\(requests)")
            let written = sim.reports.reduce(0) { $0 + $1.compacted.count + $1.snapshots.count }
            #expect(requests[.put] == written)
            #expect((requests[.delete] ?? 0) == sim.reports.reduce(0) { $0 + $1.deleted.count })
        }
    }

    @Test func oneSnapshotPerIntervalEvenWithABatchShippedAcrossTheBoundary() throws {
        try withFastTemporaryDirectory { dir in
            var sim = try MaintenanceSimulation(directory: dir, policy: Self.policy, seed: 11, start: Self.start)
            var snapshotTimes: [Date] = []
            sim.afterTick = { sim in
                for _ in sim.reports.last!.snapshots { snapshotTimes.append(sim.now) }
            }
            let interval = Double(MaintenanceClock.ms(Self.policy.snapshotInterval)) / 1000
            let hours = 6.0
            let end = Self.start.addingTimeInterval(hours * 3600)
            var nextBoundary = Date(
                timeIntervalSince1970: (Self.start.timeIntervalSince1970 / interval).rounded(.down) * interval + interval)
            while sim.now < end {
                if sim.now.addingTimeInterval(20) >= nextBoundary {
                    // The maintainer runs at the boundary; a batch committed 50 ms before it is
                    // shipped just after (the uploader's max-delay).
                    try sim.advance(to: nextBoundary)
                    sim.history.transaction()
                    sim.everCreated.append(
                        try sim.history.ship(to: sim.replica, work: sim.work, at: nextBoundary.addingTimeInterval(-0.05)))
                    try sim.advance(to: nextBoundary.addingTimeInterval(0.2))
                    nextBoundary = nextBoundary.addingTimeInterval(interval)
                } else {
                    try sim.advance(to: sim.now.addingTimeInterval(20))
                }
                try sim.batch(transactions: 1)
            }
            try sim.advance(to: end)
            // Count the level-9 PUTs per interval: one each, never two.
            var perInterval: [Int: Int] = [:]
            for time in snapshotTimes { perInterval[Int((time.timeIntervalSince1970 / interval).rounded(.down)), default: 0] += 1 }
            #expect(snapshotTimes.count >= Int(hours * 3600 / interval) - 1, "\(snapshotTimes.count) snapshots")
            for (slot, count) in perInterval.sorted(by: { $0.key < $1.key }) {
                #expect(count == 1, "\(count) snapshots in the interval from \(RestorePlanner.format(Date(timeIntervalSince1970: Double(slot) * interval)))")
            }
            // Nothing was lost: the newest snapshot plus what follows still reaches the latest TXID.
            let plan = try RestorePlanner.plan(files: sim.maintainer.files, target: .latest)
            #expect(plan.txid == sim.history.txid)
        }
    }

    @Test func anExistingTargetMeansAnotherWriter() throws {
        try withFastTemporaryDirectory { dir in
            var sim = try MaintenanceSimulation(directory: dir, policy: Self.policy, seed: 6, start: Self.start)
            try sim.batch(transactions: 3)
            let pending = sim.maintainer.files.filter { $0.level == 0 }
            // Someone else already wrote the level-1 file this maintainer is about to write.
            let path = dir + "/other.ltx"
            try TestSupport.writeFile(path, [1, 2, 3])
            try sim.replica.publish(
                level: 1, minTXID: pending[0].minTXID, maxTXID: pending.last!.maxTXID, localPath: path,
                timestamp: Date())
            let error = #expect(throws: ReplicationError.self) {
                try sim.maintainer.tick(now: Self.start.addingTimeInterval(60))
            }
            #expect(error?.code == .fenced)
        }
    }

    @Test func aFailureIsRetriedLaterNotInALoop() throws {
        try withFastTemporaryDirectory { dir in
            var sim = try MaintenanceSimulation(directory: dir, policy: Self.policy, seed: 8, start: Self.start)
            sim.history.published = nil  // no local copies: inputs come from the replica
            try sim.batch(transactions: 2)
            let victim = try #require(try sim.replica.listFiles(level: 0).first)
            let path = sim.replica.path(of: victim)
            var bytes = try TestSupport.readFile(path)
            bytes[bytes.count - 2] ^= 1
            try TestSupport.writeFile(path, bytes)
            sim.maintainer.noteUploaded(victim)
            let now = Self.start.addingTimeInterval(60)
            let report = try sim.maintainer.tick(now: now)
            #expect(report.failures.count == 1)
            #expect(report.failures.first?.contains("corrupt LTX file \(path)") == true, "\(report.failures)")
            #expect(report.compacted.isEmpty)
            // Next attempt after the retry delay, not right away.
            let due = try #require(sim.maintainer.nextDue(now: now))
            #expect(due >= now.addingTimeInterval(30))
            #expect(try sim.maintainer.tick(now: now.addingTimeInterval(1)).isEmpty)
            // Repaired: the next attempt succeeds.
            bytes[bytes.count - 2] ^= 1
            try TestSupport.writeFile(path, bytes)
            let retried = try sim.maintainer.tick(now: due)
            #expect(retried.failures.isEmpty)
            #expect(retried.compacted.contains { $0.level == 1 })
        }
    }

    @Test func aStaleIndexIsListedAgainOnce() throws {
        try withFastTemporaryDirectory { dir in
            let sim = try MaintenanceSimulation(directory: dir, policy: Self.policy, seed: 9, start: Self.start)
            // A file the maintainer was not told about.
            sim.history.published = nil
            sim.history.transaction()
            try sim.history.ship(to: sim.replica, work: dir, at: Self.start.addingTimeInterval(1))
            #expect(sim.maintainer.files.count == 1)
            sim.maintainer.invalidateIndex()
            #expect(sim.maintainer.nextDue(now: Self.start) == Self.start)
            let report = try sim.maintainer.tick(now: Self.start.addingTimeInterval(2))
            #expect(report.requests[.list] == 3)  // the levels, then levels 0 and 9
            #expect(sim.maintainer.files.count == 2)
            let again = try sim.maintainer.tick(now: Self.start.addingTimeInterval(3))
            #expect(again.requests[.list] == nil)
        }
    }

    @Test func anotherProcessesMaintainerTouchesNothing() throws {
        try withFastTemporaryDirectory { dir in
            var sim = try MaintenanceSimulation(directory: dir, policy: Self.policy, seed: 10, start: Self.start)
            try sim.batch(transactions: 2)
            let cached = try FileManager.default.contentsOfDirectory(atPath: dir + "/maintainer-tmp/compaction-cache")
            #expect(cached.count == 2)  // the snapshot and the batch, hard-linked
            // A process that is not the uploader makes a maintainer for the same directory.
            _ = ReplicaMaintainer(
                replica: sim.replica, policy: Self.policy, logger: Logger(label: "other"),
                tempDirectory: dir + "/maintainer-tmp")
            #expect(
                try FileManager.default.contentsOfDirectory(atPath: dir + "/maintainer-tmp/compaction-cache") == cached)
            let report = try sim.maintainer.tick(now: Self.start.addingTimeInterval(60))
            #expect(report.compacted.contains { $0.level == 1 })
            #expect(report.failures.isEmpty)
            #expect(report.requests[.get] == nil)
        }
    }
}
