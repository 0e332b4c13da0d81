internal import CVFSShim
import CoreMetrics
import Foundation

/// swift-metrics instruments for every configured database, fed by uploader events and by the
/// shared state (read every `refreshInterval`, so lag and spool size stay current while an
/// uploader is stuck or absent). The app chooses the backend (`MetricsSystem.bootstrap`); the
/// library never does.
///
/// ```swift
/// MetricsSystem.bootstrap(PrometheusMetricsFactory(registry: registry))   // the app's choice
/// let metrics = MetricsObserver(config: config)
/// let replicator = try Replicator(config: config, observers: [metrics])
/// ```
///
/// Instruments are created once, with one dimension, `database` (the configured path), and
/// `kind` (PUT, GET, LIST, DELETE) for requests:
///
/// | label | type | |
/// |---|---|---|
/// | `vfsreplication_commits` | counter | transactions captured (every process's, seen as TXID growth) |
/// | `vfsreplication_uploaded_bytes` | counter | bytes of LTX files shipped |
/// | `vfsreplication_uploaded_files` | counter | LTX files shipped (snapshots included) |
/// | `vfsreplication_snapshots` | counter | snapshots shipped |
/// | `vfsreplication_requests` | counter | replica requests, by `kind` |
/// | `vfsreplication_errors` | counter | upload failures (a failure repeated unchanged counts once) and fences |
/// | `vfsreplication_lag_seconds` | gauge | age of the oldest commit not yet durable |
/// | `vfsreplication_lag_transactions` | gauge | transactions captured and not yet durable |
/// | `vfsreplication_spool_pending_bytes` | gauge | spool bytes not yet shipped |
/// | `vfsreplication_fenced` | gauge | 1 when another writer owns the replica |
/// | `vfsreplication_uploader` | gauge | 1 while this process uploads the database |
/// | `vfsreplication_egress_bytes` | counter | bytes the replica's GETs returned (billed as egress by some providers) |
/// | `vfsreplication_replica_bytes` | gauge | the replica's size, as the uploader's listing knows it |
///
/// Dollars need a price list and a month of counts: the status page's `/metrics`
/// (`PrometheusText`) has them, from the status files.
///
/// See https://github.com/apple/swift-metrics
public final class MetricsObserver: UploaderObserver, @unchecked Sendable {
    /// The instruments' labels.
    public enum Label {
        public static let commits = "vfsreplication_commits"
        public static let uploadedBytes = "vfsreplication_uploaded_bytes"
        public static let uploadedFiles = "vfsreplication_uploaded_files"
        public static let snapshots = "vfsreplication_snapshots"
        public static let requests = "vfsreplication_requests"
        public static let errors = "vfsreplication_errors"
        public static let lagSeconds = "vfsreplication_lag_seconds"
        public static let lagTransactions = "vfsreplication_lag_transactions"
        public static let spoolPendingBytes = "vfsreplication_spool_pending_bytes"
        public static let fenced = "vfsreplication_fenced"
        public static let uploader = "vfsreplication_uploader"
        public static let egressBytes = "vfsreplication_egress_bytes"
        public static let replicaBytes = "vfsreplication_replica_bytes"
    }

    private struct Instruments {
        let commits: Counter
        let uploadedBytes: Counter
        let uploadedFiles: Counter
        let snapshots: Counter
        let requests: [RequestKind: Counter]
        let errors: Counter
        let lagSeconds: Gauge
        let lagTransactions: Gauge
        let spoolPendingBytes: Gauge
        let fenced: Gauge
        let uploader: Gauge
        let egressBytes: Counter
        let replicaBytes: Gauge

        init(database: String, factory: any MetricsFactory) {
            let d = [("database", database)]
            typealias L = MetricsObserver.Label
            commits = Counter(label: L.commits, dimensions: d, factory: factory)
            uploadedBytes = Counter(label: L.uploadedBytes, dimensions: d, factory: factory)
            uploadedFiles = Counter(label: L.uploadedFiles, dimensions: d, factory: factory)
            snapshots = Counter(label: L.snapshots, dimensions: d, factory: factory)
            var requests: [RequestKind: Counter] = [:]
            for kind in RequestKind.allCases {
                requests[kind] = Counter(label: L.requests, dimensions: d + [("kind", kind.rawValue)], factory: factory)
            }
            self.requests = requests
            errors = Counter(label: L.errors, dimensions: d, factory: factory)
            lagSeconds = Gauge(label: L.lagSeconds, dimensions: d, factory: factory)
            lagTransactions = Gauge(label: L.lagTransactions, dimensions: d, factory: factory)
            spoolPendingBytes = Gauge(label: L.spoolPendingBytes, dimensions: d, factory: factory)
            fenced = Gauge(label: L.fenced, dimensions: d, factory: factory)
            uploader = Gauge(label: L.uploader, dimensions: d, factory: factory)
            egressBytes = Counter(label: L.egressBytes, dimensions: d, factory: factory)
            replicaBytes = Gauge(label: L.replicaBytes, dimensions: d, factory: factory)
        }
    }

    private final class Database: @unchecked Sendable {
        let instruments: Instruments
        let state: SharedStateReader
        // Guarded by the observer's lock:
        var lastTXID: UInt64?

        init(path: String, factory: any MetricsFactory) {
            instruments = Instruments(database: path, factory: factory)
            state = SharedStateReader(databasePath: path)
        }
    }

    private let databases: [String: Database]
    private let order: [String]
    private let lock = NSLock()
    private let now: @Sendable () -> Date
    private var timer: (any DispatchSourceTimer)?

    /// - Parameters:
    ///   - factory: where instruments are created; the bootstrapped system by default.
    ///   - refreshInterval: how often gauges are refreshed from the shared state (nil: only
    ///     on events and `refresh()`).
    public init(
        config: ReplicationConfig, factory: any MetricsFactory = MetricsSystem.factory,
        refreshInterval: Duration? = .seconds(5), now: @escaping @Sendable () -> Date = { Date() }
    ) {
        var databases: [String: Database] = [:]
        for db in config.databases { databases[db.path] = Database(path: db.path, factory: factory) }
        self.databases = databases
        self.order = config.databases.map(\.path)
        self.now = now
        refresh()
        if let refreshInterval {
            let t = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "vfs-replication.metrics"))
            t.schedule(deadline: .now() + refreshInterval.seconds, repeating: refreshInterval.seconds)
            t.setEventHandler { [weak self] in self?.refresh() }
            t.resume()
            timer = t
        }
    }

    deinit { timer?.cancel() }

    public func uploader(database: String, didReport event: UploaderEvent) {
        guard let db = databases[database] else { return }
        let m = db.instruments
        switch event {
        case .elected(let value):
            m.uploader.record(value ? 1 : 0)
        case .shipped(let level, _, _, let bytes, _, _):
            m.uploadedBytes.increment(by: bytes)
            m.uploadedFiles.increment()
            if level == RestorePlanner.snapshotLevel { m.snapshots.increment() }
            updateFromState(db, pendingOldestMs: nil, usePendingEvent: false, inspectSpool: true)
        case .pending(let oldestCommitMs, _, _):
            updateFromState(db, pendingOldestMs: oldestCommitMs, usePendingEvent: true)
        case .request(let kind, let count):
            m.requests[kind]?.increment(by: Int64(count))
        case .downloaded(let bytes):
            m.egressBytes.increment(by: bytes)
        case .stored(let bytes, _):
            m.replicaBytes.record(Double(bytes))
        case .error(let message):
            if message != nil { m.errors.increment() }
        case .fenced:
            m.fenced.record(1)
            m.errors.increment()
        case .replica, .replicaRequest, .replicaDownloaded:
            break
        }
    }

    /// Reads every database's shared state and updates commits, lag and spool size.
    public func refresh() {
        for path in order {
            guard let db = databases[path] else { continue }
            updateFromState(db, pendingOldestMs: nil, usePendingEvent: false, inspectSpool: true)
        }
    }

    private func updateFromState(
        _ db: Database, pendingOldestMs: Int64?, usePendingEvent: Bool, inspectSpool: Bool = false
    ) {
        guard let view = db.state.view() else { return }
        let m = db.instruments
        lock.lock()
        let previous = db.lastTXID
        db.lastTXID = view.lastTxid
        lock.unlock()
        if let previous, view.lastTxid > previous {
            m.commits.increment(by: Int64(view.lastTxid - previous))
        }
        let pending = view.lastTxid > view.shippedTxid ? view.lastTxid - view.shippedTxid : 0
        m.lagTransactions.record(Double(pending))
        if usePendingEvent {
            let lag = pendingOldestMs.map { max(0, now().timeIntervalSince(Date(epochMilliseconds: $0))) } ?? 0
            m.lagSeconds.record(pending == 0 ? 0 : lag)
        } else if pending == 0 {
            m.lagSeconds.record(0)
        }
        if inspectSpool {
            let state = LocalReplicationState.inspect(view, files: db.state.files)
            m.spoolPendingBytes.record(Double(state.pendingSpoolBytes))
            if let lag = state.lagSeconds(now: now()) { m.lagSeconds.record(lag) }
        }
    }
}

/// Reads one database's shared state: through the registered database when this process has
/// registered it (a memory read), else from its state file (open, mmap, read, unmap).
final class SharedStateReader: @unchecked Sendable {
    let files: ReplicationFiles
    private let path: String
    private let lock = NSLock()
    private var handle: OpaquePointer?

    init(databasePath: String) {
        path = databasePath
        files = ReplicationFiles(databasePath: databasePath)
    }

    func view() -> vr_state_view? {
        lock.lock()
        if handle == nil { handle = vr_db_lookup(path) }
        let h = handle
        lock.unlock()
        if let h {
            var v = vr_state_view()
            vr_db_read_state(h, &v)
            return v
        }
        return try? LocalReplicationState.readView(files)
    }
}
