import Foundation

/// How far a restore has come: reported after each file and every few MiB inside large ones.
public struct RestoreProgress: Sendable, Equatable {
    public var filesDone: Int
    public var filesTotal: Int
    /// Bytes of LTX files processed so far (downloaded and applied).
    public var bytesDone: Int64
    public var bytesTotal: Int64
    /// Seconds since the restore started applying files.
    public var elapsed: Double
    /// True once every file has been applied (verification and rename may still follow).
    public var finished: Bool

    public init(
        filesDone: Int, filesTotal: Int, bytesDone: Int64, bytesTotal: Int64, elapsed: Double, finished: Bool = false
    ) {
        self.filesDone = filesDone
        self.filesTotal = filesTotal
        self.bytesDone = bytesDone
        self.bytesTotal = bytesTotal
        self.elapsed = elapsed
        self.finished = finished
    }

    /// 0...1, by bytes.
    public var fraction: Double {
        bytesTotal > 0 ? min(1, Double(bytesDone) / Double(bytesTotal)) : (finished ? 1 : 0)
    }

    /// Seconds left at the rate so far; nil until there is a rate to go by.
    public var etaSeconds: Double? {
        guard bytesDone > 0, elapsed >= 0.2, bytesTotal >= bytesDone else { return nil }
        return elapsed * Double(bytesTotal - bytesDone) / Double(bytesDone)
    }
}

/// Turns progress reports into text for standard error: a bar redrawn in place on a terminal,
/// plain lines (at most one every `lineInterval` seconds) otherwise. Pure: the caller passes the
/// time and writes the text.
///
/// ```swift
/// var renderer = RestoreProgressRenderer(terminal: isatty(2) != 0)
/// if let text = renderer.render(progress, now: clock) { FileHandle.standardError.write(Data(text.utf8)) }
/// ```
public struct RestoreProgressRenderer: Sendable {
    public let terminal: Bool
    public var barWidth = 24
    public var lineInterval: Double = 5
    private var lastDrawn: Double?
    private var drewFinal = false

    public init(terminal: Bool) {
        self.terminal = terminal
    }

    /// The text to write for `progress` at time `now` (seconds, any origin), or nil to stay quiet.
    public mutating func render(_ progress: RestoreProgress, now: Double) -> String? {
        if drewFinal { return nil }
        let interval = terminal ? 0.1 : lineInterval
        if !progress.finished, let last = lastDrawn, now - last < interval { return nil }
        lastDrawn = now
        drewFinal = progress.finished
        let percent = Int((progress.fraction * 100).rounded(.down))
        let bytes = "\(Self.formatBytes(progress.bytesDone))/\(Self.formatBytes(progress.bytesTotal))"
        let files = "\(progress.filesDone)/\(progress.filesTotal) files"
        let eta: String
        if progress.finished {
            eta = "in \(Self.formatSeconds(progress.elapsed))"
        } else {
            eta = progress.etaSeconds.map { "ETA \(Self.formatSeconds($0))" } ?? "ETA --"
        }
        if terminal {
            let filled = Int((progress.fraction * Double(barWidth)).rounded(.down))
            let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: barWidth - filled)
            let line = "\r[\(bar)] \(Self.pad(percent))%  \(bytes)  \(files)  \(eta)\u{1B}[K"
            return progress.finished ? line + "\n" : line
        }
        return "restore: \(percent)% \(bytes), \(files), \(eta)\n"
    }

    private static func pad(_ value: Int) -> String {
        let text = String(value)
        return String(repeating: " ", count: max(0, 3 - text.count)) + text
    }

    /// `512 B`, `12.3 KiB`, `1.50 GiB`.
    public static func formatBytes(_ bytes: Int64) -> String {
        let units = ["KiB", "MiB", "GiB", "TiB"]
        if bytes < 1024 { return "\(bytes) B" }
        var value = Double(bytes)
        var unit = -1
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return String(format: value < 10 ? "%.2f" : "%.1f", value) + " " + units[unit]
    }

    /// `0.4s`, `12s`, `3m05s`, `1h02m`.
    public static func formatSeconds(_ seconds: Double) -> String {
        if seconds < 10 { return String(format: "%.1fs", max(0, seconds)) }
        let total = Int(seconds.rounded())
        if total < 60 { return "\(total)s" }
        if total < 3600 { return String(format: "%dm%02ds", total / 60, total % 60) }
        return String(format: "%dh%02dm", total / 3600, (total % 3600) / 60)
    }
}
