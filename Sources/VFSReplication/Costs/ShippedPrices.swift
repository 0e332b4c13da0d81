/// The price lists this package ships: the only place their numbers live. Every figure is a
/// provider's published list price, in US dollars, as it stood on the list's `asOf` date; a
/// provider may have changed it since, so an operator overrides any key under `prices:` in the
/// config (see `PriceList` and README "What it costs").
///
/// Sources (read 2025):
/// - `r2`: Cloudflare R2 pricing page (developers.cloudflare.com/r2/pricing), Standard storage.
/// - `s3-standard`: Amazon S3 pricing page (aws.amazon.com/s3/pricing), S3 Standard in
///   US East (N. Virginia): storage for the first 50 TB/month, request tiers, and data transfer
///   out to the internet for the first 10 TB/month (the first 100 GB/month of an account free).
/// - `free`: a local directory (file replicas): nothing billed.
public enum ShippedPrices {
    /// When the numbers below were read from the providers' pages (the year: the pages carry no date).
    public static let asOf = "2025"

    public static let r2 = PriceList(
        name: "r2", asOf: asOf, source: "Cloudflare R2 pricing, Standard storage",
        storagePerGBMonth: 0.015, classAPerMillion: 4.50, classBPerMillion: 0.36, egressPerGB: 0,
        freeStorageGBMonth: 10, freeClassAPerMonth: 1_000_000, freeClassBPerMonth: 10_000_000, freeEgressGBPerMonth: 0)

    /// S3 bills per 1,000 requests: PUT/COPY/POST/LIST $0.005 (= $5.00 per million), GET/SELECT
    /// and others $0.0004 (= $0.40 per million).
    public static let s3Standard = PriceList(
        name: "s3-standard", asOf: asOf, source: "Amazon S3 pricing, S3 Standard, US East (N. Virginia)",
        storagePerGBMonth: 0.023, classAPerMillion: 5.00, classBPerMillion: 0.40, egressPerGB: 0.09,
        freeStorageGBMonth: 0, freeClassAPerMonth: 0, freeClassBPerMonth: 0, freeEgressGBPerMonth: 100)

    public static let free = PriceList(
        name: "free", asOf: asOf, source: "no charge (a local directory)",
        storagePerGBMonth: 0, classAPerMillion: 0, classBPerMillion: 0, egressPerGB: 0,
        freeStorageGBMonth: 0, freeClassAPerMonth: 0, freeClassBPerMonth: 0, freeEgressGBPerMonth: 0)

    /// By name, as `price-list:` and `prices:` spell them.
    public static let all: [String: PriceList] = [r2.name: r2, s3Standard.name: s3Standard, free.name: free]
}
