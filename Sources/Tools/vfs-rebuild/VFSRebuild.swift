import ArgumentParser
import Foundation
import VFSReplication

/// `vfs-rebuild`: rebuild a SQLite database from its LTX replica, or list the replica's files.
/// The work happens in `RebuildTool` (VFSReplication); this only parses arguments.
@main
struct VFSRebuild: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vfs-rebuild",
        abstract: "Rebuild a SQLite database from its replica (LTX files, Litestream 0.5 layout).",
        discussion: """
            Examples:
              vfs-rebuild --replica file:///backups/app --output /tmp/app.db
              vfs-rebuild --config repl.yml --database /data/app.db --output /tmp/app.db --txid 42
              vfs-rebuild --replica file:///backups/app --output /tmp/app.db --timestamp 2025-01-31T12:00:00Z
              vfs-rebuild --list --replica file:///backups/app
            """)

    @Option(help: "Configuration file naming the database and its replica (with --database).")
    var config: String?

    @Option(help: "The database's configured path (with --config).")
    var database: String?

    @Option(help: "Replica location, e.g. file:///backups/app.")
    var replica: String?

    @Option(name: [.short, .long], help: "Where to write the rebuilt database.")
    var output: String?

    @Option(help: "Restore to this transaction: decimal, or 16 hex digits as in file names.")
    var txid: String?

    @Option(help: "Restore to the newest state at or before this ISO 8601 time.")
    var timestamp: String?

    @Flag(help: "Overwrite an existing output file.")
    var force = false

    @Flag(help: "Skip the database checks (integrity_check, database checksum); LTX checksums are always checked.")
    var noVerify = false

    @Flag(help: "List the replica's files (TXID range, time, level, file) instead of restoring.")
    var list = false

    @Flag(name: .shortAndLong, help: "Log each step.")
    var verbose = false

    func validate() throws {
        switch (config, database, replica) {
        case (nil, nil, .some): break
        case (.some, .some, nil): break
        default: throw ValidationError("give either --replica URL, or --config FILE with --database PATH")
        }
        if list {
            if output != nil || txid != nil || timestamp != nil {
                throw ValidationError("--list takes no --output, --txid or --timestamp")
            }
        } else if output == nil {
            throw ValidationError("--output is required (or use --list)")
        }
        if txid != nil && timestamp != nil { throw ValidationError("give at most one of --txid and --timestamp") }
    }

    func run() throws {
        do {
            var invocation = RebuildTool.Invocation(
                source: replica.map { .replica(url: $0) } ?? .config(path: config!, database: database!))
            invocation.output = output
            invocation.list = list
            invocation.force = force
            invocation.verify = !noVerify
            invocation.verbose = verbose
            if let txid { invocation.target = .txid(try RebuildTool.parseTXID(txid)) }
            if let timestamp { invocation.target = .timestamp(try RebuildTool.parseTimestamp(timestamp)) }
            try RebuildTool.run(invocation) { print($0) }
        } catch let error as ReplicationError {
            FileHandle.standardError.write(Data("vfs-rebuild: \(error.message)\n".utf8))
            throw ExitCode.failure
        }
    }
}
