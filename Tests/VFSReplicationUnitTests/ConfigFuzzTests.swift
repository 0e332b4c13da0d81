import Foundation
import Testing

@testable import VFSReplication

/// Bad configurations never crash: nesting and aliases are bounded before Yams recurses, and
/// random documents (wrong types, huge, negative and non-finite values, duplicate paths, shared
/// replicas, unset variables, damaged text) are either valid or one clear line.
///
/// `VFS_CONFIG_FUZZ_TRIALS` (default 400) and `VFS_CONFIG_FUZZ_SEED` (default fixed) set the run.

private let fuzzTrials = Int(ProcessInfo.processInfo.environment["VFS_CONFIG_FUZZ_TRIALS"] ?? "") ?? 400
private let fuzzSeed = UInt64(ProcessInfo.processInfo.environment["VFS_CONFIG_FUZZ_SEED"] ?? "") ?? 0x5EED_C0F1

private func parse(_ yaml: String, environment: [String: String] = ["HOME": "/home/app"]) throws
    -> ReplicationConfig
{
    try ReplicationConfig.parse(yaml: yaml, baseDirectory: "/app/config", environment: environment, sourceName: "config.yml")
}

/// The message of the `.invalidConfig` error `yaml` must give.
private func configError(_ yaml: String, sourceLocation: SourceLocation = #_sourceLocation) -> String {
    let error = #expect(throws: ReplicationError.self, sourceLocation: sourceLocation) { try parse(yaml) }
    #expect(error?.code == .invalidConfig, sourceLocation: sourceLocation)
    return error?.message ?? ""
}

/// SplitMix64: small, seeded, the same sequence everywhere.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite("Config shape") struct ConfigShapeTests {
    static let deepDocuments: [String: String] = [
        "flow sequences": "databases: " + String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000),
        "flow mappings": "databases: " + String(repeating: "{a: ", count: 5000) + "x" + String(repeating: "}", count: 5000),
        "unclosed": "databases: " + String(repeating: "[", count: 100_000),
        "compact block sequences": "databases:\n" + String(repeating: "- ", count: 4000) + "x\n",
        "indented mappings": (0..<1000).map { String(repeating: " ", count: $0) + "k\($0):\n" }.joined(),
        "mixed": "databases: [" + String(repeating: "[{a: ", count: 3000),
    ]

    @Test(arguments: deepDocuments.keys.sorted())
    func deepNestingIsOneLineNotAStackOverflow(kind: String) {
        let message = configError(Self.deepDocuments[kind]!)
        #expect(message.hasPrefix("config.yml:"), "\(message)")
        #expect(message.contains("nest more than \(ConfigShape.maxDepth) levels"), "\(message)")
        #expect(!message.contains("\n"))
    }

    @Test func billionLaughsIsRefusedWithoutExpanding() {
        var yaml = "laughs:\n  l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
        for level in 1...9 {
            let refs = Array(repeating: "*l\(level - 1)", count: 10).joined(separator: ", ")
            yaml += "  l\(level): &l\(level) [\(refs)]\n"
        }
        yaml += "databases: *l9\n"
        let message = configError(yaml)
        #expect(message.contains("expands to more than \(ConfigShape.maxNodes) values through aliases"), "\(message)")
    }

    @Test func aliasesCannotNestDeeperThanTheTextShows() {
        // Each anchor holds the one before: 40 levels of nesting from two-level lines.
        var yaml = "chain:\n  - &a0 [x]\n"
        for i in 1...40 { yaml += "  - &a\(i) [*a\(i - 1)]\n" }
        yaml += "databases: *a40\n"
        let message = configError(yaml)
        #expect(message.contains("nest more than \(ConfigShape.maxDepth) levels deep through aliases"), "\(message)")
        #expect(configError("x: &a [1]\n" + String(repeating: "y: *a\n", count: 101)).contains("more than 100 aliases"))
    }

    @Test func hugeFilesAreRefusedUnparsed() {
        let yaml = "databases:\n" + String(repeating: "# padding\n", count: 110_000)
        #expect(configError(yaml) == "config.yml: the configuration is larger than 1 MiB")
    }

    /// The scan's estimate is never below what Yams builds (else a deep text could get past it),
    /// for random documents in every style: block and flow, quoted and block scalars holding
    /// brackets, comments, compact sequences, multi-line plain scalars, and damaged copies.
    @Test func depthEstimateIsAnUpperBound() {
        var rng = SeededGenerator(seed: fuzzSeed ^ 0xDEE9)
        var checked = 0
        for trial in 0..<(fuzzTrials * 3) {
            var text = ShapeDocument.random(depth: Int.random(in: 1...14, using: &rng), using: &rng)
            if trial % 3 == 2 { text = ShapeDocument.damage(text, using: &rng) }
            guard let actual = ConfigShape.composedDepth(text) else { continue }
            checked += 1
            let estimate = ConfigShape.estimatedDepth(text)
            #expect(estimate >= actual, "estimate \(estimate) < actual \(actual) for:\n\(text)")
            if estimate < actual { break }
        }
        #expect(checked > fuzzTrials / 2, "too few valid documents: \(checked)")
    }

    @Test func realConfigurationsAreFarFromTheLimits() throws {
        let yaml = """
            defaults:
              replica: {region: auto, endpoint: "http://[::1]:8333"}
              levels:
                - interval: 30s
                - {interval: 5m}
            databases:
              - path: a.sqlite3   # comment with [[[[ brackets
                replica:
                  url: s3://bucket/a
                  secret-access-key: "[{[{not nesting"
                  access-key-id: '[[''quoted'''
                max-delay: &delay 500ms
              - path: b.sqlite3
                replica: {url: 's3://bucket/b'}
                max-delay: *delay
            """
        #expect(ConfigShape.estimatedDepth(yaml) <= 8)
        let config = try parse(yaml)
        #expect(config.databases.count == 2)
        #expect(config.databases[0].replica.secretAccessKey == "[{[{not nesting")
    }
}

/// Random YAML text of a given nesting, in mixed styles, for the scan's property test.
enum ShapeDocument {
    static func random<R: RandomNumberGenerator>(depth: Int, using rng: inout R) -> String {
        var out = ""
        block(depth: depth, indent: 0, into: &out, using: &rng)
        return out
    }

    private static let scalars = [
        "plain", "'single [quoted'", "\"double {quoted\\\" [\"", "a#b", "x: y", "[a, b]", "{k: v}", "'it''s'",
        "url://h[0]", "\"multi\n  line [\"", "'multi\n  line {'", "plain\n  continued [",
    ]

    private static func scalar<R: RandomNumberGenerator>(using rng: inout R) -> String {
        let s = scalars.randomElement(using: &rng)!
        // Bare flow indicators and ": " only inside quotes.
        return s.hasPrefix("[") || s.hasPrefix("{") || s.contains(": ") ? "'" + s + "'" : s
    }

    private static func flow<R: RandomNumberGenerator>(depth: Int, using rng: inout R) -> String {
        guard depth > 0 else { return scalar(using: &rng).replacingOccurrences(of: "\n", with: " ") }
        let count = Int.random(in: 1...3, using: &rng)
        let items = (0..<count).map { i in
            i == 0 ? flow(depth: depth - 1, using: &rng) : flow(depth: Int.random(in: 0..<depth, using: &rng), using: &rng)
        }
        let spaces = Bool.random(using: &rng) ? " " : ""
        if Bool.random(using: &rng) {
            return "[" + spaces + items.joined(separator: "," + spaces) + spaces + "]"
        }
        return "{" + items.enumerated().map { "k\($0.offset): \($0.element)" }.joined(separator: ", ") + "}"
    }

    private static func block<R: RandomNumberGenerator>(depth: Int, indent: Int, into out: inout String, using rng: inout R) {
        let pad = String(repeating: " ", count: indent)
        let count = Int.random(in: 1...3, using: &rng)
        let sequence = Bool.random(using: &rng)
        for i in 0..<count {
            let childDepth = i == 0 ? depth - 1 : Int.random(in: 0..<max(depth, 1), using: &rng)
            let head = sequence ? pad + "- " : pad + "k\(i):"
            if Int.random(in: 0..<5, using: &rng) == 0 { out += pad + "# comment [[[ {{{\n" }
            if childDepth <= 0 {
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: out += head + (sequence ? "" : " ") + "|\n" + pad + "   text [[[ {{\n" + pad + "   more ]]\n"
                case 1: out += head + (sequence ? "" : " ") + "&anchor" + "\(Int.random(in: 0..<9, using: &rng)) plain\n"
                default:
                    let text = scalar(using: &rng).replacingOccurrences(of: "\n", with: "\n" + pad)
                    out += head + (sequence ? "" : " ") + text + "\n"
                }
            } else if Int.random(in: 0..<3, using: &rng) == 0 {
                out += head + (sequence ? "" : " ") + flow(depth: childDepth, using: &rng) + "\n"
            } else if sequence, Bool.random(using: &rng) {
                // Compact: the child collection starts on the entry's line.
                var child = ""
                block(depth: childDepth, indent: indent + 2, into: &child, using: &rng)
                out += pad + "- " + child.dropFirst(indent + 2)
            } else {
                out += head + "\n"
                // A sequence may sit at its key's indentation.
                let childIndent = !sequence && Bool.random(using: &rng) ? indent : indent + 2
                var child = ""
                block(depth: childDepth, indent: childIndent, into: &child, using: &rng)
                if childIndent == indent, !child.hasPrefix(pad + "- ") {
                    child = ""
                    block(depth: childDepth, indent: indent + 2, into: &child, using: &rng)
                }
                out += child
            }
        }
    }

    /// A copy with a few random characters that matter to YAML inserted, deleted or repeated.
    static func damage<R: RandomNumberGenerator>(_ text: String, using rng: inout R) -> String {
        var chars = Array(text)
        let pieces: [String] = ["[", "]", "{", "}", ",", ":", ": ", "- ", "'", "\"", "#", " #", "\n", "  ", "|", ">", "&a ", "!t ", "? "]
        for _ in 0..<Int.random(in: 1...4, using: &rng) {
            let at = Int.random(in: 0...chars.count, using: &rng)
            switch Int.random(in: 0..<3, using: &rng) {
            case 0 where !chars.isEmpty && at < chars.count: chars.remove(at: at)
            default: chars.insert(contentsOf: pieces.randomElement(using: &rng)!, at: at)
            }
        }
        return String(chars)
    }
}

@Suite("Config fuzz") struct ConfigFuzzTests {
    /// Random configurations, valid or spoiled one way: every one parses to a valid
    /// configuration or fails with one line naming config.yml; spoiled ones always fail.
    @Test func randomConfigurationsAreValidOrOneClearLine() throws {
        var rng = SeededGenerator(seed: fuzzSeed)
        var accepted = 0
        var refused = 0
        for trial in 0..<fuzzTrials {
            var document = FuzzConfig.random(using: &rng)
            let spoiled = trial % 4 != 0 ? document.spoil(using: &rng) : nil
            var text = document.render(using: &rng)
            let damaged = spoiled == nil && trial % 8 == 4
            if damaged { text = ShapeDocument.damage(text, using: &rng) }
            do {
                let config = try parse(text, environment: document.environment)
                accepted += 1
                #expect(spoiled == nil, "accepted a config spoiled by \(spoiled ?? ""):\n\(text)")
                expectValid(config, text)
            } catch let error as ReplicationError {
                refused += 1
                #expect(error.code == .invalidConfig)
                #expect(error.message.hasPrefix("config.yml"), "\(error.message)")
                #expect(!error.message.contains("\n"), "\(error.message)")
                #expect(spoiled != nil || damaged, "refused a valid config: \(error.message)\n\(text)")
            }
        }
        #expect(accepted > 0 && refused > 0)
    }

    private func expectValid(_ config: ReplicationConfig, _ text: String) {
        #expect(!config.databases.isEmpty)
        #expect(Set(config.databases.map { ConfigPaths.canonical($0.path) }).count == config.databases.count, "\(text)")
        #expect(Set(config.databases.map(\.replica.url)).count == config.databases.count, "\(text)")
        for db in config.databases {
            #expect(db.maxDelay >= .zero && db.maxDelay <= .seconds(86400), "\(text)")
            #expect(db.durabilityTimeout > .zero && db.durabilityTimeout <= .seconds(86400), "\(text)")
            #expect(db.groupCommitWindow >= .zero && db.groupCommitWindow <= .seconds(10), "\(text)")
            #expect(db.retention > .zero && db.snapshotInterval > .zero, "\(text)")
            #expect(db.spoolMaxBytes.map { $0 > 0 && $0 <= 1 << 50 } ?? true, "\(text)")
            #expect((1...8).contains(db.compactionIntervals.count), "\(text)")
            #expect(zip(db.compactionIntervals, db.compactionIntervals.dropFirst()).allSatisfy { $0 < $1 }, "\(text)")
            #expect(db.compactionIntervals.allSatisfy { $0 > .zero }, "\(text)")
        }
    }
}

/// A configuration as a tree of plain values, spoiled in one known way, rendered as YAML in
/// block or flow style.
struct FuzzConfig {
    indirect enum Value {
        case scalar(String)
        case list([Value])
        case map([(String, Value)])
    }

    var root: [(String, Value)]
    var environment: [String: String] = ["HOME": "/home/app", "BUCKET": "fuzz-bucket"]

    static let goodDurations = ["0", "50ms", "1s", "1.5s", "2m", "1h30m", "250us"]
    static let badDurations = [
        "-1s", "nan", ".inf", "-.inf", "1e300", "1e300s", "10", "99999999999999h", "1s-", "s", "1 s", "0x10s",
        "9223372036854775807ns1ns", "300000h", "25h", "",
    ]
    static let badSizes = ["-1", "0", "1e300", "nan", "2PiB", "9223372036854775808", "1.5.5GiB", "64 MiBs", "huge"]

    static func random<R: RandomNumberGenerator>(using rng: inout R) -> FuzzConfig {
        let count = Int.random(in: 1...3, using: &rng)
        var databases: [Value] = []
        for i in 0..<count {
            var fields: [(String, Value)] = [("path", .scalar("db\(i).sqlite3"))]
            let url = Bool.random(using: &rng) ? "s3://${BUCKET}/db\(i)" : "/backups/db\(i)"
            fields.append(("replica", .map([("url", .scalar(url))])))
            if Bool.random(using: &rng) { fields.append(("max-delay", .scalar(goodDurations.randomElement(using: &rng)!))) }
            if Bool.random(using: &rng) { fields.append(("spool-max-bytes", .scalar(["64MiB", "1GiB", "1024"].randomElement(using: &rng)!))) }
            if Bool.random(using: &rng) { fields.append(("retention", .scalar(["24h", "168h", "1m"].randomElement(using: &rng)!))) }
            if Bool.random(using: &rng) {
                fields.append(("levels", .list([.map([("interval", .scalar("30s"))]), .map([("interval", .scalar("5m"))])])))
            }
            databases.append(.map(fields))
        }
        return FuzzConfig(root: [("databases", .list(databases))])
    }

    /// Makes the configuration invalid in one way; returns how.
    mutating func spoil<R: RandomNumberGenerator>(using rng: inout R) -> String {
        guard case .list(var databases) = root[0].1 else { return "" }
        let index = Int.random(in: 0..<databases.count, using: &rng)
        guard case .map(var fields) = databases[index] else { return "" }
        var how: String
        switch Int.random(in: 0..<14, using: &rng) {
        case 0:
            let key = ["max-delay", "retention", "durability-timeout", "group-commit-window", "snapshot-interval"]
                .randomElement(using: &rng)!
            let value = Self.badDurations.randomElement(using: &rng)!
            fields.append((key, .scalar(value)))
            how = "\(key): \(value)"
            if value == "" || (value == "25h" && ["retention", "snapshot-interval"].contains(key)) || (value == "0" && key == "group-commit-window")
            {
                how = ""  // valid after all (empty is unset; 25h is a fine retention)
            }
        case 1:
            let value = Self.badSizes.randomElement(using: &rng)!
            fields.append(("spool-max-bytes", .scalar(value)))
            how = "spool-max-bytes: \(value)"
        case 2:
            // A wrong type where a value belongs.
            let key = ["path", "max-delay", "spool-full", "durability"].randomElement(using: &rng)!
            fields.removeAll { $0.0 == key }
            fields.append((key, Bool.random(using: &rng) ? .list([.scalar("x")]) : .map([("a", .scalar("b"))])))
            how = "\(key) of the wrong type"
        case 3:
            databases.append(databases[index])
            how = "a duplicate database"
        case 4:
            // Another file, the same replica.
            guard let url = fields.first(where: { $0.0 == "replica" }) else { return "" }
            databases.append(.map([("path", .scalar("other.sqlite3")), url]))
            how = "a shared replica"
        case 5:
            fields.append(("unknown-key-\(Int.random(in: 0..<100, using: &rng))", .scalar("1")))
            how = "an unknown key"
        case 6:
            fields = fields.map { $0.0 == "path" ? ($0.0, .scalar("${UNSET_VARIABLE}/db.sqlite3")) : $0 }
            how = "an unset variable"
        case 7:
            fields = fields.map { $0.0 == "path" ? ($0.0, .scalar("/tmp")) : $0 }
            how = "a folder as the database"
        case 8:
            var list: [Value] = []
            for _ in 0..<Int.random(in: 9...12, using: &rng) { list.append(.map([("interval", .scalar("1h"))])) }
            fields.append(("levels", .list(list)))
            how = "too many levels"
        case 9:
            fields.append(("levels", .list([.map([("interval", .scalar("5m"))]), .map([("interval", .scalar("30s"))])])))
            how = "decreasing levels"
        case 10:
            var nested = Value.scalar("x")
            for _ in 0..<Int.random(in: 40...3000, using: &rng) { nested = .list([nested]) }
            root.append(("deep", nested))
            how = "deep nesting"
        case 11:
            fields.removeAll { $0.0 == "replica" }
            how = "no replica"
        case 12:
            root[0] = ("databases", .scalar(["", "[]", "~", "42"].randomElement(using: &rng)!))
            return "no databases list"
        default:
            fields.append(("durability", .scalar(["REMOTE", "eventually", "1", "local remote"].randomElement(using: &rng)!)))
            how = "a bad durability"
        }
        if how == "" { return spoilAgain(&fields, &databases, index) }
        databases[index] = .map(fields)
        root[0].1 = .list(databases)
        return how
    }

    /// The first spoiling turned out valid: use a sure one instead.
    private mutating func spoilAgain(_ fields: inout [(String, Value)], _ databases: inout [Value], _ index: Int) -> String {
        fields.append(("max-delay", .scalar("nan")))
        databases[index] = .map(fields)
        root[0].1 = .list(databases)
        return "max-delay: nan"
    }

    func render<R: RandomNumberGenerator>(using rng: inout R) -> String {
        if Int.random(in: 0..<3, using: &rng) == 0 {
            return "{" + root.map { "\($0.0): \(Self.flow($0.1))" }.joined(separator: ", ") + "}\n"
        }
        var out = ""
        for (key, value) in root { Self.block(key: key, value, indent: 0, into: &out) }
        return out
    }

    private static func quoted(_ s: String) -> String {
        s.isEmpty ? "''" : s.contains(where: { "[]{},#:&*!|>'\"%@`".contains($0) }) || s.hasPrefix("-") ? "'" + s + "'" : s
    }

    private static func flow(_ value: Value) -> String {
        // Iterative for deep lists (a recursive renderer would itself overflow).
        var depth = 0
        var inner = value
        while case .list(let items) = inner, items.count == 1, case .list = items[0] {
            depth += 1
            inner = items[0]
        }
        let open = String(repeating: "[", count: depth)
        let close = String(repeating: "]", count: depth)
        switch inner {
        case .scalar(let s): return open + quoted(s) + close
        case .list(let items): return open + "[" + items.map(flow).joined(separator: ", ") + "]" + close
        case .map(let pairs): return open + "{" + pairs.map { "\($0.0): \(flow($0.1))" }.joined(separator: ", ") + "}" + close
        }
    }

    private static func block(key: String?, _ value: Value, indent: Int, into out: inout String) {
        let pad = String(repeating: " ", count: indent)
        let head = key.map { pad + $0 + ":" } ?? pad + "-"
        switch value {
        case .scalar(let s): out += head + " " + quoted(s) + "\n"
        case .list(let items):
            if items.count == 1, case .list = items[0] {
                out += head + " " + flow(value) + "\n"
                return
            }
            out += head + (items.isEmpty ? " []" : "") + "\n"
            for item in items { block(key: nil, item, indent: indent + 2, into: &out) }
        case .map(let pairs):
            out += head + (pairs.isEmpty ? " {}" : "") + "\n"
            for (k, v) in pairs { block(key: k, v, indent: indent + 2, into: &out) }
        }
    }
}
