import Foundation
import Testing

@testable import VFSReplication

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
        for dir in ["/usr/bin", "/usr/local/bin", "/bin"]
        where FileManager.default.isExecutableFile(atPath: dir + "/sqlite3") {
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
        let outPath = dir + "/stdout"
        let errPath = dir + "/stderr"
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

        init(_ executable: String, _ arguments: [String], environment: [String: String]? = nil, logPath: String) throws
        {
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

    /// A child's environment for a host that loads the extension with the config at `config`.
    static func extensionEnvironment(config: String) -> [String: String] {
        var e = childEnvironment()
        e["VFS_REPLICATION_CONFIG"] = config
        return e
    }

    /// Writes `dir/replication.yml` for one database `dir/<database>` replicated to the directory
    /// `dir/replica` (`extra`: more keys of that database, indented by four spaces) and loads it.
    static func fileReplicaConfig(dir: String, database: String = "app.db", maxDelay: String, extra: String = "")
        throws -> ReplicationConfig
    {
        let path = dir + "/replication.yml"
        try """
        databases:
          - path: \(database)
            replica:
              url: file://\(dir)/replica
            max-delay: \(maxDelay)
        \(extra)
        """.write(toFile: path, atomically: true, encoding: .utf8)
        return try ReplicationConfig.load(path: path)
    }

    /// Threads of this process named `name` (the kernel keeps its first 15 bytes) and their
    /// context switches, voluntary and not: every wake-up is one.
    static func threads(named name: String) -> (count: Int, switches: Int) {
        let prefix = String(name.prefix(15))
        var count = 0
        var switches = 0
        for tid in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? [] {
            let base = "/proc/self/task/" + tid
            guard let comm = try? String(contentsOfFile: base + "/comm", encoding: .utf8),
                comm.trimmingCharacters(in: .newlines) == prefix
            else { continue }
            count += 1
            let status = (try? String(contentsOfFile: base + "/status", encoding: .utf8)) ?? ""
            for line in status.split(separator: "\n") where line.contains("ctxt_switches") {
                switches += Int(line.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) ?? 0
            }
        }
        return (count, switches)
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

extension TestSupport {
    /// Builds a replica directory from successive states of a database file: a snapshot of the
    /// first state, then one level-0 file per later state holding the pages that changed.
    struct ReplicaBuilder {
        let replica: FileReplicaClient
        let work: String
        var flags: LTXHeader.Flags
        var encoding: LTXPageEncoding
        var txid: UInt64 = 0
        var previous: [UInt8] = []
        var pageSize = 0
        var checksum: UInt64 = 0
        var timestamp = Date(timeIntervalSince1970: 1_750_000_000)
        /// Record our database checksums in the headers' reserved bytes (as the uploader does).
        var recordChecksums = false
        var nodeID: UInt64 = 0
        /// The database file's bytes at each TXID: the writer's own record of every state.
        var states: [UInt64: [UInt8]] = [:]

        init(replicaDirectory: String, work: String, flags: LTXHeader.Flags, encoding: LTXPageEncoding) {
            replica = FileReplicaClient(directory: replicaDirectory)
            self.work = work
            self.flags = flags
            self.encoding = encoding
        }

        /// Publishes the current state of `database` as the next TXID.
        mutating func capture(_ database: String, level: Int = 0) throws {
            let bytes = try TestSupport.readFile(database)
            pageSize = Int(UInt32(bytes[16]) << 8 | UInt32(bytes[17]))
            if pageSize == 1 { pageSize = 65536 }
            let commit = UInt32(bytes.count / pageSize)
            txid += 1
            timestamp += 10
            let minTXID = previous.isEmpty ? 1 : txid
            let path = work + "/next.ltx"
            let header = LTXHeader(
                flags: flags, pageSize: UInt32(pageSize), commit: commit, minTXID: minTXID, maxTXID: txid,
                timestamp: LTXHeader.milliseconds(timestamp),
                preApplyChecksum: minTXID == 1 || flags.contains(.noChecksum) ? 0 : checksum, nodeID: nodeID)
            let pre = minTXID == 1 ? 0 : checksum
            let encoder = try LTXEncoder(path: path, header: header, pageEncoding: encoding)
            var sum = LTXDatabaseChecksum()
            for pgno in 1...Int(commit) {
                let page = Array(bytes[(pgno - 1) * pageSize..<pgno * pageSize])
                sum.add(pgno: UInt32(pgno), page: page)
                let start = (pgno - 1) * pageSize
                let unchanged = previous.count >= pgno * pageSize && Array(previous[start..<start + pageSize]) == page
                if minTXID == 1 || !unchanged { try encoder.writePage(UInt32(pgno), page) }
            }
            checksum = sum.value
            try encoder.finish(
                postApplyChecksum: flags.contains(.noChecksum) ? nil : checksum,
                checksums: recordChecksums ? LTXHeader.DatabaseChecksums(pre: pre, post: checksum) : nil)
            states[txid] = bytes
            try replica.publish(level: level, minTXID: minTXID, maxTXID: txid, localPath: path, timestamp: timestamp)
            previous = bytes
        }
    }

    /// A database with five states (create, update, grow, shrink by VACUUM, grow again), each
    /// captured into `builder` as one TXID. Returns the database path and the `.dump` of every
    /// state by TXID.
    @discardableResult
    static func makeHistory(_ dir: String, _ builder: inout ReplicaBuilder) throws -> (
        database: String, dumps: [UInt64: String]
    ) {
        let db = dir + "/source.db"
        var dumps: [UInt64: String] = [:]
        let steps = [
            """
            PRAGMA page_size=4096;
            CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT);
            WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < 300)
            INSERT INTO t SELECT i, printf('row %d %0200d', i, i) FROM n;
            """,
            "UPDATE t SET v = 'changed ' || id WHERE id % 7 = 0;",
            """
            CREATE INDEX t_v ON t(v);
            WITH RECURSIVE n(i) AS (SELECT 301 UNION ALL SELECT i+1 FROM n WHERE i < 600)
            INSERT INTO t SELECT i, printf('more %d %0300d', i, i) FROM n;
            """,
            "DELETE FROM t WHERE id > 250; VACUUM;",
            """
            WITH RECURSIVE n(i) AS (SELECT 1000 UNION ALL SELECT i+1 FROM n WHERE i < 1200)
            INSERT INTO t SELECT i, printf('again %d %0100d', i, i) FROM n;
            """,
        ]
        for sql in steps {
            try sqlite(db, sql)
            try builder.capture(db)
            dumps[builder.txid] = try dump(db)
        }
        return (db, dumps)
    }
}
