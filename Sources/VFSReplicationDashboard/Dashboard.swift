import Foundation
import Hummingbird
import Logging
import NIOCore
import ServiceLifecycle
import VFSReplication
@_exported import VFSReplicationStatusPage

/// A request context that knows the client's address, so a status page without credentials can
/// refuse anyone but loopback clients.
public struct StatusPageRequestContext: RequestContext, RemoteAddressRequestContext {
    public var coreContext: CoreRequestContextStorage
    public let remoteAddress: SocketAddress?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        remoteAddress = source.channel.remoteAddress
    }
}

extension RouterMethods {
    /// Mounts the status page in a Hummingbird app: `GET <mountPath>/`, `<mountPath>/status.json`
    /// and `<mountPath>/metrics` (the page's `options.mountPath`).
    ///
    /// ```swift
    /// let router = Router()
    /// router.addReplicationStatusPage(StatusPage(config: config, options: StatusPageOptions(
    ///     auth: StatusPageAuth.environment() ?? .disabled, mountPath: "/replication")))
    /// ```
    ///
    /// With `.disabled` auth only clients at a loopback address are answered, and only when the
    /// context is a `RemoteAddressRequestContext` (such as `StatusPageRequestContext`); others
    /// get 403.
    @discardableResult
    public func addReplicationStatusPage(_ page: StatusPage) -> Self {
        let mount = page.options.mountPath
        for route in [mount.isEmpty ? "/" : mount, mount + "/status.json", mount + "/metrics"] {
            for method in [HTTPRequest.Method.get, .head] {
                on(RouterPath(route), method: method) { request, context in
                    StatusPageResponder.respond(page, request: request, context: context)
                }
            }
        }
        return self
    }
}

enum StatusPageResponder {
    static func respond<Context: RequestContext>(_ page: StatusPage, request: Request, context: Context) -> Response {
        let remote = (context as? any RemoteAddressRequestContext)?.remoteAddress
        let r = page.respond(
            method: request.method.rawValue, path: request.uri.path,
            authorization: request.headers[.authorization], clientIsLoopback: StatusPage.isLoopback(remote?.ipAddress))
        var fields = HTTPFields()
        for header in r.headers {
            if let name = HTTPFields.Element.Name(header.name) {
                fields.append(HTTPFields.Element(name: name, value: header.value))
            }
        }
        return Response(
            status: HTTPResponse.Status(code: r.status), headers: fields,
            body: ResponseBody(byteBuffer: ByteBuffer(bytes: r.body)))
    }
}

/// The status page as a server of its own (what `vfs-replicate --http HOST:PORT` runs): a
/// swift-service-lifecycle `Service`.
///
/// ```swift
/// let server = try StatusPageServer(page: page, address: "127.0.0.1:9090")
/// let group = ServiceGroup(services: [ReplicationService(replicator: replicator), server], ...)
/// ```
public struct StatusPageServer: Service {
    public let host: String
    public let port: Int
    private let page: StatusPage
    private let logger: Logger
    private let onListening: @Sendable (Int) -> Void

    /// - Parameters:
    ///   - address: `HOST:PORT` (`[::1]:9090` for IPv6); port 0 picks a free one, reported to
    ///     `onListening`.
    /// - Throws: when the address is malformed, or the page has no credentials and `HOST` is not a
    ///   loopback address.
    public init(
        page: StatusPage, address: String, logger: Logger = Logger(label: "vfs-replication.http"),
        onListening: @escaping @Sendable (Int) -> Void = { _ in }
    ) throws {
        (host, port) = try Self.parse(address: address)
        try StatusPage.checkBinding(auth: page.options.auth, host: host)
        self.page = page
        self.logger = logger
        self.onListening = onListening
    }

    /// Splits `HOST:PORT`.
    public static func parse(address: String) throws -> (host: String, port: Int) {
        var host: Substring
        var port: Substring
        if address.hasPrefix("["), let close = address.firstIndex(of: "]") {
            host = address[address.index(after: address.startIndex)..<close]
            let rest = address[address.index(after: close)...]
            guard rest.hasPrefix(":") else { throw badAddress(address) }
            port = rest.dropFirst()
        } else {
            guard let colon = address.lastIndex(of: ":") else { throw badAddress(address) }
            host = address[..<colon]
            port = address[address.index(after: colon)...]
        }
        guard !host.isEmpty, let p = Int(port), (0...65535).contains(p) else { throw badAddress(address) }
        return (String(host), p)
    }

    private static func badAddress(_ address: String) -> ReplicationError {
        ReplicationError(.invalidArgument, "'\(address)' is not HOST:PORT (e.g. 127.0.0.1:9090)")
    }

    public func run() async throws {
        let router = Router(context: StatusPageRequestContext.self)
        router.addReplicationStatusPage(page)
        let logger = self.logger
        let onListening = self.onListening
        let app = Application(
            router: router,
            configuration: ApplicationConfiguration(
                address: .hostname(host, port: port), serverName: "vfs-replication"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                logger.info("status page listening", metadata: ["http.port": "\(port)"])
                onListening(port)
            },
            logger: logger)
        try await app.run()
    }
}
