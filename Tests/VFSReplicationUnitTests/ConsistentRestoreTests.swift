import Foundation
import Testing

@testable import VFSReplication

/// Planning several databases to one instant, from listings only.
@Suite("Consistent restore plan")
struct ConsistentRestoreTests {
    static let t0 = Date(timeIntervalSince1970: 1_700_000_000)

    /// Level-0 files for TXIDs 1...n, TXID k stamped t0 + start + k * step seconds.
    static func history(_ n: UInt64, start: Double, step: Double = 1) -> [LTXFileInfo] {
        (1...n).map {
            LTXFileInfo(
                level: 0, minTXID: $0, maxTXID: $0, size: 100,
                createdAt: t0.addingTimeInterval(start + Double($0) * step))
        }
    }

    static func candidate(_ name: String, _ files: [LTXFileInfo], skipIfEmpty: Bool = false, output: String? = nil)
        -> ConsistentRestore.Candidate
    {
        ConsistentRestore.Candidate(
            database: "/d/\(name).db", replica: "file:///r/\(name)", output: output ?? "/d/\(name).db",
            listing: .success(files), skipIfEmpty: skipIfEmpty)
    }

    @Test func eachDatabaseGetsItsNewestPointAtOrBeforeTheInstantAndTheSkewIsTheirSpread() throws {
        // a: TXIDs at 1..10 s; b: at 5.5, 6, ... ; c: one transaction at 2 s.
        let dbs = [
            Self.candidate("a", Self.history(10, start: 0)),
            Self.candidate("b", Self.history(10, start: 5, step: 0.5)),
            Self.candidate("c", Self.history(1, start: 1)),
        ]
        let plan = try ConsistentRestore.plan(target: .timestamp(Self.t0.addingTimeInterval(7.2)), databases: dbs)
        #expect(plan.entries.map(\.plan.txid) == [7, 4, 1])
        #expect(plan.entries.map(\.time) == [7.0, 7.0, 2.0].map { Self.t0.addingTimeInterval($0) })
        #expect(plan.spread == 5.0)
        #expect(plan.oldest == Self.t0.addingTimeInterval(2))
        let lines = ConsistentRestore.planLines(plan)
        #expect(lines[0].hasPrefix("plan: 3 databases to time "))
        #expect(lines[0].contains("skew 5.000 s"))
        #expect(lines[1].hasPrefix("  /d/a.db: TXID 0000000000000007 (7) at "))
        #expect(lines[1].contains("0.200 s before the target"))
        #expect(lines[3].contains("5.200 s before the target"))
    }

    @Test func oneDatabaseWithoutAPointBeforeTheInstantFailsTheWholePlanNamingIt() {
        let dbs = [
            Self.candidate("a", Self.history(10, start: 0)),
            Self.candidate("late", Self.history(3, start: 100)),
            Self.candidate("b", Self.history(10, start: 0)),
        ]
        #expect {
            try ConsistentRestore.plan(target: .timestamp(Self.t0.addingTimeInterval(5)), databases: dbs)
        } throws: { error in
            let message = (error as? ReplicationError)?.message ?? ""
            return message.contains("cannot restore every database to time")
                && message.contains("1 of 3 cannot be; nothing was written")
                && message.contains("/d/late.db: file:///r/late: no restore point at or before")
                && !message.contains("/d/a.db")
        }
    }

    @Test func everyFailureIsNamedNotOnlyTheFirst() {
        let dbs = [
            Self.candidate("x", Self.history(3, start: 100)),
            ConsistentRestore.Candidate(
                database: "/d/y.db", replica: "s3://b/y", output: "/d/y.db",
                listing: .failure(ReplicationError(.io, "s3://b/y: connection refused"))),
        ]
        #expect {
            try ConsistentRestore.plan(target: .timestamp(Self.t0), databases: dbs)
        } throws: { error in
            let message = (error as? ReplicationError)?.message ?? ""
            return message.contains("2 of 2") && message.contains("/d/x.db: ")
                && message.contains("/d/y.db: s3://b/y: connection refused")
        }
    }

    @Test func anEmptyReplicaIsSkippedOnlyWhenAskedAndSkipsAreListed() throws {
        let at = RestoreTarget.timestamp(Self.t0.addingTimeInterval(5))
        #expect(throws: ReplicationError.self) {
            try ConsistentRestore.plan(target: at, databases: [Self.candidate("new", [])])
        }
        let plan = try ConsistentRestore.plan(
            target: at,
            databases: [Self.candidate("a", Self.history(10, start: 0)), Self.candidate("new", [], skipIfEmpty: true)])
        #expect(plan.entries.map(\.database) == ["/d/a.db"])
        #expect(
            plan.skipped == [
                .init(database: "/d/new.db", replica: "file:///r/new", reason: "no LTX files in file:///r/new")
            ])
        #expect(plan.spread == 0)
        #expect(ConsistentRestore.planLines(plan).last == "  /d/new.db: skipped: no LTX files in file:///r/new")
    }

    @Test func twoDatabasesWrittenToOneFileAreRefused() {
        let dbs = [
            Self.candidate("a", Self.history(3, start: 0), output: "/out/app.db"),
            Self.candidate("b", Self.history(3, start: 0), output: "/out/app.db"),
        ]
        #expect {
            try ConsistentRestore.plan(target: .latest, databases: dbs)
        } throws: { error in
            ((error as? ReplicationError)?.message ?? "").contains(
                "/d/b.db: would be written to /out/app.db, as /d/a.db is")
        }
    }
}
