import Foundation
import Logging

/// The logic behind the `vfs-rebuild` command: find the replica, then list it or restore it.
///
/// ```swift
/// var invocation = RebuildTool.Invocation(source: .replica(url: "file:///backups/app"))
/// invocation.output = "/tmp/app.db"
/// try RebuildTool.run(invocation) { print($0) }
/// ```
public enum RebuildTool {
    public enum Source: Sendable, Equatable {
        /// `--replica URL`
        case replica(url: String)
        /// `--config FILE --database PATH`
        case config(path: String, database: String)
    }

    public struct Invocation: Sendable, Equatable {
        public var source: Source
        /// nil with `list`.
        public var output: String?
        public var target: RestoreTarget = .latest
        public var force = false
        public var verify = true
        public var list = false
        public var verbose = false

        public init(source: Source) { self.source = source }
    }

    /// Lists or restores, sending each output line to `emit`. Errors are `ReplicationError`s
    /// whose messages name the replica, file or TXID range concerned.
    public static func run(_ invocation: Invocation, emit: (String) -> Void) throws {
        let client = try replicaClient(invocation.source)
        if invocation.list {
            for line in try listing(client) { emit(line) }
            return
        }
        guard let output = invocation.output else {
            throw ReplicationError(.invalidArgument, "--output is required to restore")
        }
        var logger = Logger(label: "vfsreplication.rebuild")
        logger.logLevel = invocation.verbose ? .debug : .warning
        let result = try ReplicaRestorer.restore(
            from: client, to: output,
            options: RestoreOptions(target: invocation.target, force: invocation.force, verify: invocation.verify),
            logger: logger)
        emit(summary(result, replica: client.location))
    }

    /// The replica a source names.
    public static func replicaClient(_ source: Source) throws -> any ReplicaClient {
        switch source {
        case .replica(let url):
            return try makeReplicaClient(ReplicaConfig(url: url))
        case .config(let path, let database):
            let config = try ReplicationConfig.load(path: path)
            guard let entry = config.database(forPath: database) else {
                let known = config.databases.map(\.path).joined(separator: ", ")
                throw ReplicationError(
                    .unknownDatabase, "database \(database) is not configured in \(path) (configured: \(known))")
            }
            return try makeReplicaClient(entry.replica)
        }
    }

    /// One line per file, ordered by level then TXID:
    /// `<min>-<max>  <time ISO 8601>  level <n>  <file>`.
    public static func listing(_ client: any ReplicaClient) throws -> [String] {
        let files = try ReplicaRestorer.listFiles(client)
        guard !files.isEmpty else { throw ReplicationError(.missingReplica, "no LTX files in \(client.location)") }
        return files.map { file in
            let time = file.createdAt.map(RestorePlanner.format) ?? "-"
            let location = (client as? FileReplicaClient)?.path(of: file) ?? "\(client.location) \(file)"
            return "\(hex16(file.minTXID))-\(hex16(file.maxTXID))  \(time)  level \(file.level)  \(location)"
        }
    }

    public static func summary(_ result: RestoreResult, replica: String) -> String {
        var checks: [String] = ["LTX checksums"]
        if result.checksumVerified { checks.append("database checksum") }
        if result.integrityChecked { checks.append("integrity_check") }
        return "restored \(result.outputPath) from \(replica): TXID \(hex16(result.txid)) (\(result.txid)), "
            + "time \(RestorePlanner.format(result.timestamp)), \(result.pageCount) pages of \(result.pageSize) bytes, "
            + "\(result.files.count) files; verified: \(checks.joined(separator: ", "))"
    }

    /// Decimal (`42`), 16 hex digits as in file names (`000000000000002a`), or `0x2a`.
    public static func parseTXID(_ text: String) throws -> UInt64 {
        let value: UInt64?
        if text.hasPrefix("0x") || text.hasPrefix("0X") {
            value = UInt64(text.dropFirst(2), radix: 16)
        } else if text.count == 16 {
            value = UInt64(text, radix: 16)
        } else {
            value = UInt64(text, radix: 10)
        }
        guard let value, value > 0 else {
            throw ReplicationError(
                .invalidArgument, "invalid TXID \(text): use a positive decimal number or 16 hex digits")
        }
        return value
    }

    /// ISO 8601 with a zone, optionally with fractional seconds: `2025-01-31T12:00:00Z`,
    /// `2025-01-31T12:00:00.250+01:00`.
    public static func parseTimestamp(_ text: String) throws -> Date {
        for options: ISO8601DateFormatter.Options in [
            [.withInternetDateTime, .withFractionalSeconds], [.withInternetDateTime],
        ] {
            let formatter = ISO8601DateFormatter()
            formatter.formatOptions = options
            if let date = formatter.date(from: text) { return date }
        }
        throw ReplicationError(.invalidArgument, "invalid timestamp \(text): use ISO 8601, e.g. 2025-01-31T12:00:00Z")
    }
}
