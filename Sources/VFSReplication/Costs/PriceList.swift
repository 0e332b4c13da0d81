/// What a replica's provider charges, in US dollars: storage per GB-month, requests per million
/// by billing class, egress per GB, and the monthly free allowance of an account. One GB is 2^30
/// bytes, as both shipped providers bill it.
///
/// ```yaml
/// prices:
///   r2:                       # a shipped list: only the keys given change
///     class-a-per-million: 4.00
///     as-of: 2026-01-15
///   minio:                    # a new list: starts from zero, or from `based-on`
///     based-on: s3-standard
///     egress-per-gb: 0
/// databases:
///   - path: app.sqlite3
///     replica: {url: s3://bucket/app, price-list: minio}
/// ```
///
/// Billing classes, as the package counts requests (`RequestKind`): Class A is PUT (and
/// multipart calls, bucket calls) and LIST; Class B is GET (and HEAD); DELETE is free. R2 names
/// them so; S3 bills the same groups per 1,000 ("PUT, COPY, POST, LIST" and "GET, SELECT, all
/// other"), given here per million.
public struct PriceList: Sendable, Equatable, Codable {
    /// `r2`, `s3-standard`, `free`, or a name from the config's `prices:`.
    public var name: String
    /// When the prices were taken (as the list says; for a shipped list, `ShippedPrices.asOf`).
    public var asOf: String
    /// Where the prices come from.
    public var source: String?
    public var storagePerGBMonth: Double
    public var classAPerMillion: Double
    public var classBPerMillion: Double
    /// Data transferred out (bytes the replica's GETs returned), per GB.
    public var egressPerGB: Double
    /// The account's free allowance each month (applied to totals only: it is per account, not
    /// per database).
    public var freeStorageGBMonth: Double
    public var freeClassAPerMonth: Double
    public var freeClassBPerMonth: Double
    public var freeEgressGBPerMonth: Double

    public init(
        name: String, asOf: String, source: String? = nil, storagePerGBMonth: Double = 0, classAPerMillion: Double = 0,
        classBPerMillion: Double = 0, egressPerGB: Double = 0, freeStorageGBMonth: Double = 0,
        freeClassAPerMonth: Double = 0, freeClassBPerMonth: Double = 0, freeEgressGBPerMonth: Double = 0
    ) {
        self.name = name
        self.asOf = asOf
        self.source = source
        self.storagePerGBMonth = storagePerGBMonth
        self.classAPerMillion = classAPerMillion
        self.classBPerMillion = classBPerMillion
        self.egressPerGB = egressPerGB
        self.freeStorageGBMonth = freeStorageGBMonth
        self.freeClassAPerMonth = freeClassAPerMonth
        self.freeClassBPerMonth = freeClassBPerMonth
        self.freeEgressGBPerMonth = freeEgressGBPerMonth
    }

    /// The config keys of a price list, with the property each sets (`as-of`, `source` and
    /// `based-on` are read separately).
    static var numericKeys: [(key: String, path: WritableKeyPath<PriceList, Double>)] {
        [
        ("storage-per-gb-month", \.storagePerGBMonth),
        ("class-a-per-million", \.classAPerMillion),
        ("class-b-per-million", \.classBPerMillion),
        ("egress-per-gb", \.egressPerGB),
        ("free-storage-gb-month", \.freeStorageGBMonth),
        ("free-class-a-per-month", \.freeClassAPerMonth),
        ("free-class-b-per-month", \.freeClassBPerMonth),
        ("free-egress-gb-per-month", \.freeEgressGBPerMonth),
        ]
    }
    static let configKeys = ["based-on", "as-of", "source"] + numericKeys.map(\.key)

    /// The list a replica uses when it names none: `free` for a directory, `r2` for an R2
    /// account (or an R2 endpoint), `s3-standard` for AWS (no endpoint); nil for any other
    /// S3-compatible endpoint, whose prices the package cannot guess.
    static func defaultName(for replica: ReplicaConfig) -> String? {
        switch replica.kind {
        case .file: return ShippedPrices.free.name
        case .s3:
            if replica.r2AccountID != nil { return ShippedPrices.r2.name }
            guard let endpoint = replica.endpoint else { return ShippedPrices.s3Standard.name }
            let host = endpoint.lowercased().split(separator: "/").dropFirst().first.map(String.init) ?? ""
            if host.hasSuffix(".r2.cloudflarestorage.com") || host.contains(".r2.cloudflarestorage.com:") {
                return ShippedPrices.r2.name
            }
            return nil
        }
    }
}
