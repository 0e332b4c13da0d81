internal import CSQLite

/// Runs `PRAGMA integrity_check` on a database file that nothing else has open.
///
/// The file is opened read-only as `immutable=1` (no locks, no -wal/-shm files created), which
/// is right for a freshly rebuilt file that is not in place yet.
/// https://www.sqlite.org/pragma.html#pragma_integrity_check, https://www.sqlite.org/uri.html
enum IntegrityCheck {
    /// Returns nil when SQLite answers "ok", else the problems it lists (at most `limit`).
    static func run(path: String, limit: Int = 20) throws -> [String]? {
        var db: OpaquePointer?
        let uri = "file:" + escape(path) + "?immutable=1"
        let rc = sqlite3_open_v2(uri, &db, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI, nil)
        defer { sqlite3_close_v2(db) }
        guard rc == SQLITE_OK, let db else {
            let message = db.map { String(cString: sqlite3_errmsg($0)) } ?? "out of memory"
            throw ReplicationError(.sqlite, "open \(path) for integrity check: \(message)")
        }
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, "PRAGMA integrity_check(\(limit))", -1, &stmt, nil) == SQLITE_OK else {
            throw ReplicationError(.sqlite, "integrity check of \(path): \(String(cString: sqlite3_errmsg(db)))")
        }
        defer { sqlite3_finalize(stmt) }
        var lines: [String] = []
        while true {
            let step = sqlite3_step(stmt)
            if step == SQLITE_DONE { break }
            guard step == SQLITE_ROW else {
                // A file too damaged to read at all is a failed check, not an API error.
                return ["SQLite error: \(String(cString: sqlite3_errmsg(db)))"]
            }
            if let text = sqlite3_column_text(stmt, 0) { lines.append(String(cString: text)) }
        }
        return lines == ["ok"] ? nil : lines
    }

    /// Percent-encodes the characters that are special in a SQLite URI path.
    private static func escape(_ path: String) -> String {
        var out = ""
        for byte in path.utf8 {
            switch byte {
            case UInt8(ascii: "%"), UInt8(ascii: "?"), UInt8(ascii: "#"), 0..<0x20, 0x7F...:
                let hex = String(byte, radix: 16, uppercase: true)
                out += "%" + (hex.count == 1 ? "0" + hex : hex)
            default:
                out.unicodeScalars.append(UnicodeScalar(byte))
            }
        }
        return out
    }
}
