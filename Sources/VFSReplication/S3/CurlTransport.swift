internal import CCurl
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// One HTTP exchange, already signed.
struct HTTPRequest {
    var method: String
    var url: String
    var headers: [(name: String, value: String)]
    var body: HTTPRequestBody
    /// Where a 2xx response body goes: this descriptor, from offset 0. Other bodies (and error
    /// bodies, always) are kept in memory.
    var responseFile: (fd: Int32, path: String)?
}

/// A request body libcurl pulls through the read callback. Replayable: libcurl may rewind it
/// (seek callback) and every retry starts it over.
enum HTTPRequestBody {
    case none
    case bytes([UInt8])
    /// `length` bytes of an open file from `offset`.
    case file(fd: Int32, path: String, offset: Int64, length: Int64)

    var length: Int64 {
        switch self {
        case .none: 0
        case .bytes(let bytes): Int64(bytes.count)
        case .file(_, _, _, let length): length
        }
    }
}

struct HTTPResponse {
    var status: Int
    /// Lower-cased names; a repeated header keeps its last value.
    var headers: [String: String]
    var body: [UInt8]
    var bytesToFile: Int64
    /// Connections this exchange had to open (0 when it reused one; CURLINFO_NUM_CONNECTS).
    var newConnections = 0
}

/// A failed exchange: no HTTP status (connection, DNS, TLS, timeout) or a local I/O error.
struct HTTPTransportError: Error {
    enum Kind: Equatable {
        case dns
        case connectionRefused
        case timeout
        case connection
        case tls
        case tlsCAFile
        case local
        case other
    }

    var kind: Kind
    /// libcurl's CURLcode (0 for local errors).
    var code: Int
    /// libcurl's error text (its error buffer, else `curl_easy_strerror`).
    var detail: String
    /// The local error (file read/write) that aborted the transfer, if any.
    var local: ReplicationError?
    /// errno of the failed connect or socket call (CURLINFO_OS_ERRNO), 0 if none.
    var osErrno: Int32 = 0

    var isRetryable: Bool {
        switch kind {
        case .dns, .connectionRefused, .timeout, .connection: true
        case .tls, .tlsCAFile, .local, .other: false
        }
    }

    /// Maps a CURLcode to a kind (https://curl.se/libcurl/c/libcurl-errors.html).
    static func kind(forCurlCode code: Int) -> Kind {
        switch code {
        case 5, 6: .dns  // COULDNT_RESOLVE_PROXY, COULDNT_RESOLVE_HOST
        case 7: .connectionRefused  // COULDNT_CONNECT
        case 28: .timeout  // OPERATION_TIMEDOUT
        // WEIRD_SERVER_REPLY, HTTP2, PARTIAL_FILE, GOT_NOTHING, SEND_ERROR, RECV_ERROR, HTTP2_STREAM
        case 8, 16, 18, 52, 55, 56, 92: .connection
        case 35, 51, 58, 60, 83, 90, 91: .tls  // SSL_CONNECT_ERROR, PEER_FAILED_VERIFICATION, ...
        case 77: .tlsCAFile  // SSL_CACERT_BADFILE
        case 23, 26, 42: .local  // WRITE_ERROR, READ_ERROR, ABORTED_BY_CALLBACK
        default: .other
        }
    }
}

/// Timeouts and TLS trust for every request of a transport.
struct HTTPTransportSettings: Sendable {
    var connectTimeout: Duration
    var lowSpeedTime: Duration
    var lowSpeedLimit: Int
    var requestTimeout: Duration?
    var caFile: String?
    var maxIdleHandles: Int
}

/// HTTP over libcurl's easy interface. Easy handles come from one pool per process
/// (CurlHandlePool), so connections (and TLS sessions) are reused across requests, threads and
/// transports. Every request has a connect timeout
/// and a low-speed abort; TLS peer and host verification are always on.
///
/// libcurl signs nothing here: requests arrive signed (libcurl 7.88's CURLOPT_AWS_SIGV4 gets
/// query-string requests wrong). Redirects are not followed, only http and https are allowed,
/// `Expect: 100-continue` is never sent, and paths go out exactly as given (PATH_AS_IS).
/// Blocking: call from a thread that may block, never from the cooperative pool.
///
/// https://curl.se/libcurl/c/libcurl-easy.html
final class CurlTransport: Sendable {
    let settings: HTTPTransportSettings
    private let handles: CurlHandlePool

    init(settings: HTTPTransportSettings, handles: CurlHandlePool = .shared) {
        _ = curlGlobalInit
        self.settings = settings
        self.handles = handles
    }

    /// Performs one exchange. A response with any HTTP status is a success here.
    func execute(_ request: HTTPRequest) -> Result<HTTPResponse, HTTPTransportError> {
        // Handles come from the process's pool, shared by every transport (CurlHandlePool).
        let handle = handles.take()
        defer { handles.give(handle, maxIdle: settings.maxIdleHandles) }
        return perform(request, on: handle.pointer)
    }

    private func perform(_ request: HTTPRequest, on curl: UnsafeMutableRawPointer) -> Result<
        HTTPResponse, HTTPTransportError
    > {
        let context = TransferContext(body: request.body, responseFile: request.responseFile)
        var headerList: UnsafeMutablePointer<curl_slist>?
        for header in request.headers {
            headerList = curl_slist_append(headerList, "\(header.name): \(header.value)")
        }
        headerList = curl_slist_append(headerList, "Expect:")
        defer { curl_slist_free_all(headerList) }

        var errorBuffer = [CChar](repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
        let code: CURLcode = errorBuffer.withUnsafeMutableBufferPointer { errorBytes in
            let opaque = Unmanaged.passUnretained(context).toOpaque()
            return withExtendedLifetime(context) { () -> CURLcode in
                _ = ccurl_setopt_pointer(curl, CURLOPT_ERRORBUFFER, errorBytes.baseAddress)
                _ = ccurl_setopt_string(curl, CURLOPT_URL, request.url)
                _ = ccurl_setopt_long(curl, CURLOPT_NOSIGNAL, 1)
                _ = ccurl_setopt_string(curl, CURLOPT_PROTOCOLS_STR, "http,https")
                _ = ccurl_setopt_long(curl, CURLOPT_FOLLOWLOCATION, 0)
                _ = ccurl_setopt_long(curl, CURLOPT_PATH_AS_IS, 1)
                _ = ccurl_setopt_long(curl, CURLOPT_HTTP_VERSION, Int(CURL_HTTP_VERSION_1_1))
                _ = ccurl_setopt_long(curl, CURLOPT_TCP_KEEPALIVE, 1)
                _ = ccurl_setopt_string(curl, CURLOPT_USERAGENT, "vfs-replication")
                _ = ccurl_setopt_long(curl, CURLOPT_CONNECTTIMEOUT_MS, max(1, milliseconds(settings.connectTimeout)))
                _ = ccurl_setopt_long(curl, CURLOPT_LOW_SPEED_LIMIT, max(1, settings.lowSpeedLimit))
                _ = ccurl_setopt_long(
                    curl, CURLOPT_LOW_SPEED_TIME, max(1, Int((settings.lowSpeedTime.s3Seconds).rounded(.up))))
                if let timeout = settings.requestTimeout {
                    _ = ccurl_setopt_long(curl, CURLOPT_TIMEOUT_MS, max(1, milliseconds(timeout)))
                }
                _ = ccurl_setopt_long(curl, CURLOPT_SSL_VERIFYPEER, 1)
                _ = ccurl_setopt_long(curl, CURLOPT_SSL_VERIFYHOST, 2)
                if let caFile = settings.caFile { _ = ccurl_setopt_string(curl, CURLOPT_CAINFO, caFile) }
                _ = ccurl_setopt_slist(curl, CURLOPT_HTTPHEADER, headerList)

                _ = ccurl_setopt_data_callback(curl, CURLOPT_HEADERFUNCTION, curlHeaderCallback)
                _ = ccurl_setopt_pointer(curl, CURLOPT_HEADERDATA, opaque)
                _ = ccurl_setopt_data_callback(curl, CURLOPT_WRITEFUNCTION, curlWriteCallback)
                _ = ccurl_setopt_pointer(curl, CURLOPT_WRITEDATA, opaque)

                switch request.method {
                case "GET":
                    _ = ccurl_setopt_long(curl, CURLOPT_HTTPGET, 1)
                case "HEAD":
                    _ = ccurl_setopt_long(curl, CURLOPT_NOBODY, 1)
                case "DELETE" where request.body.length == 0:
                    _ = ccurl_setopt_string(curl, CURLOPT_CUSTOMREQUEST, "DELETE")
                default:
                    // PUT and POST (and DELETE with a body): always a known length, never chunked.
                    _ = ccurl_setopt_long(curl, CURLOPT_UPLOAD, 1)
                    _ = ccurl_setopt_off(curl, CURLOPT_INFILESIZE_LARGE, curl_off_t(request.body.length))
                    _ = ccurl_setopt_data_callback(curl, CURLOPT_READFUNCTION, curlReadCallback)
                    _ = ccurl_setopt_pointer(curl, CURLOPT_READDATA, opaque)
                    _ = ccurl_setopt_seek_callback(curl, curlSeekCallback)
                    _ = ccurl_setopt_pointer(curl, CURLOPT_SEEKDATA, opaque)
                    if request.method != "PUT" {
                        _ = ccurl_setopt_string(curl, CURLOPT_CUSTOMREQUEST, request.method)
                    }
                }
                let code = curl_easy_perform(curl)
                _ = ccurl_setopt_pointer(curl, CURLOPT_ERRORBUFFER, nil)
                return code
            }
        }

        guard code == CURLE_OK else {
            let raw = Int(code.rawValue)
            var detail = String(decoding: errorBuffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if detail.isEmpty { detail = String(cString: curl_easy_strerror(code)) }
            if let local = context.localError {
                return .failure(HTTPTransportError(kind: .local, code: raw, detail: local.message, local: local))
            }
            var osErrno = 0
            _ = ccurl_getinfo_long(curl, CURLINFO_OS_ERRNO, &osErrno)
            return .failure(
                HTTPTransportError(
                    kind: HTTPTransportError.kind(forCurlCode: raw), code: raw, detail: detail, osErrno: Int32(osErrno))
            )
        }
        guard context.headersComplete else {
            // libcurl (7.88) takes a connection closed inside the headers, after the status line,
            // as a complete answer with an empty body: a LIST would read as garbage, a GET as a
            // 0-byte object. It is a cut response, to be retried like a reset.
            return .failure(
                HTTPTransportError(
                    kind: .connection, code: Int(CURLE_PARTIAL_FILE.rawValue),
                    detail: "the response ended inside its headers (status \(context.status))"))
        }
        var status = 0
        _ = ccurl_getinfo_long(curl, CURLINFO_RESPONSE_CODE, &status)
        var connects = 0
        _ = ccurl_getinfo_long(curl, CURLINFO_NUM_CONNECTS, &connects)
        return .success(
            HTTPResponse(
                status: status == 0 ? context.status : status, headers: context.headers, body: context.memory,
                bytesToFile: context.bytesToFile, newConnections: connects))
    }

    private func milliseconds(_ duration: Duration) -> Int {
        Int((duration.s3Seconds * 1000).rounded(.up))
    }
}

/// libcurl's process-wide initialisation, done once before the first handle exists.
private let curlGlobalInit: Void = {
    _ = curl_global_init(ccurl_global_all())
}()

/// The state libcurl's callbacks work on during one `curl_easy_perform`. Passed to C as an
/// unretained pointer: `perform` keeps it alive (`withExtendedLifetime`) until libcurl returns,
/// and the handle is reset before it is reused, so no retain/release pair is needed.
private final class TransferContext {
    let body: HTTPRequestBody
    let bodyLength: Int64
    var position: Int64 = 0
    let responseFile: (fd: Int32, path: String)?
    var status = 0
    var headers: [String: String] = [:]
    /// The blank line that ends the headers of the last response arrived.
    var headersComplete = false
    var memory: [UInt8] = []
    var bytesToFile: Int64 = 0
    var localError: ReplicationError?

    /// Error bodies are short XML documents; anything longer is cut here.
    static let errorBodyLimit = 1 << 20

    init(body: HTTPRequestBody, responseFile: (fd: Int32, path: String)?) {
        self.body = body
        self.bodyLength = body.length
        self.responseFile = responseFile
    }

    static func from(_ pointer: UnsafeMutableRawPointer?) -> TransferContext {
        Unmanaged<TransferContext>.fromOpaque(pointer!).takeUnretainedValue()
    }
}

private let curlReadCallback: ccurl_data_callback = { buffer, size, count, userdata in
    let context = TransferContext.from(userdata)
    guard let buffer else { return 0 }
    let wanted = Int64(size * count)
    let n = Int(min(wanted, context.bodyLength - context.position))
    guard n > 0 else { return 0 }
    switch context.body {
    case .none:
        return 0
    case .bytes(let bytes):
        bytes.withUnsafeBytes { source in
            UnsafeMutableRawPointer(buffer).copyMemory(from: source.baseAddress! + Int(context.position), byteCount: n)
        }
    case .file(let fd, let path, let offset, _):
        var done = 0
        while done < n {
            let r = pread(
                fd, UnsafeMutableRawPointer(buffer) + done, n - done, off_t(offset + context.position) + off_t(done))
            if r < 0 && errno == EINTR { continue }
            if r <= 0 {
                let reason = r == 0 ? "file is shorter than when the upload started" : String(cString: strerror(errno))
                context.localError = ReplicationError(.io, "read \(path): \(reason)")
                return ccurl_readfunc_abort()
            }
            done += r
        }
    }
    context.position += Int64(n)
    return n
}

private let curlSeekCallback: ccurl_seek_callback = { userdata, offset, origin in
    let context = TransferContext.from(userdata)
    guard origin == SEEK_SET, offset >= 0, Int64(offset) <= context.bodyLength else {
        return Int32(CURL_SEEKFUNC_CANTSEEK)
    }
    context.position = Int64(offset)
    return Int32(CURL_SEEKFUNC_OK)
}

private let curlHeaderCallback: ccurl_data_callback = { buffer, size, count, userdata in
    let context = TransferContext.from(userdata)
    let n = size * count
    guard let buffer, n > 0 else { return n }
    let line = String(decoding: UnsafeRawBufferPointer(start: buffer, count: n), as: UTF8.self)
        .trimmingCharacters(in: .whitespacesAndNewlines)
    if line.hasPrefix("HTTP/") {
        // A new response (after a 100 Continue, for one): start over.
        context.headers = [:]
        context.headersComplete = false
        let parts = line.split(separator: " ", maxSplits: 2)
        context.status = parts.count > 1 ? Int(parts[1]) ?? 0 : 0
    } else if line.isEmpty {
        context.headersComplete = true
    } else if let colon = line.firstIndex(of: ":") {
        let name = line[..<colon].trimmingCharacters(in: .whitespaces).lowercased()
        let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        context.headers[name] = value
    }
    return n
}

private let curlWriteCallback: ccurl_data_callback = { buffer, size, count, userdata in
    let context = TransferContext.from(userdata)
    let n = size * count
    guard let buffer, n > 0 else { return n }
    if let file = context.responseFile, (200..<300).contains(context.status) {
        var done = 0
        while done < n {
            let r = pwrite(file.fd, buffer + done, n - done, off_t(context.bytesToFile) + off_t(done))
            if r < 0 && errno == EINTR { continue }
            if r < 0 {
                context.localError = ReplicationError(.io, "write \(file.path): \(String(cString: strerror(errno)))")
                return ccurl_writefunc_error()
            }
            done += r
        }
        context.bytesToFile += Int64(n)
    } else if context.responseFile == nil || context.memory.count < TransferContext.errorBodyLimit {
        context.memory.append(contentsOf: UnsafeRawBufferPointer(start: buffer, count: n))
    }
    return n
}
