import Foundation

/// One key of an encrypted replica: an id (stored in every object it seals) and 32 bytes.
///
/// ```swift
/// let key = try EncryptionKey(id: "k2", text: hexOrBase64, source: "env:REPLICA_KEY_K2")
/// ```
///
/// The material never leaves this type in text: `description`, `debugDescription` and the mirror
/// show the id and where the key came from (`env:VAR`, `file:/path`), nothing else.
public struct EncryptionKey: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible,
    CustomReflectable
{
    /// 1 to 32 letters, digits, `.`, `_` or `-`.
    public let id: String
    /// Where the key came from, for messages (`env:REPLICA_KEY_K2`, `file:/run/secrets/k1`).
    public let source: String
    /// Subkeys, derived once (HMAC-SHA256 of the key over a fixed label, i.e. HKDF-Expand with
    /// one block; the key is uniformly random, so no extract step is needed). Separate keys for
    /// separate jobs: the AES key never keys the HMAC, and the check value reveals neither.
    let cipherKey: [UInt8]
    let nonceKey: [UInt8]
    /// 8 bytes stored in each object's header, so that a different key with the same id is told
    /// apart from a tampered object.
    let check: [UInt8]

    public static let length = 32
    public static let maxIDLength = 32

    /// `material` must be 32 bytes.
    public init(id: String, material: [UInt8], source: String) throws {
        guard Self.isValidID(id) else {
            throw ReplicationError(
                .invalidArgument,
                "invalid encryption key id '\(id.prefix(40))': 1 to \(Self.maxIDLength) letters, digits, '.', '_' or '-'")
        }
        guard material.count == Self.length else {
            throw ReplicationError(
                .invalidArgument,
                "encryption key '\(id)' (\(source)) has \(material.count) bytes, not \(Self.length)")
        }
        self.id = id
        self.source = source
        cipherKey = S3Crypto.hmacSHA256(key: material, Array("VFSRENC1 aes-256-gcm key\u{1}".utf8))
        nonceKey = S3Crypto.hmacSHA256(key: material, Array("VFSRENC1 nonce key\u{1}".utf8))
        check = Array(S3Crypto.hmacSHA256(key: material, Array("VFSRENC1 key check\u{1}".utf8)).prefix(8))
    }

    /// Key text as 64 hex digits or base64 of 32 bytes (surrounding whitespace ignored).
    /// Errors say what was wrong with the text, never the text.
    public init(id: String, text: String, source: String) throws {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard let material = Self.decode(trimmed) else {
            throw ReplicationError(
                .invalidArgument,
                "encryption key '\(id)' (\(source)) is not 32 bytes as 64 hex digits or base64 "
                    + "(it has \(trimmed.count) characters; make one with: openssl rand -hex 32)")
        }
        try self.init(id: id, material: material, source: source)
    }

    static func decode(_ text: String) -> [UInt8]? {
        let utf8 = Array(text.utf8)
        if utf8.count == 2 * length, utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0 | 0x20) })
        {
            var out: [UInt8] = []
            for i in stride(from: 0, to: utf8.count, by: 2) {
                out.append(UInt8(String(decoding: utf8[i..<i + 2], as: UTF8.self), radix: 16)!)
            }
            return out
        }
        if let data = Data(base64Encoded: text), data.count == length { return Array(data) }
        return nil
    }

    public static func isValidID(_ id: String) -> Bool {
        !id.isEmpty && id.utf8.count <= maxIDLength
            && id.utf8.allSatisfy {
                (48...57).contains($0) || (65...90).contains($0) || (97...122).contains($0) || "._-".utf8.contains($0)
            }
    }

    /// Reads a key from `env:VARIABLE` or `file:PATH` (relative paths from `baseDirectory`).
    /// Messages name the key id and the variable or file, never what they hold.
    public static func load(
        id: String, reference: String, environment: [String: String], baseDirectory: String
    ) throws -> EncryptionKey {
        if reference.hasPrefix("env:") {
            let name = String(reference.dropFirst(4))
            guard !name.isEmpty else {
                throw ReplicationError(.invalidArgument, "encryption key '\(id)': 'env:' names no variable")
            }
            guard let value = environment[name], !value.isEmpty else {
                throw ReplicationError(
                    .invalidArgument, "encryption key '\(id)': environment variable '\(name)' is not set")
            }
            return try EncryptionKey(id: id, text: value, source: "env:\(name)")
        }
        if reference.hasPrefix("file:") {
            let given = String(reference.dropFirst(5))
            guard !given.isEmpty else {
                throw ReplicationError(.invalidArgument, "encryption key '\(id)': 'file:' names no file")
            }
            let path = ConfigPaths.absolute(given, relativeTo: baseDirectory, home: environment["HOME"])
            guard LTXIO.exists(path), !LTXIO.isDirectory(path) else {
                throw ReplicationError(.invalidArgument, "encryption key '\(id)': key file \(path) does not exist")
            }
            guard let handle = FileHandle(forReadingAtPath: path) else {
                throw ReplicationError(.invalidArgument, "encryption key '\(id)': key file \(path) cannot be read")
            }
            defer { try? handle.close() }
            // A key file is 64 hex digits or 44 base64 characters and a newline; more is not a key.
            let data = (try? handle.read(upToCount: 4096)) ?? Data()
            guard let text = String(data: data, encoding: .utf8) else {
                throw ReplicationError(
                    .invalidArgument, "encryption key '\(id)': key file \(path) is not 64 hex digits or base64 text")
            }
            return try EncryptionKey(id: id, text: text, source: "file:\(path)")
        }
        throw ReplicationError(
            .invalidArgument,
            "encryption key '\(id)' must be given as env:VARIABLE or file:PATH (keys never go in the configuration itself)")
    }

    public static func == (a: EncryptionKey, b: EncryptionKey) -> Bool {
        a.id == b.id && a.source == b.source && a.cipherKey == b.cipherKey && a.nonceKey == b.nonceKey
    }

    public var description: String { "EncryptionKey(id: \(id), source: \(source))" }
    public var debugDescription: String { description }
    public var customMirror: Mirror { Mirror(self, children: ["id": id, "source": source], displayStyle: .struct) }
}

/// A replica's encryption: the key new objects are sealed with, and every key that may have
/// sealed an object still in the replica (rotation: add a key, make it current, keep the old one
/// until retention has removed what it sealed).
///
/// ```yaml
/// replica:
///   url: s3://bucket/app
///   encryption:
///     key-id: k2
///     keys:
///       k2: env:REPLICA_KEY_K2
///       k1: file:/run/secrets/k1
/// ```
public struct ReplicaEncryption: Sendable, Equatable, CustomStringConvertible {
    public let currentKeyID: String
    public let keys: [String: EncryptionKey]

    public init(currentKeyID: String, keys: [EncryptionKey]) throws {
        var byID: [String: EncryptionKey] = [:]
        for key in keys {
            guard byID[key.id] == nil else {
                throw ReplicationError(.invalidArgument, "encryption key '\(key.id)' is given twice")
            }
            byID[key.id] = key
        }
        guard byID[currentKeyID] != nil else {
            let known = byID.keys.sorted().map { "'\($0)'" }.joined(separator: ", ")
            throw ReplicationError(
                .invalidArgument,
                "encryption key-id '\(currentKeyID)' is not among the keys (\(known.isEmpty ? "none" : known))")
        }
        self.currentKeyID = currentKeyID
        self.keys = byID
    }

    /// The key new objects are sealed with.
    public var currentKey: EncryptionKey { keys[currentKeyID]! }

    /// From command-line arguments `ID=env:VAR` or `ID=file:PATH`; the first is current unless
    /// `currentKeyID` says otherwise. Nil for no arguments.
    public static func fromArguments(
        _ arguments: [String], currentKeyID: String? = nil, environment: [String: String] = ProcessInfo.processInfo.environment,
        baseDirectory: String = FileManager.default.currentDirectoryPath
    ) throws -> ReplicaEncryption? {
        guard !arguments.isEmpty else { return nil }
        var keys: [EncryptionKey] = []
        for argument in arguments {
            guard let equals = argument.firstIndex(of: "=") else {
                throw ReplicationError(
                    .invalidArgument, "--encryption-key takes ID=env:VARIABLE or ID=file:PATH (got no '=')")
            }
            let id = String(argument[..<equals])
            keys.append(
                try EncryptionKey.load(
                    id: id, reference: String(argument[argument.index(after: equals)...]), environment: environment,
                    baseDirectory: baseDirectory))
        }
        return try ReplicaEncryption(currentKeyID: currentKeyID ?? keys[0].id, keys: keys)
    }

    public var description: String {
        "encryption(key-id: \(currentKeyID), keys: \(keys.values.sorted { $0.id < $1.id }.map { "\($0.id) from \($0.source)" }.joined(separator: ", ")))"
    }
}
