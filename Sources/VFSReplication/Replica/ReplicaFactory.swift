import Foundation

/// Builds the replica client for a configured replica location.
func makeReplicaClient(_ config: ReplicaConfig) throws -> any ReplicaClient {
    switch config.kind {
    case .file(let directory):
        return FileReplicaClient(directory: directory)
    case .s3:
        throw ReplicationError(.invalidConfig, "replica \(config.url): S3 replicas are not supported in this build yet")
    }
}
