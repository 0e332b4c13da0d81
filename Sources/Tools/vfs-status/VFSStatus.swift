import ArgumentParser
import Foundation
import Logging
import VFSReplication

/// `vfs-status`: is every configured database replicating? One line (or a JSON object) per
/// database; the exit code says whether all are healthy, so it serves as a health check. With
/// `--verify`, rebuilds one database's replica and compares it with the live database. The work
/// happens in VFSReplication (`StatusReport`, `ReplicaVerifier`).
@main
struct VFSStatus: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vfs-status",
        abstract: "Show the replication status of every configured database; exit 1 if any is unhealthy.",
        discussion: """
            A database is unhealthy when its lag exceeds --max-lag (default: the larger of 60 s and three \
            times its max-delay), when it is fenced (another writer owns its replica), when its uploader \
            keeps failing, when transactions wait and no uploader runs, or when its last verification failed.

            Examples:
              vfs-status --config config/replication.yml
              vfs-status --config config/replication.yml --json --max-lag 30
              vfs-status --config config/replication.yml --verify storage/production.sqlite3
            """)

    @Option(help: "Replication config file (YAML).") var config: String
    @Flag(help: "Print one JSON document instead of text.") var json = false
    @Option(help: "Unhealthy when the oldest undurable commit is older than this many seconds.")
    var maxLag: Double?
    @Option(
        help: ArgumentHelp(
            "Rebuild this database's replica at the live database's current TXID and compare them page by page.",
            valueName: "database"))
    var verify: String?
    @Option(help: "With --verify: give up after this many seconds.") var timeout: Int = 300
    @Option(help: "With --verify: where to write the two copies (default: beside the database).")
    var tempDir: String?
    @Flag(name: .shortAndLong, help: "Log each step of --verify.") var verbose = false

    func validate() throws {
        // `!(x > 0)` also catches nan; the bound keeps `Int64(maxLag * 1000)` from trapping.
        if let maxLag, !(maxLag > 0 && maxLag <= 366 * 86400) {
            throw ValidationError("--max-lag must be a number of seconds above 0 and at most a year (31622400)")
        }
        if !(1...(7 * 86400)).contains(timeout) { throw ValidationError("--timeout must be 1 to 604800 seconds") }
    }

    func run() throws {
        let cfg: ReplicationConfig
        do {
            cfg = try ReplicationConfig.load(path: config)
        } catch let error as ReplicationError {
            throw ValidationError(error.message)
        }
        if let verify {
            try runVerify(cfg, database: verify)
            return
        }
        let policy = HealthPolicy(maxLag: maxLag.map { .milliseconds(Int64($0 * 1000)) })
        let reports = StatusReport.collect(config: cfg, policy: policy)
        if json {
            let document = StatusDocument(reports: reports)
            print(String(decoding: try document.jsonData(), as: UTF8.self))
        } else {
            for report in reports {
                print(report.summaryLine())
                print("  " + report.costLine())
            }
            print(CostTotals(reports.map(\.costs)).summary())
        }
        if !reports.allSatisfy(\.healthy) { throw ExitCode(1) }
    }

    private func runVerify(_ cfg: ReplicationConfig, database: String) throws {
        guard let db = cfg.database(forPath: database) else {
            throw ValidationError("\(database) is not a database of \(config)")
        }
        var logger = Logger(label: "vfs-status")
        logger.logLevel = verbose ? .debug : .warning
        let record: VerificationRecord
        do {
            record = try ReplicaVerifier.verify(
                database: db, options: VerifyOptions(timeout: .seconds(timeout), temporaryDirectory: tempDir),
                logger: logger)
        } catch let error as ReplicationError {
            FileHandle.standardError.write(Data("vfs-status: \(error.message)\n".utf8))
            throw ExitCode(2)
        }
        if json {
            let encoder = UploaderRecord.makeEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes]
            print(String(decoding: try encoder.encode(record), as: UTF8.self))
        } else {
            print("\(db.path): \(record.passed ? "verified" : "VERIFICATION FAILED"): \(record.message)")
        }
        if !record.passed { throw ExitCode(1) }
    }
}
