import ArgumentParser
import Foundation
import Logging
import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// `vfs-replicate exec --config FILE [--restore-if-missing] -- CMD ARGS...`: replicate while one
/// command runs, for a Procfile or a container's single entry point. The decisions (signals,
/// exit codes, what to report) are `ExecPolicy`'s; this wires them to the processes.
struct Exec: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "exec",
        abstract: "Run a command while replicating its databases; flush when it exits.",
        discussion: """
            Starts the uploaders for every configured database, then runs the command (found in \
            PATH) with this process's standard input, output, error and environment. SIGTERM, \
            SIGINT, SIGHUP, SIGQUIT, SIGUSR1 and SIGUSR2 are passed on to it. When it exits, every \
            database's spool is flushed to its replica (at most --flush-timeout seconds; a database \
            that could not be flushed is named on standard error and its commits stay in the spool), \
            then this exits with the command's status (128 + the signal if it was killed by one; \
            127 if it could not be found, 126 if it could not be executed).

            The command writes the databases through the `replicated` VFS (the loadable extension \
            or the Swift library). Only one process ships a database at a time: this one, started \
            first, is normally the elected uploader and the command's own uploaders wait; if the \
            command's process holds a database's election, it ships, and this process takes over \
            within a second of its exit.

            With --restore-if-missing, each configured database whose file does not exist is first \
            restored from its replica (a replica without files is a new database: skipped); if a \
            restore fails, the command is not started.

            Examples:
              vfs-replicate exec --config config/replication.yml -- bin/rails server
              vfs-replicate exec --config repl.yml --restore-if-missing -- bundle exec puma
            """)

    @Option(help: "Replication config file (YAML).") var config: String
    @Flag(help: "Restore each database whose file is missing from its replica before starting the command.")
    var restoreIfMissing = false
    @Option(help: "After the command exits: how long to wait for the replicas, in seconds.")
    var flushTimeout: Int = 30
    @Flag(help: "Log at debug level (on standard error).") var verbose = false
    @Argument(parsing: .postTerminator, help: "The command and its arguments, after --.")
    var command: [String] = []

    func validate() throws {
        if command.isEmpty {
            throw ValidationError(
                "name the command to run after --, e.g. vfs-replicate exec --config FILE -- bin/rails server")
        }
        if !(0...86400).contains(flushTimeout) { throw ValidationError("--flush-timeout must be 0 to 86400 seconds") }
    }

    func run() throws {
        var logger = Logger(label: "vfs-replicate")
        // The app's own output comes first: only problems unless asked.
        logger.logLevel = verbose ? .debug : .warning
        let cfg: ReplicationConfig
        do {
            cfg = try ReplicationConfig.load(path: config)
        } catch let error as ReplicationError {
            throw ValidationError(error.message)
        }
        if restoreIfMissing {
            // Before any uploader exists: a restore refuses a database that a process replicates.
            var invocation = RebuildTool.Invocation(source: .allConfigured(path: config))
            invocation.ifDatabaseNotExists = true
            invocation.ifReplicaExists = true
            invocation.verbose = verbose
            do {
                try RebuildTool.run(invocation, emit: { say($0) })
            } catch let error as ReplicationError {
                say(ExecPolicy.restoreRefusal(error.message)!)
                throw ExitCode(1)
            }
        }
        let status = StatusFileObserver(config: cfg, logger: logger)
        let replicator: Replicator
        do {
            replicator = try Replicator(config: cfg, logger: logger, observers: [status])
        } catch let error as ReplicationError {
            say("vfs-replicate exec: not starting the command: \(error.message)")
            throw ExitCode(1)
        }
        replicator.start()

        let forwarder = SignalForwarder()
        let child: ExecChild
        do {
            child = try ExecChild.spawn(command)
        } catch {
            forwarder.stop()
            say("vfs-replicate exec: \(error)")
            finish(replicator, status)
            throw ExitCode(error.exitCode)
        }
        forwarder.attach(child.pid)
        logger.debug("started", metadata: ["command": "\(command.joined(separator: " "))", "pid": "\(child.pid)"])
        let end = child.wait()
        forwarder.stop()
        logger.debug("command ended", metadata: ["how": "\(end)"])

        let results = replicator.flushEach(timeout: .seconds(flushTimeout)).map {
            ExecPolicy.FlushResult(database: $0.database, error: $0.error?.message)
        }
        for line in ExecPolicy.flushReport(results, timeout: .seconds(flushTimeout)) { say(line) }
        finish(replicator, status)
        throw ExitCode(ExecPolicy.exitCode(end))
    }

    /// Stops the uploaders; everything flushable was flushed already, so briefly.
    private func finish(_ replicator: Replicator, _ status: StatusFileObserver) {
        replicator.shutdown(timeout: .seconds(2))
        status.flush()
    }

    private func say(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}
