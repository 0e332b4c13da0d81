import Foundation
import Testing

@testable import VFSReplication

@Suite struct ConfigValuesTests {
    // MARK: Durations

    static let durations: [(String, Duration)] = [
        ("50ms", .milliseconds(50)), ("1s", .seconds(1)), ("1.5s", .milliseconds(1500)), ("2m", .seconds(120)),
        ("1h", .seconds(3600)), ("24h", .seconds(86400)), ("1h30m", .seconds(5400)),
        ("1m0.5s", .milliseconds(60500)), ("0", .zero), ("0s", .zero), (".5s", .milliseconds(500)),
        ("1.s", .seconds(1)), ("250us", .microseconds(250)), ("250\u{00B5}s", .microseconds(250)),
        ("250\u{03BC}s", .microseconds(250)), ("100ns", .nanoseconds(100)), ("0.000000001s", .nanoseconds(1)),
        ("1.000000000999s", .nanoseconds(1_000_000_000)), ("0.1h", .seconds(360)),
    ]

    @Test(arguments: durations)
    func validDurations(text: String, expected: Duration) {
        #expect(ConfigValues.parseDuration(text) == expected)
    }

    @Test(arguments: [
        "", "1", "s", "1x", "-1s", "+1s", "1 s", " 1s", "1s ", "1.5", "1..5s", "1s2", "ms", "1S", "1sec",
        "9999999999999h",
    ])
    func invalidDurations(text: String) {
        #expect(ConfigValues.parseDuration(text) == nil)
    }

    static let formatted: [(Duration, String)] = [
        (.seconds(1), "1s"), (.milliseconds(250), "250ms"), (.milliseconds(1500), "1.5s"), (.seconds(120), "2m"),
        (.seconds(3600), "1h"), (.microseconds(3), "3us"), (.nanoseconds(7), "7ns"), (.zero, "0ns"),
    ]

    @Test(arguments: formatted)
    func formatDurations(duration: Duration, expected: String) {
        #expect(ConfigValues.formatDuration(duration) == expected)
    }

    // MARK: Sizes

    static let sizes: [(String, Int64)] = [
        ("64MiB", 64 << 20), ("1GiB", 1 << 30), ("1024", 1024), ("67_108_864", 67_108_864), ("500MB", 500_000_000),
        ("1kB", 1000), ("2KiB", 2048), ("1TiB", 1 << 40), ("1.5GiB", 3 << 29), ("0.5KiB", 512),
        ("64 MiB", 64 << 20), ("64mib", 64 << 20), ("12B", 12), ("0", 0),
    ]

    @Test(arguments: sizes)
    func validSizes(text: String, expected: Int64) {
        #expect(ConfigValues.parseByteSize(text) == expected)
    }

    @Test(arguments: [
        "", "abc", "-1", "MiB", "1.5.5MiB", "1GB2", "64 megs", "1e6", ".5MiB", "1.MiB", "9999999TiB",
        "99999999999999999999",
    ])
    func invalidSizes(text: String) {
        #expect(ConfigValues.parseByteSize(text) == nil)
    }

    // MARK: Booleans

    @Test func booleans() {
        for text in ["true", "True", "TRUE", "yes", "on"] { #expect(ConfigValues.parseBool(text) == true) }
        for text in ["false", "False", "no", "off", "OFF"] { #expect(ConfigValues.parseBool(text) == false) }
        for text in ["", "1", "0", "maybe", "y"] { #expect(ConfigValues.parseBool(text) == nil) }
    }

    // MARK: Environment expansion

    @Test(arguments: [
        ("plain", "plain"),
        ("${A}", "alpha"),
        ("$A", "alpha"),
        ("x${A}y", "xalphay"),
        ("$A/$B_2", "alpha/beta"),
        ("$A-$B_2", "alpha-beta"),
        ("${A}${B_2}", "alphabeta"),
        ("$$", "$"),
        ("$$A", "$A"),
        ("$$$A", "$alpha"),
        ("price: 5$", "price: 5$"),
        ("$1", "$1"),
        ("a $ b", "a $ b"),
        ("${EMPTY}x", "x"),
        ("caf\u{e9} $A", "caf\u{e9} alpha"),
    ])
    func expansions(text: String, expected: String) throws {
        let environment = ["A": "alpha", "B_2": "beta", "EMPTY": ""]
        #expect(try ConfigValues.expandEnvironment(text, environment) == expected)
    }

    @Test func expansionErrors() {
        #expect(throws: ConfigValues.ExpansionError.undefined("MISSING")) {
            try ConfigValues.expandEnvironment("x/${MISSING}", [:])
        }
        #expect(throws: ConfigValues.ExpansionError.undefined("MISSING")) {
            try ConfigValues.expandEnvironment("$MISSING/x", [:])
        }
        #expect(throws: ConfigValues.ExpansionError.malformed("${A")) {
            try ConfigValues.expandEnvironment("x${A", ["A": "a"])
        }
        #expect(throws: ConfigValues.ExpansionError.malformed("${}")) {
            try ConfigValues.expandEnvironment("${}", [:])
        }
        #expect(throws: ConfigValues.ExpansionError.malformed("${1A}")) {
            try ConfigValues.expandEnvironment("${1A}", ["1A": "x"])
        }
        #expect(throws: ConfigValues.ExpansionError.malformed("${A B}")) {
            try ConfigValues.expandEnvironment("${A B}", [:])
        }
    }

    @Test func expandedValuesAreNotExpandedAgain() throws {
        #expect(try ConfigValues.expandEnvironment("$A", ["A": "$B", "B": "no"]) == "$B")
    }

    // MARK: Suggestions

    @Test func suggestions() {
        let keys = ["path", "replica", "max-delay", "spool-max-bytes"]
        #expect(ConfigValues.suggestion(for: "max_delay", among: keys) == "max-delay")
        #expect(ConfigValues.suggestion(for: "maxDelay", among: keys) == "max-delay")
        #expect(ConfigValues.suggestion(for: "MAX-DELAY", among: keys) == "max-delay")
        #expect(ConfigValues.suggestion(for: "max-dealy", among: keys) == "max-delay")
        #expect(ConfigValues.suggestion(for: "replcia", among: keys) == "replica")
        #expect(ConfigValues.suggestion(for: "paht", among: keys) == "path")
        #expect(ConfigValues.suggestion(for: "spool-max-byte", among: keys) == "spool-max-bytes")
        #expect(ConfigValues.suggestion(for: "logging", among: keys) == nil)
        #expect(ConfigValues.suggestion(for: "x", among: keys) == nil)
        #expect(ConfigValues.suggestion(for: "id", among: ["ab", "ic"]) == nil)  // too short to guess
        #expect(ConfigValues.suggestion(for: "abcd", among: ["abxd", "abyd"]) == nil)  // ambiguous
    }

    @Test func editDistance() {
        #expect(ConfigValues.editDistance("", "abc") == 3)
        #expect(ConfigValues.editDistance("abc", "") == 3)
        #expect(ConfigValues.editDistance("region", "regoin") == 1)
        #expect(ConfigValues.editDistance("kitten", "sitting") == 3)
        #expect(ConfigValues.editDistance("same", "same") == 0)
    }
}

@Suite struct ConfigPathsTests {
    @Test(arguments: [
        ("/", "/"), ("/a/b", "/a/b"), ("/a/b/", "/a/b"), ("//a//b", "/a/b"), ("/a/./b/.", "/a/b"),
        ("/a/b/../c", "/a/c"), ("/../a", "/a"), ("/a/..", "/"),
    ])
    func standardize(path: String, expected: String) {
        #expect(ConfigPaths.standardize(path) == expected)
    }

    @Test func absolute() {
        #expect(ConfigPaths.absolute("db.sqlite3", relativeTo: "/app/config") == "/app/config/db.sqlite3")
        #expect(ConfigPaths.absolute("/srv/db", relativeTo: "/app") == "/srv/db")
        #expect(ConfigPaths.absolute("~/db", relativeTo: "/app", home: "/home/u") == "/home/u/db")
        #expect(ConfigPaths.absolute("~", relativeTo: "/app", home: "/home/u") == "/home/u")
        #expect(ConfigPaths.absolute("~/db", relativeTo: "/app") == "/app/~/db")
        #expect(ConfigPaths.absolute("~user/db", relativeTo: "/app", home: "/home/u") == "/app/~user/db")
        let cwd = ConfigPaths.standardize(FileManager.default.currentDirectoryPath)
        #expect(ConfigPaths.absolute("db", relativeTo: "rel") == cwd + "/rel/db")
    }

    @Test func canonicalResolvesSymlinksInOrder() throws {
        let raw = NSTemporaryDirectory() + "/vfsreplication-paths-" + UUID().uuidString
        let fileManager = FileManager.default
        try fileManager.createDirectory(atPath: raw + "/a/b", withIntermediateDirectories: true)
        defer { try? fileManager.removeItem(atPath: raw) }
        let root = ConfigPaths.canonical(ConfigPaths.standardize(raw))
        #expect(ConfigPaths.canonical(root) == root)

        try fileManager.createSymbolicLink(atPath: root + "/rel", withDestinationPath: "a/b")
        try fileManager.createSymbolicLink(atPath: root + "/abs", withDestinationPath: root + "/a")
        try fileManager.createSymbolicLink(atPath: root + "/chain", withDestinationPath: "rel")
        try fileManager.createSymbolicLink(atPath: root + "/loop1", withDestinationPath: "loop2")
        try fileManager.createSymbolicLink(atPath: root + "/loop2", withDestinationPath: "loop1")

        #expect(ConfigPaths.canonical(root + "/rel/db.sqlite3") == root + "/a/b/db.sqlite3")
        #expect(ConfigPaths.canonical(root + "/abs/b/x/y.sqlite3") == root + "/a/b/x/y.sqlite3")
        #expect(ConfigPaths.canonical(root + "/chain/db") == root + "/a/b/db")
        // `..` applies after resolving, as the kernel does: rel/.. is a, not root.
        #expect(ConfigPaths.canonical(root + "/rel/../db") == root + "/a/db")
        #expect(ConfigPaths.canonical(root + "/missing/../db") == root + "/db")
        // A loop cannot be resolved; the lexical form comes back.
        #expect(ConfigPaths.canonical(root + "/loop1/db") == root + "/loop1/db")
    }
}
