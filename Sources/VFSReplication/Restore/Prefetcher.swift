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
            let thread = Thread { [self] in self.work() }
            thread.name = "vfs-restore-fetch-\(n)"
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

    private func work() {
        condition.lock()
        while true {
            while !cancelled && !mayStartNext() { condition.wait() }
            if cancelled || nextToFetch >= files.count { break }
            let index = nextToFetch
            nextToFetch += 1
            aheadBytes += files[index].size
            condition.unlock()
            let result = Result { try client.fetch(files[index]) }
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
