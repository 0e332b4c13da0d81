import Foundation
import Testing

@testable import VFSReplication

// MARK: Helpers

private func parse(
    _ yaml: String, environment: [String: String] = [:], base: String = "/app/config"
) throws -> ReplicationConfig {
    try ReplicationConfig.parse(yaml: yaml, baseDirectory: base, environment: environment, sourceName: "config.yml")
}

/// Parses `yaml`, expects a `.invalidConfig` error and returns its message ("" if none was thrown).
private func configError(
    _ yaml: String, environment: [String: String] = [:], sourceLocation: SourceLocation = #_sourceLocation
) -> String {
    let error = #expect(throws: ReplicationError.self, sourceLocation: sourceLocation) {
        try parse(yaml, environment: environment)
    }
    #expect(error?.code == .invalidConfig, sourceLocation: sourceLocation)
    return error?.message ?? ""
}

/// A fresh directory (symlinks resolved, so tests compare real paths), removed afterwards.
private func withTemporaryDirectory<T>(_ body: (String) throws -> T) throws -> T {
    let raw = NSTemporaryDirectory() + "/vfsreplication-config-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: raw, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: raw) }
    return try body(ConfigPaths.canonical(ConfigPaths.standardize(raw)))
}

private func write(_ text: String, to path: String) throws {
    try text.write(toFile: path, atomically: true, encoding: .utf8)
}

// MARK: Parsing valid configurations

@Suite struct ConfigParsingTests {
    @Test func minimalFileReplica() throws {
        let config = try parse(
            """
            databases:
              - path: storage/production.sqlite3
                replica:
                  url: file:///var/backups/app/production
            """)
        #expect(config.sourcePath == nil)
        #expect(config.databases.count == 1)
        let database = try #require(config.databases.first)
        #expect(database.path == "/app/config/storage/production.sqlite3")
        #expect(database.replica.kind == .file(directory: "/var/backups/app/production"))
        #expect(database.replica.url == "file:///var/backups/app/production")
        #expect(database.maxDelay == .seconds(1))
        #expect(database.spoolMaxBytes == nil)
        #expect(database.replica.endpoint == nil)
        #expect(database.replica.region == nil)
    }

    @Test func exampleFromTheDesignWithDefaults() throws {
        let config = try parse(
            """
            defaults:                 # optional: shared settings merged under each database
              replica:
                region: auto
              max-delay: 250ms
            databases:
              - path: storage/production.sqlite3   # relative to the config file's folder
                replica:
                  url: file:///var/backups/app/production
                max-delay: 1s
              - path: /srv/cache.sqlite3
                replica:
                  url: s3://bucket/cache
            """)
        #expect(config.databases.count == 2)
        let production = config.databases[0]
        #expect(production.maxDelay == .seconds(1))
        // S3 settings do not apply to a directory replica.
        #expect(production.replica.region == nil)
        let cache = config.databases[1]
        #expect(cache.path == "/srv/cache.sqlite3")
        #expect(cache.maxDelay == .milliseconds(250))
        #expect(cache.replica.region == "auto")
        #expect(cache.replica.kind == .s3(bucket: "bucket", prefix: "cache"))
        #expect(cache.replica.url == "s3://bucket/cache")
    }

    @Test func s3ReplicaWithEveryKey() throws {
        let config = try parse(
            """
            databases:
              - path: db.sqlite3
                max-delay: 50ms
                spool-max-bytes: 64MiB
                replica:
                  url: s3://my-bucket/app/production/
                  endpoint: http://127.0.0.1:8333/
                  region: us-east-1
                  force-path-style: true
                  access-key-id: AKIAEXAMPLE
                  secret-access-key: wJalrXUtnFEMI
                  ca-file: certs/ca.pem
            """)
        let database = try #require(config.databases.first)
        #expect(database.path == "/app/config/db.sqlite3")
        #expect(database.maxDelay == .milliseconds(50))
        #expect(database.spoolMaxBytes == 64 << 20)
        let replica = database.replica
        #expect(replica.kind == .s3(bucket: "my-bucket", prefix: "app/production"))
        #expect(replica.url == "s3://my-bucket/app/production")
        #expect(replica.endpoint == "http://127.0.0.1:8333")
        #expect(replica.resolvedEndpoint == "http://127.0.0.1:8333")
        #expect(replica.region == "us-east-1")
        #expect(replica.forcePathStyle == true)
        #expect(replica.accessKeyID == "AKIAEXAMPLE")
        #expect(replica.secretAccessKey == "wJalrXUtnFEMI")
        #expect(replica.r2AccountID == nil)
        #expect(replica.caFile == "/app/config/certs/ca.pem")
    }

    @Test func r2AccountDerivesTheEndpoint() throws {
        let config = try parse(
            """
            databases:
              - path: db.sqlite3
                replica:
                  url: s3://backups/db
                  r2-account-id: 0123456789abcdef0123456789abcdef
                  region: auto
            """)
        let replica = try #require(config.databases.first?.replica)
        #expect(replica.endpoint == nil)
        #expect(replica.r2AccountID == "0123456789abcdef0123456789abcdef")
        #expect(replica.resolvedEndpoint == "https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com")
    }

    @Test func databaseSettingsOverrideDefaultsKeyByKey() throws {
        let config = try parse(
            """
            defaults:
              max-delay: 2m
              spool-max-bytes: 1GiB
              replica:
                endpoint: https://s3.example.com
                region: eu-west-1
                force-path-style: false
                access-key-id: DEFAULTKEY
                secret-access-key: DEFAULTSECRET
            databases:
              - path: a.sqlite3
                replica:
                  url: s3://bucket/a
              - path: b.sqlite3
                max-delay: 100ms
                spool-max-bytes: 1024
                replica:
                  url: s3://bucket/b
                  region: eu-central-1
                  force-path-style: yes
                  secret-access-key: OWNSECRET
            """)
        let a = config.databases[0]
        #expect(a.maxDelay == .seconds(120))
        #expect(a.spoolMaxBytes == 1 << 30)
        #expect(a.replica.endpoint == "https://s3.example.com")
        #expect(a.replica.region == "eu-west-1")
        #expect(a.replica.forcePathStyle == false)
        #expect(a.replica.accessKeyID == "DEFAULTKEY")
        #expect(a.replica.secretAccessKey == "DEFAULTSECRET")
        let b = config.databases[1]
        #expect(b.maxDelay == .milliseconds(100))
        #expect(b.spoolMaxBytes == 1024)
        #expect(b.replica.endpoint == "https://s3.example.com")
        #expect(b.replica.region == "eu-central-1")
        #expect(b.replica.forcePathStyle == true)
        #expect(b.replica.accessKeyID == "DEFAULTKEY")
        #expect(b.replica.secretAccessKey == "OWNSECRET")
    }

    @Test func emptyDefaultsAndCommentsAreFine() throws {
        let config = try parse(
            """
            # Replication for the app
            defaults:
            databases:
              - path: "quoted path.sqlite3"
                replica: {url: 'backups/db'}   # flow style works too
            """)
        let database = try #require(config.databases.first)
        #expect(database.path == "/app/config/quoted path.sqlite3")
        #expect(database.replica.kind == .file(directory: "/app/config/backups/db"))
    }

    @Test(arguments: [
        ("file:///var/backups/app", "/var/backups/app", "file:///var/backups/app"),
        ("file://localhost/var/backups", "/var/backups", "file:///var/backups"),
        ("file:backups/db", "/app/config/backups/db", "file:///app/config/backups/db"),
        ("file:/abs/dir", "/abs/dir", "file:///abs/dir"),
        ("/var/backups/app/", "/var/backups/app", "file:///var/backups/app"),
        ("backups", "/app/config/backups", "file:///app/config/backups"),
        ("./backups/../replica", "/app/config/replica", "file:///app/config/replica"),
        ("../backups", "/app/backups", "file:///app/backups"),
        ("file:///var/my%20backups", "/var/my backups", "file:///var/my%20backups"),
        ("/var/my backups", "/var/my backups", "file:///var/my%20backups"),
        ("~/backups", "/home/app/backups", "file:///home/app/backups"),
    ])
    func fileReplicaLocations(url: String, directory: String, normalized: String) throws {
        let config = try parse(
            """
            databases:
              - path: db.sqlite3
                replica:
                  url: \(url)
            """, environment: ["HOME": "/home/app"])
        let replica = try #require(config.databases.first?.replica)
        #expect(replica.kind == .file(directory: directory))
        #expect(replica.url == normalized)
    }

    @Test(arguments: [
        ("s3://bucket", "bucket", "", "s3://bucket"),
        ("s3://bucket/", "bucket", "", "s3://bucket"),
        ("s3://bucket/a/b/", "bucket", "a/b", "s3://bucket/a/b"),
        ("S3://bucket//a//b", "bucket", "a/b", "s3://bucket/a/b"),
        ("s3://my.bucket-1/prod", "my.bucket-1", "prod", "s3://my.bucket-1/prod"),
    ])
    func s3ReplicaLocations(url: String, bucket: String, prefix: String, normalized: String) throws {
        let config = try parse(
            """
            databases:
              - path: db.sqlite3
                replica:
                  url: \(url)
            """)
        let replica = try #require(config.databases.first?.replica)
        #expect(replica.kind == .s3(bucket: bucket, prefix: prefix))
        #expect(replica.url == normalized)
    }

    @Test(arguments: [
        ("/srv/db/production.sqlite3", "/srv/db/production.sqlite3"),
        ("storage/production.sqlite3", "/app/config/storage/production.sqlite3"),
        ("../storage//./production.sqlite3", "/app/storage/production.sqlite3"),
        ("~/db.sqlite3", "/home/app/db.sqlite3"),
    ])
    func databasePaths(path: String, expected: String) throws {
        let config = try parse(
            """
            databases:
              - path: \(path)
                replica:
                  url: /backups
            """, environment: ["HOME": "/home/app"])
        #expect(config.databases.first?.path == expected)
    }

    @Test func relativeBaseDirectoryIsTakenFromTheCurrentDirectory() throws {
        let config = try ReplicationConfig.parse(
            yaml: "databases: [{path: db.sqlite3, replica: {url: backups}}]",
            baseDirectory: "config", environment: [:], sourceName: "config.yml")
        let cwd = ConfigPaths.standardize(FileManager.default.currentDirectoryPath)
        #expect(config.databases.first?.path == cwd + "/config/db.sqlite3")
    }

    @Test func environmentVariablesExpandInValues() throws {
        let config = try parse(
            """
            defaults:
              max-delay: ${DELAY}
            databases:
              - path: $APP_ROOT/storage/${DB_NAME}.sqlite3
                spool-max-bytes: ${SPOOL}
                replica:
                  url: s3://${BUCKET}/$$literal/${DB_NAME}
                  endpoint: ${S3_ENDPOINT}
                  access-key-id: ${AWS_ACCESS_KEY_ID}
                  secret-access-key: $AWS_SECRET_ACCESS_KEY
                  force-path-style: ${PATH_STYLE}
            """,
            environment: [
                "DELAY": "750ms", "APP_ROOT": "/srv/app", "DB_NAME": "production", "SPOOL": "2GiB",
                "BUCKET": "backups", "S3_ENDPOINT": "http://localhost:8333", "AWS_ACCESS_KEY_ID": "AKID",
                "AWS_SECRET_ACCESS_KEY": "SECRET", "PATH_STYLE": "true",
            ])
        let database = try #require(config.databases.first)
        #expect(database.path == "/srv/app/storage/production.sqlite3")
        #expect(database.maxDelay == .milliseconds(750))
        #expect(database.spoolMaxBytes == 2 << 30)
        #expect(database.replica.kind == .s3(bucket: "backups", prefix: "$literal/production"))
        #expect(database.replica.endpoint == "http://localhost:8333")
        #expect(database.replica.accessKeyID == "AKID")
        #expect(database.replica.secretAccessKey == "SECRET")
        #expect(database.replica.forcePathStyle == true)
    }

    @Test func emptyValuesLeaveOptionalKeysUnset() throws {
        let config = try parse(
            """
            defaults:
              max-delay: 3s
              replica:
                region: auto
            databases:
              - path: db.sqlite3
                max-delay:
                spool-max-bytes: ~
                replica:
                  url: s3://bucket/db
                  endpoint: ${S3_ENDPOINT}
                  region: ""
            """, environment: ["S3_ENDPOINT": ""])
        let database = try #require(config.databases.first)
        #expect(database.maxDelay == .seconds(3))
        #expect(database.spoolMaxBytes == nil)
        #expect(database.replica.endpoint == nil)
        #expect(database.replica.region == "auto")
    }

    @Test func databasesKeepFileOrder() throws {
        let config = try parse(
            """
            databases:
              - {path: c.sqlite3, replica: {url: /r/c}}
              - {path: a.sqlite3, replica: {url: /r/a}}
              - {path: b.sqlite3, replica: {url: /r/b}}
            """)
        #expect(
            config.databases.map(\.path) == ["/app/config/c.sqlite3", "/app/config/a.sqlite3", "/app/config/b.sqlite3"])
    }

    @Test func anchorsAndAliasesWork() throws {
        let config = try parse(
            """
            databases:
              - path: a.sqlite3
                max-delay: &delay 5s
                replica: {url: /r/a}
              - path: b.sqlite3
                max-delay: *delay
                replica: {url: /r/b}
            """)
        #expect(config.databases.map(\.maxDelay) == [.seconds(5), .seconds(5)])
    }
}

// MARK: Errors

@Suite struct ConfigErrorTests {
    @Test(arguments: ["maxdelay", "max_delay", "maxDelay", "MaxDelay", "max-dealy"])
    func unknownDatabaseKeySuggestsTheClosestOne(key: String) {
        let message = configError(
            """
            databases:
              - path: storage/production.sqlite3
                replica:
                  url: /backups
                \(key): 1s
            """)
        #expect(
            message
                == "config.yml:5: unknown key '\(key)' in database 'storage/production.sqlite3' (did you mean 'max-delay'?)"
        )
    }

    @Test func unknownKeyBeforePathStillNamesTheDatabase() {
        let message = configError(
            """
            databases:
              - spool-max-byte: 1GiB
                path: storage/production.sqlite3
                replica: {url: /backups}
            """)
        #expect(
            message
                == "config.yml:2: unknown key 'spool-max-byte' in database 'storage/production.sqlite3' "
                + "(did you mean 'spool-max-bytes'?)")
    }

    @Test func unknownReplicaKey() {
        let message = configError(
            """
            databases:
              - path: db.sqlite3
                replica:
                  url: s3://bucket/db
                  regoin: auto
            """)
        #expect(
            message
                == "config.yml:5: unknown key 'regoin' in the replica of database 'db.sqlite3' (did you mean 'region'?)"
        )
    }

    @Test(arguments: [
        ("access_key_id", "access-key-id"), ("secretAccessKey", "secret-access-key"),
        ("forcePathStyle", "force-path-style"), ("r2_account_id", "r2-account-id"), ("ca_file", "ca-file"),
        ("endpont", "endpoint"), ("uri", "url"),
    ])
    func litestreamAndCamelCaseSpellingsAreSuggested(key: String, suggestion: String) {
        let message = configError(
            """
            databases:
              - path: db.sqlite3
                replica:
                  url: s3://bucket/db
                  \(key): x
            """)
        #expect(message.hasSuffix("(did you mean '\(suggestion)'?)"), "\(message)")
        #expect(message.hasPrefix("config.yml:5: unknown key '\(key)'"), "\(message)")
    }

    @Test func unknownTopLevelKeys() {
        #expect(
            configError("dbs:\n  - path: x\n")
                == "config.yml:1: unknown key 'dbs' (did you mean 'databases'?)")
        #expect(
            configError("database:\n  - path: x\n")
                == "config.yml:1: unknown key 'database' (did you mean 'databases'?)")
        #expect(
            configError("logging: {level: debug}\ndatabases: []\n")
                == "config.yml:1: unknown key 'logging' (known keys: defaults, databases, uploader-threads, prices)")
    }

    @Test func unknownKeysInDefaults() {
        #expect(
            configError(
                """
                defaults:
                  max_delay: 1s
                databases: []
                """) == "config.yml:2: unknown key 'max_delay' in defaults (did you mean 'max-delay'?)")
        #expect(
            configError(
                """
                defaults:
                  replica:
                    regin: auto
                databases: []
                """) == "config.yml:3: unknown key 'regin' in the defaults replica (did you mean 'region'?)")
    }

    @Test func keysPeopleBringFromLitestreamGetHints() {
        #expect(
            configError(
                """
                databases:
                  - path: db.sqlite3
                    replicas:
                      - url: s3://bucket/db
                        type: s3
                """)
                == "config.yml:5: unknown key 'type' in replica '#1' of database 'db.sqlite3' "
                + "(the replica type comes from the 'url' scheme: s3:// or file://)")
        #expect(
            configError(
                """
                databases:
                  - path: db.sqlite3
                    replica:
                      type: s3
                      bucket: backups
                """)
                == "config.yml:4: unknown key 'type' in the replica of database 'db.sqlite3' "
                + "(the replica type comes from the 'url' scheme: s3:// or file://)")
    }

    @Test func urlAndPathCannotBeDefaults() {
        #expect(
            configError(
                """
                defaults:
                  replica:
                    url: s3://bucket/shared
                databases: []
                """)
                == "config.yml:3: 'url' cannot be set in defaults: each database needs its own replica location")
        #expect(
            configError(
                """
                defaults:
                  path: db.sqlite3
                databases: []
                """) == "config.yml:2: 'path' cannot be set in defaults: each database names its own file")
    }

    @Test func missingOrEmptyDatabases() {
        #expect(configError("") == "config.yml: the configuration is empty; expected a 'databases' list")
        #expect(
            configError("# only a comment\n") == "config.yml: the configuration is empty; expected a 'databases' list")
        #expect(
            configError("defaults:\n  max-delay: 1s\n")
                == "config.yml:1: missing 'databases': list the databases to replicate")
        #expect(configError("databases:\n") == "config.yml:1: 'databases' is empty: list the databases to replicate")
        #expect(configError("databases: []\n") == "config.yml:1: 'databases' is empty: list the databases to replicate")
        #expect(
            configError("databases:\n  path: db.sqlite3\n")
                == "config.yml:2: 'databases' must be a list, each item starting with '- path:'")
        #expect(
            configError("- path: db.sqlite3\n")
                == "config.yml:1: expected a mapping with a 'databases' list at the top level")
    }

    @Test func databaseEntryShapes() {
        #expect(
            configError("databases:\n  - storage/production.sqlite3\n")
                == "config.yml:2: database #1 must be a mapping; write '- path: storage/production.sqlite3'")
        #expect(
            configError(
                """
                databases:
                  - path: a.sqlite3
                    replica: {url: /r/a}
                  - replica: {url: /r/b}
                """) == "config.yml:4: database #2 has no 'path'")
        #expect(
            configError("databases:\n  - path:\n    replica: {url: /r}\n")
                == "config.yml:2: 'path' of database #1 is empty")
        #expect(
            configError("databases:\n  - path: db.sqlite3\n")
                == "config.yml:2: database 'db.sqlite3' has no 'replica' (add 'replica:' with a 'url', or 'replicas:' with a list)")
        #expect(
            configError("databases:\n  - path: db.sqlite3\n    replica:\n")
                == "config.yml:3: database 'db.sqlite3' has no 'replica' (add 'replica:' with a 'url', or 'replicas:' with a list)")
        #expect(
            configError("databases:\n  - path: db.sqlite3\n    replica:\n      region: auto\n")
                == "config.yml:3: the replica of database 'db.sqlite3' has no 'url'")
        #expect(
            configError("databases:\n  - path: db.sqlite3\n    replica: s3://bucket/db\n")
                == "config.yml:3: 'replica' in database 'db.sqlite3' must be a mapping with a 'url'")
    }

    @Test func databasePathMustNameAFile() {
        #expect(
            configError("databases:\n  - path: file:db.sqlite3?vfs=replicated\n    replica: {url: /r}\n")
                == "config.yml:2: 'path' in database 'file:db.sqlite3?vfs=replicated' must be a file path, "
                + "not a URI (drop 'file:' and any '?vfs=...')")
        #expect(
            configError("databases:\n  - path: ':memory:'\n    replica: {url: /r}\n")
                == "config.yml:2: database ':memory:': an in-memory database cannot be replicated")
        #expect(
            configError("databases:\n  - path: storage/\n    replica: {url: /r}\n")
                == "config.yml:2: 'path' in database 'storage/' names a folder; it must name the database file")
    }

    @Test func duplicateDatabasePaths() {
        #expect(
            configError(
                """
                databases:
                  - path: storage/production.sqlite3
                    replica: {url: /r/a}
                  - path: ../config/storage/./production.sqlite3
                    replica: {url: /r/b}
                """)
                == "config.yml:4: database '../config/storage/./production.sqlite3' is the same file as "
                + "database 'storage/production.sqlite3' (line 2)")
    }

    @Test func duplicateDatabaseThroughASymlinkedFolder() throws {
        try withTemporaryDirectory { directory in
            try FileManager.default.createDirectory(atPath: directory + "/real", withIntermediateDirectories: true)
            try FileManager.default.createSymbolicLink(atPath: directory + "/link", withDestinationPath: "real")
            let error = #expect(throws: ReplicationError.self) {
                try ReplicationConfig.parse(
                    yaml: """
                        databases:
                          - path: real/db.sqlite3
                            replica: {url: /r/a}
                          - path: link/db.sqlite3
                            replica: {url: /r/b}
                        """,
                    baseDirectory: directory, environment: [:], sourceName: "config.yml")
            }
            #expect(
                error?.message
                    == "config.yml:4: database 'link/db.sqlite3' is the same file as database 'real/db.sqlite3' (line 2)"
            )
        }
    }

    @Test func duplicateReplicaLocations() {
        #expect(
            configError(
                """
                databases:
                  - path: a.sqlite3
                    replica: {url: s3://bucket/app}
                  - path: b.sqlite3
                    replica: {url: s3://bucket/app/}
                """)
                == "config.yml:4: database 'b.sqlite3' replicates to s3://bucket/app, as database 'a.sqlite3' "
                + "(line 2) does; each database needs its own replica location")
        #expect(
            configError(
                """
                databases:
                  - path: a.sqlite3
                    replica: {url: backups}
                  - path: b.sqlite3
                    replica: {url: 'file:///app/config/backups'}
                """
            ).hasPrefix("config.yml:4: database 'b.sqlite3' replicates to file:///app/config/backups"))
    }

    @Test func duplicateKeys() {
        #expect(
            configError(
                """
                databases:
                  - path: db.sqlite3
                    max-delay: 1s
                    replica: {url: /r}
                    max-delay: 2s
                """) == "config.yml:5: duplicate key 'max-delay' in database 'db.sqlite3' (first set at line 3)")
        #expect(
            configError("databases: []\ndatabases: []\n")
                == "config.yml:2: duplicate key 'databases' (first set at line 1)")
    }

    @Test func badDurations() {
        func message(_ value: String) -> String {
            configError("databases:\n  - path: db.sqlite3\n    replica: {url: /r}\n    max-delay: \(value)\n")
        }
        #expect(
            message("1x")
                == "config.yml:4: invalid duration '1x' for 'max-delay' in database 'db.sqlite3' "
                + "(use a number and a unit: 50ms, 1s, 1.5s, 2m, 1h)")
        #expect(
            message("5")
                == "config.yml:4: invalid duration '5' for 'max-delay' in database 'db.sqlite3' "
                + "(missing unit: did you mean '5s' or '5ms'?)")
        #expect(
            message("-1s")
                == "config.yml:4: invalid duration '-1s' for 'max-delay' in database 'db.sqlite3' (must not be negative)"
        )
        #expect(message("1 s").hasPrefix("config.yml:4: invalid duration '1 s'"))
        #expect(
            configError("defaults:\n  max-delay: soon\ndatabases: []\n")
                == "config.yml:2: invalid duration 'soon' for 'max-delay' in defaults "
                + "(use a number and a unit: 50ms, 1s, 1.5s, 2m, 1h)")
    }

    @Test func badSizes() {
        #expect(
            configError("databases:\n  - path: db.sqlite3\n    replica: {url: /r}\n    spool-max-bytes: 64 megs\n")
                == "config.yml:4: invalid size '64 megs' for 'spool-max-bytes' in database 'db.sqlite3' "
                + "(use bytes or a unit: 64MiB, 1GiB, 500MB)")
        #expect(
            configError("databases:\n  - path: db.sqlite3\n    replica: {url: /r}\n    spool-max-bytes: 0\n")
                == "config.yml:4: 'spool-max-bytes' in database 'db.sqlite3' must be greater than zero")
    }

    @Test func nonScalarValues() {
        #expect(
            configError("databases:\n  - path: db.sqlite3\n    replica: {url: /r}\n    max-delay: [1s, 2s]\n")
                == "config.yml:4: 'max-delay' in database 'db.sqlite3' must be a single value, not a list")
        #expect(
            configError("databases:\n  - path: db.sqlite3\n    replica:\n      url: {a: b}\n")
                == "config.yml:4: 'url' in the replica of database 'db.sqlite3' must be a single value, not a mapping")
        #expect(
            configError("databases:\n  - ? [a]\n    : b\n") == "config.yml:2: keys must be plain names in database '#1'"
        )
    }

    @Test func badBooleans() {
        #expect(
            configError(
                "databases:\n  - path: db.sqlite3\n    replica:\n      url: s3://b/p\n      force-path-style: maybe\n")
                == "config.yml:5: 'force-path-style' in the replica of database 'db.sqlite3' must be true or false, "
                + "not 'maybe'")
    }

    @Test func badEndpoints() {
        func message(_ endpoint: String) -> String {
            configError(
                "databases:\n  - path: db.sqlite3\n    replica:\n      url: s3://b/p\n      endpoint: \(endpoint)\n")
        }
        #expect(
            message("localhost:8333")
                == "config.yml:5: invalid endpoint 'localhost:8333' in the replica of database 'db.sqlite3' "
                + "(did you mean 'https://localhost:8333'?)")
        #expect(
            message("ftp://host")
                == "config.yml:5: invalid endpoint 'ftp://host' in the replica of database 'db.sqlite3' "
                + "(expected http://HOST[:PORT] or https://HOST[:PORT])")
        #expect(
            message("https://")
                == "config.yml:5: invalid endpoint 'https://' in the replica of database 'db.sqlite3' (no host)")
        let withCredentials = message("https://AKID:TOPSECRET@s3.example.com")
        #expect(
            withCredentials
                == "config.yml:5: credentials in 'endpoint' in the replica of database 'db.sqlite3' are not supported; "
                + "use 'access-key-id' and 'secret-access-key'")
        #expect(!withCredentials.contains("TOPSECRET"))
    }

    @Test func endpointAndR2AccountConflict() {
        #expect(
            configError(
                """
                defaults:
                  replica:
                    endpoint: https://s3.example.com
                databases:
                  - path: db.sqlite3
                    replica:
                      url: s3://bucket/db
                      r2-account-id: abc123
                """)
                == "config.yml:8: the replica of database 'db.sqlite3' sets both 'endpoint' and 'r2-account-id'; "
                + "set one (R2's endpoint is derived from the account id)")
        #expect(
            configError(
                "databases:\n  - path: db.sqlite3\n    replica:\n      url: s3://b/p\n      r2-account-id: 'not/an id'\n"
            )
                == "config.yml:5: invalid 'r2-account-id' 'not/an id' in the replica of database 'db.sqlite3' "
                + "(letters and digits only)")
    }

    @Test func badReplicaURLs() {
        func message(_ url: String) -> String {
            configError("databases:\n  - path: db.sqlite3\n    replica:\n      url: \(url)\n")
        }
        #expect(
            message("gs://bucket/db")
                == "config.yml:4: invalid 'url' in the replica of database 'db.sqlite3': unsupported scheme 'gs' "
                + "(use s3://BUCKET/PREFIX or a file:// directory)")
        #expect(
            message("s3:///db")
                == "config.yml:4: invalid 'url' in the replica of database 'db.sqlite3': 's3:///db' has no bucket "
                + "(s3://BUCKET/PREFIX)")
        #expect(
            message("s3://bucket/db?region=auto")
                == "config.yml:4: invalid 'url' in the replica of database 'db.sqlite3': query parameters in the url are not "
                + "supported; use the 'endpoint', 'region' and 'force-path-style' keys")
        #expect(
            message("s3://bucket/a/../b")
                == "config.yml:4: invalid 'url' in the replica of database 'db.sqlite3': 's3://bucket/a/../b' has a '.' or "
                + "'..' in its prefix")
        #expect(
            message("'s3://bu cket/db'")
                == "config.yml:4: invalid 'url' in the replica of database 'db.sqlite3': invalid bucket name 'bu cket' in "
                + "'s3://bu cket/db'")
        #expect(
            message("file://backups/db")
                == "config.yml:4: invalid 'url' in the replica of database 'db.sqlite3': 'file://backups/db' names host "
                + "'backups'; use file:///absolute/path or a plain directory path")
        #expect(
            message("'file:'")
                == "config.yml:4: invalid 'url' in the replica of database 'db.sqlite3': 'file:' has no directory path")
        let withCredentials = message("s3://AKID:TOPSECRET@bucket/db")
        #expect(
            withCredentials
                == "config.yml:4: invalid 'url' in the replica of database 'db.sqlite3': credentials in the url are not "
                + "supported; use 'access-key-id' and 'secret-access-key'")
        #expect(!withCredentials.contains("TOPSECRET"))
    }

    @Test func undefinedEnvironmentVariable() {
        #expect(
            configError(
                """
                databases:
                  - path: db.sqlite3
                    replica:
                      url: s3://bucket/db
                      secret-access-key: ${AWS_SECRET_ACCESS_KEY}
                """, environment: ["HOME": "/root"])
                == "config.yml:5: environment variable 'AWS_SECRET_ACCESS_KEY' is not set "
                + "(used by 'secret-access-key' in the replica of database 'db.sqlite3')")
        #expect(
            configError("defaults:\n  max-delay: $DELAY\ndatabases: []\n")
                == "config.yml:2: environment variable 'DELAY' is not set (used by 'max-delay' in defaults)")
        // A database whose path cannot be expanded is named as written.
        #expect(
            configError("databases:\n  - path: ${ROOT}/db.sqlite3\n    replica: {url: /r}\n")
                == "config.yml:2: environment variable 'ROOT' is not set (used by 'path' in database '${ROOT}/db.sqlite3')"
        )
    }

    @Test func malformedVariableReferences() {
        #expect(
            configError("databases:\n  - path: db.sqlite3\n    replica: {url: '/r/${BROKEN'}\n")
                == "config.yml:3: malformed variable reference '${BROKEN' in 'url' in the replica of database "
                + "'db.sqlite3' (write $$ for a literal $)")
        // The secret's text is not repeated.
        let secret = configError(
            "databases:\n  - path: db.sqlite3\n    replica:\n      url: s3://b/p\n      secret-access-key: 'pa${ss-word'\n"
        )
        #expect(
            secret
                == "config.yml:5: malformed variable reference in 'secret-access-key' in the replica of database "
                + "'db.sqlite3' (write $$ for a literal $)")
        #expect(!secret.contains("ss-word"))
    }

    @Test func yamlSyntaxErrorsGiveLineAndColumn() {
        let message = configError(
            """
            databases:
              - path: db.sqlite3
                replica: {url: /r
              - path: other.sqlite3
            """)
        #expect(
            message
                == "config.yml:4:9: invalid YAML: did not find expected ',' or '}' while parsing a flow mapping "
                + "that starts at line 3")
        let badIndent = configError("databases:\n  - path: a\n   replica: x\n")
        #expect(badIndent.hasPrefix("config.yml:3:4: invalid YAML: "), "\(badIndent)")
        #expect(
            configError("databases: []\n---\ndatabases: []\n")
                == "config.yml:2:1: invalid YAML: expected a single document in the stream, but found another document")
        #expect(configError("databases:\n  - path: *nope\n") == "config.yml:2:11: invalid YAML: found undefined alias")
    }

    @Test func errorsNeverShowSecrets() {
        let secret = "sup3r-s3cret-value"
        let yamls = [
            "databases:\n  - path: db.sqlite3\n    replica:\n      url: s3://b/p\n      secret-access-key: \(secret)\n      regoin: x\n",
            "databases:\n  - path: db.sqlite3\n    replica:\n      url: s3://b/p\n      access-key-id: \(secret)\n      endpoint: nope\n",
            "databases:\n  - path: db.sqlite3\n    replica:\n      url: s3://b/p\n      secret-access-key: [\(secret)]\n",
            "databases:\n  - path: db.sqlite3\n    replica:\n      url: s3://b/p\n      secret-access-key: $S\n      max-delay: 1\n",
        ]
        for yaml in yamls {
            let message = configError(yaml, environment: ["S": secret])
            #expect(!message.isEmpty)
            #expect(!message.contains(secret), "\(message)")
        }
    }
}

// MARK: Descriptions

@Suite struct ConfigDescriptionTests {
    private func config() throws -> ReplicationConfig {
        try parse(
            """
            databases:
              - path: db.sqlite3
                replica:
                  url: s3://bucket/db
                  region: auto
                  access-key-id: AKIDVISIBLE
                  secret-access-key: SECRETVISIBLE
            """)
    }

    @Test func descriptionsRedactCredentials() throws {
        let config = try config()
        let replica = try #require(config.databases.first?.replica)
        #expect(
            replica.description
                == "ReplicaConfig(url: s3://bucket/db, region: auto, accessKeyID: <redacted>, "
                + "secretAccessKey: <redacted>)")
        var dumped = ""
        dump(config, to: &dumped)
        for text in [
            String(describing: replica), String(reflecting: replica), String(describing: config),
            String(reflecting: config), String(describing: config.databases), dumped, "\(config.databases[0])",
        ] {
            #expect(!text.contains("AKIDVISIBLE"), "\(text)")
            #expect(!text.contains("SECRETVISIBLE"), "\(text)")
        }
        #expect(dumped.contains("<redacted>"))
        #expect(dumped.contains("s3://bucket/db"))
    }

    @Test func descriptionListsOnlyTheSettingsThatAreSet() {
        let replica = ReplicaConfig(kind: .file(directory: "/var/backups"))
        #expect(replica.description == "ReplicaConfig(url: file:///var/backups)")
    }
}

// MARK: Loading files and looking databases up

@Suite struct ConfigFileTests {
    @Test func loadResolvesPathsAgainstTheFilesFolder() throws {
        try withTemporaryDirectory { directory in
            try FileManager.default.createDirectory(atPath: directory + "/config", withIntermediateDirectories: true)
            let configPath = directory + "/config/replication.yml"
            try write(
                """
                databases:
                  - path: ../storage/production.sqlite3
                    replica:
                      url: ../backups/production
                """, to: configPath)
            let config = try ReplicationConfig.load(path: configPath, environment: [:])
            #expect(config.sourcePath == configPath)
            let database = try #require(config.databases.first)
            #expect(database.path == directory + "/storage/production.sqlite3")
            #expect(database.replica.kind == .file(directory: directory + "/backups/production"))
        }
    }

    @Test func loadErrorsNameTheFileAsGiven() throws {
        try withTemporaryDirectory { directory in
            let configPath = directory + "/replication.yml"
            try write("databases:\n  - path: db.sqlite3\n    maxdelay: 1s\n", to: configPath)
            let error = #expect(throws: ReplicationError.self) {
                try ReplicationConfig.load(path: configPath, environment: [:])
            }
            #expect(error?.code == .invalidConfig)
            #expect(
                error?.message
                    == "\(configPath):3: unknown key 'maxdelay' in database 'db.sqlite3' (did you mean 'max-delay'?)")
        }
    }

    @Test func loadMissingFileOrDirectory() throws {
        try withTemporaryDirectory { directory in
            let missing = #expect(throws: ReplicationError.self) {
                try ReplicationConfig.load(path: directory + "/nope.yml", environment: [:])
            }
            #expect(missing?.code == .invalidConfig)
            #expect(missing?.message == "\(directory)/nope.yml: configuration file does not exist")
            let folder = #expect(throws: ReplicationError.self) {
                try ReplicationConfig.load(path: directory, environment: [:])
            }
            #expect(folder?.message == "\(directory): is a directory, not a configuration file")
            try Data([0xff, 0xfe, 0x00, 0xd8]).write(to: URL(fileURLWithPath: directory + "/binary.yml"))
            let binary = #expect(throws: ReplicationError.self) {
                try ReplicationConfig.load(path: directory + "/binary.yml", environment: [:])
            }
            #expect(binary?.code == .invalidConfig)
        }
    }

    @Test func loadUsesTheProcessEnvironmentByDefault() throws {
        try withTemporaryDirectory { directory in
            let configPath = directory + "/replication.yml"
            try write("databases:\n  - path: $HOME/db.sqlite3\n    replica: {url: /r}\n", to: configPath)
            let config = try ReplicationConfig.load(path: configPath)
            let home = try #require(ProcessInfo.processInfo.environment["HOME"])
            #expect(config.databases.first?.path == ConfigPaths.standardize(home + "/db.sqlite3"))
        }
    }

    @Test func databaseLookupByCanonicalPath() throws {
        try withTemporaryDirectory { directory in
            let fileManager = FileManager.default
            try fileManager.createDirectory(atPath: directory + "/app/storage", withIntermediateDirectories: true)
            // Capistrano-style: current -> app; the config names paths through the symlink.
            try fileManager.createSymbolicLink(atPath: directory + "/current", withDestinationPath: directory + "/app")
            let config = try ReplicationConfig.parse(
                yaml: """
                    databases:
                      - path: storage/production.sqlite3
                        replica: {url: /r/production}
                      - path: storage/new/cache.sqlite3      # folder does not exist yet
                        replica: {url: /r/cache}
                    """,
                baseDirectory: directory + "/current", environment: [:], sourceName: "config.yml")
            let production = directory + "/current/storage/production.sqlite3"
            #expect(config.databases.first?.path == production)

            // The file does not exist yet: lexical and symlink-resolved spellings both match.
            #expect(config.database(forPath: production)?.path == production)
            #expect(config.database(forPath: directory + "/app/storage/production.sqlite3")?.path == production)
            #expect(
                config.database(forPath: directory + "/app/storage/../storage//production.sqlite3")?.path == production)
            #expect(config.database(forPath: directory + "/current/storage/new/cache.sqlite3") != nil)
            #expect(config.database(forPath: directory + "/app/storage/new/cache.sqlite3") != nil)

            // Once the file exists, still the same entry.
            try write("", to: directory + "/app/storage/production.sqlite3")
            #expect(config.database(forPath: directory + "/app/storage/production.sqlite3")?.path == production)

            // A database file that is itself a symlink matches its target (SQLite opens the target).
            try fileManager.createSymbolicLink(
                atPath: directory + "/alias.sqlite3", withDestinationPath: "app/storage/production.sqlite3")
            #expect(config.database(forPath: directory + "/alias.sqlite3")?.path == production)

            #expect(config.database(forPath: directory + "/app/storage/other.sqlite3") == nil)
            #expect(config.database(forPath: directory + "/app/storage/production.sqlite3-wal") == nil)
        }
    }

    @Test func databaseLookupWithRelativePathUsesTheCurrentDirectory() throws {
        let cwd = ConfigPaths.standardize(FileManager.default.currentDirectoryPath)
        let config = ReplicationConfig(databases: [
            DatabaseConfig(path: "some/db.sqlite3", replica: ReplicaConfig(kind: .file(directory: "/r")))
        ])
        #expect(config.databases[0].path == cwd + "/some/db.sqlite3")
        #expect(config.database(forPath: "some/./db.sqlite3") == config.databases[0])
        #expect(config.database(forPath: cwd + "/some/db.sqlite3") == config.databases[0])
    }
}

// MARK: Public initializers

@Suite struct ReplicaConfigInitTests {
    @Test func urlInitializer() throws {
        let s3 = try ReplicaConfig(url: "s3://bucket/a/b/")
        #expect(s3.kind == .s3(bucket: "bucket", prefix: "a/b"))
        #expect(s3.url == "s3://bucket/a/b")
        let file = try ReplicaConfig(url: "backups", relativeTo: "/srv")
        #expect(file.kind == .file(directory: "/srv/backups"))
        #expect(file.url == "file:///srv/backups")
        let error = #expect(throws: ReplicationError.self) { try ReplicaConfig(url: "gs://bucket") }
        #expect(error?.code == .invalidArgument)
        #expect(
            error?.message == "replica url: unsupported scheme 'gs' (use s3://BUCKET/PREFIX or a file:// directory)")
    }

    @Test func kindInitializerBuildsTheURL() {
        #expect(ReplicaConfig(kind: .s3(bucket: "b", prefix: "")).url == "s3://b")
        #expect(ReplicaConfig(kind: .s3(bucket: "b", prefix: "p/q")).url == "s3://b/p/q")
        #expect(ReplicaConfig(kind: .file(directory: "/a b/c")).url == "file:///a%20b/c")
    }

    @Test func databaseConfigDefaults() {
        let database = DatabaseConfig(path: "/srv/../db.sqlite3", replica: ReplicaConfig(kind: .file(directory: "/r")))
        #expect(database.path == "/db.sqlite3")
        #expect(database.maxDelay == ReplicationConfig.defaultMaxDelay)
        #expect(database.maxDelay == .seconds(1))
        #expect(database.spoolMaxBytes == nil)
    }
}

// MARK: Limits of values

@Suite struct ConfigLimitTests {
    @Test(arguments: [
        ("max-delay", "25h", "24h"), ("durability-timeout", "100h", "24h"), ("group-commit-window", "11s", "10s"),
        ("retention", "87601h", "87600h"), ("snapshot-interval", "2562047h", "87600h"),
    ])
    func durationsHaveAnUpperBound(key: String, value: String, limit: String) {
        #expect(
            configError("databases:\n  - path: db.sqlite3\n    replica: {url: /r}\n    \(key): \(value)\n")
                == "config.yml:4: '\(key)' in database 'db.sqlite3' is \(value); it must be at most \(limit)")
    }

    @Test func levelIntervalsAndSpoolSizesHaveAnUpperBound() {
        #expect(
            configError("databases:\n  - path: db.sqlite3\n    replica: {url: /r}\n    levels:\n      - interval: 87601h\n")
                == "config.yml:5: 'interval' in level 1 in database 'db.sqlite3' is 87601h; it must be at most 87600h")
        #expect(
            configError("databases:\n  - path: db.sqlite3\n    replica: {url: /r}\n    spool-max-bytes: 2PiB\n")
                .hasPrefix("config.yml:4: invalid size '2PiB'"))
        #expect(
            configError("databases:\n  - path: db.sqlite3\n    replica: {url: /r}\n    spool-max-bytes: 1025TiB\n")
                == "config.yml:4: 'spool-max-bytes' in database 'db.sqlite3' must be at most 1PiB")
    }

    @Test(arguments: ["nan", ".nan", "inf", ".inf", "-.inf", "1e300", "-1s", "1e3s"])
    func nonFiniteAndNegativeDurationsAreRefused(value: String) {
        let message = configError("databases:\n  - path: db.sqlite3\n    replica: {url: /r}\n    max-delay: \(value)\n")
        #expect(message.hasPrefix("config.yml:4: invalid duration '\(value)' for 'max-delay'"), "\(message)")
    }

    @Test func aPathNamingAFolderIsRefused() throws {
        try withTemporaryDirectory { dir in
            try FileManager.default.createDirectory(atPath: dir + "/data", withIntermediateDirectories: true)
            try write("not a folder", to: dir + "/file")
            let config = dir + "/replication.yml"
            try write("databases:\n  - path: data\n    replica: {url: /r}\n", to: config)
            #expect(throws: ReplicationError.self) { try ReplicationConfig.load(path: config) }
            do { _ = try ReplicationConfig.load(path: config) } catch let error as ReplicationError {
                #expect(
                    error.message
                        == "\(config):2: 'path' in database 'data' names a folder (\(dir)/data); "
                        + "it must name the database file")
            }
            try write("databases:\n  - path: file/db.sqlite3\n    replica: {url: /r}\n", to: config)
            let inside = #expect(throws: ReplicationError.self) { try ReplicationConfig.load(path: config) }
            #expect(inside?.message.hasSuffix("names a file inside \(dir)/file, which is not a folder") == true)
            try write("databases:\n  - path: /dev/null\n    replica: {url: /r}\n", to: config)
            let device = #expect(throws: ReplicationError.self) { try ReplicationConfig.load(path: config) }
            #expect(device?.message.hasSuffix("names /dev/null, which is not a regular file") == true)
        }
    }

    @Test func messagesStayOnOneLine() {
        let message = configError("databases:\n  - path: db.sqlite3\n    replica: {url: /r}\n    \"bad\\nkey\": 1\n")
        #expect(message.hasPrefix("config.yml:4: unknown key 'bad\\nkey'"), "\(message)")
        let fromVariable = configError(
            "databases:\n  - path: db.sqlite3\n    replica: {url: /r}\n    spool-full: $MODE\n",
            environment: ["MODE": "block\ngrow"])
        #expect(fromVariable == "config.yml:4: 'spool-full' in database 'db.sqlite3' must be 'block' or 'grow', not 'block\\ngrow'")
    }
}

@Suite struct EnvironmentSettingsTests {
    @Test(arguments: [("", 30_000), ("30", 30_000), ("2.5", 2_500), ("0", 0), ("500ms", 500), ("3600", 3_600_000)])
    func exitFlushTimeout(text: String, milliseconds: Int64) throws {
        let timeout = try EnvironmentSettings.exitFlushTimeout([EnvironmentSettings.exitFlushVariable: text])
        #expect(timeout == .milliseconds(milliseconds))
        #expect(try EnvironmentSettings.exitFlushTimeout([:]) == .seconds(30))
    }

    @Test(arguments: ["nan", "inf", "-inf", "1e300", "-1", "3601", "1h1s", "abc", ".", "1..2", "0x10", " "])
    func badExitFlushTimeoutsAreOneClearLine(text: String) {
        let error = #expect(throws: ReplicationError.self) {
            try EnvironmentSettings.exitFlushTimeout([EnvironmentSettings.exitFlushVariable: text])
        }
        #expect(error?.message.hasPrefix("VFS_REPLICATION_EXIT_FLUSH_SECONDS='\(text)' must be") == true, "\(String(describing: error))")
    }
}
