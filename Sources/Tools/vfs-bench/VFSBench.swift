import ArgumentParser
internal import CSQLite
import Foundation
import VFSReplication

@main
struct VFSBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vfs-bench",
        abstract: "Load generator and benchmarks for the replicated VFS.",
        subcommands: [
            Write.self, Overhead.self, Lag.self, Idle.self, Restore.self, Durable.self, Multi.self, Many.self, Encryption.self,
            Trial.self, LagRun.self,
        ])
}

struct Write: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Commit N transactions of K rows through the replicated VFS, then flush.")

    @Option(help: "Replication config file (YAML).") var config: String?
    @Option(help: "Database path (as named in the config).") var database: String
    @Option(help: "Transactions to commit.") var transactions: Int = 1000
    @Option(help: "Rows inserted per transaction.") var rowsPerTransaction: Int = 1
    @Option(help: "Payload bytes per row.") var payloadBytes: Int = 100
    @Option(help: "PRAGMA synchronous: normal or full.") var synchronous: String = "normal"
    @Flag(help: "Open with the default VFS, no replication (baseline).") var plain = false
    @Flag(help: "Capture only: do not run an uploader in this process (a sidecar ships).") var noUpload = false
    @Flag(help: "After committing, print 'committed' and wait to be killed, without flushing (crash tests).")
    var hold = false

    func validate() throws {
        guard ["normal", "full"].contains(synchronous.lowercased()) else {
            throw ValidationError("--synchronous must be normal or full, not '\(synchronous)'")
        }
        if !plain && config == nil { throw ValidationError("--config is required unless --plain is given") }
    }

    func run() throws {
        var replicator: Replicator?
        var path = database
        if !plain, let config {
            let cfg = try ReplicationConfig.load(path: config)
            let resolved = URL(fileURLWithPath: database, relativeTo: URL(fileURLWithPath: FileManager.default.currentDirectoryPath)).standardizedFileURL.path
            guard let db = cfg.database(forPath: resolved) ?? cfg.database(forPath: database) else {
                throw ValidationError("database \(database) is not named in \(config)")
            }
            path = db.path
            let r = try Replicator(config: cfg)
            if !noUpload {
                r.start()
                replicator = r
            }
        }
        var db: OpaquePointer?
        let rc = sqlite3_open_v2(
            path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, plain ? nil : ReplicatedVFS.name)
        guard rc == SQLITE_OK, let db else {
            throw ValidationError("cannot open \(path): \(db.map { String(cString: sqlite3_errmsg($0)) } ?? "\(rc)")")
        }
        defer { sqlite3_close_v2(db) }
        func exec(_ sql: String) throws {
            guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else {
                throw ValidationError("\(path): \(sql): \(String(cString: sqlite3_errmsg(db)))")
            }
        }
        sqlite3_busy_timeout(db, 10_000)
        try exec("PRAGMA journal_mode=WAL")
        try exec("PRAGMA synchronous=\(synchronous.uppercased())")
        try exec("CREATE TABLE IF NOT EXISTS bench(id INTEGER PRIMARY KEY, tx INTEGER NOT NULL, payload BLOB)")
        var maxTx: Int64 = 0
        var stmt: OpaquePointer?
        sqlite3_prepare_v2(db, "SELECT coalesce(max(tx), 0) FROM bench", -1, &stmt, nil)
        if sqlite3_step(stmt) == SQLITE_ROW { maxTx = sqlite3_column_int64(stmt, 0) }
        sqlite3_finalize(stmt)
        var ins: OpaquePointer?
        sqlite3_prepare_v2(db, "INSERT INTO bench(tx, payload) VALUES (?, randomblob(?))", -1, &ins, nil)
        defer { sqlite3_finalize(ins) }
        let start = Date()
        for i in 0..<transactions {
            try exec("BEGIN")
            for _ in 0..<rowsPerTransaction {
                sqlite3_bind_int64(ins, 1, maxTx + Int64(i) + 1)
                sqlite3_bind_int64(ins, 2, Int64(payloadBytes))
                guard sqlite3_step(ins) == SQLITE_DONE else {
                    throw ValidationError("\(path): insert: \(String(cString: sqlite3_errmsg(db)))")
                }
                sqlite3_reset(ins)
            }
            try exec("COMMIT")
        }
        let elapsed = Date().timeIntervalSince(start)
        if hold {
            print("committed \(transactions)")
            fflush(nil)
            while true { sleep(60) }
        }
        if let replicator {
            try replicator.flush()
            replicator.shutdown()
        }
        print(String(format: "committed %d transactions in %.3f s (%.0f tx/s)", transactions, elapsed, Double(transactions) / max(elapsed, 1e-9)))
    }
}
