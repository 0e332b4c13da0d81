/// An error from VFSReplication, with the context a user needs to act on it
/// (which database, which replica object, which option).
///
/// ```swift
/// do { try replicator.flush() } catch let error as ReplicationError where error.code == .fenced { ... }
/// ```
public struct ReplicationError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: String, Sendable, Equatable {
        /// The configuration file is invalid (unknown key, bad value, missing field).
        case invalidConfig
        /// A database opened with the VFS is not named in the configuration.
        case unknownDatabase
        /// Another writer owns this replica lineage: a file we meant to create already exists.
        case fenced
        /// A replica file is corrupt (bad checksum, bad header, truncated).
        case corruptReplicaFile
        /// The chain of replica files has a gap or cannot reach the requested point.
        case gap
        /// No replica data at all where some was expected.
        case missingReplica
        /// The local spool is corrupt or inconsistent.
        case corruptSpool
        /// An I/O operation failed (errno given in the message).
        case io
        /// The rebuilt database failed verification.
        case verificationFailed
        /// Invalid argument on the command line or API.
        case invalidArgument
        /// SQLite returned an error.
        case sqlite
        /// A replica object cannot be opened with the configured encryption keys: its key id is
        /// not configured, or the configured key of that id is another key.
        case encryptionKey
        /// The operation timed out.
        case timeout
        /// The replicator was shut down.
        case shutDown
    }

    public let code: Code
    public let message: String

    /// More lines about the problem (e.g. every row `PRAGMA integrity_check` gave), for a
    /// verbose report; `message` is one line on its own.
    public var details: [String] = []

    public init(_ code: Code, _ message: String, details: [String] = []) {
        self.code = code
        self.message = message
        self.details = details
    }

    public var description: String { message }
}
