import Foundation
import Testing

@testable import VFSReplication

/// close() of any descriptor of a file drops every POSIX lock the process holds on it, SQLite's
/// included (https://www.sqlite.org/howtocorrupt.html, section 2.2). The library reads database
/// headers in processes that have the database open (status reports, the dashboard, every
/// `flush()`, the snapshot reader): it must never open() and close() the file itself.
@Suite("POSIX locks of the app's connections")
struct LockSafetyTests {
    /// With the app's connection open and its WAL empty (after a checkpoint, the header is read
    /// from the main file), a status check runs in the app's process; then another process opens
    /// and closes the database. If the check dropped the app's SHARED lock, that other process
    /// is the "last connection": it deletes the WAL under the live connection, whose later
    /// commits go to an unlinked file that no one else sees. Failed before: the sqlite3 CLI
    /// counted 1 row instead of 2, and the WAL was gone from the directory.
    @Test func aStatusCheckKeepsTheAppsLocks() throws {
        let f = try ReplicatedFixture()
        let c = try f.open()
        try c.exec("CREATE TABLE t(id INTEGER PRIMARY KEY, x TEXT); INSERT INTO t(x) VALUES ('one')")
        try f.flush()
        _ = try c.scalar("PRAGMA wal_checkpoint(TRUNCATE)")
        _ = BackupCoverage.notBackedUpSince(databasePath: f.dbPath, stateDirectory: f.dbPath + "-vfsrepl")
        try TestSupport.sqlite(f.dbPath, "SELECT count(*) FROM t;")  // another process, which closes
        try c.exec("INSERT INTO t(x) VALUES ('two')")
        #expect(FileManager.default.fileExists(atPath: f.dbPath + "-wal"), "the WAL was deleted under a live connection")
        let seen = try TestSupport.sqlite(f.dbPath, "SELECT count(*) FROM t;").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(seen == "2", "another process sees \(seen) rows: the app's last commit is in a deleted WAL")
    }
}
