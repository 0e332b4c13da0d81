internal import CVFSShim
import Foundation

/// The `replicated` SQLite VFS.
///
/// ```swift
/// try ReplicatedVFS.register()
/// try ReplicatedVFS.registerDatabase(path: "/srv/app/storage/production.sqlite3")
/// sqlite3_open_v2("file:/srv/app/storage/production.sqlite3?vfs=replicated", &db, flags, nil)
/// ```
/// Registration never makes it the default VFS. A database opened through it that was not
/// registered fails to open (SQLITE_CANTOPEN) and SQLite's error log names it.
/// See https://www.sqlite.org/vfs.html.
public enum ReplicatedVFS {
    /// The VFS name to pass to `sqlite3_open_v2` or in a `?vfs=` URI parameter.
    public static let name = "replicated"

    /// Registers the VFS with SQLite (idempotent).
    public static func register() throws {
        let rc = vr_vfs_register()
        guard rc == 0 else {
            throw ReplicationError(.sqlite, "cannot register the \(name) VFS (SQLite result code \(rc))")
        }
    }

    /// Declares that the database at `path` is replicated and prepares its spool directory
    /// (`<path>-vfsrepl`).
    @discardableResult
    static func registerDatabase(path: String) throws -> SpoolHandle {
        try register()
        var err = [CChar](repeating: 0, count: 512)
        let rc = vr_db_register(path, &err, err.count)
        guard rc == 0, let db = vr_db_lookup(path) else {
            let message = String(cString: err)
            throw ReplicationError(.io, "database \(path): \(message.isEmpty ? "cannot register" : message)")
        }
        return SpoolHandle(db)
    }

    /// For a host that ends by calling `exit()` (the loadable extension's exit handler): from
    /// now on the library runs no SQLite call and the shim logs nothing, because the host's
    /// `main()` has returned and its SQLite log callback may point at what it left (see
    /// `vr_process_exit_begin`). A base snapshot still to be taken then waits for the next process.
    public static func beginProcessExit() { vr_process_exit_begin() }

    /// Whether `beginProcessExit()` was called.
    public static var processIsExiting: Bool { vr_process_exiting() != 0 }

    /// How long the host's last connection to close a database waits for its base snapshot to
    /// ship (see `vr_set_close_wait`); zero (the default) never waits.
    public static func setLastCloseWait(_ d: Duration) { vr_set_close_wait(d.milliseconds) }

    /// Whether io_uring carries the batched writes in this process (else plain syscalls).
    public static var ioUringAvailable: Bool { vr_io_uring_available() == 1 }

    /// Counters of this process's shim (tests and status).
    public static func stats() -> (captures: UInt64, framesCaptured: UInt64, resets: UInt64, refusedWrites: UInt64) {
        var s = vr_stats()
        vr_get_stats(&s)
        return (s.captures, s.framesCaptured, s.resets, s.refusedWrites)
    }
}

/// A registered database's spool: shared state and segment files.
struct SpoolHandle: @unchecked Sendable {
    let raw: OpaquePointer

    init(_ raw: OpaquePointer) { self.raw = raw }

    var databasePath: String { String(cString: vr_db_path(raw)) }
    var stateDirectory: String { String(cString: vr_db_state_dir(raw)) }

    func state() -> vr_state_view {
        var v = vr_state_view()
        vr_db_read_state(raw, &v)
        return v
    }

    func segmentPath(_ seg: UInt64) -> String {
        var buf = [CChar](repeating: 0, count: 4096)
        vr_db_segment_path(raw, seg, &buf, buf.count)
        return String(cString: buf)
    }

    func addSpare(_ seg: UInt64) -> Bool { vr_db_add_spare(raw, seg) == 1 }
    func dropSpares() { vr_db_drop_spares(raw) }
    func offerSpare(_ path: String) -> Bool { vr_db_offer_spare(raw, path) == 1 }
    func spareCount() -> Int { Int(vr_db_spare_count(raw)) }
    var segmentTarget: UInt64 { vr_db_segment_target(raw) }
    var spareTempPath: String {
        var buf = [CChar](repeating: 0, count: 4096)
        vr_db_spare_temp_path(raw, &buf, buf.count)
        return String(cString: buf)
    }

    func setShipped(txid: UInt64, position: SpoolPosition) {
        vr_db_set_shipped(raw, txid, position.segment, position.offset)
    }

    func tryElect() -> Bool { vr_db_try_elect(raw) == 1 }

    /// Continues the lineage of a restore recorded by `RestoreMarker` (see `vr_db_adopt`).
    func adopt(_ m: RestoreMarker) -> Bool { vr_db_adopt(raw, m.txid, m.inode, m.size, m.mtimeNs) == 1 }
    func resign() { vr_db_resign(raw) }
    func syncSpool() -> Int32 { vr_db_sync_spool(raw) }

    /// See `vr_db_set_spool_limit`.
    func setSpoolLimit(_ maxBytes: Int64?, grow: Bool) {
        vr_db_set_spool_limit(raw, UInt64(max(0, maxBytes ?? 0)), grow ? 1 : 0)
    }

    /// Remote durability: see `vr_db_set_durability`.
    func setDurability(remote: Bool, timeout: Duration) {
        vr_db_set_durability(raw, remote ? 1 : 0, timeout.milliseconds)
    }
    func workGeneration() -> UInt32 { vr_db_work_gen(raw) }
    func kick() { vr_db_kick(raw) }
    // The uploader pool's bell and parking (see vr_db_set_bell in vfsshim.h).
    func setBell(home: SpoolHandle?) { _ = vr_db_set_bell(raw, home?.raw) }
    func bellGeneration() -> UInt32 { vr_db_bell_gen(raw) }
    func waitForBell(generation: UInt32, timeout: Duration) { vr_db_bell_wait(raw, generation, timeout.milliseconds) }
    func ringBell() { vr_db_bell_ring(raw) }
    func park(seenTXID: UInt64) -> Bool { vr_db_park(raw, seenTXID) == 1 }
    func unpark() { vr_db_unpark(raw) }
    /// See `vr_db_set_base_pending`.
    func setBasePending(_ needed: Bool, idleAtTXID: UInt64? = nil) {
        vr_db_set_base_pending(raw, needed ? 1 : 0, idleAtTXID ?? .max)
    }
    /// See `vr_db_raise_txid_floor`.
    func raiseTXIDFloor(_ floor: UInt64) { vr_db_raise_txid_floor(raw, floor) }

    /// Asks the uploader, in whichever process it runs, to ship up to `txid` now.
    func requestShip(upTo txid: UInt64) { vr_db_request_ship(raw, txid) }

    /// Highest TXID a committer waits to see durable.
    var waitedTXID: UInt64 { vr_db_wait_txid(raw) }

    /// Bytes captured but not yet durable in the replica.
    var pendingBytes: UInt64 { vr_db_spool_pending(raw) }
}
