import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// `vfs-replicate exec`'s decisions, apart from processes and signals.
@Suite("Exec policy")
struct ExecPolicyTests {
    @Test func supervisorSignalsGoToTheChildOrWaitForIt() {
        for signal in [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2] {
            #expect(ExecPolicy.action(for: signal, childStarted: true) == .forward(signal))
            #expect(ExecPolicy.action(for: signal, childStarted: false) == .holdForChild(signal))
        }
        // Not a supervisor's: SIGCHLD, SIGPIPE, SIGWINCH stay exec's own business.
        for signal in [SIGCHLD, SIGPIPE, SIGWINCH, SIGALRM] {
            #expect(ExecPolicy.action(for: signal, childStarted: true) == .ignore)
        }
    }

    @Test func waitStatusesDecodeAsTheKernelWritesThem() {
        #expect(ExecPolicy.childEnd(waitStatus: 0) == .exited(0))
        #expect(ExecPolicy.childEnd(waitStatus: 3 << 8) == .exited(3))
        #expect(ExecPolicy.childEnd(waitStatus: 255 << 8) == .exited(255))
        #expect(ExecPolicy.childEnd(waitStatus: SIGKILL) == .signaled(SIGKILL))
        // A core dump sets bit 7; the signal is still the low 7 bits.
        #expect(ExecPolicy.childEnd(waitStatus: 0x80 | SIGSEGV) == .signaled(SIGSEGV))
        // Stopped (WSTOPSIG in the high byte, 0x7f low) and continued: still alive.
        #expect(ExecPolicy.childEnd(waitStatus: (SIGSTOP << 8) | 0x7f) == nil)
        #expect(ExecPolicy.childEnd(waitStatus: 0xffff) == nil)
    }

    @Test func exitCodeIsTheChildsOr128PlusItsSignal() {
        #expect(ExecPolicy.exitCode(.exited(0)) == 0)
        #expect(ExecPolicy.exitCode(.exited(3)) == 3)
        #expect(ExecPolicy.exitCode(.signaled(SIGKILL)) == 137)
        #expect(ExecPolicy.exitCode(.signaled(SIGTERM)) == 143)
    }

    @Test func aCommandThatCannotStartGives127Or126AndSaysWhich() {
        #expect(ExecPolicy.spawnFailureExitCode(errno: ENOENT) == 127)
        #expect(ExecPolicy.spawnFailureExitCode(errno: ENOTDIR) == 127)
        #expect(ExecPolicy.spawnFailureExitCode(errno: EACCES) == 126)
        #expect(ExecPolicy.spawnFailureExitCode(errno: ENOEXEC) == 126)
        #expect(
            ExecPolicy.spawnFailureMessage(command: "no-such-app", errno: ENOENT).contains(
                "no-such-app: not found in PATH"))
        #expect(ExecPolicy.spawnFailureMessage(command: "./app", errno: ENOENT).hasPrefix("cannot run ./app: "))
        #expect(
            ExecPolicy.spawnFailureMessage(command: "./data.txt", errno: EACCES).contains("./data.txt: not executable"))
    }

    @Test func flushReportIsSilentWhenAllFlushedAndNamesEachThatDidNot() {
        let ok = [ExecPolicy.FlushResult(database: "/d/a.db"), ExecPolicy.FlushResult(database: "/d/b.db")]
        #expect(ExecPolicy.flushReport(ok, timeout: .seconds(5)).isEmpty)
        let mixed = ok + [ExecPolicy.FlushResult(database: "/d/c.db", error: "transaction 9 not durable")]
        let lines = ExecPolicy.flushReport(mixed, timeout: .seconds(5))
        #expect(lines.count == 2)
        #expect(lines[0] == "vfs-replicate exec: could not flush /d/c.db: transaction 9 not durable")
        #expect(lines[1].contains("1 of 3 databases not flushed within 5 s"))
        #expect(!lines.joined().contains("/d/a.db"))
    }

    @Test func aFailedRestoreStopsTheStart() {
        #expect(ExecPolicy.restoreRefusal(nil) == nil)
        #expect(
            ExecPolicy.restoreRefusal("/d/a.db: gap")?.contains(
                "not starting the command: restore failed: /d/a.db: gap") == true)
    }
}
