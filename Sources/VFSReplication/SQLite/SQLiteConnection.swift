internal import CVFSShim
import Foundation

/// A minimal SQLite connection over the shim's `vr_sql_*` wrappers.
///
/// The library never imports SQLite directly: inside the loadable extension every call must go
/// through the host's API table (see `Sources/CVFSShim/sqlite_api.h`).
final class SQLiteConnection {
    let handle: OpaquePointer
    let path: String

    struct OpenFlags: OptionSet {
        let rawValue: Int32
        static let readOnly = OpenFlags(rawValue: Int32(VR_OPEN_READONLY))
        static let readWrite = OpenFlags(rawValue: Int32(VR_OPEN_READWRITE))
        static let create = OpenFlags(rawValue: Int32(VR_OPEN_CREATE))
        static let uri = OpenFlags(rawValue: Int32(VR_OPEN_URI))
    }

    init(path: String, flags: OpenFlags, vfs: String? = nil, busyTimeoutMs: Int32 = 10_000) throws {
        var db: OpaquePointer?
        let rc = vr_sql_open(path, flags.rawValue, vfs, &db)
        if rc == Int32(VR_SQL_EXITING) { throw Self.exiting(path) }
        guard rc == Int32(VR_SQL_OK), let db else {
            let message = String(cString: vr_sql_errmsg(db))
            vr_sql_close(db)
            throw ReplicationError(.sqlite, "database \(path): cannot open: \(message) (SQLite result code \(rc))")
        }
        self.handle = db
        self.path = path
        vr_sql_busy_timeout(db, busyTimeoutMs)
    }

    deinit { vr_sql_close(handle) }

    var errorMessage: String { String(cString: vr_sql_errmsg(handle)) }

    /// The process is exiting: no SQLite call runs any more (`ReplicatedVFS.beginProcessExit`).
    static func exiting(_ path: String) -> ReplicationError {
        ReplicationError(.shutDown, "database \(path): not opened with SQLite: the process is exiting")
    }

    func exec(_ sql: String) throws {
        let rc = vr_sql_exec(handle, sql)
        if rc == Int32(VR_SQL_EXITING) { throw Self.exiting(path) }
        guard rc == Int32(VR_SQL_OK) else {
            throw ReplicationError(.sqlite, "database \(path): \(sql): \(errorMessage) (SQLite result code \(rc))")
        }
    }

    /// Runs a query and returns the first column of every row as text.
    func column(_ sql: String, limit: Int = .max) throws -> [String] {
        var stmt: OpaquePointer?
        let prepared = vr_sql_prepare(handle, sql, &stmt)
        if prepared == Int32(VR_SQL_EXITING) { throw Self.exiting(path) }
        guard prepared == Int32(VR_SQL_OK), let stmt else {
            throw ReplicationError(.sqlite, "database \(path): \(sql): \(errorMessage)")
        }
        defer { vr_sql_finalize(stmt) }
        var rows: [String] = []
        while rows.count < limit {
            let rc = vr_sql_step(stmt)
            if rc == Int32(VR_SQL_DONE) { break }
            if rc == Int32(VR_SQL_EXITING) { throw Self.exiting(path) }
            guard rc == Int32(VR_SQL_ROW) else {
                throw ReplicationError(.sqlite, "database \(path): \(sql): \(errorMessage) (SQLite result code \(rc))")
            }
            rows.append(vr_sql_column_text(stmt, 0).map { String(cString: $0) } ?? "")
        }
        return rows
    }

    /// First column of the first row, or nil when there is no row.
    func scalar(_ sql: String) throws -> String? { try column(sql, limit: 1).first }

    static var libraryVersion: String { String(cString: vr_sql_libversion()) }
}
