internal import CCurl
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// libcurl easy handles shared by every transport of the process.
///
/// A handle keeps its connection cache and its transfer buffers (about 80 KiB once it has
/// uploaded) between requests. With a pool per transport, a process with a thousand databases
/// kept a thousand handles and a thousand idle connections to the same server; with one pool,
/// it keeps as many as requests ever ran at once (the uploader threads, a restore's fetchers),
/// and a connection opened for one database is reused by the next. Requests set every option
/// they use (`curl_easy_reset` runs before a handle comes back), so a handle can serve any
/// transport.
///
/// fork(): a child must never use a handle it inherited, since the handle's sockets are shared
/// with the parent and a request on them would interleave with the parent's. The pool belongs
/// to the process that filled it: in any other process it starts over, and the inherited
/// handles are left alone (cleaning them up could write on the parent's connections).
final class CurlHandlePool: Sendable {
    static let shared = CurlHandlePool()

    private struct State {
        var owner: pid_t
        var idle: [CurlHandle] = []
        /// Handles made and not cleaned up, in this process (tests and status read it).
        var live = 0
    }
    private let state = S3Locked(State(owner: getpid()))

    /// The process's pool is `shared`; tests make their own.
    init() {}

    /// An idle handle, or a new one.
    func take() -> CurlHandle {
        let pid = getpid()
        let reused = state.withLock { s -> CurlHandle? in
            if s.owner != pid { s = State(owner: pid) }
            if let h = s.idle.popLast() { return h }
            s.live += 1
            return nil
        }
        return reused ?? CurlHandle.make()
    }

    /// Returns a handle after a request: kept while fewer than `maxIdle` are idle, else closed.
    func give(_ handle: CurlHandle, maxIdle: Int) {
        curl_easy_reset(handle.pointer)  // keeps the connection cache; drops the request's options
        let pid = getpid()
        let kept = state.withLock { s -> Bool in
            guard s.owner == pid else { return true }  // made before a fork: not ours to close
            guard s.idle.count < max(maxIdle, 1) else {
                s.live -= 1
                return false
            }
            s.idle.append(handle)
            return true
        }
        if !kept { curl_easy_cleanup(handle.pointer) }
    }

    /// Handles this process holds (idle or in use).
    var liveHandles: Int { state.withLock { $0.owner == getpid() ? $0.live : 0 } }
}

/// An easy handle; only ever used by one thread at a time (the pool hands it out).
struct CurlHandle: @unchecked Sendable {
    let pointer: UnsafeMutableRawPointer

    static func make() -> CurlHandle {
        guard let pointer = curl_easy_init() else { fatalError("curl_easy_init failed: out of memory") }
        return CurlHandle(pointer: pointer)
    }
}
