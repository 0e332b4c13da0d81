import ArgumentParser
import Foundation
import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// `vfs-rebuild`: rebuild SQLite databases from their LTX replicas, or list or plan a restore.
/// The work happens in `RebuildTool` (VFSReplication); this only parses arguments and draws
/// progress on standard error.
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
              vfs-rebuild --dry-run --replica file:///backups/app --timestamp 2025-01-31T12:00:00Z
              vfs-rebuild --config repl.yml --all --if-db-not-exists      # before the app starts
              vfs-rebuild --config repl.yml --all --timestamp 2025-01-31T12:00:00Z --dry-run
              vfs-rebuild --config repl.yml --all --timestamp 2025-01-31T12:00:00Z --output-dir /tmp/at-noon
              vfs-rebuild --replica s3://bucket/app --encryption-key k2=env:KEY_K2 --encryption-key k1=file:/run/k1 -o /tmp/app.db

            With --all --timestamp T every configured database goes back to its newest restore point \
            at or before T, so that they form one application state; the plan shows each chosen TXID, \
            its time and the skew between them. All or nothing: if one database cannot be restored to \
            T (no restore point at or before it, an output that exists or is in use), none is written.
            """)

    @Option(help: "Configuration file naming the databases and their replicas (with --database or --all).")
    var config: String?

    @Option(help: "The database's configured path (with --config); the default output.")
    var database: String?

    @Flag(help: "Restore every database of --config to its configured path.")
    var all = false

    @Option(help: "Replica location, e.g. file:///backups/app.")
    var replica: String?

    @Option(
        name: .customLong("encryption-key"),
        help: ArgumentHelp(
            "A key of an encrypted --replica, as ID=env:VARIABLE or ID=file:PATH (repeat for older keys).",
            valueName: "ID=SOURCE"))
    var encryptionKeys: [String] = []

    @Option(name: [.short, .long], help: "Where to write the rebuilt database (default with --database: its path).")
    var output: String?

    @Option(help: "With --all: write each database into this folder, under its file name, instead of its path.")
    var outputDir: String?

    @Option(help: "Restore to this transaction: decimal, or 16 hex digits as in file names.")
    var txid: String?

    @Option(help: "Restore to the newest state at or before this ISO 8601 time.")
    var timestamp: String?

    @Flag(help: "Overwrite an existing output file.")
    var force = false

    @Flag(name: .customLong("if-db-not-exists"), help: "Do nothing (and succeed) when the output file exists.")
    var ifDatabaseNotExists = false

    @Flag(help: "Do nothing (and succeed) when the replica has no files.")
    var ifReplicaExists = false

    @Flag(
        help:
            "Skip PRAGMA integrity_check; LTX file checksums, the chain of database checksums and lineages, and the final database checksum are always checked."
    )
    var noVerify = false

    @Flag(help: "List the replica by level: files, sizes, restore points and their times.")
    var list = false

    @Flag(help: "Print the restore plan (files, bytes, requests) without downloading anything.")
    var dryRun = false

    @Flag(help: "Print one JSON document instead of text.")
    var json = false

    @Option(help: "Files downloaded at once.")
    var downloads = 4

    @Flag(name: .shortAndLong, help: "No progress on standard error.")
    var quiet = false

    @Flag(name: .shortAndLong, help: "Log each step.")
    var verbose = false

    func validate() throws {
        switch (config, database, all, replica) {
        case (nil, nil, false, .some): break
        case (.some, .some, false, nil): break
        case (.some, nil, true, nil): break
        default:
            throw ValidationError(
                "give either --replica URL, or --config FILE with --database PATH, or --config FILE with --all")
        }
        if list && dryRun { throw ValidationError("give at most one of --list and --dry-run") }
        if list && (output != nil || txid != nil || timestamp != nil) {
            throw ValidationError("--list takes no --output, --txid or --timestamp")
        }
        if all && (list || output != nil) {
            throw ValidationError("--all restores each database to its configured path or --output-dir: no --list, --output")
        }
        if outputDir != nil && !all { throw ValidationError("--output-dir needs --all (for one database, use --output)") }
        if all && txid != nil {
            throw ValidationError("--all takes no --txid (TXIDs are each database's own); restore to one time with --timestamp")
        }
        if all && timestamp != nil && ifDatabaseNotExists {
            throw ValidationError(
                "--if-db-not-exists cannot be combined with --all --timestamp: a database left as it is would not be at that time")
        }
        if !list && !dryRun && !all && output == nil && database == nil {
            throw ValidationError("--output is required (or use --list or --dry-run)")
        }
        if !encryptionKeys.isEmpty && replica == nil {
            throw ValidationError("--encryption-key goes with --replica; a configured replica has its own 'encryption' keys")
        }
        if txid != nil && timestamp != nil { throw ValidationError("give at most one of --txid and --timestamp") }
        if downloads < 1 || downloads > 64 { throw ValidationError("--downloads must be between 1 and 64") }
    }

    func run() throws {
        do {
            let source: RebuildTool.Source
            if let replica {
                source = .replica(url: replica)
            } else if all {
                source = .allConfigured(path: config!)
            } else {
                source = .config(path: config!, database: database!)
            }
            var invocation = RebuildTool.Invocation(source: source)
            invocation.output = output
            invocation.outputDir = outputDir
            invocation.list = list
            invocation.dryRun = dryRun
            invocation.json = json
            invocation.force = force
            invocation.verify = !noVerify
            invocation.ifDatabaseNotExists = ifDatabaseNotExists
            invocation.ifReplicaExists = ifReplicaExists
            invocation.downloads = downloads
            invocation.verbose = verbose
            invocation.encryption = try ReplicaEncryption.fromArguments(encryptionKeys)
            if let txid { invocation.target = .txid(try RebuildTool.parseTXID(txid)) }
            if let timestamp { invocation.target = .timestamp(try RebuildTool.parseTimestamp(timestamp)) }
            let terminal = isatty(STDERR_FILENO) != 0
            let drawer = ProgressDrawer(terminal: terminal)
            let showProgress = !quiet && (terminal || !json)
            try RebuildTool.run(
                invocation, emit: { print($0) },
                progress: showProgress ? { name, progress in drawer.draw(name, progress) } : nil)
        } catch let error as ReplicationError {
            // One line (whatever a message holds); the details only with --verbose.
            let line = error.message.split(whereSeparator: \.isNewline).joined(separator: " ")
            let hint = !verbose && !error.details.isEmpty ? " (--verbose shows the details)" : ""
            FileHandle.standardError.write(Data("vfs-rebuild: \(line)\(hint)\n".utf8))
            if verbose {
                for detail in error.details { FileHandle.standardError.write(Data("  \(detail)\n".utf8)) }
            }
            throw ExitCode.failure
        }
    }
}

/// Draws restore progress on standard error: a bar on a terminal, plain lines otherwise.
final class ProgressDrawer {
    private let terminal: Bool
    private var renderer: RestoreProgressRenderer
    private var current: String?

    init(terminal: Bool) {
        self.terminal = terminal
        renderer = RestoreProgressRenderer(terminal: terminal)
    }

    func draw(_ name: String, _ progress: RestoreProgress) {
        if name != current {
            current = name
            renderer = RestoreProgressRenderer(terminal: terminal)
            if !terminal { FileHandle.standardError.write(Data("restore: \(name)\n".utf8)) }
        }
        let now = Date().timeIntervalSinceReferenceDate
        if let text = renderer.render(progress, now: now) {
            FileHandle.standardError.write(Data(text.utf8))
        }
    }
}
