import ArgumentParser
import Foundation
import Logging
import VFSReplication

#if canImport(Glibc)
    import Glibc
#endif

/// What client-side encryption costs (`EncryptedReplicaClient`): the same LTX files published to
/// SeaweedFS through the plain S3 client and through the encrypting wrapper (CPU of this process
/// and wall time), then restored from each bucket (MiB/s). Configurations alternate round by
/// round, so both see the same machine load; medians are reported.
struct Encryption: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Encryption cost: upload CPU and restore MiB/s, plain vs encrypted, same files, same server.")

    @OptionGroup var common: CommonOptions
    @Option(help: "Snapshot size in MiB (default 64; 8 with --quick).") var sizeMiB: Int?
    @Option(help: "Small files (4 pages each) after the snapshot (default 300; 60 with --quick).") var files: Int?
    @Option(help: "Rounds per configuration (default 3; 1 with --quick).") var rounds: Int?

    struct Sample: Codable {
        var encrypted: Bool
        var snapshotCPU: Double
        var snapshotSeconds: Double
        var smallCPUPerFileMs: Double
        var restoreSeconds: Double
        var restoreCPU: Double
        var storedBytes: Int64
    }

    static func cpuSeconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6 + Double(usage.ru_stime.tv_sec)
            + Double(usage.ru_stime.tv_usec) / 1e6
    }

    /// Pages of a plausible database: half random bytes, half a repeated row pattern (so LZ4
    /// compresses them about as much as real pages).
    static func page(_ pgno: UInt32, version: UInt32, size: Int) -> [UInt8] {
        var state = UInt64(pgno) &* 0x9E37_79B9_7F4A_7C15 ^ UInt64(version)
        var bytes = [UInt8](repeating: 0, count: size)
        for i in 0..<size {
            if i < size / 2 {
                state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
                bytes[i] = UInt8(truncatingIfNeeded: state >> 33)
            } else {
                bytes[i] = UInt8(truncatingIfNeeded: (i % 37) &+ Int(pgno))
            }
        }
        return bytes
    }

    func run() throws {
        let size = sizeMiB ?? (common.quick ? 8 : 64)
        let smallFiles = files ?? (common.quick ? 60 : 300)
        let rounds = self.rounds ?? (common.quick ? 1 : 3)
        let server = try BenchServer.fromEnvironment()
        let dir = try common.scratch("encryption")
        defer { try? FileManager.default.removeItem(atPath: dir) }

        // The files, written once: a snapshot of `size` MiB and small incremental files.
        progress("encryption: writing a \(size) MiB snapshot and \(smallFiles) small LTX files")
        let pageSize = 4096
        let pageCount = UInt32(size << 20 / pageSize)
        let start = Date()
        var local: [(level: Int, min: UInt64, max: UInt64, path: String, date: Date)] = []
        func write(level: Int, min: UInt64, max: UInt64, pages: [UInt32], version: UInt32, date: Date) throws {
            let path = dir + "/\(level)-\(min).ltx"
            let header = LTXHeader(
                pageSize: UInt32(pageSize), commit: pageCount, minTXID: min, maxTXID: max,
                timestamp: Int64(date.timeIntervalSince1970 * 1000))
            let encoder = try LTXEncoder(path: path, header: header)
            for p in pages { try encoder.writePage(p, Self.page(p, version: version, size: pageSize)) }
            _ = try encoder.finish(sync: false)
            local.append((level, min, max, path, date))
        }
        try write(level: 9, min: 1, max: 1, pages: Array(1...pageCount), version: 0, date: start)
        for i in 0..<smallFiles {
            let txid = UInt64(i + 2)
            let pages = (0..<4).map { UInt32((i * 7919 + $0 * 104_729) % Int(pageCount)) + 1 }
            try write(
                level: 0, min: txid, max: txid, pages: Array(Set(pages)).sorted(), version: UInt32(txid),
                date: start.addingTimeInterval(Double(i) * 0.01))
        }
        let snapshotBytes = (try FileManager.default.attributesOfItem(atPath: local[0].path)[.size] as? Int) ?? 0

        let keyHex = (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        let key = try EncryptionKey(id: "bench", text: keyHex, source: "generated")
        let encryption = try ReplicaEncryption(currentKeyID: "bench", keys: [key])

        var quiet = Logger(label: "vfs-bench")
        quiet.logLevel = .warning  // the table is the output
        var samples: [Sample] = []
        for round in 0..<rounds {
            for encrypted in [false, true] {
                progress("encryption: round \(round + 1) of \(rounds), \(encrypted ? "encrypted" : "plain")")
                let bucket = try server.makeBucket(encrypted ? "enc" : "plain")
                let s3 = try S3ReplicaClient(config: server.replicaConfig(bucket: bucket, prefix: "app"))
                let client: any ReplicaClient = encrypted ? EncryptedReplicaClient(inner: s3, encryption: encryption) : s3
                let cpu0 = Self.cpuSeconds()
                let t0 = nowNs()
                let snapshot = local[0]
                try client.publish(
                    level: snapshot.level, minTXID: snapshot.min, maxTXID: snapshot.max, localPath: snapshot.path,
                    timestamp: snapshot.date)
                let snapshotSeconds = Double(nowNs() - t0) / 1e9
                let cpu1 = Self.cpuSeconds()
                for file in local.dropFirst() {
                    try client.publish(
                        level: file.level, minTXID: file.min, maxTXID: file.max, localPath: file.path, timestamp: file.date)
                }
                let cpu2 = Self.cpuSeconds()
                let stored = try server.storedBytes(bucket: bucket, prefix: "app/").bytes

                let out = dir + "/restored.db"
                let cpu3 = Self.cpuSeconds()
                let t3 = nowNs()
                try ReplicaRestorer.restore(
                    from: client, to: out, options: RestoreOptions(force: true, verify: false), logger: quiet)
                let restoreSeconds = Double(nowNs() - t3) / 1e9
                let restoreCPU = Self.cpuSeconds() - cpu3
                try? FileManager.default.removeItem(atPath: out)
                samples.append(
                    Sample(
                        encrypted: encrypted, snapshotCPU: cpu1 - cpu0, snapshotSeconds: snapshotSeconds,
                        smallCPUPerFileMs: (cpu2 - cpu1) * 1000 / Double(max(1, smallFiles)),
                        restoreSeconds: restoreSeconds, restoreCPU: restoreCPU, storedBytes: stored))
            }
        }
        if common.json {
            try printJSON(samples)
            return
        }
        let databaseMiB = Double(Int(pageCount) * pageSize) / 1_048_576
        var table = Table(
            title: "encryption: the same LTX files through the plain S3 client and the encrypting wrapper",
            header: [
                "replica", "snapshot upload CPU s", "snapshot upload s", "CPU per small file ms", "restore s",
                "restore MiB/s", "restore CPU s", "bytes stored",
            ])
        var medians: [Bool: (cpu: Double, perFile: Double, mibps: Double)] = [:]
        for encrypted in [false, true] {
            let mine = samples.filter { $0.encrypted == encrypted }
            let cpu = median(mine.map(\.snapshotCPU)) ?? .nan
            let perFile = median(mine.map(\.smallCPUPerFileMs)) ?? .nan
            let restore = median(mine.map(\.restoreSeconds)) ?? .nan
            medians[encrypted] = (cpu, perFile, databaseMiB / restore)
            table.rows.append([
                encrypted ? "encrypted (AES-256-GCM)" : "plain", formatNumber(cpu, 3),
                formatNumber(median(mine.map(\.snapshotSeconds)), 3), formatNumber(perFile, 2), formatNumber(restore, 3),
                formatNumber(databaseMiB / restore, 1), formatNumber(median(mine.map(\.restoreCPU)), 3),
                "\(mine.first?.storedBytes ?? 0)",
            ])
        }
        if let p = medians[false], let e = medians[true] {
            table.notes.append(
                String(
                    format: "Encrypted vs plain: snapshot upload CPU %@, CPU per small file %@, restore speed %@.",
                    formatRatio(e.cpu / p.cpu), formatRatio(e.perFile / p.perFile), formatRatio(e.mibps / p.mibps)))
        }
        table.notes += [
            "A \(formatNumber(databaseMiB, 0)) MiB snapshot (\(snapshotBytes) bytes as LTX, LZ4) and \(smallFiles) files of 4 pages; medians of \(rounds) round(s), configurations alternating.",
            "CPU is this process's (user + system, libcurl included; SeaweedFS is another process): the plain client already hashes every body (MD5, SHA-256 for SigV4); the wrapper adds sealing (HMAC-SHA256 for the nonce and AES-256-GCM per 64 KiB chunk) and a sealed temporary copy.",
            "Restore: ReplicaRestorer in this process, latest state, LTX checksums verified, no PRAGMA integrity_check; MiB/s of database written.",
        ]
        print(table.markdown())
    }
}
