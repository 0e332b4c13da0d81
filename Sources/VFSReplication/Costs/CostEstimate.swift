import Foundation

/// What one database's replica costs: requests by billing class today, this month and as
/// projected for the month, the bytes it stores, and dollars from its price list. Built from the
/// uploader's record (`UploaderRecord`: counts by UTC day, kept across restarts) without any
/// request of its own.
///
/// Everything here is an estimate, and the JSON says so:
/// - requests are the ones this package's uploaders made (a restore, `vfs-status --verify` or
///   anything else using the bucket is not counted);
/// - storage is the replica's size as the uploader last knew it (from the listing it keeps for
///   compaction), charged as if it had been that size all along;
/// - the projection adds, to this month so far, the rate of the last 7 days (or since counting
///   began, if later) for the rest of the month;
/// - free allowances are per account: per database the cost is gross; `CostTotals` applies the
///   allowance once, to the total of each price list.
public struct CostEstimate: Sendable, Equatable, Encodable {
    /// Days the projection's rate looks back over (today included).
    public static let rateDays = 7
    /// The shortest window a rate is taken over: a few requests at start-up spread over an hour,
    /// not extrapolated from seconds to a month.
    public static let minimumRateSeconds = 3600.0

    public struct Window: Sendable, Equatable, Encodable {
        public var usage: Usage
        /// GB-months of storage charged in the window.
        public var storageGBMonths: Double
        /// Nil without a price list.
        public var dollars: Cost?
    }

    /// Nil when the replica's provider is unknown (an S3-compatible endpoint with no `price-list`).
    public var priceList: PriceList?
    /// The replica's size (sum of its objects' sizes), nil until an uploader has listed it.
    public var replicaBytes: Int64?
    public var replicaFiles: Int?
    /// The UTC day so far.
    public var today: Window
    /// The UTC month so far.
    public var month: Window
    /// The whole UTC month: so far plus the recent rate for the rest.
    public var projectedMonth: Window
    /// When the projection's rate window starts, and how long it is (at least
    /// `minimumRateSeconds`: a young window's projection is rough, and the text says how young).
    public var rateSince: Date?
    public var rateSeconds: Double?
    public let estimated = true

    public static func make(record: UploaderRecord?, prices: PriceList?, now: Date) -> CostEstimate {
        let calendar = Self.utc
        let todayStart = calendar.startOfDay(for: now)
        let monthStart = calendar.date(from: calendar.dateComponents([.year, .month], from: now))!
        let monthEnd = calendar.date(byAdding: .month, value: 1, to: monthStart)!
        let monthLength = monthEnd.timeIntervalSince(monthStart)

        let days = record?.requests ?? []
        let todayKey = UploaderRecord.day(now)
        let monthKey = String(todayKey.prefix(7))
        let today = days.filter { $0.day == todayKey }.map(Usage.init).reduce(Usage(), +)
        let month = days.filter { $0.day.hasPrefix(monthKey) && $0.day <= todayKey }.map(Usage.init).reduce(Usage(), +)

        // The rate: the last `rateDays` UTC days, or from when counting began if that is later.
        var rateStart = calendar.date(byAdding: .day, value: -(rateDays - 1), to: todayStart)!
        let begun = record?.countingSince ?? days.first.flatMap { Self.dayStart($0.day) }
        if let begun, begun > rateStart { rateStart = min(begun, now) }
        let rateStartKey = UploaderRecord.day(rateStart)
        let recent = days.filter { $0.day >= rateStartKey && $0.day <= todayKey }.map(Usage.init).reduce(Usage(), +)
        let elapsed = max(Self.minimumRateSeconds, now.timeIntervalSince(rateStart))
        let remaining = max(0, monthEnd.timeIntervalSince(now))
        let projected = month + recent.scaled(by: remaining / elapsed)

        let bytes = record?.replicaBytes ?? 0
        func window(_ usage: Usage, fraction: Double) -> Window {
            let gbMonths = CostCalculator.gbMonths(bytes: bytes, fraction: fraction)
            return Window(
                usage: usage, storageGBMonths: gbMonths,
                dollars: prices.map { CostCalculator.cost(usage: usage, storageGBMonths: gbMonths, prices: $0) })
        }
        return CostEstimate(
            priceList: prices, replicaBytes: record?.replicaBytes, replicaFiles: record?.replicaFiles,
            today: window(today, fraction: now.timeIntervalSince(todayStart) / monthLength),
            month: window(month, fraction: now.timeIntervalSince(monthStart) / monthLength),
            projectedMonth: window(projected, fraction: 1),
            rateSince: days.isEmpty ? nil : rateStart, rateSeconds: days.isEmpty ? nil : elapsed)
    }

    static var utc: Calendar {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        return calendar
    }

    /// Midnight UTC of a `yyyy-MM-dd` key.
    static func dayStart(_ key: String) -> Date? {
        let parts = key.split(separator: "-").compactMap { Int($0) }
        guard parts.count == 3 else { return nil }
        return utc.date(from: DateComponents(year: parts[0], month: parts[1], day: parts[2]))
    }

    /// `costs: r2 (2025)  today $0.0012 (A 40 B 2)  month $0.03  projected $0.09/month  stored 12.0 MiB`.
    public func summary() -> String {
        var parts: [String] = []
        if let p = priceList {
            parts.append("\(p.name) (\(p.asOf))")
        } else {
            parts.append("no price list (set 'price-list' on the replica)")
        }
        func money(_ w: Window) -> String { w.dollars.map { CostCalculator.format($0.total) + " " } ?? "" }
        parts.append("today \(money(today))(A \(today.usage.classA) B \(today.usage.classB) DELETE \(today.usage.free))")
        parts.append("month \(money(month))(A \(month.usage.classA) B \(month.usage.classB))")
        let basis = rateSeconds.map { " (rate of the last \(StatusReport.duration($0)))" } ?? ""
        if let d = projectedMonth.dollars {
            parts.append("projected \(CostCalculator.format(d.total))/month\(basis)")
        } else {
            parts.append("projected A \(projectedMonth.usage.classA) B \(projectedMonth.usage.classB)/month\(basis)")
        }
        if month.usage.egressBytes > 0 { parts.append("egress \(StatusReport.bytes(UInt64(month.usage.egressBytes))) this month") }
        parts.append("stored " + (replicaBytes.map { StatusReport.bytes(UInt64(max(0, $0))) } ?? "?"))
        return "costs: " + parts.joined(separator: "  ") + "  (estimated)"
    }
}

/// Costs of every database together. Free allowances are per account: the package cannot know
/// which databases share one, so it assumes all databases on one price list share one account
/// (and nothing else uses it) and applies the allowance once per price list, to the projected
/// month only. Per-database figures stay gross.
public struct CostTotals: Sendable, Equatable, Encodable {
    public var today: Double
    public var month: Double
    public var projectedMonth: Double
    /// The projected month with each price list's free allowance taken off once.
    public var projectedMonthAfterFreeTier: Double
    /// Databases whose replica has no price list (left out of the dollars).
    public var unpriced: Int
    public let note =
        "estimates; per-database figures are gross, the free allowance (per account) is taken once per price list in projectedMonthAfterFreeTier"

    public init(_ estimates: [CostEstimate]) {
        var today = 0.0
        var month = 0.0
        var projected = 0.0
        var unpriced = 0
        var groups: [String: (prices: PriceList, usage: Usage, gbMonths: Double)] = [:]
        for e in estimates {
            guard let p = e.priceList else {
                unpriced += 1
                continue
            }
            today += e.today.dollars?.total ?? 0
            month += e.month.dollars?.total ?? 0
            projected += e.projectedMonth.dollars?.total ?? 0
            var g = groups[p.name] ?? (p, Usage(), 0)
            g.usage = g.usage + e.projectedMonth.usage
            g.gbMonths += e.projectedMonth.storageGBMonths
            groups[p.name] = g
        }
        self.today = today
        self.month = month
        self.projectedMonth = projected
        self.projectedMonthAfterFreeTier = groups.values.reduce(0) {
            $0 + CostCalculator.costAfterFreeTier(usage: $1.usage, storageGBMonths: $1.gbMonths, prices: $1.prices).total
        }
        self.unpriced = unpriced
    }

    /// `total: today $0.01  month $0.25  projected $0.80/month ($0.00 after the free tier)  (estimated)`.
    public func summary() -> String {
        var line =
            "total costs: today \(CostCalculator.format(today))  month \(CostCalculator.format(month))  "
            + "projected \(CostCalculator.format(projectedMonth))/month "
            + "(\(CostCalculator.format(projectedMonthAfterFreeTier)) after each provider's free tier, if these databases are all the account holds)"
        if unpriced > 0 { line += "  \(unpriced) database(s) without a price list left out" }
        return line + "  (estimated)"
    }
}
