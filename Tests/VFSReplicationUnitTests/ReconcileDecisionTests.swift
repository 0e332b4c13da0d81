import CVFSShim
import Testing

/// The reconcile decision (`vr_reconcile_decide`, include/vfsreconcile.h): what the capture does to
/// bring the spool up to date with the WAL, rule by rule. Pure: no files, no processes.
@Suite("Reconcile decision")
struct ReconcileDecisionTests {
    static let walMagic: UInt32 = 0x377f_0682
    static let walVersion: UInt32 = 3_007_000

    /// The shared state has captured up to frame `walFrame` of a WAL with salts (100, 200); the
    /// wal-index publishes `mxFrame` frames of a WAL with salts (`salt1`, `salt2`).
    static func input(
        salt1: UInt32 = 100, salt2: UInt32 = 200, mxFrame: UInt32, walFrame: UInt32 = 5, walValid: Bool = true,
        clean: Bool = false, cleanMatches: Bool = false, walOpen: Bool = true
    ) -> vr_reconcile_input {
        var i = vr_reconcile_input()
        i.idxSalt1 = salt1
        i.idxSalt2 = salt2
        i.idxMxFrame = mxFrame
        i.walValid = walValid ? 1 : 0
        i.walFrame = walFrame
        i.walSalt1 = 100
        i.walSalt2 = 200
        i.walCk1 = 0x1111
        i.walCk2 = 0x2222
        i.cleanValid = clean ? 1 : 0
        i.cleanMatches = cleanMatches ? 1 : 0
        i.walOpen = walOpen ? 1 : 0
        return i
    }

    /// The same input with the WAL header read: by default a valid header whose salts are the wal-index's.
    static func withHeader(
        _ i: vr_reconcile_input, magic: UInt32 = walMagic, version: UInt32 = walVersion, saltsMatch: Bool = true
    ) -> vr_reconcile_input {
        var i = i
        i.walHeaderKnown = 1
        i.walMagic = magic
        i.walVersion = version
        i.walSaltsMatch = saltsMatch ? 1 : 0
        i.walCk1Header = 0xAAAA
        i.walCk2Header = 0xBBBB
        return i
    }

    static func decide(_ i: vr_reconcile_input) -> vr_reconcile_decision {
        var i = i
        return vr_reconcile_decide(&i)
    }

    static func reason(_ d: vr_reconcile_decision) -> String? { d.reason.map { String(cString: $0) } }

    @Test func nothingNew() {
        let d = Self.decide(Self.input(mxFrame: 5))
        #expect(d.action == VR_RECONCILE_NOTHING)
        #expect(d.adoptCleanFirst == 0)
    }

    @Test func cleanCloseMatchesWithAnEmptyWAL() {
        let d = Self.decide(Self.input(salt1: 7, salt2: 8, mxFrame: 0, walFrame: 0, clean: true, cleanMatches: true))
        #expect(d.action == VR_RECONCILE_ADOPT_CLEAN)
        #expect(d.adoptCleanFirst == 1)
    }

    @Test func cleanCloseMatchesAndFramesFollow() {
        let i = Self.input(salt1: 7, salt2: 8, mxFrame: 3, walFrame: 0, clean: true, cleanMatches: true)
        let first = Self.decide(i)
        #expect(first.action == VR_RECONCILE_READ_WAL_HEADER)
        #expect(first.adoptCleanFirst == 1)
        let d = Self.decide(Self.withHeader(i))
        #expect(d.action == VR_RECONCILE_CAPTURE)
        #expect(d.adoptCleanFirst == 1)
        #expect(d.firstFrame == 1)
        #expect(d.seed1 == 0xAAAA && d.seed2 == 0xBBBB)
    }

    @Test func cleanCloseDoesNotMatch() {
        let d = Self.decide(Self.input(mxFrame: 0, walFrame: 0, clean: true, cleanMatches: false))
        #expect(d.action == VR_RECONCILE_RESET)
        #expect(d.adoptCleanFirst == 0)
        #expect(Self.reason(d) == "the database changed while it was closed")
    }

    @Test func noHistory() {
        let d = Self.decide(Self.input(mxFrame: 4, walFrame: 0, walValid: false))
        #expect(d.action == VR_RECONCILE_RESET)
        #expect(Self.reason(d) == "no replication history for this database")
    }

    @Test func walRestartedWithNoFramesYet() {
        // SQLite restarts the WAL with salt-1 + 1 (and a new salt-2).
        let d = Self.decide(Self.input(salt1: 101, salt2: 999, mxFrame: 0, walFrame: 5))
        #expect(d.action == VR_RECONCILE_RECORD_RESTART)
    }

    @Test func walRestartWrapsSalt1() {
        var i = Self.input(salt1: 0, salt2: 9, mxFrame: 0, walFrame: 5)
        i.walSalt1 = UInt32.max
        #expect(Self.decide(i).action == VR_RECONCILE_RECORD_RESTART)
    }

    @Test func emptyWALWithNothingCapturedYet() {
        // mxFrame 0 with new salts that are not a restart: fine when nothing was captured of the old WAL.
        let d = Self.decide(Self.input(salt1: 5000, salt2: 1, mxFrame: 0, walFrame: 0))
        #expect(d.action == VR_RECONCILE_RECORD_RESTART)
    }

    @Test func walResetOutsideTheVFS() {
        let d = Self.decide(Self.input(salt1: 5000, salt2: 1, mxFrame: 0, walFrame: 5))
        #expect(d.action == VR_RECONCILE_RESET)
        #expect(Self.reason(d) == "the WAL was reset outside the replicated VFS")
    }

    @Test func continuingCapture() {
        let i = Self.input(mxFrame: 9, walFrame: 5)
        #expect(Self.decide(i).action == VR_RECONCILE_READ_WAL_HEADER)
        let d = Self.decide(Self.withHeader(i))
        #expect(d.action == VR_RECONCILE_CAPTURE)
        #expect(d.adoptCleanFirst == 0)
        #expect(d.firstFrame == 6)
        #expect(d.seed1 == 0x1111 && d.seed2 == 0x2222)
    }

    @Test func bigEndianChecksumMagicIsSupported() {
        let d = Self.decide(Self.withHeader(Self.input(mxFrame: 9, walFrame: 5), magic: Self.walMagic | 1))
        #expect(d.action == VR_RECONCILE_CAPTURE)
    }

    @Test func captureOfARestartedWALStartsAtFrameOne() {
        let d = Self.decide(Self.withHeader(Self.input(salt1: 101, salt2: 7, mxFrame: 2, walFrame: 5)))
        #expect(d.action == VR_RECONCILE_CAPTURE)
        #expect(d.firstFrame == 1)
        #expect(d.seed1 == 0xAAAA && d.seed2 == 0xBBBB)
    }

    @Test func captureFromFrameOneWhenNothingCaptured() {
        let d = Self.decide(Self.withHeader(Self.input(mxFrame: 3, walFrame: 0)))
        #expect(d.action == VR_RECONCILE_CAPTURE)
        #expect(d.firstFrame == 1)
        #expect(d.seed1 == 0xAAAA)
    }

    @Test func walThatDoesNotContinue() {
        // Same salts but fewer frames than captured: the WAL was rewritten behind the spool.
        let fewer = Self.decide(Self.withHeader(Self.input(mxFrame: 3, walFrame: 5)))
        #expect(fewer.action == VR_RECONCILE_RESET)
        #expect(Self.reason(fewer) == "the WAL does not continue the captured history")
        // New salts that are not a restart, with frames.
        let other = Self.decide(Self.withHeader(Self.input(salt1: 5000, salt2: 1, mxFrame: 3, walFrame: 5)))
        #expect(other.action == VR_RECONCILE_RESET)
        #expect(Self.reason(other) == "the WAL does not continue the captured history")
    }

    @Test func unsupportedWALFormat() {
        let i = Self.input(mxFrame: 9, walFrame: 5)
        let badMagic = Self.decide(Self.withHeader(i, magic: 0x1234_5678))
        #expect(badMagic.action == VR_RECONCILE_RESET)
        #expect(Self.reason(badMagic) == "unsupported WAL format")
        let badVersion = Self.decide(Self.withHeader(i, version: 3_007_001))
        #expect(badVersion.action == VR_RECONCILE_RESET)
        #expect(Self.reason(badVersion) == "unsupported WAL format")
    }

    @Test func headerAndIndexSaltsDiffer() {
        let d = Self.decide(Self.withHeader(Self.input(mxFrame: 9, walFrame: 5), saltsMatch: false))
        #expect(d.action == VR_RECONCILE_RESET)
        #expect(Self.reason(d) == "WAL header does not match wal-index")
    }

    @Test func walNotOpenThroughTheVFS() {
        let d = Self.decide(Self.input(mxFrame: 9, walFrame: 5, walOpen: false))
        #expect(d.action == VR_RECONCILE_RESET)
        #expect(Self.reason(d) == "WAL not open through the replicated VFS")
        // Nothing new needs no WAL at all.
        #expect(Self.decide(Self.input(mxFrame: 5, walOpen: false)).action == VR_RECONCILE_NOTHING)
    }

    @Test func walNotOpenAfterAMatchingCleanClose() {
        let d = Self.decide(Self.input(mxFrame: 2, walFrame: 0, clean: true, cleanMatches: true, walOpen: false))
        #expect(d.action == VR_RECONCILE_RESET)
        #expect(d.adoptCleanFirst == 1)
        #expect(Self.reason(d) == "WAL not open through the replicated VFS")
    }
}
