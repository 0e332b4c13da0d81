internal import CVFSShim
import Foundation

/// Runs `PRAGMA integrity_check` on a database file that nothing else has open.
///
/// The file is opened read-only as `immutable=1` (no locks, no -wal/-shm files created), which
/// is right for a freshly rebuilt file that is not in place yet.
/// https://www.sqlite.org/pragma.html#pragma_integrity_check, https://www.sqlite.org/uri.html
enum IntegrityCheck {
    /// Returns nil when SQLite answers "ok", else the problems it lists (at most `limit`).
    static func run(path: String, limit: Int = 20) throws -> [String]? {
        let uri = "file:" + escape(path) + "?immutable=1"
        let db: SQLiteConnection
        do {
            db = try SQLiteConnection(path: uri, flags: [.readOnly, .uri])
        } catch let error as ReplicationError {
            throw ReplicationError(.sqlite, "open \(path) for integrity check: \(error.message)")
        }
        var stmt: OpaquePointer?
        guard vr_sql_prepare(db.handle, "PRAGMA integrity_check(\(limit))", &stmt) == Int32(VR_SQL_OK), let stmt else {
            throw ReplicationError(.sqlite, "integrity check of \(path): \(db.errorMessage)")
        }
        defer { vr_sql_finalize(stmt) }
        var lines: [String] = []
        while true {
            let step = vr_sql_step(stmt)
            if step == Int32(VR_SQL_DONE) { break }
            guard step == Int32(VR_SQL_ROW) else {
                // A file too damaged to read at all is a failed check, not an API error.
                return ["SQLite error: \(db.errorMessage)"]
            }
            if let text = vr_sql_column_text(stmt, 0) { lines.append(String(cString: text)) }
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

/// `IntegrityCheck.run` on a thread of its own, started at once: a restore checks the rebuilt
/// file's database checksum meanwhile. Both read the whole file and each keeps one core busy,
/// so side by side they take about as long as the slower of the two instead of their sum.
final class BackgroundIntegrityCheck: @unchecked Sendable {
    private let finished = DispatchSemaphore(value: 0)
    /// Set by the checking thread before it signals `finished`; read only after waiting for it.
    private var outcome: Result<[String]?, any Error> = .success(nil)
    /// Touched only by the thread that calls `wait` (the restore's).
    private var joined = false

    init(path: String, limit: Int = 20) {
        Thread { [self] in
            outcome = Result { try IntegrityCheck.run(path: path, limit: limit) }
            finished.signal()
        }.start()
    }

    /// Waits for the check (once; later calls return the same answer): nil when SQLite said
    /// "ok", else the problems, as `IntegrityCheck.run` gives them.
    func wait() throws -> [String]? {
        if !joined {
            finished.wait()
            joined = true
        }
        return try outcome.get()
    }
}
