import Foundation
import Logging
import ServiceLifecycle
import VFSReplication

/// Runs a `Replicator` as a swift-service-lifecycle `Service`, so a Hummingbird or Vapor app
/// replicates its databases beside its HTTP server and flushes on graceful shutdown.
///
/// ```swift
/// let replicator = try Replicator(config: try ReplicationConfig.load(path: "config/replication.yml"))
/// let group = ServiceGroup(
///     services: [ReplicationService(replicator: replicator), httpServer],
///     gracefulShutdownSignals: [.sigterm, .sigint], logger: logger)
/// try await group.run()
/// ```
/// https://swiftpackageindex.com/swift-server/swift-service-lifecycle/documentation/servicelifecycle
public struct ReplicationService: Service, Sendable {
    public let replicator: Replicator
    /// How long the final flush may take on shutdown.
    public var shutdownTimeout: Duration

    public init(replicator: Replicator, shutdownTimeout: Duration = .seconds(60)) {
        self.replicator = replicator
        self.shutdownTimeout = shutdownTimeout
    }

    public func run() async throws {
        replicator.start()
        // Returns when graceful shutdown begins (or throws when the task is cancelled).
        try? await gracefulShutdown()
        let replicator = self.replicator
        let timeout = shutdownTimeout
        // Flushing blocks (file and network I/O): keep it off the cooperative pool.
        let error: ReplicationError? = await withCheckedContinuation { continuation in
            Thread.detachNewThread {
                var failure: ReplicationError?
                do { try replicator.flush(timeout: timeout) } catch let e as ReplicationError { failure = e } catch {
                    failure = ReplicationError(.io, "\(error)")
                }
                replicator.shutdown(timeout: .seconds(5))
                continuation.resume(returning: failure)
            }
        }
        if let error { throw error }
    }
}
