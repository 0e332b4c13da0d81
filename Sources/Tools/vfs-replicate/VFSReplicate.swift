import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import VFSReplication
import VFSReplicationDashboard
import VFSReplicationService

/// The sidecar: runs the uploaders for every database in a config, for apps whose writers are
/// other processes (other languages, through the loadable extension), and optionally the status
/// page. `vfs-replicate init` writes a starter config.
@main
struct VFSReplicate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vfs-replicate",
        abstract: "Ship the spooled transactions of every configured database to its replica.",
        subcommands: [Run.self, Init.self, Exec.self],
        defaultSubcommand: Run.self)
}

/// `vfs-replicate [run] --config FILE [--once] [--http HOST:PORT]`.
struct Run: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Ship the spooled transactions of every configured database to its replica (the default).",
        discussion: """
            Only one process ships a database at a time (a lock beside the database elects it); \
            the others wait and take over when it dies. Writers capture through the `replicated` VFS \
            in their own processes; this command only uploads. Exits cleanly on SIGTERM or SIGINT \
            after flushing.

            With --http it also serves the status page (HTML at /, /status.json, Prometheus text at \
            /metrics) with HTTP Basic authentication from VFS_STATUS_USER and VFS_STATUS_PASSWORD; \
            --http-no-auth serves it without credentials, on a loopback address only.
            """)

    @Option(help: "Replication config file (YAML).") var config: String
    @Flag(help: "Ship what is pending, wait until it is durable, and exit.") var once = false
    @Option(help: "With --once: how long to wait for the replicas, in seconds.") var timeout: Int = 120
    @Option(help: ArgumentHelp("Serve the status page on this address.", valueName: "host:port"))
    var http: String?
    @Flag(help: "Serve the status page without credentials (loopback addresses only).") var httpNoAuth = false
    @Flag(help: "Log at debug level.") var verbose = false

    func validate() throws {
        if once && http != nil { throw ValidationError("--http cannot be combined with --once") }
        if httpNoAuth && http == nil { throw ValidationError("--http-no-auth needs --http") }
        // Converted to milliseconds on the way: bounded so the arithmetic cannot overflow.
        if !(1...(7 * 86400)).contains(timeout) { throw ValidationError("--timeout must be 1 to 604800 seconds") }
    }

    func run() async throws {
        var logger = Logger(label: "vfs-replicate")
        logger.logLevel = verbose ? .debug : .info
        let cfg: ReplicationConfig
        do {
            cfg = try ReplicationConfig.load(path: config)
        } catch let error as ReplicationError {
            throw ValidationError(error.message)
        }
        var services: [any Service] = []
        if let http {
            let auth: StatusPageAuth
            if httpNoAuth {
                auth = .disabled
            } else if let fromEnvironment = StatusPageAuth.environment() {
                auth = fromEnvironment
            } else {
                throw ValidationError(
                    "--http needs VFS_STATUS_USER and VFS_STATUS_PASSWORD in the environment (or --http-no-auth on a loopback address)"
                )
            }
            let page = StatusPage(config: cfg, options: StatusPageOptions(auth: auth))
            do {
                services.append(try StatusPageServer(page: page, address: http, logger: logger))
            } catch let error as ReplicationError {
                throw ValidationError(error.message)
            }
        }
        // status.json beside each database, for vfs-status and the status page of any process.
        let status = StatusFileObserver(config: cfg, logger: logger)
        let replicator = try Replicator(config: cfg, logger: logger, observers: [status])
        if once {
            replicator.start()
            do {
                try replicator.flush(timeout: .seconds(timeout))
            } catch let error as ReplicationError {
                replicator.shutdown(timeout: .seconds(5))
                status.flush()
                printStatus(replicator)
                FileHandle.standardError.write(Data("vfs-replicate: \(error.message)\n".utf8))
                throw ExitCode(1)
            }
            replicator.shutdown(timeout: .seconds(10))
            status.flush()
            printStatus(replicator)
            return
        }
        logger.info("replicating", metadata: ["databases": "\(cfg.databases.count)", "config": "\(config)"])
        let group = ServiceGroup(
            services: [ReplicationService(replicator: replicator)] + services,
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        try await group.run()
        status.flush()
        printStatus(replicator)
    }

    private func printStatus(_ replicator: Replicator) {
        for s in replicator.status() {
            var line = "\(s.path): durable TXID \(s.durableTXID) of \(s.localTXID), \(s.filesUploaded) files uploaded"
            if s.fenced { line += ", FENCED" }
            if let e = s.lastError { line += ", last error: \(e)" }
            print(line)
        }
    }
}
