import Foundation

/// Requests and transfer in one window, grouped as providers bill them (see `PriceList`).
public struct Usage: Sendable, Equatable, Codable {
    /// PUT (multipart and bucket calls included) and LIST.
    public var classA: Int
    /// GET (HEAD included).
    public var classB: Int
    /// DELETE: counted, never billed.
    public var free: Int
    /// Bytes GETs returned (what a provider bills as egress).
    public var egressBytes: Int64

    public init(classA: Int = 0, classB: Int = 0, free: Int = 0, egressBytes: Int64 = 0) {
        self.classA = classA
        self.classB = classB
        self.free = free
        self.egressBytes = egressBytes
    }

    /// One day of an uploader's counts.
    public init(_ day: UploaderRecord.DailyRequests) {
        self.init(
            classA: day[.put] + day[.list], classB: day[.get], free: day[.delete], egressBytes: day.egressBytes)
    }

    public var requests: Int { classA + classB + free }

    public static func + (a: Usage, b: Usage) -> Usage {
        Usage(
            classA: a.classA + b.classA, classB: a.classB + b.classB, free: a.free + b.free,
            egressBytes: a.egressBytes + b.egressBytes)
    }

    /// Every count times `factor`, rounded (a projection).
    func scaled(by factor: Double) -> Usage {
        func s(_ n: Int) -> Int { Int((Double(n) * factor).rounded()) }
        return Usage(
            classA: s(classA), classB: s(classB), free: s(free),
            egressBytes: Int64((Double(egressBytes) * factor).rounded()))
    }
}

/// Dollars by what they pay for.
public struct Cost: Sendable, Equatable, Codable {
    public var requests: Double
    public var storage: Double
    public var egress: Double
    public var total: Double

    public init(requests: Double = 0, storage: Double = 0, egress: Double = 0) {
        self.requests = requests
        self.storage = storage
        self.egress = egress
        self.total = requests + storage + egress
    }

    public static func + (a: Cost, b: Cost) -> Cost {
        Cost(requests: a.requests + b.requests, storage: a.storage + b.storage, egress: a.egress + b.egress)
    }
}

/// Turns usage and stored bytes into dollars with a price list. Pure arithmetic: what is
/// estimated about the inputs (storage taken at today's size, projections) is decided by the
/// caller (`CostEstimate`).
public enum CostCalculator {
    /// Providers bill storage and transfer in GB of 2^30 bytes.
    public static let bytesPerGB = 1_073_741_824.0

    /// Gross dollars: every request, byte and GB-month at list price, no free allowance.
    public static func cost(usage: Usage, storageGBMonths: Double, prices: PriceList) -> Cost {
        Cost(
            requests: Double(usage.classA) / 1e6 * prices.classAPerMillion + Double(usage.classB) / 1e6
                * prices.classBPerMillion,
            storage: max(0, storageGBMonths) * prices.storagePerGBMonth,
            egress: Double(usage.egressBytes) / bytesPerGB * prices.egressPerGB)
    }

    /// Dollars for one month of one account after its free allowance: each quantity above the
    /// allowance at list price. Meant for an account's whole month (the allowance is per account),
    /// so callers apply it to totals, never to one database.
    public static func costAfterFreeTier(usage: Usage, storageGBMonths: Double, prices: PriceList) -> Cost {
        let a = max(0, Double(usage.classA) - prices.freeClassAPerMonth)
        let b = max(0, Double(usage.classB) - prices.freeClassBPerMonth)
        let gbMonths = max(0, storageGBMonths - prices.freeStorageGBMonth)
        let egressGB = max(0, Double(usage.egressBytes) / bytesPerGB - prices.freeEgressGBPerMonth)
        return Cost(
            requests: a / 1e6 * prices.classAPerMillion + b / 1e6 * prices.classBPerMillion,
            storage: gbMonths * prices.storagePerGBMonth,
            egress: egressGB * prices.egressPerGB)
    }

    /// GB-months of `bytes` kept for `fraction` of a month.
    public static func gbMonths(bytes: Int64, fraction: Double) -> Double {
        Double(max(0, bytes)) / bytesPerGB * max(0, fraction)
    }

    /// `$0.00`, `$0.0042`, `$1.23`, `$1,234.56`-style text (small amounts keep two significant
    /// digits, so a cheap database does not read as free).
    public static func format(_ dollars: Double) -> String {
        if dollars == 0 { return "$0.00" }
        if abs(dollars) < 0.01 {
            let decimals = min(8, 1 - Int(floor(log10(abs(dollars)))))
            return "$" + String(format: "%.\(decimals)f", dollars)
        }
        return String(format: "$%.2f", dollars)
    }
}
