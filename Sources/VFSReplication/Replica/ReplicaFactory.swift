import Foundation

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
