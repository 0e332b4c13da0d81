import ArgumentParser
import Foundation
import Logging
import ServiceLifecycle
import VFSReplication
import VFSReplicationService

/// The sidecar: runs the uploaders for every database in a config, for apps whose writers are
/// other processes (other languages, through the loadable extension). Exits cleanly on SIGTERM
/// or SIGINT after flushing.
@main
struct VFSReplicate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vfs-replicate",
        abstract: "Ship the spooled transactions of every configured database to its replica.",
        discussion: """
            Only one process ships a database at a time (a lock beside the database elects it); \
            the others wait and take over when it dies. Writers capture through the `replicated` VFS \
            in their own processes; this command only uploads.
            """)

    @Option(help: "Replication config file (YAML).") var config: String
    @Flag(help: "Ship what is pending, wait until it is durable, and exit.") var once = false
    @Option(help: "With --once: how long to wait for the replicas, in seconds.") var timeout: Int = 120
    @Flag(help: "Log at debug level.") var verbose = false

    func run() async throws {
        var logger = Logger(label: "vfs-replicate")
        logger.logLevel = verbose ? .debug : .info
        let cfg: ReplicationConfig
        do {
            cfg = try ReplicationConfig.load(path: config)
        } catch let error as ReplicationError {
            throw ValidationError(error.message)
        }
        let replicator = try Replicator(config: cfg, logger: logger)
        if once {
            replicator.start()
            do {
                try replicator.flush(timeout: .seconds(timeout))
            } catch let error as ReplicationError {
                replicator.shutdown(timeout: .seconds(5))
                printStatus(replicator)
                FileHandle.standardError.write(Data("vfs-replicate: \(error.message)\n".utf8))
                throw ExitCode(1)
            }
            replicator.shutdown(timeout: .seconds(10))
            printStatus(replicator)
            return
        }
        logger.info("replicating", metadata: ["databases": "\(cfg.databases.count)", "config": "\(config)"])
        let group = ServiceGroup(
            services: [ReplicationService(replicator: replicator)],
            gracefulShutdownSignals: [.sigterm, .sigint],
            logger: logger)
        try await group.run()
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
