import Dispatch
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The command `vfs-replicate exec` runs: started with `posix_spawnp` (PATH lookup, the caller's
/// environment, standard input, output and error inherited), waited for with `waitpid`.
///
/// ```swift
/// let forwarder = SignalForwarder()          // before the spawn: no signal is lost in between
/// let child = try ExecChild.spawn(["bin/rails", "server"])
/// forwarder.attach(child.pid)
/// let end = child.wait()                     // .exited(0), .signaled(SIGKILL), ...
/// ```
public final class ExecChild: Sendable {
    public let pid: pid_t
    public let command: String

    private init(pid: pid_t, command: String) {
        self.pid = pid
        self.command = command
    }

    /// Why a command could not be started.
    public struct SpawnError: Error, Sendable, CustomStringConvertible {
        public var command: String
        public var errno: Int32
        public var exitCode: Int32 { ExecPolicy.spawnFailureExitCode(errno: errno) }
        public var description: String { ExecPolicy.spawnFailureMessage(command: command, errno: errno) }
    }

    public static func spawn(_ arguments: [String]) throws(SpawnError) -> ExecChild {
        precondition(!arguments.isEmpty, "a command is needed")
        let command = arguments[0]
        // An ignored SIGCHLD (inherited from whoever started us) makes the kernel reap the
        // child by itself, and waitpid could never report its status.
        Glibc.signal(SIGCHLD, SIG_DFL)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // `exec` ignores the forwarded signals (a dispatch source handles them) and a thread of
        // ours may block some: the child starts with default actions and nothing blocked, as if
        // the supervisor had started it directly (an ignored signal would stay ignored across
        // exec(2), and Rails would never hear SIGTERM).
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in ExecPolicy.forwardedSignals + [SIGPIPE] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // Only 0, 1 and 2 are the child's: a descriptor of ours (a replica socket, a spool file, a
        // lock) left open in the app would outlive `exec` and keep what it holds. Ours are
        // opened O_CLOEXEC; this also covers those of libraries that forget. glibc 2.34 has it,
        // but behind _GNU_SOURCE, which Swift's Glibc module leaves out: looked up by name.
        if let closeFrom = closeFromAction { _ = closeFrom(&actions, 3) }

        var argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) }
        argv.append(nil)
        defer { for p in argv { free(p) } }
        var pid: pid_t = 0
        let result = posix_spawnp(&pid, command, &actions, &attributes, argv, environ)
        guard result == 0 else { throw SpawnError(command: command, errno: result) }
        return ExecChild(pid: pid, command: command)
    }

    private typealias CloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let closeFromAction: CloseFrom? = {
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np")
        else { return nil }
        return unsafeBitCast(symbol, to: CloseFrom.self)
    }()

    /// Blocks until the child ends (not when it is merely stopped).
    public func wait() -> ExecPolicy.ChildEnd {
        while true {
            var status: Int32 = 0
            let r = waitpid(pid, &status, 0)
            if r == pid, let end = ExecPolicy.childEnd(waitStatus: status) { return end }
            if r < 0 && errno != EINTR {
                // Not our child any more (cannot happen unless someone else reaped it).
                return .exited(255)
            }
        }
    }
}

/// Sends the signals a supervisor gives `exec` (`ExecPolicy.forwardedSignals`) on to the child.
/// Created before the child is spawned: a signal that arrives before `attach` is kept and sent
/// as soon as the child exists.
public final class SignalForwarder: @unchecked Sendable {
    private let lock = NSLock()
    private var pid: pid_t?
    private var held: [Int32] = []
    private var sources: [any DispatchSourceSignal] = []
    private let queue = DispatchQueue(label: "vfs-replicate.exec.signals")
    /// Signals forwarded so far, for the log.
    public private(set) var forwarded: [Int32] = []

    public init() {
        for signal in ExecPolicy.forwardedSignals {
            // The dispatch source sees the signal; the default action (terminate) must not run.
            Glibc.signal(signal, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signal, queue: queue)
            source.setEventHandler { [weak self] in self?.received(signal) }
            source.resume()
            sources.append(source)
        }
    }

    private func received(_ signal: Int32) {
        lock.lock()
        defer { lock.unlock() }
        switch ExecPolicy.action(for: signal, childStarted: pid != nil) {
        case .forward(let s):
            kill(pid!, s)
            forwarded.append(s)
        case .holdForChild(let s):
            held.append(s)
        case .ignore:
            break
        }
    }

    /// The child exists: signals go to it from now on, and those held are sent now.
    public func attach(_ child: pid_t) {
        lock.lock()
        defer { lock.unlock() }
        pid = child
        for s in held {
            kill(child, s)
            forwarded.append(s)
        }
        held = []
    }

    /// The signals held while no child existed (the child could not be started).
    public var heldSignals: [Int32] {
        lock.lock()
        defer { lock.unlock() }
        return held
    }

    /// Stops forwarding (the child has exited): no signal may reach a reused pid.
    public func stop() {
        lock.lock()
        pid = nil
        lock.unlock()
        for s in sources { s.cancel() }
    }
}
