import ArgumentParser
import Foundation
import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// `vfs-replicate init`: writes a starter config for some database files, with `${...}`
/// placeholders for the credentials, as Rails' Litestream generator does.
struct Init: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Write a starter replication config for the given database files.",
        discussion: """
            Every database gets an S3 replica s3://BUCKET/<file name without extension>; credentials \
            are ${...} placeholders filled from the environment when the config is loaded. With \
            --r2-account-id the replica uses Cloudflare R2's endpoint for that account. An existing \
            file is never overwritten.

            Examples:
              vfs-replicate init storage/production.sqlite3 storage/production_cache.sqlite3
              vfs-replicate init --r2-account-id 0123abcd --bucket my-app-backups storage/*.sqlite3
            """)

    @Option(help: "Cloudflare account id: replicate to R2 at https://ID.r2.cloudflarestorage.com.")
    var r2AccountId: String?
    @Option(help: "Bucket for the replicas (default: a ${VFS_REPLICATION_BUCKET} placeholder).") var bucket: String?
    @Option(
        name: [.short, .long],
        help: "Where to write the config (default: config/replication.yml when ./config exists, else replication.yml).")
    var output: String?
    @Argument(help: "Database files to replicate (they need not exist yet).") var databases: [String]

    func validate() throws {
        if databases.isEmpty { throw ValidationError("name at least one database file") }
        if let id = r2AccountId, id.isEmpty || !id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber) }) {
            throw ValidationError("--r2-account-id takes letters and digits only")
        }
        if let bucket,
            bucket.isEmpty || !bucket.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || "-._".contains($0)) })
        {
            throw ValidationError("invalid bucket name '\(bucket)'")
        }
    }

    func run() throws {
        let fm = FileManager.default
        let cwd = fm.currentDirectoryPath
        var isDirectory: ObjCBool = false
        let defaultOutput =
            fm.fileExists(atPath: cwd + "/config", isDirectory: &isDirectory) && isDirectory.boolValue
            ? "config/replication.yml" : "replication.yml"
        let outputPath = output ?? defaultOutput
        let absoluteOutput = URL(fileURLWithPath: outputPath, relativeTo: URL(fileURLWithPath: cwd + "/"))
            .standardizedFileURL.path
        guard !fm.fileExists(atPath: absoluteOutput) else {
            throw ValidationError("\(outputPath) exists; not overwriting it (remove it or pick another --output)")
        }
        let folder = (absoluteOutput as NSString).deletingLastPathComponent
        let yaml = StarterConfig.render(
            databases: databases.map {
                URL(fileURLWithPath: $0, relativeTo: URL(fileURLWithPath: cwd + "/")).standardizedFileURL.path
            },
            configFolder: folder, bucket: bucket, r2AccountID: r2AccountId, date: Date())

        // Validate before writing: the placeholders' variables are usually unset here (they are
        // deploy secrets), so they get stand-in values.
        let stand = StarterConfig.standInEnvironment(for: yaml)
        do {
            _ = try ReplicationConfig.parse(
                yaml: yaml, baseDirectory: folder, environment: stand, sourceName: outputPath)
        } catch let error as ReplicationError {
            throw ValidationError("the generated config does not load (please report this): \(error.message)")
        }
        guard fm.fileExists(atPath: folder) else {
            throw ValidationError("folder \(folder) does not exist")
        }
        // O_EXCL: never replace a file created since the check above.
        let fd = open(absoluteOutput, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw ValidationError("cannot create \(outputPath): \(String(cString: strerror(errno)))")
        }
        let bytes = Array(yaml.utf8)
        let written = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        guard written == bytes.count else {
            unlink(absoluteOutput)
            throw ValidationError("cannot write \(outputPath)")
        }
        let loaded = try ReplicationConfig.load(path: absoluteOutput, environment: stand)
        let n = loaded.databases.count
        print("wrote \(outputPath) (\(n) database\(n == 1 ? "" : "s"))")
        let variables = StarterConfig.placeholders(in: yaml)
        print("set these in the environment of every process that replicates: \(variables.joined(separator: ", "))")
        for db in loaded.databases where !fm.fileExists(atPath: db.path) {
            print("note: \(db.path) does not exist yet")
        }
    }
}

/// The text of a starter config (pure).
enum StarterConfig {
    static func render(databases: [String], configFolder: String, bucket: String?, r2AccountID: String?, date: Date)
        -> String
    {
        let day = ISO8601DateFormatter.string(
            from: date, timeZone: TimeZone(identifier: "UTC")!, formatOptions: [.withFullDate])
        var lines = [
            "# Replication config written by `vfs-replicate init` on \(day).",
            "# Database paths are relative to this file's folder. ${NAME} values come from the environment:",
            "# keep the credentials in your deploy secrets, never in this file.",
            "defaults:",
            "  max-delay: 1s                      # the longest a commit waits before it is shipped",
            "  replica:",
        ]
        if let r2AccountID {
            lines += [
                "    endpoint: https://\(r2AccountID).r2.cloudflarestorage.com",
                "    region: auto",
            ]
        } else {
            lines += [
                "    region: ${VFS_REPLICATION_REGION}",
                "    # endpoint: https://...          # for an S3-compatible store other than AWS",
            ]
        }
        lines += [
            "    access-key-id: ${VFS_REPLICATION_ACCESS_KEY_ID}",
            "    secret-access-key: ${VFS_REPLICATION_SECRET_ACCESS_KEY}",
            "databases:",
        ]
        let bucketText = bucket ?? "${VFS_REPLICATION_BUCKET}"
        var used: Set<String> = []
        for db in databases {
            var prefix = URL(fileURLWithPath: db).deletingPathExtension().lastPathComponent
            if prefix.isEmpty { prefix = "db" }
            var unique = prefix
            var n = 2
            while used.contains(unique) {
                unique = "\(prefix)-\(n)"
                n += 1
            }
            used.insert(unique)
            lines += [
                "  - path: \(yamlScalar(relativePath(db, from: configFolder)))",
                "    replica:",
                "      url: s3://\(bucketText)/\(unique)",
            ]
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// `${NAME}` placeholders used in `text`, in order of first use.
    static func placeholders(in text: String) -> [String] {
        var names: [String] = []
        let values = text.split(separator: "\n").map { line -> Substring in
            if line.drop(while: { $0 == " " }).hasPrefix("#") { return "" }
            return line.range(of: " #").map { line[..<$0.lowerBound] } ?? line
        }
        var rest = Substring(values.joined(separator: "\n"))
        while let start = rest.range(of: "${") {
            rest = rest[start.upperBound...]
            guard let end = rest.firstIndex(of: "}") else { break }
            let name = String(rest[..<end])
            if !names.contains(name) { names.append(name) }
            rest = rest[rest.index(after: end)...]
        }
        return names
    }

    /// The process environment plus a stand-in value for each placeholder it lacks.
    static func standInEnvironment(for text: String) -> [String: String] {
        var env = ProcessInfo.processInfo.environment
        for name in placeholders(in: text) where env[name]?.isEmpty ?? true {
            env[name] = name == "VFS_REPLICATION_BUCKET" ? "bucket" : "placeholder"
        }
        return env
    }

    /// `path` relative to `folder` (both absolute): `../storage/x.sqlite3`.
    static func relativePath(_ path: String, from folder: String) -> String {
        let p = path.split(separator: "/")
        let f = folder.split(separator: "/")
        var common = 0
        while common < min(p.count, f.count) && p[common] == f[common] { common += 1 }
        if common == 0 { return path }
        let up = Array(repeating: "..", count: f.count - common)
        return (up + p[common...].map(String.init)).joined(separator: "/")
    }

    /// Quotes a YAML scalar when plain style could misread it.
    static func yamlScalar(_ text: String) -> String {
        let plain = text.allSatisfy { $0.isLetter || $0.isNumber || "/._-+".contains($0) } && !text.hasPrefix("-")
        if plain { return text }
        return "'" + text.replacingOccurrences(of: "'", with: "''") + "'"
    }
}
