import Foundation
import Testing

@testable import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// Progress text (pure) and the download pipeline.
@Suite("Restore: progress and downloads")
struct RestoreProgressTests {
    static let p = RestoreProgress(filesDone: 3, filesTotal: 10, bytesDone: 1 << 30, bytesTotal: 4 << 30, elapsed: 10)

    @Test func aTerminalGetsABarRedrawnInPlace() {
        var renderer = RestoreProgressRenderer(terminal: true)
        let line = renderer.render(Self.p, now: 0)
        #expect(line == "\r[######------------------]  25%  1.00 GiB/4.00 GiB  3/10 files  ETA 30s\u{1B}[K")
        // At most ten redraws a second; the final one always, ending the line.
        #expect(renderer.render(Self.p, now: 0.05) == nil)
        #expect(renderer.render(Self.p, now: 0.2) != nil)
        var done = Self.p
        done.filesDone = 10
        done.bytesDone = 4 << 30
        done.finished = true
        #expect(
            renderer.render(done, now: 0.21)?.hasSuffix("100%  4.00 GiB/4.00 GiB  10/10 files  in 10s\u{1B}[K\n")
                == true)
        #expect(renderer.render(done, now: 5) == nil)
    }

    @Test func otherwisePlainLinesNowAndThen() {
        var renderer = RestoreProgressRenderer(terminal: false)
        #expect(renderer.render(Self.p, now: 100) == "restore: 25% 1.00 GiB/4.00 GiB, 3/10 files, ETA 30s\n")
        #expect(renderer.render(Self.p, now: 103) == nil)
        #expect(renderer.render(Self.p, now: 105.5) != nil)
        var start = Self.p
        start.bytesDone = 0
        start.elapsed = 0
        var fresh = RestoreProgressRenderer(terminal: false)
        #expect(fresh.render(start, now: 0) == "restore: 0% 0 B/4.00 GiB, 3/10 files, ETA --\n")
    }

    @Test func formats() {
        #expect(RestoreProgressRenderer.formatBytes(512) == "512 B")
        #expect(RestoreProgressRenderer.formatBytes(12_345) == "12.1 KiB")
        #expect(RestoreProgressRenderer.formatBytes(3 << 29) == "1.50 GiB")
        #expect(RestoreProgressRenderer.formatSeconds(0.44) == "0.4s")
        #expect(RestoreProgressRenderer.formatSeconds(185) == "3m05s")
        #expect(RestoreProgressRenderer.formatSeconds(3725) == "1h02m")
    }

    @Test func downloadsRunAheadInParallelButBounded() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let files = (1...20).map { LTXFileInfo(level: 0, minTXID: UInt64($0), maxTXID: UInt64($0), size: 100) }
            let client = SlowReplica(directory: dir, delay: 0.02)
            let prefetcher = Prefetcher(client: client, files: files, concurrency: 4)
            defer { prefetcher.cancel() }
            let started = Date()
            for file in files {
                let local = try prefetcher.next()
                #expect(local.path.hasSuffix(file.name))
                #expect(try String(contentsOfFile: local.path, encoding: .utf8) == file.name)
                local.release()
                #expect(client.outstanding <= 8, "fetched far ahead of the consumer")
            }
            // 20 fetches of 20 ms, four at a time: well under the 400 ms one at a time would take.
            #expect(Date().timeIntervalSince(started) < 0.35)
            #expect(client.maxConcurrent > 1 && client.maxConcurrent <= 4)
            #expect(client.outstanding == 0)
        }
    }

    @Test func aFailedDownloadSurfacesInOrderAndCancelReleasesTheRest() throws {
        try TestSupport.withTemporaryDirectory { dir in
            let files = (1...10).map { LTXFileInfo(level: 0, minTXID: UInt64($0), maxTXID: UInt64($0), size: 100) }
            let client = SlowReplica(directory: dir, delay: 0.001, failing: 4)
            let prefetcher = Prefetcher(client: client, files: files, concurrency: 3)
            for _ in 1...3 { try prefetcher.next().release() }
            let error = #expect(throws: ReplicationError.self) { try prefetcher.next() }
            #expect(error?.code == .missingReplica)
            prefetcher.cancel()
            #expect(client.outstanding == 0, "fetched files were not released")
        }
    }
}

/// A replica whose fetch takes a while and writes a temporary file; counts what is not released.
final class SlowReplica: ReplicaClient, @unchecked Sendable {
    let directory: String
    let delay: Double
    let failing: UInt64?
    private let lock = NSLock()
    private var running = 0
    private(set) var maxConcurrent = 0

    init(directory: String, delay: Double, failing: UInt64? = nil) {
        self.directory = directory
        self.delay = delay
        self.failing = failing
    }

    var location: String { "slow://test" }
    var outstanding: Int {
        ((try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []).filter { $0.hasSuffix(".ltx") }.count
    }
    func listFiles(level: Int) throws -> [LTXFileInfo] { [] }
    func listLevels() throws -> [Int] { [] }
    func fetch(_ file: LTXFileInfo) throws -> LocalLTXFile {
        lock.lock()
        running += 1
        maxConcurrent = max(maxConcurrent, running)
        lock.unlock()
        defer {
            lock.lock()
            running -= 1
            lock.unlock()
        }
        usleep(UInt32(delay * 1_000_000))
        if file.minTXID == failing { throw ReplicationError(.missingReplica, "replica file \(file) does not exist") }
        let path = directory + "/" + file.name
        try file.name.write(toFile: path, atomically: false, encoding: .utf8)
        return LocalLTXFile(path: path, isTemporary: true)
    }
    func publish(level: Int, minTXID: UInt64, maxTXID: UInt64, localPath: String, timestamp: Date) throws {}
    func delete(_ files: [LTXFileInfo]) throws {}
}
