import Foundation

/// Builds the replica client for a configured replica location.
func makeReplicaClient(_ config: ReplicaConfig) throws -> any ReplicaClient {
    switch config.kind {
    case .file(let directory):
        return FileReplicaClient(directory: directory)
    case .s3:
        return try S3ReplicaClient(config: config)
    }
}
