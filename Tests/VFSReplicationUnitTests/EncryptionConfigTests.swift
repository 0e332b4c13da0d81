import Foundation
import Testing

@testable import VFSReplication

/// The `encryption:` section of a replica: keys from the environment, messages naming the file,
/// line, key id and variable, never the key.
@Suite("Encryption config")
struct EncryptionConfigTests {
    let k1 = String(repeating: "a1", count: 32)
    let k2 = Data(Array(repeating: 0x5C, count: 32)).base64EncodedString()

    func parse(_ encryption: String, environment: [String: String]) throws -> ReplicationConfig {
        try ReplicationConfig.parse(
            yaml: """
                defaults:
                  max-delay: 1s
                databases:
                  - path: app.db
                    replica:
                      url: s3://bucket/app
                \(encryption)
                """, baseDirectory: "/srv/app", environment: environment, sourceName: "replication.yml")
    }

    func failure(_ encryption: String, environment: [String: String]) throws -> ReplicationError {
        try #require(throws: ReplicationError.self) { try parse(encryption, environment: environment) }
    }

    @Test func keysComeFromTheEnvironmentAndNeverShow() throws {
        let config = try parse(
            """
                  encryption:
                    key-id: k2
                    keys:
                      k2: env:KEY_TWO
                      k1: env:KEY_ONE
            """, environment: ["KEY_ONE": k1, "KEY_TWO": k2])
        let encryption = try #require(config.databases[0].replica.encryption)
        #expect(encryption.currentKeyID == "k2")
        #expect(Set(encryption.keys.keys) == ["k1", "k2"])
        #expect(encryption.keys["k1"]?.source == "env:KEY_ONE")
        let replica = config.databases[0].replica
        for text in ["\(replica)", String(reflecting: replica), "\(Mirror(reflecting: replica).children.map { "\($0.value)" })"] {
            #expect(!text.contains(k1) && !text.contains(k2) && !text.lowercased().contains("a1a1"), "\(text)")
            #expect(text.contains("k2"))
        }
        // The defaults' section applies to every database that has none.
        let shared = try ReplicationConfig.parse(
            yaml: """
                defaults:
                  replica:
                    encryption:
                      key-id: k1
                      keys:
                        k1: env:KEY_ONE
                databases:
                  - path: app.db
                    replica:
                      url: file:///backups/app
                """, baseDirectory: "/srv/app", environment: ["KEY_ONE": k1], sourceName: "replication.yml")
        #expect(shared.databases[0].replica.encryption?.currentKeyID == "k1")
    }

    @Test func mistakesNameTheLineKeyIdAndSourceButNotTheKey() throws {
        let missing = try failure(
            """
                  encryption:
                    key-id: k1
                    keys:
                      k1: env:NOT_SET_ANYWHERE
            """, environment: [:])
        #expect(missing.code == .invalidConfig)
        #expect(missing.message.hasPrefix("replication.yml:10: "), "\(missing.message)")
        #expect(missing.message.contains("'k1'") && missing.message.contains("'NOT_SET_ANYWHERE' is not set"))
        #expect(missing.message.contains("database 'app.db'"))

        let short = try failure(
            """
                  encryption:
                    key-id: k1
                    keys:
                      k1: env:SHORT
            """, environment: ["SHORT": "0123456789abcdef"])
        #expect(short.message.contains("env:SHORT") && !short.message.contains("0123456789abcdef"), "\(short.message)")

        let literal = try failure(
            """
                  encryption:
                    key-id: k1
                    keys:
                      k1: \(k1)
            """, environment: [:])
        #expect(literal.message.contains("env:VARIABLE or file:PATH") && !literal.message.contains(k1), "\(literal.message)")

        let expandedLiteral = try failure(
            """
                  encryption:
                    key-id: k1
                    keys:
                      k1: ${THE_KEY}
            """, environment: ["THE_KEY": k1])
        #expect(!expandedLiteral.message.contains(k1), "\(expandedLiteral.message)")

        let unknownCurrent = try failure(
            """
                  encryption:
                    key-id: k3
                    keys:
                      k1: env:KEY_ONE
            """, environment: ["KEY_ONE": k1])
        #expect(unknownCurrent.message.contains("'k3' is not among the keys ('k1')"), "\(unknownCurrent.message)")

        let noFile = try failure(
            """
                  encryption:
                    key-id: k1
                    keys:
                      k1: file:secrets/k1.key
            """, environment: [:])
        #expect(noFile.message.contains("/srv/app/secrets/k1.key does not exist"), "\(noFile.message)")

        let unknownKey = try failure(
            """
                  encryption:
                    key-id: k1
                    cipher: aes
                    keys:
                      k1: env:KEY_ONE
            """, environment: ["KEY_ONE": k1])
        #expect(unknownKey.message.contains("unknown key 'cipher'"), "\(unknownKey.message)")
    }
}
