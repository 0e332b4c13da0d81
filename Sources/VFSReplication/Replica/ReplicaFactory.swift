import Foundation
import Logging

/// Builds the replica client for a configured replica location: a directory or S3 client,
/// wrapped in `EncryptedReplicaClient` when the replica has an `encryption` section.
public func makeReplicaClient(_ config: ReplicaConfig) throws -> any ReplicaClient {
    let client: any ReplicaClient
    switch config.kind {
    case .file(let directory):
        client = FileReplicaClient(directory: directory)
    case .s3:
        client = try S3ReplicaClient(config: config)
    }
    if let encryption = config.encryption { return EncryptedReplicaClient(inner: client, encryption: encryption) }
    return client
}

/// Builds what a database ships to: its replica's client, or, when the config lists several
/// (`replicas:`), a `ReplicaSet` of their clients that counts a file shipped once
/// `durable-replicas` of them hold it. `confirmedTXID` is the database's shipped TXID (what a
/// replica catching up may be copied).
func makeDatabaseReplica(
    _ db: DatabaseConfig, logger: Logger, confirmedTXID: @escaping @Sendable () -> UInt64
) throws -> any ReplicaClient {
    if db.replicas.count == 1 { return try makeReplicaClient(db.replica) }
    var logger = logger
    logger[metadataKey: "db.path"] = .string(db.path)
    return ReplicaSet(
        members: try db.replicas.map { ($0.label, try makeReplicaClient($0)) }, durable: db.durableReplicas,
        logger: logger, confirmedTXID: confirmedTXID)
}
