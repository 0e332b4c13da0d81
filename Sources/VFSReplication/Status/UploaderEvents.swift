import Foundation

/// Kinds of replica requests, as object stores bill them.
public enum RequestKind: String, Sendable, CaseIterable, Codable {
    case put = "PUT"
    case get = "GET"
    case list = "LIST"
    case delete = "DELETE"
}

/// What an uploader reports as it works. Delivered on the uploader's thread, in order; an
/// observer must return quickly (no network, no blocking).
public enum UploaderEvent: Sendable, Equatable {
    /// This process became (or stopped being) the database's uploader.
    case elected(Bool)
    /// An LTX file is durable in the replica.
    case shipped(level: Int, minTXID: UInt64, maxTXID: UInt64, bytes: Int64, pages: Int, transactions: Int)
    /// Committed transactions waiting to ship: the oldest one's commit time (ms since the epoch),
    /// nil when nothing waits.
    case pending(oldestCommitMs: Int64?, transactions: Int, pageBytes: Int)
    /// A replica request was made.
    case request(RequestKind, count: Int)
    /// A GET returned this many bytes (egress, for costs).
    case downloaded(bytes: Int64)
    /// The replica holds this many objects and bytes, as the uploader's listing knows it (after
    /// it loads the listing and whenever it adds or removes files; never an extra request).
    case stored(bytes: Int64, files: Int)
    /// A failure the uploader will retry (nil: the last one is resolved).
    case error(String?)
    /// Another writer owns the replica: shipping stopped for good.
    case fenced(String)
    /// A database with several replicas (`replicas:`): one of them changed state (current,
    /// behind, fenced), TXID or error. Sent for each replica when the uploader starts.
    case replica(ReplicaMemberStatus)
    /// A database with several replicas: requests made to one of them (also counted in
    /// `.request`, the database's total).
    case replicaRequest(replica: String, RequestKind, count: Int)
    /// A database with several replicas: a GET from one of them returned this many bytes (also
    /// counted in `.downloaded`).
    case replicaDownloaded(replica: String, bytes: Int64)
}

/// Receives every uploader's events (status file, metrics, a dashboard).
public protocol UploaderObserver: Sendable {
    func uploader(database: String, didReport event: UploaderEvent)
}

/// Counts the requests a replica client makes by kind and reports them. A client that counts
/// its own wire requests (the S3 client: continuation pages, multipart parts, retries) adopts
/// `ReplicaRequestCounting` and is asked instead of guessed at.
public protocol ReplicaRequestCounting {
    /// Requests made since the client was created, by kind.
    func requestCounts() -> [RequestKind: Int]
}

/// Wraps a replica client and reports each call as requests.
final class ObservedReplicaClient: ReplicaClient, @unchecked Sendable {
    let inner: any ReplicaClient
    private let report: @Sendable (UploaderEvent) -> Void
    private let lock = NSLock()
    private var lastInnerCounts: [RequestKind: Int] = [:]

    init(_ inner: any ReplicaClient, report: @escaping @Sendable (UploaderEvent) -> Void) {
        self.inner = inner
        self.report = report
    }

    var location: String { inner.location }

    private func counted<T>(_ kind: RequestKind, _ body: () throws -> T) rethrows -> T {
        defer { account(kind) }
        return try body()
    }

    /// With a counting client, report the difference of its own counters; else one per call.
    private func account(_ kind: RequestKind) {
        guard let counting = inner as? ReplicaRequestCounting else {
            report(.request(kind, count: 1))
            return
        }
        let now = counting.requestCounts()
        lock.lock()
        var deltas: [(RequestKind, Int)] = []
        for k in RequestKind.allCases {
            let d = (now[k] ?? 0) - (lastInnerCounts[k] ?? 0)
            if d > 0 { deltas.append((k, d)) }
        }
        lastInnerCounts = now
        lock.unlock()
        for (k, d) in deltas { report(.request(k, count: d)) }
    }

    func listFiles(level: Int) throws -> [LTXFileInfo] { try counted(.list) { try inner.listFiles(level: level) } }
    func listLevels() throws -> [Int] { try counted(.list) { try inner.listLevels() } }
    /// A fetched file's size is what the GET transferred (a retried GET transferred more; the
    /// estimate does not know).
    func fetch(_ file: LTXFileInfo) throws -> LocalLTXFile {
        let local = try counted(.get) { try inner.fetch(file) }
        if file.size > 0 { report(.downloaded(bytes: file.size)) }
        return local
    }
    func publish(level: Int, minTXID: UInt64, maxTXID: UInt64, localPath: String, timestamp: Date) throws {
        try counted(.put) {
            try inner.publish(level: level, minTXID: minTXID, maxTXID: maxTXID, localPath: localPath, timestamp: timestamp)
        }
    }
    func delete(_ files: [LTXFileInfo]) throws { try counted(.delete) { try inner.delete(files) } }
}
