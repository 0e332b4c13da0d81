import Foundation
import Testing

@testable import VFSReplication

/// `retention`, `snapshot-interval` and `levels`: compaction and retention settings.
@Suite("Config: compaction, snapshots, retention")
struct ConfigMaintenanceTests {
    static func parse(_ yaml: String) throws -> ReplicationConfig {
        try ReplicationConfig.parse(yaml: yaml, baseDirectory: "/app", environment: [:], sourceName: "config.yml")
    }

    static func error(_ yaml: String, sourceLocation: SourceLocation = #_sourceLocation) -> String {
        let error = #expect(throws: ReplicationError.self, sourceLocation: sourceLocation) { try parse(yaml) }
        #expect(error?.code == .invalidConfig, sourceLocation: sourceLocation)
        return error?.message ?? ""
    }

    @Test func defaultsAreLitestreams() throws {
        let config = try Self.parse(
            """
            databases:
              - path: db.sqlite3
                replica:
                  url: file:///r
            """)
        let database = try #require(config.databases.first)
        #expect(database.retention == .seconds(86400))
        #expect(database.snapshotInterval == .seconds(86400))
        #expect(database.compactionIntervals == [.seconds(30), .seconds(300), .seconds(3600)])
        let direct = DatabaseConfig(path: "/db", replica: ReplicaConfig(kind: .file(directory: "/r")))
        #expect(direct.compactionIntervals == MaintenancePolicy.defaultCompactionIntervals)
        #expect(MaintenancePolicy(database) == MaintenancePolicy())
    }

    @Test func defaultsAndDatabasesSetThemKeyByKey() throws {
        let config = try Self.parse(
            """
            defaults:
              retention: 168h
              levels:
                - interval: 1m
                - interval: 15m
            databases:
              - path: a.sqlite3
                replica:
                  url: file:///a
                snapshot-interval: 6h
              - path: b.sqlite3
                replica:
                  url: file:///b
                retention: 1h30m
                levels:
                  - interval: 10s
            """)
        let a = config.databases[0]
        #expect(a.retention == .seconds(7 * 86400))
        #expect(a.snapshotInterval == .seconds(6 * 3600))
        #expect(a.compactionIntervals == [.seconds(60), .seconds(900)])
        let b = config.databases[1]
        #expect(b.retention == .seconds(5400))
        #expect(b.snapshotInterval == .seconds(86400))
        #expect(b.compactionIntervals == [.seconds(10)])
        let policy = MaintenancePolicy(b)
        #expect(policy.topLevel == 1)
        #expect(policy.retention == .seconds(5400))
    }

    @Test func levelMistakesNameTheirLine() {
        #expect(
            Self.error(
                """
                defaults:
                  levels: 30s
                databases: []
                """) == "config.yml:2: 'levels' in defaults must be a list of '- interval: <duration>' (level 1 first)")
        #expect(
            Self.error(
                """
                defaults:
                  levels: []
                databases: []
                """) == "config.yml:2: 'levels' in defaults is empty: give 1 to 8 levels, e.g. '- interval: 30s'")
        #expect(
            Self.error(
                """
                databases:
                  - path: db.sqlite3
                    replica:
                      url: file:///r
                    levels:
                      - interval: 1m
                      - interval: 30s
                """)
                == "config.yml:7: 'interval' of level 2 in database 'db.sqlite3' (30s) must be longer than level 1's (1m)"
        )
        #expect(
            Self.error(
                """
                defaults:
                  levels:
                    - intervl: 30s
                databases: []
                """) == "config.yml:3: unknown key 'intervl' in level 1 in defaults (did you mean 'interval'?)")
        #expect(
            Self.error(
                """
                defaults:
                  levels:
                    - 30s
                databases: []
                """)
                == "config.yml:3: level 1 in defaults must be a mapping with an 'interval'; write '- interval: 30s'")
        #expect(
            Self.error(
                """
                defaults:
                  levels:
                    - interval: 0s
                databases: []
                """) == "config.yml:3: 'interval' of level 1 in defaults must be greater than zero")
        #expect(
            Self.error(
                """
                defaults:
                  levels:
                    - interval: soon
                databases: []
                """
            ).hasPrefix("config.yml:3: invalid duration 'soon' for 'interval' in level 1 in defaults"))
        let nine = (1...9).map { "    - interval: \($0)m" }.joined(separator: "\n")
        #expect(
            Self.error("defaults:\n  levels:\n\(nine)\ndatabases: []\n")
                == "config.yml:11: 'levels' in defaults has 9 levels; at most 8 (level 9 holds snapshots)")
    }

    @Test func retentionAndSnapshotIntervalMistakes() {
        #expect(
            Self.error(
                """
                defaults:
                  retention: 0
                databases: []
                """) == "config.yml:2: 'retention' in defaults must be greater than zero")
        #expect(
            Self.error(
                """
                databases:
                  - path: db.sqlite3
                    replica:
                      url: file:///r
                    snapshot-interval: 24
                """)
                == "config.yml:5: invalid duration '24' for 'snapshot-interval' in database 'db.sqlite3' "
                + "(missing unit: did you mean '24s' or '24ms'?)")
    }

    @Test func litestreamShapesGetHints() {
        #expect(
            Self.error(
                """
                levels:
                  - interval: 30s
                databases: []
                """) == "config.yml:1: unknown key 'levels' (put 'levels' under 'defaults' (or a database))")
        #expect(
            Self.error(
                """
                defaults:
                  snapshot:
                    interval: 1h
                databases: []
                """)
                == "config.yml:2: unknown key 'snapshot' in defaults "
                + "(use 'snapshot-interval' for the interval and 'retention' for how long history is kept)")
    }
}
