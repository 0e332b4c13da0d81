import ArgumentParser
import Foundation
import VFSReplication

/// `vfs-bench idle`: what an idle database costs in requests once a burst of writes is shipped.
struct Idle: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Requests per hour made for an idle database after a burst of writes (ours vs Litestream).")

    @OptionGroup var common: CommonOptions
    @Option(help: "Idle window in seconds (default 60, 20 with --quick).") var seconds: Double?
    @Option(help: "Transactions in the burst before the idle window.") var burst: Int = 2000

    struct Result: Codable {
        var configuration: String
        var windowSeconds: Double
        var requests: RequestCounts
        var perHour: Double
    }

    func run() throws {
        let window = seconds ?? (common.quick ? 20 : 60)
        let server = try BenchServer.fromEnvironment()
        let dir = try common.scratch("idle")
        let ours = dir + "/ours.db"
        let theirs = dir + "/litestream.db"
        let ourBucket = try server.makeBucket("idle-vfs")
        let theirBucket = try server.makeBucket("idle-litestream")
        let replicator = try startReplicator(server: server, databases: [(ours, ourBucket, "idle", .seconds(1))])
        defer { replicator.shutdown() }
        let ourLoad = try InsertLoad(
            connection: BenchConnection(path: ours, replicated: true), payloadBytes: 100, synchronous: "normal")
        let theirLoad = try InsertLoad(
            connection: BenchConnection(path: theirs, replicated: false), payloadBytes: 100, synchronous: "normal")
        _ = try theirLoad.transaction()
        let litestream = try LitestreamProcess(
            server: server, databases: [(theirs, theirBucket, "idle")], directory: dir)
        defer { litestream.stop() }
        try litestream.waitForFirstUpload(server: server, bucket: theirBucket, prefix: "idle")
        progress("idle: burst of \(burst) transactions on each database")
        for _ in 0..<burst {
            _ = try ourLoad.transaction()
            _ = try theirLoad.transaction()
        }
        try replicator.flush()
        sleepSeconds(5)  // Litestream ships its last second; both settle.
        let ours0 = try server.requestCounts(bucket: ourBucket)
        let theirs0 = try server.requestCounts(bucket: theirBucket)
        progress("idle: watching for \(Int(window)) s")
        sleepSeconds(window)
        let ourDelta = try server.requestCounts(bucket: ourBucket) - ours0
        let theirDelta = try server.requestCounts(bucket: theirBucket) - theirs0
        let results = [
            Result(
                configuration: ReplicationMode.vfs.label, windowSeconds: window, requests: ourDelta,
                perHour: Double(ourDelta.total) * 3600 / window),
            Result(
                configuration: ReplicationMode.litestream.label, windowSeconds: window, requests: theirDelta,
                perHour: Double(theirDelta.total) * 3600 / window),
        ]
        if common.json {
            try printJSON(results)
            return
        }
        var table = Table(
            title: "idle: requests while nothing is written (\(Int(window)) s window after a burst of \(burst) transactions)",
            header: ["configuration", "PUT", "GET", "LIST", "DELETE", "requests per hour (extrapolated)"])
        for r in results {
            table.rows.append([
                r.configuration, "\(r.requests["PUT"])", "\(r.requests["GET"] + r.requests["HEAD"])",
                "\(r.requests["LIST"])", "\(r.requests["DELETE"])", formatNumber(r.perHour, 0),
            ])
        }
        table.notes = [
            "Counted by SeaweedFS per bucket. The window starts 5 s after the burst was flushed. Target: 0 for ours."
        ]
        print(table.markdown())
    }
}
