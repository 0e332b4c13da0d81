import Foundation
import VFSReplication

/// Who may read the status page.
public enum StatusPageAuth: Sendable, Equatable {
    /// HTTP Basic authentication with these credentials (https://www.rfc-editor.org/rfc/rfc7617).
    case basic(user: String, password: String)
    /// No credentials: the page answers clients connecting from a loopback address only (a
    /// server must also be bound to loopback, see `StatusPage.checkBinding`).
    case disabled

    /// `VFS_STATUS_USER` and `VFS_STATUS_PASSWORD` from the environment; nil unless both are set
    /// and not empty.
    public static func environment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> StatusPageAuth? {
        guard let user = environment["VFS_STATUS_USER"], !user.isEmpty,
            let password = environment["VFS_STATUS_PASSWORD"], !password.isEmpty
        else { return nil }
        return .basic(user: user, password: password)
    }
}

/// How the status page looks and whom it serves.
public struct StatusPageOptions: Sendable {
    public var auth: StatusPageAuth
    /// Where the page is mounted in the app's URL space: `""` for the root, or e.g.
    /// `"/replication"` (no trailing slash). Routes: `<mountPath>/`, `<mountPath>/status.json`,
    /// `<mountPath>/metrics`.
    public var mountPath: String
    /// When a database counts as unhealthy.
    public var policy: HealthPolicy
    /// How often lag is sampled for the sparklines (nil: only when the page is read).
    public var historyInterval: Duration?
    /// Samples kept per database.
    public var historyLength: Int
    /// The HTML page reloads itself this often (seconds; 0: never).
    public var refreshSeconds: Int
    public var title: String

    public init(
        auth: StatusPageAuth, mountPath: String = "", policy: HealthPolicy = HealthPolicy(),
        historyInterval: Duration? = .seconds(5), historyLength: Int = 180, refreshSeconds: Int = 10,
        title: String = "SQLite replication"
    ) {
        self.auth = auth
        var mount = mountPath
        while mount.hasSuffix("/") { mount.removeLast() }
        if !mount.isEmpty && !mount.hasPrefix("/") { mount = "/" + mount }
        self.mountPath = mount
        self.policy = policy
        self.historyInterval = historyInterval
        self.historyLength = max(2, historyLength)
        self.refreshSeconds = refreshSeconds
        self.title = title
    }
}

/// A response, independent of any HTTP framework.
public struct StatusPageResponse: Sendable {
    public var status: Int
    public var headers: [(name: String, value: String)]
    public var body: [UInt8]

    public init(status: Int, headers: [(name: String, value: String)], body: [UInt8]) {
        self.status = status
        self.headers = headers
        self.body = body
    }

    public var contentType: String? { headers.first { $0.name.lowercased() == "content-type" }?.value }
}

/// The replication status page: an HTML dashboard, `/status.json` and Prometheus text at
/// `/metrics`, for every database of a config, read from the files beside each database (so it
/// shows every process's work, whichever process serves it).
///
/// Framework-neutral: `VFSReplicationDashboard` serves it with Hummingbird (the `vfs-replicate
/// --http` sidecar, or `router.addReplicationStatusPage(page)` in a Hummingbird app); any other
/// server calls `respond`:
///
/// ```swift
/// let page = StatusPage(config: config, options: StatusPageOptions(auth: .basic(user: "ops", password: pw),
///                                                                 mountPath: "/replication"))
/// // Vapor:
/// app.get("replication", "**") { req in
///     let r = page.respond(method: req.method.rawValue, path: req.url.path,
///                          authorization: req.headers.first(name: .authorization),
///                          clientIsLoopback: StatusPage.isLoopback(req.remoteAddress?.ipAddress))
///     return Response(status: .init(statusCode: r.status), headers: HTTPHeaders(r.headers.map { ($0.name, $0.value) }),
///                     body: .init(data: Data(r.body)))
/// }
/// ```
public final class StatusPage: @unchecked Sendable {
    public let config: ReplicationConfig
    public let options: StatusPageOptions
    private let history: LagHistory
    private var timer: (any DispatchSourceTimer)?

    public init(config: ReplicationConfig, options: StatusPageOptions) {
        self.config = config
        self.options = options
        let spacing = options.historyInterval.map { min(1, Self.seconds($0) / 2) } ?? 1
        self.history = LagHistory(capacity: options.historyLength, spacing: spacing)
        if let interval = options.historyInterval {
            let t = DispatchSource.makeTimerSource(queue: DispatchQueue(label: "vfs-replication.status-page"))
            t.schedule(deadline: .now(), repeating: Self.seconds(interval))
            t.setEventHandler { [weak self] in _ = self?.reports() }
            t.resume()
            timer = t
        }
    }

    deinit { timer?.cancel() }

    private static func seconds(_ d: Duration) -> Double {
        Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
    }

    /// Throws unless the auth setting is allowed on a server bound to `host`: without
    /// credentials only on a loopback address.
    public static func checkBinding(auth: StatusPageAuth, host: String) throws {
        if case .disabled = auth, !isLoopback(host) {
            throw ReplicationError(
                .invalidArgument,
                "the status page without authentication may only listen on a loopback address (127.0.0.1 or ::1), not \(host); set VFS_STATUS_USER and VFS_STATUS_PASSWORD"
            )
        }
    }

    /// Whether `host` (an address or `localhost`) is a loopback address.
    public static func isLoopback(_ host: String?) -> Bool {
        guard var host = host?.lowercased() else { return false }
        if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        if host == "localhost" || host == "::1" || host == "0:0:0:0:0:0:0:1" { return true }
        if host.hasPrefix("::ffff:") { host = String(host.dropFirst(7)) }
        let parts = host.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts[0] == "127" && parts.allSatisfy { UInt8($0) != nil }
    }

    /// Collects a report for every database now and records the lag samples.
    public func reports(now: Date = Date()) -> [StatusReport] {
        let reports = StatusReport.collect(config: config, policy: options.policy, now: now)
        history.record(reports, at: now)
        return reports
    }

    /// Lag samples of one database, oldest first.
    public func lagHistory(for database: String) -> [LagHistory.Sample] { history.samples(for: database) }

    /// Answers one request. `path` is the request's path (a query string is ignored),
    /// `authorization` its `Authorization` header, `clientIsLoopback` whether the peer's address
    /// is a loopback address (use `StatusPage.isLoopback`; false when unknown).
    public func respond(method: String, path: String, authorization: String?, clientIsLoopback: Bool)
        -> StatusPageResponse
    {
        let method = method.uppercased()
        guard method == "GET" || method == "HEAD" else {
            return Self.text(405, "only GET and HEAD\n", extra: [("Allow", "GET, HEAD")])
        }
        switch options.auth {
        case .basic(let user, let password):
            guard Self.authorized(authorization, user: user, password: password) else {
                return Self.text(
                    401, "authentication required\n",
                    extra: [("WWW-Authenticate", #"Basic realm="vfs-replication", charset="UTF-8""#)])
            }
        case .disabled:
            guard clientIsLoopback else {
                return Self.text(403, "this status page has no credentials and answers loopback clients only\n")
            }
        }
        var route = path
        if let q = route.firstIndex(where: { $0 == "?" || $0 == "#" }) { route = String(route[..<q]) }
        guard route.hasPrefix(options.mountPath) else { return Self.text(404, "not found\n") }
        route = String(route.dropFirst(options.mountPath.count))
        var response: StatusPageResponse
        switch route {
        case "", "/", "/index.html":
            let html = StatusPageHTML.render(
                reports: reports(), history: history, options: options, generatedAt: Date())
            response = Self.make(200, "text/html; charset=utf-8", Array(html.utf8))
            response.headers.append(
                (
                    "Content-Security-Policy",
                    "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; frame-ancestors 'none'"
                ))
        case "/status.json":
            let body = (try? StatusDocument(reports: reports()).jsonData()).map { [UInt8]($0) } ?? Array("{}".utf8)
            response = Self.make(200, "application/json", body + [0x0A])
        case "/metrics":
            response = Self.make(
                200, "text/plain; version=0.0.4; charset=utf-8", Array(PrometheusText.render(reports()).utf8))
        default:
            return Self.text(404, "not found\n")
        }
        if method == "HEAD" { response.body = [] }
        return response
    }

    // MARK: - Helpers

    private static func make(_ status: Int, _ type: String, _ body: [UInt8]) -> StatusPageResponse {
        StatusPageResponse(
            status: status,
            headers: [("Content-Type", type), ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")],
            body: body)
    }

    private static func text(_ status: Int, _ message: String, extra: [(String, String)] = []) -> StatusPageResponse {
        var r = make(status, "text/plain; charset=utf-8", Array(message.utf8))
        r.headers += extra.map { (name: $0.0, value: $0.1) }
        return r
    }

    /// Checks `Basic base64(user:password)`, comparing in time independent of where the
    /// credentials differ.
    static func authorized(_ header: String?, user: String, password: String) -> Bool {
        guard let header else { return false }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "basic",
            let decoded = Data(base64Encoded: String(parts[1]).trimmingCharacters(in: .whitespaces))
        else { return false }
        let expected = Array("\(user):\(password)".utf8)
        let given = Array(decoded)
        var diff = UInt8(expected.count == given.count ? 0 : 1)
        for i in 0..<expected.count { diff |= expected[i] ^ (i < given.count ? given[i] : 0) }
        return diff == 0
    }
}

/// Lag samples per database, a fixed number each (oldest dropped).
public final class LagHistory: @unchecked Sendable {
    public struct Sample: Sendable, Equatable {
        public var time: Date
        /// Nil when it could not be known (no state, unknown oldest commit).
        public var lagSeconds: Double?
        public var pendingTransactions: UInt64
    }

    private let capacity: Int
    private let spacing: TimeInterval
    private let lock = NSLock()
    private var samples: [String: [Sample]] = [:]

    /// Keeps `capacity` samples per database, at least `spacing` seconds apart.
    init(capacity: Int, spacing: TimeInterval) {
        self.capacity = capacity
        self.spacing = spacing
    }

    func record(_ reports: [StatusReport], at time: Date) {
        lock.lock()
        defer { lock.unlock() }
        for r in reports {
            var list = samples[r.database] ?? []
            // Several readers at once add one sample, not one each.
            if let last = list.last, time.timeIntervalSince(last.time) < spacing { continue }
            list.append(
                Sample(time: time, lagSeconds: r.lagSeconds, pendingTransactions: r.state?.pendingTransactions ?? 0))
            if list.count > capacity { list.removeFirst(list.count - capacity) }
            samples[r.database] = list
        }
    }

    func samples(for database: String) -> [Sample] {
        lock.lock()
        defer { lock.unlock() }
        return samples[database] ?? []
    }
}
