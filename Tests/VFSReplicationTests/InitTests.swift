import Foundation
import Testing

@testable import VFSReplication

/// `vfs-replicate init`, run as a binary.
@Suite("vfs-replicate init")
struct InitTests {
    private func tool() throws -> String {
        try #require(TestSupport.builtProduct("vfs-replicate"), "vfs-replicate is not built next to the tests")
    }

    /// The environment without any of the placeholders' variables.
    private var cleanEnvironment: [String: String] {
        TestSupport.childEnvironment().filter { !$0.key.hasPrefix("VFS_REPLICATION_") }
    }

    @Test func writesAnR2ConfigForRailsDatabases() throws {
        let replicate = try tool()
        try TestSupport.withTemporaryDirectory { dir in
            try FileManager.default.createDirectory(atPath: dir + "/config", withIntermediateDirectories: true)
            let dbs = ["production", "production_cache", "production_queue", "production_cable"].map {
                "storage/\($0).sqlite3"
            }
            let r = try TestSupport.run(
                replicate, ["init", "--r2-account-id", "0123abcd", "--bucket", "app-backups"] + dbs,
                environment: cleanEnvironment, currentDirectory: dir)
            #expect(r.status == 0, "\(r)")
            #expect(r.stdout.contains("wrote config/replication.yml (4 databases)"), "\(r)")
            #expect(r.stdout.contains("VFS_REPLICATION_ACCESS_KEY_ID, VFS_REPLICATION_SECRET_ACCESS_KEY"), "\(r)")
            let text = try String(contentsOfFile: dir + "/config/replication.yml", encoding: .utf8)
            #expect(text.contains("endpoint: https://0123abcd.r2.cloudflarestorage.com"))
            #expect(text.contains("access-key-id: ${VFS_REPLICATION_ACCESS_KEY_ID}"))
            #expect(text.contains("secret-access-key: ${VFS_REPLICATION_SECRET_ACCESS_KEY}"))
            #expect(!text.contains("0123abcd:"), "no credential is written")

            // Unset placeholders make the loader fail, naming the variable; set, it loads.
            #expect(throws: ReplicationError.self) {
                try ReplicationConfig.load(path: dir + "/config/replication.yml", environment: [:])
            }
            let env = ["VFS_REPLICATION_ACCESS_KEY_ID": "AKIA", "VFS_REPLICATION_SECRET_ACCESS_KEY": "secret"]
            let config = try ReplicationConfig.load(path: dir + "/config/replication.yml", environment: env)
            #expect(config.databases.map(\.path) == dbs.map { dir + "/" + $0 })
            #expect(
                config.databases.map(\.replica.url) == [
                    "s3://app-backups/production", "s3://app-backups/production_cache",
                    "s3://app-backups/production_queue",
                    "s3://app-backups/production_cable",
                ])
            #expect(config.databases[0].replica.resolvedEndpoint == "https://0123abcd.r2.cloudflarestorage.com")
            #expect(config.databases[0].replica.accessKeyID == "AKIA")
        }
    }

    @Test func refusesToOverwriteAndValidatesArguments() throws {
        let replicate = try tool()
        try TestSupport.withTemporaryDirectory { dir in
            var r = try TestSupport.run(
                replicate, ["init", "app.db"], environment: cleanEnvironment, currentDirectory: dir)
            #expect(r.status == 0, "\(r)")
            let first = try String(contentsOfFile: dir + "/replication.yml", encoding: .utf8)
            #expect(
                first.contains("url: s3://${VFS_REPLICATION_BUCKET}/app") && first.contains("${VFS_REPLICATION_REGION}")
            )
            r = try TestSupport.run(
                replicate, ["init", "other.db"], environment: cleanEnvironment, currentDirectory: dir)
            #expect(r.status != 0 && r.stderr.contains("exists; not overwriting"), "\(r)")
            #expect(try String(contentsOfFile: dir + "/replication.yml", encoding: .utf8) == first)

            r = try TestSupport.run(replicate, ["init", "-o", "x.yml"], currentDirectory: dir)
            #expect(r.status != 0, "\(r)")
            r = try TestSupport.run(
                replicate, ["init", "--bucket", "no/slash", "-o", "x.yml", "a.db"], currentDirectory: dir)
            #expect(r.status != 0 && r.stderr.contains("invalid bucket"), "\(r)")
            r = try TestSupport.run(
                replicate, ["init", "--r2-account-id", "x y", "-o", "x.yml", "a.db"], currentDirectory: dir)
            #expect(r.status != 0 && r.stderr.contains("letters and digits"), "\(r)")
            #expect(!FileManager.default.fileExists(atPath: dir + "/x.yml"))

            // Two databases with one file name get distinct prefixes; paths are relative to the config.
            try FileManager.default.createDirectory(atPath: dir + "/etc", withIntermediateDirectories: true)
            r = try TestSupport.run(
                replicate, ["init", "--bucket", "b", "-o", "etc/r.yml", "a/app.db", "b/app.db"],
                environment: cleanEnvironment, currentDirectory: dir)
            #expect(r.status == 0, "\(r)")
            let text = try String(contentsOfFile: dir + "/etc/r.yml", encoding: .utf8)
            #expect(text.contains("path: ../a/app.db") && text.contains("path: ../b/app.db"), "\(text)")
            #expect(text.contains("s3://b/app\n") && text.contains("s3://b/app-2\n"), "\(text)")
        }
    }

    @Test func theDefaultCommandStillRuns() throws {
        let replicate = try tool()
        let r = try TestSupport.run(replicate, ["--help"])
        #expect(r.status == 0 && r.stdout.contains("init") && r.stdout.contains("run (default)"), "\(r)")
        let run = try TestSupport.run(replicate, ["run", "--help"])
        #expect(run.stdout.contains("--once") && run.stdout.contains("--http"), "\(run)")
    }
}
