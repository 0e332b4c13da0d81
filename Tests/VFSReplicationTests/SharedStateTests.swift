import CVFSShim
import Foundation
import Testing

@testable import VFSReplication

/// The shared state's seqlocks: the uploader writes its progress without the WAL write lock, so
/// a reader must never see a mix of its update and a committer's.
@Suite("Shared state", .serialized)
struct SharedStateTests {
    @Test func theShippedPositionIsNeverReadHalfWritten() throws {
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = try DiskSpaceTests.writeConfig(dir: dir, extra: "")
        let replicator = try Replicator(config: config)  // not started: the test plays the uploader
        defer { replicator.shutdown(timeout: .seconds(10)) }
        let dbPath = dir + "/app.db"
        let c = try Conn(dbPath)
        try c.exec("PRAGMA journal_mode=WAL")
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x BLOB)")
        let spool = try ReplicatedVFS.registerDatabase(path: dbPath)

        let stop = ManagedAtomicFlag()
        let torn = ManagedAtomicFlag()
        // The "uploader": shipped (n, n, n), so any other combination in a copy is torn.
        let writer = Thread {
            var n: UInt64 = 1
            while !stop.isSet {
                spool.setShipped(txid: n, position: SpoolPosition(segment: n, offset: n))
                n += 1
            }
        }
        let reader = Thread {
            while !stop.isSet {
                let v = spool.state()
                if v.shippedTxid != v.shippedSeg || v.shippedSeg != v.shippedOff { torn.set() }
            }
        }
        // A fresh state holds (0, 1, 0): publish (n, n, n) before the reader looks.
        spool.setShipped(txid: 1, position: SpoolPosition(segment: 1, offset: 1))
        writer.start()
        reader.start()
        let deadline = Date().addingTimeInterval(3)
        while Date() < deadline && !torn.isSet { try c.insertBlobs(20, bytes: 10) }
        stop.set()
        Thread.sleep(forTimeInterval: 0.1)
        #expect(!torn.isSet, "a copy of the shared state mixed two updates of the shipped position")
    }
}

/// A flag shared between threads.
final class ManagedAtomicFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var value = false
    var isSet: Bool { lock.withLock { value } }
    func set() { lock.withLock { value = true } }
}
