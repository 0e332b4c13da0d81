import Foundation
import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// The machine's own limit for one restore's work, measured beside it: the restore's objects
/// fetched from the same server with the restore's parallelism and nothing done with them, and
/// the restored database's size written to the same disk. Neither part decodes, checks or
/// applies anything, so a restore cannot beat the slower of the two.
struct RestoreLimit: Codable {
    /// Seconds to fetch every object of the restore plan (`concurrency` at a time).
    var downloadSeconds: Double
    /// Seconds to write the database's size sequentially into a new file, with one fsync.
    var writeSeconds: Double
    /// The restore downloads ahead of the file it applies (the Prefetcher), so downloading and
    /// writing overlap: the best restore takes as long as the slower of the two.
    var seconds: Double { max(downloadSeconds, writeSeconds) }

    static func measure(
        client: any ReplicaClient, files: [LTXFileInfo], concurrency: Int, bytes: Int64, directory: String
    ) throws -> RestoreLimit {
        RestoreLimit(
            downloadSeconds: try download(client: client, files: files, concurrency: concurrency),
            writeSeconds: try write(bytes: bytes, path: directory + "/limit-write.tmp"))
    }

    /// Fetches `files` with `concurrency` threads taking the next file in turn, as the
    /// Prefetcher's workers do; each copy (a temporary file, as in a restore) is dropped unread.
    static func download(client: any ReplicaClient, files: [LTXFileInfo], concurrency: Int) throws -> Double {
        let queue = FetchQueue(count: files.count)
        let group = DispatchGroup()
        let start = nowNs()
        for _ in 0..<max(1, min(concurrency, files.count)) {
            group.enter()
            Thread {
                defer { group.leave() }
                while let index = queue.take() {
                    do { try client.fetch(files[index]).release() } catch { queue.fail(error) }
                }
            }.start()
        }
        group.wait()
        let seconds = Double(nowNs() - start) / 1e9
        if let failure = queue.failure { throw BenchError("limit: fetching the restore's objects failed: \(failure)") }
        return seconds
    }

    /// The next file to fetch, shared by the download threads; the first error stops them.
    private final class FetchQueue: @unchecked Sendable {
        private let lock = NSLock()
        private let count: Int
        private var next = 0
        private var error: (any Error)?
        init(count: Int) { self.count = count }
        func take() -> Int? {
            lock.withLock {
                guard error == nil, next < count else { return nil }
                next += 1
                return next - 1
            }
        }
        func fail(_ error: any Error) { lock.withLock { self.error = self.error ?? error } }
        var failure: (any Error)? { lock.withLock { error } }
    }

    /// Writes `bytes` into a new file at `path` in 4 MiB writes (the size of the restore's
    /// largest pwrite), fsyncs it once, and removes it.
    static func write(bytes: Int64, path: String) throws -> Double {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw BenchError("limit: cannot create \(path): errno \(errno)") }
        defer {
            close(fd)
            unlink(path)
        }
        let chunk = [UInt8](repeating: 0xa5, count: 4 << 20)
        let start = nowNs()
        var left = bytes
        while left > 0 {
            let n = Int(min(left, Int64(chunk.count)))
            let written = chunk.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, n) }
            guard written > 0 else { throw BenchError("limit: write to \(path) failed: errno \(errno)") }
            left -= Int64(written)
        }
        guard fsync(fd) == 0 else { throw BenchError("limit: fsync of \(path) failed: errno \(errno)") }
        return Double(nowNs() - start) / 1e9
    }
}

/// What `vfs-rebuild --json` says about a restore: the files it applied, the database's size,
/// and where its time went.
struct RebuildReport {
    var files: [LTXFileInfo]
    var databaseBytes: Int64
    var downloadApplySeconds: Double
    var verifySeconds: Double

    /// Parses the JSON document in `log` (standard output and error of the command together: the
    /// document is the part from the first line that is `{` to the last `}`).
    init(log: String) throws {
        guard let open = log.range(of: "{\n", options: [.anchored]) ?? log.range(of: "\n{\n"),
            let close = log.range(of: "}", options: .backwards)
        else { throw BenchError("vfs-rebuild --json printed no JSON document: \(log.suffix(500))") }
        let text = log[open.lowerBound..<close.upperBound]
        guard let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
            let list = object["files"] as? [[String: Any]], let timings = object["timings"] as? [String: Double],
            let pageSize = object["page_size"] as? Int, let pageCount = object["page_count"] as? Int
        else { throw BenchError("vfs-rebuild --json: no files, timings or page counts in \(text.suffix(500))") }
        files = try list.map { file in
            guard let name = file["name"] as? String, let (minTXID, maxTXID) = LTXFileInfo.parse(fileName: name),
                let level = file["level"] as? Int, let size = file["size"] as? Int
            else { throw BenchError("vfs-rebuild --json: a file entry without level, name or size: \(file)") }
            return LTXFileInfo(level: level, minTXID: minTXID, maxTXID: maxTXID, size: Int64(size))
        }
        databaseBytes = Int64(pageSize) * Int64(pageCount)
        downloadApplySeconds = timings["download_apply_seconds"] ?? 0
        verifySeconds = timings["verify_seconds"] ?? 0
    }
}
