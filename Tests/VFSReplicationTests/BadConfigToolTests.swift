import Foundation
import Testing

@testable import VFSReplication

/// Every tool given a bad configuration exits with one line naming the file, never a crash:
/// nesting 20,000 deep overflowed Yams' stack in vfs-status, vfs-replicate and vfs-rebuild (SIGSEGV),
/// and a database path naming a folder let `vfs-replicate --once` exit 0 with nothing shipped.
@Suite("Bad configs in the tools", .serialized)
struct BadConfigToolTests {
    private func badConfigs(_ dir: String) throws -> [(name: String, path: String, error: String)] {
        var configs: [(String, String, String)] = []
        func add(_ name: String, _ text: String, _ error: String) throws {
            let path = dir + "/\(name).yml"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            configs.append((name, path, error))
        }
        try add(
            "flow-nesting", "databases: " + String(repeating: "[", count: 20000) + String(repeating: "]", count: 20000),
            "nest more than")
        try add("block-nesting", "databases:\n" + String(repeating: "- ", count: 30000) + "x\n", "nest more than")
        var laughs = "laughs:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        for level in 1...9 {
            laughs += "  l\(level): &l\(level) [" + Array(repeating: "*l\(level - 1)", count: 10).joined(separator: ", ")
                + "]\n"
        }
        try add("laughs", laughs + "databases: *l9\n", "through aliases")
        try FileManager.default.createDirectory(atPath: dir + "/data", withIntermediateDirectories: true)
        try add("folder", "databases:\n  - path: data\n    replica: {url: \(dir)/replica}\n", "names a folder")
        try add("nan", "databases:\n  - path: db.sqlite3\n    replica: {url: \(dir)/replica}\n    max-delay: nan\n", "nan")
        return configs
    }

    /// Runs `tool` and expects a failed exit (1, or 64 for a usage error; a crash ends with a
    /// signal's number) with the error on one line (usage hints aside) that names the file.
    private func expectOneLineFailure(
        _ tool: String, _ arguments: [String], config: (name: String, path: String, error: String),
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let r = try TestSupport.run(tool, arguments, environment: TestSupport.childEnvironment())
        let label = "\((tool as NSString).lastPathComponent) with \(config.name)"
        #expect(r.status == 1 || r.status == 64, "\(label): \(r)", sourceLocation: sourceLocation)
        let lines = r.stderr.split(separator: "\n").filter { $0.contains(config.path) }
        #expect(lines.count == 1, "\(label): \(r)", sourceLocation: sourceLocation)
        #expect(lines.first?.contains(config.error) == true, "\(label): \(r)", sourceLocation: sourceLocation)
    }

    @Test func everyToolFailsWithOneLine() throws {
        let tools = ["vfs-status", "vfs-replicate", "vfs-rebuild"].map { ($0, TestSupport.builtProduct($0)) }
        for (name, path) in tools where path == nil { Issue.record("\(name) is not built") }
        let paths = tools.compactMap(\.1)
        guard paths.count == 3 else { return }
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for config in try badConfigs(dir) {
            try expectOneLineFailure(paths[0], ["--config", config.path], config: config)
            try expectOneLineFailure(paths[1], ["--config", config.path, "--once", "--timeout", "5"], config: config)
            try expectOneLineFailure(paths[2], ["--config", config.path, "--all"], config: config)
        }
    }

    @Test func nonFiniteOptionsAreRefused() throws {
        guard let status = TestSupport.builtProduct("vfs-status") else {
            Issue.record("vfs-status is not built")
            return
        }
        let dir = try TestSupport.makeTemporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = dir + "/replication.yml"
        try "databases:\n  - path: db.sqlite3\n    replica: {url: \(dir)/replica}\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        for value in ["nan", "inf", "1e300", "-1"] {
            let r = try TestSupport.run(status, ["--config", config, "--max-lag=\(value)"])
            #expect(r.status != 0 && r.stderr.contains("--max-lag must be"), "--max-lag \(value): \(r)")
        }
    }
}
