import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The decisions of `vfs-replicate exec` (run a command as a child while replicating), kept apart
/// from the processes and signals so that each is a plain function of its inputs:
///
/// - which signals reach the child, and what a signal does before the child exists;
/// - the exit code: the child's own, 128 + the signal that killed it, 127 / 126 when it could
///   not be started (as shells report them, so Procfile runners and container supervisors read
///   them the usual way);
/// - what to say about the flush after the child exited.
public enum ExecPolicy {
    /// Forwarded to the child: what a supervisor (Docker, systemd, foreman, a terminal) sends to
    /// stop or poke the app. The others keep their default action in `exec` itself.
    public static let forwardedSignals: [Int32] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2]

    public enum SignalAction: Sendable, Equatable {
        /// Send the same signal to the child.
        case forward(Int32)
        /// Keep it until the child is started, then send it (the supervisor asked the app, not
        /// `exec`, and the app is about to exist).
        case holdForChild(Int32)
        /// Not ours to handle.
        case ignore
    }

    public static func action(for signal: Int32, childStarted: Bool) -> SignalAction {
        guard forwardedSignals.contains(signal) else { return .ignore }
        return childStarted ? .forward(signal) : .holdForChild(signal)
    }

    /// How the child ended.
    public enum ChildEnd: Sendable, Equatable, CustomStringConvertible {
        case exited(Int32)
        case signaled(Int32)

        public var description: String {
            switch self {
            case .exited(let code): return "exited with status \(code)"
            case .signaled(let signal): return "was killed by signal \(signal) (\(signalName(signal)))"
            }
        }
    }

    /// Decodes a `waitpid` status (the layout of <sys/wait.h>, which Swift cannot import as
    /// macros): low 7 bits the terminating signal (0: exited), next 8 bits the exit code.
    /// Nil for a stopped or continued child (still alive).
    public static func childEnd(waitStatus status: Int32) -> ChildEnd? {
        let signal = status & 0x7f
        if signal == 0 { return .exited((status >> 8) & 0xff) }
        if signal == 0x7f { return nil }  // stopped
        if status == 0xffff { return nil }  // continued
        return .signaled(signal)
    }

    /// `exec`'s own exit code for how the child ended: the child's status, or 128 + signal.
    public static func exitCode(_ end: ChildEnd) -> Int32 {
        switch end {
        case .exited(let code): return code
        case .signaled(let signal): return 128 + signal
        }
    }

    /// The exit code when the command could not be started (`posix_spawnp` failed with `error`):
    /// 127 when it was not found, 126 when it exists but cannot be executed.
    public static func spawnFailureExitCode(errno error: Int32) -> Int32 {
        switch error {
        case ENOENT, ENOTDIR, ENAMETOOLONG, ELOOP: return 127
        default: return 126
        }
    }

    public static func spawnFailureMessage(command: String, errno error: Int32) -> String {
        let reason = String(cString: strerror(error))
        switch spawnFailureExitCode(errno: error) {
        case 127:
            return command.contains("/")
                ? "cannot run \(command): \(reason)" : "cannot run \(command): not found in PATH (\(reason))"
        default:
            return "cannot run \(command): not executable (\(reason))"
        }
    }

    /// One database's flush after the child exited: nil error when everything it committed is
    /// in its replica.
    public struct FlushResult: Sendable, Equatable {
        public var database: String
        public var error: String?

        public init(database: String, error: String? = nil) {
            self.database = database
            self.error = error
        }
    }

    /// The lines for standard error about the final flush: nothing when every database flushed
    /// (an app's own output should not be drowned), one line per database that did not, and a
    /// last line saying where its commits are (kept in its spool, shipped by the next uploader).
    public static func flushReport(_ results: [FlushResult], timeout: Duration) -> [String] {
        let failed = results.filter { $0.error != nil }
        guard !failed.isEmpty else { return [] }
        var lines = failed.map { "vfs-replicate exec: could not flush \($0.database): \($0.error!)" }
        lines.append(
            "vfs-replicate exec: \(failed.count) of \(results.count) databases not flushed within \(timeout.components.seconds) s; "
                + "their commits stay in the spool beside each database and ship from the next process that replicates it"
        )
        return lines
    }

    /// Why `exec` refuses to start the child after restoring (nil: go ahead).
    public static func restoreRefusal(_ error: String?) -> String? {
        error.map { "vfs-replicate exec: not starting the command: restore failed: \($0)" }
    }

    static func signalName(_ signal: Int32) -> String {
        let names: [Int32: String] = [
            SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGABRT: "SIGABRT",
            SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGUSR1: "SIGUSR1", SIGSEGV: "SIGSEGV",
            SIGUSR2: "SIGUSR2", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM",
        ]
        return names[signal] ?? "signal \(signal)"
    }
}
