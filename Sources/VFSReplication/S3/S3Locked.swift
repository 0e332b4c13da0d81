import Foundation

/// A value guarded by a lock (the S3 client's handle pool, counters and clock offset are
/// touched by every thread that sends a request).
final class S3Locked<Value>: @unchecked Sendable {
    private let lock = NSLock()
    private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<T>(_ body: (inout Value) throws -> T) rethrows -> T {
        lock.lock()
        defer { lock.unlock() }
        return try body(&value)
    }
}
