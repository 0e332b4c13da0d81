import Foundation
import Logging
import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// The Swift side of libvfsreplication.so: one Replicator per process, started from a config
/// file the first time the extension is loaded with one, flushed when the process exits.
///
/// At exit SQLite is off limits (the sqlite3 CLI's log callback points into its returned
/// main()), so the exit flush ships only what the spool holds; the snapshot a new backup starts
/// with is waited for when the host closes its last connection to the database, while SQLite
/// still works.
///
/// Forking hosts load it, then fork: the state is guarded by the shim's process lock (consistent
/// in a child, unlike a Foundation lock another thread may have held at the fork), and the
/// Replicator builds new uploaders in a child, so a child's exit flushes through whichever
/// process is the uploader and waits only for its own threads.
final class ExtensionState: @unchecked Sendable {
    static let shared = ExtensionState()
    // Guarded by Replicator.withProcessLock:
    private var replicator: Replicator?
    private var configPath: String?
    /// `VFS_REPLICATION_EXIT_FLUSH_SECONDS`, checked when replication starts.
    private var exitFlushTimeout = EnvironmentSettings.defaultExitFlushTimeout

    func start(configPath: String) throws {
        try Replicator.withProcessLock { try startLocked(configPath: configPath) }
    }

    private func startLocked(configPath: String) throws {
        let absolute = URL(fileURLWithPath: configPath).standardizedFileURL.path
        if let current = self.configPath {
            guard current == absolute else {
                throw ReplicationError(
                    .invalidArgument,
                    "already replicating with \(current); one config per process (asked for \(absolute))")
            }
            return
        }
        var logger = Logger(label: "vfs-replication")
        logger.logLevel = ProcessInfo.processInfo.environment["VFS_REPLICATION_DEBUG"] != nil ? .debug : .notice
        // Everything that can be wrong is found before a thread starts (see entry.c).
        let exitFlushTimeout = try EnvironmentSettings.exitFlushTimeout()
        let config = try ReplicationConfig.load(path: absolute)
        let replicator = try Replicator(config: config, logger: logger)
        replicator.start()
        self.replicator = replicator
        self.exitFlushTimeout = exitFlushTimeout
        self.configPath = absolute
        // A base snapshot needs SQLite, which the exit handler cannot use: the host's last
        // connection to close waits for it instead (vr_set_close_wait).
        ReplicatedVFS.setLastCloseWait(exitFlushTimeout)
        atexit {
            // First: the host's main() has returned, and what its SQLite log callback points at
            // may be gone; from here on nothing of ours runs SQLite (vr_process_exit_begin).
            ReplicatedVFS.beginProcessExit()
            ExtensionState.shared.flushAtExit()
        }
    }

    func flushAtExit() {
        let (r, timeout) = Replicator.withProcessLock { (replicator, exitFlushTimeout) }
        guard let r else { return }
        do {
            try r.flush(timeout: timeout)
        } catch {
            let message = (error as? ReplicationError)?.message ?? "\(error)"
            FileHandle.standardError.write(Data("vfsreplication: flush at exit failed: \(message)\n".utf8))
        }
        r.shutdown(timeout: .seconds(5))
    }
}

extension ExtensionState {
    /// The running replicator and its config file (relative paths start in the file's folder).
    private func running(for call: String) throws -> (replicator: Replicator, configPath: String) {
        let (replicator, configPath) = Replicator.withProcessLock { (self.replicator, self.configPath) }
        guard let replicator, let configPath else {
            throw ReplicationError(
                .invalidArgument,
                "\(call): replication is not running in this process; set VFS_REPLICATION_CONFIG or call vfs_replication_config(path) first"
            )
        }
        return (replicator, configPath)
    }

    /// `path` as the config file would read it: relative to its folder.
    private static func absolute(_ path: String, _ base: String) -> String {
        URL(fileURLWithPath: path, relativeTo: URL(fileURLWithPath: base, isDirectory: true)).standardizedFileURL.path
    }

    /// `vfs_replication_add(path, replica_url)`: replicates one more database from now on, with
    /// the settings of the config file's `defaults` (max-delay, levels, S3 endpoint and
    /// credentials, encryption, price list), as if the file listed it. Returns its absolute path.
    func add(path: String, replicaURL: String) throws -> String {
        let call = "vfs_replication_add('\(path)', '\(replicaURL)')"
        let (replicator, configPath) = try running(for: call)
        let db: DatabaseConfig
        do {
            db = try ReplicationConfig.addedDatabase(
                configPath: configPath, databasePath: path, replicaURL: replicaURL)
        } catch let error as ReplicationError {
            throw ReplicationError(error.code, "\(call): \(error.message)")
        }
        try replicator.addDatabase(db)
        return db.path
    }

    /// `vfs_replication_remove(path)`: ships what the database committed, then stops
    /// replicating it. False if it was not replicated.
    func remove(path: String) throws -> Bool {
        let (replicator, configPath) = try running(for: "vfs_replication_remove('\(path)')")
        let base = URL(fileURLWithPath: configPath).deletingLastPathComponent().path
        return replicator.removeDatabase(path: Self.absolute(path, base))
    }
}

/// Called by the C entry point. Returns 0, or non-zero with a message in `err`.
@_cdecl("vr_extension_start")
func vr_extension_start(_ configPath: UnsafePointer<CChar>, _ err: UnsafeMutablePointer<CChar>, _ errLen: Int32)
    -> Int32
{
    do {
        try ExtensionState.shared.start(configPath: String(cString: configPath))
        return 0
    } catch {
        let message = (error as? ReplicationError)?.message ?? "\(error)"
        _ = message.withCString { strncpy(err, $0, Int(errLen) - 1) }
        return 1
    }
}

/// `vfs_replication_add(path, replica_url)`. Returns 0 with the database's absolute path in
/// `out`, or non-zero with a message there.
@_cdecl("vr_extension_add")
func vr_extension_add(
    _ path: UnsafePointer<CChar>, _ url: UnsafePointer<CChar>, _ out: UnsafeMutablePointer<CChar>, _ outLen: Int32
) -> Int32 {
    do {
        let added = try ExtensionState.shared.add(path: String(cString: path), replicaURL: String(cString: url))
        _ = added.withCString { strncpy(out, $0, Int(outLen) - 1) }
        return 0
    } catch {
        let message = (error as? ReplicationError)?.message ?? "\(error)"
        _ = message.withCString { strncpy(out, $0, Int(outLen) - 1) }
        return 1
    }
}

/// `vfs_replication_remove(path)`. Returns 1 (removed), 0 (was not replicated), or -1 with a
/// message in `err`.
@_cdecl("vr_extension_remove")
func vr_extension_remove(_ path: UnsafePointer<CChar>, _ err: UnsafeMutablePointer<CChar>, _ errLen: Int32) -> Int32 {
    do {
        return try ExtensionState.shared.remove(path: String(cString: path)) ? 1 : 0
    } catch {
        let message = (error as? ReplicationError)?.message ?? "\(error)"
        _ = message.withCString { strncpy(err, $0, Int(errLen) - 1) }
        return -1
    }
}
