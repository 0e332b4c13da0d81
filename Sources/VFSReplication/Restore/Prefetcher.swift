internal import CVFSShim
import Foundation

/// Fetches replica files a few at a time on background threads and hands them out in order.
///
/// ```swift
/// let prefetcher = Prefetcher(client: replica, files: plan.files, concurrency: 4)
/// defer { prefetcher.cancel() }
/// for _ in plan.files { let local = try prefetcher.next(); defer { local.release() }; ... }
/// ```
///
/// At most `2 * concurrency` files are fetched ahead of the consumer, and no more than
/// `maxAheadBytes` of them (the next file is always allowed), so the disk used by downloads and
/// the memory of the clients stay bounded whatever the plan's length. A failed fetch is
/// reported by `next()` when the consumer reaches that file. `ReplicaClient.fetch` blocks, so
/// the workers are plain threads, not tasks on the cooperative pool.
///
/// A download (a temporary copy of a remote file) is verified before it is handed out: one that
/// fails (flipped bytes, a proxy's page, a cut that looked complete) is downloaded again, up to
/// `downloadAttempts` times with growing delays, before it counts as corrupt in the replica;
/// its error then names the remote object, not the temporary file.
final class Prefetcher: @unchecked Sendable {
    private let client: any ReplicaClient
    private let files: [LTXFileInfo]
    private let window: Int
    private let maxAheadBytes: Int64
    private let condition = NSCondition()
    // Guarded by `condition`:
    private var nextToFetch = 0
    private var consumed = 0
    private var aheadBytes: Int64 = 0
    private var results: [Int: Result<LocalLTXFile, any Error>] = [:]
    private var cancelled = false
    private var runningWorkers = 0

    init(client: any ReplicaClient, files: [LTXFileInfo], concurrency: Int = 4, maxAheadBytes: Int64 = 1 << 30) {
        self.client = client
        self.files = files
        let workers = max(1, min(concurrency, files.count))
        self.window = 2 * workers
        self.maxAheadBytes = maxAheadBytes
        guard !files.isEmpty else { return }
        runningWorkers = workers
        for n in 0..<workers {
            // Named by the thread itself (a name set before start is not applied on Linux).
            let thread = Thread { [self] in
                vr_thread_set_name("vfs-restore-\(n)")
                self.work()
            }
            thread.start()
        }
    }

    deinit { cancel() }

    /// The next file, in order; throws what fetching it threw.
    func next() throws -> LocalLTXFile {
        condition.lock()
        defer { condition.unlock() }
        guard consumed < files.count else {
            throw ReplicationError(.invalidArgument, "prefetcher: no more files")
        }
        while results[consumed] == nil && !cancelled { condition.wait() }
        guard let result = results.removeValue(forKey: consumed) else {
            throw ReplicationError(.shutDown, "prefetcher cancelled")
        }
        aheadBytes -= files[consumed].size
        consumed += 1
        condition.broadcast()
        return try result.get()
    }

    /// Stops the workers, waits for them, and releases files fetched but not handed out.
    func cancel() {
        condition.lock()
        cancelled = true
        condition.broadcast()
        while runningWorkers > 0 { condition.wait() }
        let leftovers = results.values
        results.removeAll()
        condition.unlock()
        for case .success(let local) in leftovers { local.release() }
    }

    private func mayStartNext() -> Bool {
        guard nextToFetch < files.count else { return true }  // lets the worker see there is no more
        if nextToFetch - consumed >= window { return false }
        return nextToFetch == consumed || aheadBytes + files[nextToFetch].size <= maxAheadBytes
    }

    /// Downloads of one file that fails verification before it counts as corrupt.
    static let downloadAttempts = 3

    /// The file, verified when it is a download of a remote object (a copy with a `source`; a
    /// replica's own local file is what it is: reading it again would not help, and the restore
    /// verifies it as it applies it).
    private func fetchVerified(_ file: LTXFileInfo) throws -> LocalLTXFile {
        var attempt = 0
        while true {
            attempt += 1
            let local = try client.fetch(file)
            guard local.isTemporary, local.source != nil else { return local }
            do {
                try LTXDecoder.verify(path: local.path)
                return local
            } catch let error as ReplicationError where error.code == .corruptReplicaFile {
                local.release()
                let named = local.naming(error)
                let stopping = condition.withLock { cancelled }
                guard attempt < Prefetcher.downloadAttempts, !stopping else {
                    throw ReplicationError(named.code, named.message + " (downloaded \(attempt) times)")
                }
                // As S3 requests are retried: exponential, with jitter.
                let delay = S3RetryPolicy().delay(afterAttempt: attempt, random: Double.random(in: 0..<1))
                Thread.sleep(forTimeInterval: delay.s3Seconds)
            } catch {
                local.release()
                throw error
            }
        }
    }

    private func work() {
        condition.lock()
        while true {
            while !cancelled && !mayStartNext() { condition.wait() }
            if cancelled || nextToFetch >= files.count { break }
            let index = nextToFetch
            nextToFetch += 1
            aheadBytes += files[index].size
            condition.unlock()
            let result = Result { try fetchVerified(files[index]) }
            condition.lock()
            if cancelled {
                if case .success(let local) = result { local.release() }
                break
            }
            results[index] = result
            condition.broadcast()
        }
        runningWorkers -= 1
        condition.broadcast()
        condition.unlock()
    }
}
