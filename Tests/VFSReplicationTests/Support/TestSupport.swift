import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// Shared helpers for tests: temporary directories, child processes, sqlite3 dumps, and the
/// paths of the tools the tests drive (litestream from the project venv, built executables).
enum TestSupport {
    /// The package root (three levels above this file's folder).
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// `.venv/bin/litestream` under the package root, if present and executable.
    static let litestreamPath: String? = {
        let path = packageRoot + "/.venv/bin/litestream"
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }()

    static let sqlite3Path: String? = {
        for dir in ["/usr/bin", "/usr/local/bin", "/bin"] where FileManager.default.isExecutableFile(atPath: dir + "/sqlite3") {
            return dir + "/sqlite3"
        }
        return nil
    }()

    /// Path of a product built next to the test bundle (e.g. `vfs-rebuild`), if it exists.
    static func builtProduct(_ name: String) -> String? {
        var candidates: [String] = []
        let exe = URL(fileURLWithPath: CommandLine.arguments.first ?? "").resolvingSymlinksInPath()
        var dir = exe.deletingLastPathComponent()
        // The test binary may live inside a bundle (`*.xctest/Contents/MacOS`): walk up a bit.
        for _ in 0..<4 {
            candidates.append(dir.appendingPathComponent(name).path)
            dir.deleteLastPathComponent()
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs `body` with a fresh directory that is removed afterwards.
    static func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        return try body(dir)
    }

    static func withTemporaryDirectory<T>(_ body: (String) async throws -> T) async throws -> T {
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        return try await body(dir)
    }

    static func makeTemporaryDirectory() throws -> String {
        var template = Array((NSTemporaryDirectory() + "/vfsrepl-test-XXXXXX").utf8CString)
        guard let result = template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) else {
            throw TestFailure("mkdtemp failed: errno \(errno)")
        }
        return URL(fileURLWithPath: String(cString: result)).standardizedFileURL.path
    }

    struct ProcessResult: CustomStringConvertible {
        var status: Int32
        var stdout: String
        var stderr: String
        var description: String { "exit \(status)\nstdout:\n\(stdout)\nstderr:\n\(stderr)" }
    }

    /// Runs a program to completion and captures its output.
    @discardableResult
    static func run(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil, input: String? = nil,
        currentDirectory: String? = nil
    ) throws -> ProcessResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        let dir = try makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Files, not pipes: a chatty child can never block on a full pipe.
        let outPath = dir + "/stdout", errPath = dir + "/stderr"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        process.standardOutput = out
        process.standardError = err
        let inputPipe = Pipe()
        process.standardInput = inputPipe
        try process.run()
        if let input { inputPipe.fileHandleForWriting.write(Data(input.utf8)) }
        try inputPipe.fileHandleForWriting.close()
        process.waitUntilExit()
        try out.close()
        try err.close()
        return ProcessResult(
            status: process.terminationStatus,
            stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    /// A long-running child (e.g. `litestream replicate`) with output sent to files.
    final class BackgroundProcess {
        let process = Process()
        let logPath: String

        init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, logPath: String) throws {
            self.logPath = logPath
            process.executableURL = URL(fileURLWithPath: executable)
            process.arguments = arguments
            if let environment { process.environment = environment }
            _ = FileManager.default.createFile(atPath: logPath, contents: nil)
            let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
            process.standardOutput = log
            process.standardError = log
            process.standardInput = FileHandle.nullDevice
            try process.run()
        }

        var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

        /// SIGTERM, then wait (SIGKILL after `timeout` seconds).
        func stop(timeout: Double = 20) {
            guard process.isRunning else { return }
            kill(process.processIdentifier, SIGTERM)
            let deadline = Date().addingTimeInterval(timeout)
            while process.isRunning && Date() < deadline { usleep(50_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
        }

        deinit { stop(timeout: 5) }
    }

    /// Runs SQL through the sqlite3 command-line shell.
    @discardableResult
    static func sqlite(_ database: String, _ sql: String) throws -> String {
        guard let sqlite3 = sqlite3Path else { throw TestFailure("sqlite3 CLI not found") }
        let r = try run(sqlite3, ["-bail", database], input: sql)
        guard r.status == 0, r.stderr.isEmpty else { throw TestFailure("sqlite3 \(database) failed: \(r)") }
        return r.stdout
    }

    /// `.dump` of a database, for comparing contents.
    static func dump(_ database: String) throws -> String {
        try sqlite(database, ".dump\n")
    }

    /// The environment for child tools: ours, minus variables that would send litestream to a
    /// custom CA bundle.
    static func childEnvironment() -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        env["AWS_CA_BUNDLE"] = nil
        return env
    }

    /// Polls `condition` every 100 ms until it holds or `timeout` seconds pass.
    static func waitUntil(timeout: Double, _ condition: () throws -> Bool) rethrows -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if try condition() { return true }
            usleep(100_000)
        }
        return try condition()
    }

    /// Deterministic pseudo-random bytes (xorshift), half of them compressible runs.
    static func pageBytes(seed: UInt64, count: Int) -> [UInt8] {
        var state = seed &* 0x9E37_79B9_7F4A_7C15 | 1
        var bytes = [UInt8](repeating: 0, count: count)
        var i = 0
        while i < count {
            state ^= state << 13
            state ^= state >> 7
            state ^= state << 17
            if state & 1 == 0 {
                let run = min(count - i, Int(state >> 58) + 8)
                let value = UInt8(truncatingIfNeeded: state >> 8)
                for j in 0..<run { bytes[i + j] = value }
                i += run
            } else {
                bytes[i] = UInt8(truncatingIfNeeded: state >> 16)
                i += 1
            }
        }
        return bytes
    }

    static func readFile(_ path: String) throws -> [UInt8] {
        [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    static func writeFile(_ path: String, _ bytes: [UInt8]) throws {
        try Data(bytes).write(to: URL(fileURLWithPath: path))
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
