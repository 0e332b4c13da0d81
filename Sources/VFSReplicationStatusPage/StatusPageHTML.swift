import Foundation
import VFSReplication

/// The dashboard: one card per database with the facts `vfs-status` prints, its problems, and a
/// sparkline of lag. Static HTML with inline CSS and SVG (no scripts); it reloads itself.
enum StatusPageHTML {
    static func render(reports: [StatusReport], history: LagHistory, options: StatusPageOptions, generatedAt: Date)
        -> String
    {
        let healthy = reports.allSatisfy(\.healthy)
        let unhealthy = reports.filter { !$0.healthy }.count
        var html = """
            <!doctype html>
            <html lang="en">
            <head>
            <meta charset="utf-8">
            <meta name="viewport" content="width=device-width, initial-scale=1">

            """
        if options.refreshSeconds > 0 {
            html += "<meta http-equiv=\"refresh\" content=\"\(options.refreshSeconds)\">\n"
        }
        html += """
            <title>\(healthy ? "OK" : "UNHEALTHY") · \(escape(options.title))</title>
            <style>\(css)</style>
            </head>
            <body>
            <header>
            <h1>\(escape(options.title))</h1>
            <p class="summary \(healthy ? "ok" : "bad")">\(summary(total: reports.count, unhealthy: unhealthy))</p>
            <p class="meta costs">\(escape(totalCosts(reports)))</p>
            <p class="meta">\(escape(format(generatedAt))) · <a href="\(escape(options.mountPath))/status.json">status.json</a> · <a href="\(escape(options.mountPath))/metrics">metrics</a></p>
            </header>
            <main>

            """
        for r in reports {
            html += card(r, samples: history.samples(for: r.database), now: generatedAt)
        }
        html += "</main>\n</body>\n</html>\n"
        return html
    }

    static func totalCosts(_ reports: [StatusReport]) -> String {
        let t = CostTotals(reports.map(\.costs))
        return "Estimated cost: today \(CostCalculator.format(t.today)) · this month \(CostCalculator.format(t.month)) · "
            + "projected \(CostCalculator.format(t.projectedMonth))/month, "
            + "\(CostCalculator.format(t.projectedMonthAfterFreeTier)) after the free tiers (if these databases are all the account holds)"
    }

    static func summary(total: Int, unhealthy: Int) -> String {
        if unhealthy == 0 { return total == 1 ? "The database is healthy" : "All \(total) databases are healthy" }
        if total == 1 { return "The database needs attention" }
        return "\(unhealthy) of \(total) databases need attention"
    }

    private static func card(_ r: StatusReport, samples: [LagHistory.Sample], now: Date) -> String {
        var rows: [(String, String)] = []
        if let restored = r.restored, r.state == nil {
            rows.append(("Restored", r.restoredNote(restored)))
        }
        if let s = r.state {
            rows.append(("Local TXID", "\(s.localTXID)"))
            rows.append(("Durable TXID", "\(s.durableTXID)"))
            let lag = r.lagSeconds.map { StatusReport.duration($0) } ?? "?"
            rows.append(("Lag", "\(lag) · \(s.pendingTransactions) tx"))
            rows.append(("Spool pending", StatusReport.bytes(s.pendingSpoolBytes)))
            if let d = s.disk {
                let parts = "spool \(StatusReport.bytes(d.spoolBytes)) · cache \(StatusReport.bytes(d.cacheBytes))"
                rows.append(("Local disk", "\(StatusReport.bytes(d.totalBytes)) (\(parts))"))
            }
            rows.append(("Last commit", ago(s.lastCommit, now)))
        }
        let unknown = "unknown (no status file yet)"
        rows.append(("Last upload", r.record == nil ? unknown : ago(r.record?.lastUpload, now)))
        rows.append(("Last snapshot", r.record == nil ? unknown : ago(r.record?.lastSnapshot, now)))
        let today = r.requestsToday
        rows.append(
            ("Requests today", RequestKind.allCases.map { "\($0.rawValue) \(today[$0])" }.joined(separator: " · ")))
        rows.append(("Costs (estimated)", costs(r.costs)))
        if let record = r.record {
            rows.append(
                (
                    "Uploaded",
                    "\(record.filesUploaded) files · \(StatusReport.bytes(UInt64(max(0, record.bytesUploaded))))"
                ))
        }
        switch r.uploader {
        case .running(let pid): rows.append(("Uploader", pid.map { "pid \($0)" } ?? "running"))
        case .none: rows.append(("Uploader", "none running"))
        case .unknown(let why): rows.append(("Uploader", "unknown: \(why)"))
        }
        if let e = r.record?.lastError {
            rows.append(("Last error", "\(ago(e.at, now))\(e.resolvedAt == nil ? "" : " (resolved)"): \(e.message)"))
        }
        if let v = r.verification {
            rows.append(("Verified", "\(v.passed ? "ok" : "FAILED") \(ago(v.finishedAt, now)): \(v.message)"))
        }
        var html = """
            <section class="db \(r.healthy ? "ok" : "bad")">
            <h2><span class="badge">\(r.healthy ? "OK" : "UNHEALTHY")</span> \(escape(r.database))</h2>
            <p class="replica">→ \(escape(r.replica))</p>

            """
        if !r.problems.isEmpty {
            html += "<ul class=\"problems\">" + r.problems.map { "<li>\(escape($0))</li>" }.joined() + "</ul>\n"
        }
        html += "<dl>" + rows.map { "<dt>\(escape($0.0))</dt><dd>\(escape($0.1))</dd>" }.joined() + "</dl>\n"
        html += sparkline(samples, maxLag: r.maxLagSeconds)
        html += "</section>\n"
        return html
    }

    /// Lag over time as an inline SVG polyline; the dashed line is the lag threshold when it is
    /// within the drawn range.
    static func sparkline(_ samples: [LagHistory.Sample], maxLag: Double) -> String {
        let width = 320.0
        let height = 48.0
        let values = samples.map { $0.lagSeconds ?? 0 }
        let peak = max(values.max() ?? 0, 1)
        var svg =
            "<figure class=\"spark\"><svg viewBox=\"0 0 \(Int(width)) \(Int(height))\" width=\"\(Int(width))\" height=\"\(Int(height))\" role=\"img\" aria-label=\"lag history\">"
        if values.count >= 2 {
            let step = width / Double(values.count - 1)
            let points = values.enumerated().map { i, v in
                String(format: "%.1f,%.1f", Double(i) * step, height - 2 - (v / peak) * (height - 4))
            }
            svg +=
                "<polyline fill=\"none\" stroke=\"currentColor\" stroke-width=\"1.5\" points=\"\(points.joined(separator: " "))\"/>"
            if maxLag <= peak {
                let y = height - 2 - (maxLag / peak) * (height - 4)
                svg += String(
                    format: "<line x1=\"0\" x2=\"%.0f\" y1=\"%.1f\" y2=\"%.1f\" class=\"limit\"/>", width, y, y)
            }
        } else {
            svg += "<text x=\"4\" y=\"28\" class=\"empty\">collecting lag samples…</text>"
        }
        svg +=
            "</svg><figcaption>lag, last \(samples.count) samples · peak \(StatusReport.duration(values.max() ?? 0))</figcaption></figure>\n"
        return svg
    }

    /// `today $0.0012 · month $0.03 · projected $0.09/month · A 40 B 2 today · stored 12.0 MiB · r2 (2025)`.
    static func costs(_ c: CostEstimate) -> String {
        var parts: [String] = []
        if c.priceList != nil {
            parts.append("today " + CostCalculator.format(c.today.dollars?.total ?? 0))
            parts.append("month " + CostCalculator.format(c.month.dollars?.total ?? 0))
            parts.append("projected " + CostCalculator.format(c.projectedMonth.dollars?.total ?? 0) + "/month")
        }
        parts.append("A \(c.today.usage.classA) · B \(c.today.usage.classB) today")
        parts.append("A \(c.month.usage.classA) · B \(c.month.usage.classB) this month")
        parts.append("stored " + (c.replicaBytes.map { StatusReport.bytes(UInt64(max(0, $0))) } ?? "unknown"))
        if let p = c.priceList {
            parts.append("prices \(p.name) as of \(p.asOf)")
        } else {
            parts.append("no price list (set 'price-list' on the replica)")
        }
        return parts.joined(separator: " · ")
    }

    private static func ago(_ date: Date?, _ now: Date) -> String {
        guard let date else { return "never" }
        return "\(StatusReport.ago(date, now: now)) (\(format(date)))"
    }

    private static func format(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: date)
    }

    static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.count)
        for ch in text {
            switch ch {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.append(ch)
            }
        }
        return out
    }

    static let css = """
        :root{color-scheme:light dark;--ok:#1a7f37;--bad:#cf222e;--muted:#6e7781}
        body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;padding:1.5rem;background:Canvas;color:CanvasText}
        header h1{margin:0 0 .25rem;font-size:1.4rem}
        .summary{font-weight:600;margin:.25rem 0}.summary.ok{color:var(--ok)}.summary.bad{color:var(--bad)}
        .meta{color:var(--muted);margin:0 0 1rem}.meta a{color:inherit}
        main{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:1rem}
        .db{border:1px solid color-mix(in srgb,CanvasText 15%,transparent);border-left:6px solid var(--ok);border-radius:8px;padding:.75rem 1rem}
        .db.bad{border-left-color:var(--bad)}
        .db h2{font-size:1rem;margin:0;word-break:break-all}
        .badge{display:inline-block;font-size:.75rem;padding:.1rem .45rem;border-radius:999px;color:#fff;background:var(--ok);vertical-align:middle}
        .bad .badge{background:var(--bad)}
        .replica{color:var(--muted);margin:.2rem 0 .5rem;word-break:break-all}
        .problems{color:var(--bad);margin:.25rem 0 .5rem;padding-left:1.2rem}
        dl{display:grid;grid-template-columns:max-content 1fr;gap:.15rem .75rem;margin:0}
        dt{color:var(--muted)}dd{margin:0;word-break:break-word;font-variant-numeric:tabular-nums}
        .spark{margin:.5rem 0 0;color:var(--ok)}.bad .spark{color:var(--bad)}
        .spark svg{display:block;max-width:100%;height:auto}
        .spark .limit{stroke:var(--muted);stroke-dasharray:3 3}
        .spark .empty{fill:var(--muted);font-size:12px}
        figcaption{color:var(--muted);font-size:.8rem}
        """
}
