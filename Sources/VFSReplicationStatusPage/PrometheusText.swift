import Foundation
import VFSReplication

/// Renders status reports in the Prometheus text exposition format, version 0.0.4
/// (https://prometheus.io/docs/instrumenting/exposition_formats/). Everything comes from the files
/// beside each database, so a scrape of any process shows every process's work; an app that
/// wants its own process's instruments uses `MetricsObserver` with its metrics backend instead.
///
/// ```text
/// # HELP vfsreplication_lag_seconds Age of the oldest commit not yet durable in the replica.
/// # TYPE vfsreplication_lag_seconds gauge
/// vfsreplication_lag_seconds{database="/srv/app/storage/production.sqlite3"} 0.42
/// ```
public enum PrometheusText {
    private struct Family {
        var name: String
        var help: String
        var type: String
        var samples: [(labels: [(String, String)], value: Double)] = []
    }

    public static func render(_ reports: [StatusReport]) -> String {
        var families: [Family] = [
            Family(
                name: "vfsreplication_healthy", help: "1 when the database is healthy (see vfs-status).", type: "gauge"),
            Family(name: "vfsreplication_local_txid", help: "Last TXID captured locally.", type: "gauge"),
            Family(name: "vfsreplication_durable_txid", help: "Last TXID durable in the replica.", type: "gauge"),
            Family(
                name: "vfsreplication_lag_seconds", help: "Age of the oldest commit not yet durable in the replica.",
                type: "gauge"),
            Family(
                name: "vfsreplication_lag_transactions", help: "Transactions captured and not yet durable.",
                type: "gauge"),
            Family(name: "vfsreplication_spool_pending_bytes", help: "Spool bytes not yet shipped.", type: "gauge"),
            Family(
                name: "vfsreplication_uploader_running", help: "1 while a process holds the uploader lock.",
                type: "gauge"),
            Family(name: "vfsreplication_fenced", help: "1 when another writer owns the replica.", type: "gauge"),
            Family(name: "vfsreplication_erroring", help: "1 while the uploader's last attempt failed.", type: "gauge"),
            Family(
                name: "vfsreplication_last_upload_timestamp_seconds", help: "Time of the last LTX file shipped.",
                type: "gauge"),
            Family(
                name: "vfsreplication_last_snapshot_timestamp_seconds", help: "Time of the last snapshot shipped.",
                type: "gauge"),
            Family(
                name: "vfsreplication_uploaded_files_total",
                help: "LTX files shipped (as the status file counts them).",
                type: "counter"),
            Family(
                name: "vfsreplication_uploaded_bytes_total", help: "Bytes of LTX files shipped.", type: "counter"),
            Family(
                name: "vfsreplication_requests_today", help: "Replica requests made today (UTC), by kind.",
                type: "gauge"),
            Family(
                name: "vfsreplication_verification_passed", help: "1 when the last vfs-status --verify passed.",
                type: "gauge"),
            Family(
                name: "vfsreplication_verification_timestamp_seconds", help: "Time of the last vfs-status --verify.",
                type: "gauge"),
            Family(
                name: "vfsreplication_local_disk_bytes",
                help: "Bytes on disk beside the database (<db>-vfsrepl), by part: spool, cache, total.",
                type: "gauge"),
            Family(
                name: "vfsreplication_spool_writable", help: "0 while the spool cannot be written (disk full).",
                type: "gauge"),
            Family(
                name: "vfsreplication_backed_up",
                help: "1 when the database's current state is in the replica (or there is nothing to back up yet).",
                type: "gauge"),
            // 19-24: costs (estimates; see CostEstimate).
            Family(
                name: "vfsreplication_billed_requests",
                help: "Replica requests by billing class (A: PUT, LIST; B: GET; free: DELETE) in a UTC window: today, month, projected_month.",
                type: "gauge"),
            Family(
                name: "vfsreplication_egress_bytes", help: "Bytes the replica's GETs returned in a UTC window.",
                type: "gauge"),
            Family(
                name: "vfsreplication_replica_bytes",
                help: "Bytes stored in the replica (sum of object sizes, as the uploader's listing knows it).",
                type: "gauge"),
            Family(name: "vfsreplication_replica_files", help: "Objects in the replica.", type: "gauge"),
            Family(
                name: "vfsreplication_estimated_dollars",
                help: "Estimated US dollars (gross, list prices) in a UTC window: today, month, projected_month.",
                type: "gauge"),
            Family(
                name: "vfsreplication_price_list_info",
                help: "The price list the estimates use (1), with its name and as-of date.", type: "gauge"),
            Family(
                name: "vfsreplication_estimated_dollars_total",
                help: "Every database's estimated dollars in a window; projected_month_after_free_tier takes each price list's free allowance off once.",
                type: "gauge"),
        ]
        func add(_ index: Int, _ r: StatusReport, _ value: Double?, _ extra: [(String, String)] = []) {
            guard let value else { return }
            families[index].samples.append((labels: [("database", r.database)] + extra, value: value))
        }
        for r in reports {
            add(0, r, r.healthy ? 1 : 0)
            add(1, r, r.state.map { Double($0.localTXID) })
            add(2, r, r.state.map { Double($0.durableTXID) })
            add(3, r, r.lagSeconds)
            add(4, r, r.state.map { Double($0.pendingTransactions) })
            add(5, r, r.state.map { Double($0.pendingSpoolBytes) })
            add(6, r, r.uploader.isRunning ? 1 : 0)
            add(7, r, r.record?.fenced == nil ? 0 : 1)
            add(8, r, r.record?.isErroring == true ? 1 : 0)
            add(9, r, r.record?.lastUpload?.timeIntervalSince1970)
            add(10, r, r.record?.lastSnapshot?.timeIntervalSince1970)
            add(11, r, Double(r.record?.filesUploaded ?? 0))
            add(12, r, Double(r.record?.bytesUploaded ?? 0))
            let today = r.requestsToday
            for kind in RequestKind.allCases { add(13, r, Double(today[kind]), [("kind", kind.rawValue)]) }
            add(14, r, r.verification.map { $0.passed ? 1 : 0 })
            add(15, r, r.verification?.finishedAt.timeIntervalSince1970)
            if let d = r.state?.disk {
                add(16, r, Double(d.spoolBytes), [("part", "spool")])
                add(16, r, Double(d.cacheBytes), [("part", "cache")])
                add(16, r, Double(d.totalBytes), [("part", "total")])
                add(17, r, d.spoolError == nil && !d.captureBehind ? 1 : 0)
            }
            add(18, r, r.notBackedUpSince == nil ? 1 : 0)
            let windows = [
                ("today", r.costs.today), ("month", r.costs.month), ("projected_month", r.costs.projectedMonth),
            ]
            for (name, w) in windows {
                add(19, r, Double(w.usage.classA), [("class", "A"), ("window", name)])
                add(19, r, Double(w.usage.classB), [("class", "B"), ("window", name)])
                add(19, r, Double(w.usage.free), [("class", "free"), ("window", name)])
                add(20, r, Double(w.usage.egressBytes), [("window", name)])
                add(23, r, w.dollars?.total, [("window", name)])
            }
            add(21, r, r.costs.replicaBytes.map(Double.init))
            add(22, r, r.costs.replicaFiles.map(Double.init))
            if let p = r.costs.priceList { add(24, r, 1, [("price_list", p.name), ("as_of", p.asOf)]) }
        }
        let totals = CostTotals(reports.map(\.costs))
        for (name, value) in [
            ("today", totals.today), ("month", totals.month), ("projected_month", totals.projectedMonth),
            ("projected_month_after_free_tier", totals.projectedMonthAfterFreeTier),
        ] where !reports.isEmpty {
            families[25].samples.append((labels: [("window", name)], value: value))
        }
        var out = ""
        for f in families where !f.samples.isEmpty {
            out += "# HELP \(f.name) \(f.help)\n# TYPE \(f.name) \(f.type)\n"
            for s in f.samples {
                let labels = s.labels.map { "\($0.0)=\"\(escape($0.1))\"" }.joined(separator: ",")
                out += "\(f.name){\(labels)} \(format(s.value))\n"
            }
        }
        return out
    }

    /// Label values escape backslash, double quote and line feed.
    static func escape(_ value: String) -> String {
        var out = ""
        for ch in value {
            switch ch {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(ch)
            }
        }
        return out
    }

    static func format(_ value: Double) -> String {
        if value.isNaN { return "NaN" }
        if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
        // Dollars of a quiet database are fractions of a cent: keep their significant digits.
        if abs(value) < 1 { return String(format: "%.9g", value) }
        return String(format: "%.3f", value)
    }
}
