import CVFSShim
import Foundation
import Testing

@testable import VFSReplication

/// When the uploader pre-touches spare segments (pure rule, no files).
@Suite("Spare policy")
struct SparePolicyTests {
    @Test func onlyAFastWriterGetsPreTouchedSpares() {
        var p = SparePolicy()
        func see(_ seg: UInt64, _ now: Int64, _ finished: UInt64?, _ spares: Int) -> Bool {
            p.observe(appendSegment: seg, nowMs: now, finishedBytes: { finished }, spares: { spares })
        }
        // First sight of a segment: nothing is known about the writer's speed yet.
        #expect(!see(3, 1_000, 16 << 20, 0))
        // 16 MiB in 4 s (4 MiB/s): reused segments are enough.
        #expect(!see(4, 5_000, 16 << 20, 0))
        // 16 MiB in 0.5 s (32 MiB/s): busy, while fewer than four spares exist.
        #expect(see(5, 5_500, 16 << 20, 0))
        #expect(see(5, 5_600, nil, 3))
        #expect(!see(5, 5_700, nil, 4))
        // Busy lasts two seconds after the fast rotation, then needs a new one.
        #expect(!see(5, 7_600, nil, 0))
    }

    @Test func aJumpOrAMissingSegmentSaysNothingAboutSpeed() {
        var p = SparePolicy()
        func see(_ seg: UInt64, _ now: Int64, _ finished: UInt64?, _ spares: Int) -> Bool {
            p.observe(appendSegment: seg, nowMs: now, finishedBytes: { finished }, spares: { spares })
        }
        _ = see(3, 1_000, 16 << 20, 0)
        // Two rotations between rounds: the finished size of one segment is not the rate.
        #expect(!see(5, 1_100, 16 << 20, 0))
        // The finished segment is already gone (shipped and reused).
        #expect(!see(6, 1_200, nil, 0))
        // A small segment (the 1 MiB rotation of a database the uploader keeps up with).
        #expect(!see(7, 1_400, 1 << 20, 0))
    }
}
