import Foundation
import Testing

@testable import VFSReplication

/// The cost calculator and its inputs: usage by billing class, price lists, windows, totals.
@Suite("Costs: calculator, windows, totals")
struct CostCalculatorTests {
    static let gib: Int64 = 1 << 30

    static func close(_ a: Double, _ b: Double) -> Bool { abs(a - b) < 1e-9 }

    static func date(_ text: String) -> Date { UploaderRecord.parseDate(text)! }

    @Test func r2ListPrices() {
        let prices = ShippedPrices.r2
        let usage = Usage(classA: 1_000_000, classB: 1_000_000, free: 5_000_000, egressBytes: 100 * Self.gib)
        let cost = CostCalculator.cost(usage: usage, storageGBMonths: 10, prices: prices)
        #expect(Self.close(cost.requests, 4.50 + 0.36), "\(cost)")  // DELETE free
        #expect(Self.close(cost.storage, 0.15), "\(cost)")
        #expect(cost.egress == 0, "R2 bills no egress: \(cost)")
        #expect(Self.close(cost.total, 4.86 + 0.15))
    }

    @Test func s3StandardListPrices() {
        let prices = ShippedPrices.s3Standard
        let usage = Usage(classA: 1000, classB: 1000, free: 1000, egressBytes: Self.gib)
        let cost = CostCalculator.cost(usage: usage, storageGBMonths: 1, prices: prices)
        #expect(Self.close(cost.requests, 0.005 + 0.0004), "\(cost)")
        #expect(Self.close(cost.storage, 0.023))
        #expect(Self.close(cost.egress, 0.09))
    }

    @Test func shippedListsSayWhenAndWhence() {
        for list in ShippedPrices.all.values {
            #expect(!list.asOf.isEmpty && list.source != nil, "\(list.name)")
        }
        #expect(ShippedPrices.free.storagePerGBMonth == 0 && ShippedPrices.free.classAPerMillion == 0)
    }

    @Test func freeTierTakesEachAllowanceOff() {
        let r2 = CostCalculator.costAfterFreeTier(
            usage: Usage(classA: 2_000_000, classB: 5_000_000), storageGBMonths: 12, prices: ShippedPrices.r2)
        #expect(Self.close(r2.requests, 4.50), "1M of 2M Class A billed, Class B under 10M: \(r2)")
        #expect(Self.close(r2.storage, 2 * 0.015), "\(r2)")
        let s3 = CostCalculator.costAfterFreeTier(
            usage: Usage(egressBytes: 150 * Self.gib), storageGBMonths: 0, prices: ShippedPrices.s3Standard)
        #expect(Self.close(s3.egress, 50 * 0.09), "the first 100 GB out are free: \(s3)")
        let small = CostCalculator.costAfterFreeTier(
            usage: Usage(classA: 10, classB: 10), storageGBMonths: 1, prices: ShippedPrices.r2)
        #expect(small.total == 0)
    }

    @Test func usageGroupsKindsByBillingClass() {
        let day = UploaderRecord.DailyRequests(
            day: "2026-12-01", counts: [.put: 3, .list: 2, .get: 7, .delete: 4], egressBytes: 99)
        #expect(Usage(day) == Usage(classA: 5, classB: 7, free: 4, egressBytes: 99))
    }

    @Test func formatKeepsSmallAmountsVisible() {
        #expect(CostCalculator.format(0) == "$0.00")
        #expect(CostCalculator.format(0.0042) == "$0.0042")
        #expect(CostCalculator.format(0.000045) == "$0.000045")
        #expect(CostCalculator.format(1.234) == "$1.23")
    }

    /// A record counted since 30 November; today is 10 December, noon (UTC).
    static func record() -> UploaderRecord {
        var r = UploaderRecord(database: "/db")
        r.countingSince = date("2026-11-30T00:00:00Z")
        r.requests = [
            .init(day: "2026-11-30", counts: [.put: 1000, .get: 10]),
            .init(day: "2026-12-09", counts: [.put: 500, .list: 100, .get: 40, .delete: 5], egressBytes: 1000),
            .init(day: "2026-12-10", counts: [.put: 300, .get: 20], egressBytes: 500),
        ]
        r.replicaBytes = 31 * Self.gib
        r.replicaFiles = 12
        return r
    }

    @Test func windowsTodayMonthAndProjection() throws {
        let now = Self.date("2026-12-10T12:00:00Z")
        let e = CostEstimate.make(record: Self.record(), prices: ShippedPrices.r2, now: now)
        #expect(e.today.usage == Usage(classA: 300, classB: 20, egressBytes: 500))
        #expect(e.month.usage == Usage(classA: 900, classB: 60, free: 5, egressBytes: 1500), "November is not this month")
        // The rate: 7 days back from today's start (4 December), 6.5 days, 900 A and 60 B; the
        // rest of December is 21.5 days.
        #expect(e.rateSince == Self.date("2026-12-04T00:00:00Z"))
        let factor = 21.5 / 6.5
        #expect(e.projectedMonth.usage.classA == 900 + Int((900 * factor).rounded()))
        #expect(e.projectedMonth.usage.classB == 60 + Int((60 * factor).rounded()))
        // Storage at today's size: 31 GiB is 1 GiB-month per day of December.
        #expect(Self.close(e.today.storageGBMonths, 0.5))
        #expect(Self.close(e.month.storageGBMonths, 9.5))
        #expect(Self.close(e.projectedMonth.storageGBMonths, 31))
        let today = try #require(e.today.dollars)
        #expect(Self.close(today.requests, 300 / 1e6 * 4.50 + 20 / 1e6 * 0.36))
        #expect(Self.close(today.storage, 0.5 * 0.015))
        #expect(Self.close(try #require(e.projectedMonth.dollars).storage, 31 * 0.015))
        #expect(e.replicaBytes == 31 * Self.gib && e.replicaFiles == 12)
    }

    @Test func projectionRateStartsWhenCountingBegan() {
        var r = UploaderRecord(database: "/db")
        r.countingSince = Self.date("2026-12-10T06:00:00Z")
        r.requests = [.init(day: "2026-12-10", counts: [.put: 600])]
        let e = CostEstimate.make(record: r, prices: nil, now: Self.date("2026-12-10T12:00:00Z"))
        // 600 in 6 hours: 100 an hour for the 21.5 days left.
        #expect(e.projectedMonth.usage.classA == 600 + 100 * 24 * 21 + 1200)
        #expect(e.projectedMonth.dollars == nil && e.today.dollars == nil, "no price list, no dollars")
        #expect(e.summary().contains("no price list"))
        #expect(e.rateSeconds == 6 * 3600 && e.summary().contains("(rate of the last 6h)"), "\(e.summary())")
    }

    @Test func aYoungWindowIsTakenAsAnHour() {
        var r = UploaderRecord(database: "/db")
        r.countingSince = Self.date("2026-12-10T11:59:50Z")
        r.requests = [.init(day: "2026-12-10", counts: [.put: 8])]
        let e = CostEstimate.make(record: r, prices: nil, now: Self.date("2026-12-10T12:00:00Z"))
        // 8 requests in 10 s are not 8 every 10 s for three weeks: 8 an hour.
        #expect(e.rateSeconds == 3600)
        #expect(e.projectedMonth.usage.classA == 8 + 8 * (21 * 24 + 12))
    }

    @Test func noRecordIsZeroNotUnknownDollars() {
        let e = CostEstimate.make(record: nil, prices: ShippedPrices.r2, now: Date())
        #expect(e.projectedMonth.usage == Usage() && e.projectedMonth.dollars?.total == 0)
        #expect(e.replicaBytes == nil && e.summary().contains("stored ?"))
    }

    @Test func totalsAreGrossAndTakeTheFreeTierOncePerList() {
        let now = Self.date("2026-12-10T12:00:00Z")
        var small = UploaderRecord(database: "/a")
        small.countingSince = Self.date("2026-12-01T00:00:00Z")
        small.requests = [.init(day: "2026-12-10", counts: [.put: 1000])]
        small.replicaBytes = 4 * Self.gib
        let a = CostEstimate.make(record: small, prices: ShippedPrices.r2, now: now)
        let b = CostEstimate.make(record: small, prices: ShippedPrices.r2, now: now)
        let unpriced = CostEstimate.make(record: small, prices: nil, now: now)
        let totals = CostTotals([a, b, unpriced])
        #expect(Self.close(totals.projectedMonth, 2 * (a.projectedMonth.dollars?.total ?? 0)))
        #expect(totals.projectedMonth > 0)
        // 8 GiB and a few thousand Class A: all within one account's R2 allowance.
        #expect(totals.projectedMonthAfterFreeTier == 0)
        #expect(totals.unpriced == 1)
        #expect(totals.summary().contains("1 database(s) without a price list"))
    }

    // MARK: The record

    @Test func recordKeepsMonthCountsEgressAndSizeAcrossARestart() throws {
        var r = UploaderRecord(database: "/db")
        let t0 = Self.date("2026-12-01T10:00:00Z")
        r.apply(.request(.put, count: 2), now: t0, pid: 1)
        r.apply(.downloaded(bytes: 4096), now: t0, pid: 1)
        r.apply(.stored(bytes: 12345, files: 3), now: t0, pid: 1)
        #expect(r.countingSince == t0)
        let data = try UploaderRecord.makeEncoder().encode(r)
        var back = try UploaderRecord.makeDecoder().decode(UploaderRecord.self, from: data)
        #expect(back == r)
        back.apply(.request(.get, count: 1), now: Self.date("2026-12-20T10:00:00Z"), pid: 2)
        let e = CostEstimate.make(record: back, prices: ShippedPrices.s3Standard, now: Self.date("2026-12-20T11:00:00Z"))
        #expect(e.month.usage == Usage(classA: 2, classB: 1, egressBytes: 4096))
        #expect(e.replicaBytes == 12345 && e.replicaFiles == 3)
        #expect(back.countingSince == t0, "a later request does not move the start")
    }

    @Test func recordKeepsTwoMonthsOfDays() {
        var r = UploaderRecord(database: "/db")
        let start = Self.date("2026-01-01T12:00:00Z")
        for d in 0..<100 { r.apply(.request(.put, count: 1), now: start.addingTimeInterval(Double(d) * 86400), pid: 1) }
        #expect(r.requests.count == UploaderRecord.requestDays)
        #expect(UploaderRecord.requestDays >= 62, "this month and the whole last one")
        let first = CostEstimate.dayStart(r.requests[0].day)!
        #expect(r.countingSince == first, "the projection never reaches past the days kept")
    }

    @Test func olderRecordsWithoutCostFieldsStillDecode() throws {
        // As the previous version wrote it.
        let json = """
            {"version":1,"database":"/db","uploading":true,"filesUploaded":2,"bytesUploaded":10,"snapshots":1,
             "pendingTransactions":0,"pendingPageBytes":0,
             "requests":[{"day":"2026-12-01","PUT":3,"GET":1,"LIST":0,"DELETE":0}]}
            """
        let r = try UploaderRecord.makeDecoder().decode(UploaderRecord.self, from: Data(json.utf8))
        #expect(r.requests.first?.egressBytes == 0 && r.replicaBytes == nil && r.countingSince == nil)
    }
}

/// `prices:` and `price-list:` in the config.
@Suite("Config: prices")
struct ConfigPricesTests {
    static func parse(_ yaml: String) throws -> ReplicationConfig {
        try ReplicationConfig.parse(yaml: yaml, baseDirectory: "/app", environment: [:], sourceName: "config.yml")
    }

    static func error(_ yaml: String, sourceLocation: SourceLocation = #_sourceLocation) -> String {
        let error = #expect(throws: ReplicationError.self, sourceLocation: sourceLocation) { try parse(yaml) }
        #expect(error?.code == .invalidConfig, sourceLocation: sourceLocation)
        return error?.message ?? ""
    }

    @Test func eachReplicaGetsTheListOfItsProvider() throws {
        let config = try Self.parse(
            """
            databases:
              - path: a.sqlite3
                replica: {url: file:///r/a}
              - path: b.sqlite3
                replica: {url: s3://bucket/b, r2-account-id: abc123}
              - path: c.sqlite3
                replica: {url: s3://bucket/c}
              - path: d.sqlite3
                replica: {url: s3://bucket/d, endpoint: "http://127.0.0.1:9000"}
              - path: e.sqlite3
                replica: {url: s3://bucket/e, endpoint: "https://abc.r2.cloudflarestorage.com"}
            """)
        let names = config.databases.map { $0.replica.prices?.name }
        #expect(names == ["free", "r2", "s3-standard", nil, "r2"])
    }

    @Test func overridesChangeOnlyTheKeysGiven() throws {
        let config = try Self.parse(
            """
            prices:
              r2:
                class-a-per-million: 4.00
                as-of: 2026-11-01
              minio:
                based-on: s3-standard
                egress-per-gb: 0
              nas:
                storage-per-gb-month: $0.002
            defaults:
              replica: {price-list: r2}
            databases:
              - path: a.sqlite3
                replica: {url: s3://bucket/a, endpoint: "http://127.0.0.1:9000"}
              - path: b.sqlite3
                replica: {url: s3://bucket/b, endpoint: "http://127.0.0.1:9000", price-list: minio}
              - path: c.sqlite3
                replica: {url: file:///r/c}
              - path: d.sqlite3
                replica: {url: file:///r/d, price-list: nas}
            """)
        let r2 = try #require(config.databases[0].replica.prices)
        #expect(r2.name == "r2" && r2.classAPerMillion == 4.00 && r2.asOf == "2026-11-01")
        #expect(r2.classBPerMillion == ShippedPrices.r2.classBPerMillion && r2.freeClassAPerMonth == 1_000_000)
        #expect(r2.source?.contains("config.yml") == true, "an overridden list says where it changed")
        let minio = try #require(config.databases[1].replica.prices)
        #expect(minio.name == "minio" && minio.egressPerGB == 0 && minio.storagePerGBMonth == 0.023)
        #expect(config.databases[2].replica.prices?.name == "free", "defaults' price-list is for S3 replicas")
        let nas = try #require(config.databases[3].replica.prices)
        #expect(nas.storagePerGBMonth == 0.002 && nas.classAPerMillion == 0 && nas.asOf == "unknown")
        #expect(config.priceLists["s3-standard"] == ShippedPrices.s3Standard, "untouched lists stay as shipped")
    }

    @Test func typosAreNamedWithFileLineAndKey() {
        var message = Self.error(
            """
            prices:
              r2:
                clas-a-per-million: 4
            databases:
              - path: a.sqlite3
                replica: {url: file:///r}
            """)
        #expect(message.hasPrefix("config.yml:3:"), "\(message)")
        #expect(message.contains("unknown key 'clas-a-per-million' in price list 'r2'"), "\(message)")
        #expect(message.contains("did you mean 'class-a-per-million'?"), "\(message)")

        message = Self.error(
            """
            databases:
              - path: a.sqlite3
                replica:
                  url: s3://bucket/a
                  price-list: s3-standrad
            """)
        #expect(message.hasPrefix("config.yml:5:"), "\(message)")
        #expect(message.contains("unknown 'price-list' 's3-standrad' in the replica of database 'a.sqlite3'"), "\(message)")
        #expect(message.contains("did you mean 's3-standard'?"), "\(message)")

        message = Self.error(
            """
            prices:
              r2: {storage-per-gb-month: cheap}
            databases:
              - path: a.sqlite3
                replica: {url: file:///r}
            """)
        #expect(message.hasPrefix("config.yml:2:"), "\(message)")
        #expect(message.contains("invalid price 'cheap' for 'storage-per-gb-month' in price list 'r2'"), "\(message)")

        for bad in ["-1", "1e9", "nan", "inf"] {
            message = Self.error(
                """
                prices:
                  r2: {egress-per-gb: \(bad)}
                databases:
                  - path: a.sqlite3
                    replica: {url: file:///r}
                """)
            #expect(message.contains("invalid price '\(bad)'"), "\(bad): \(message)")
        }

        message = Self.error(
            """
            prices:
              mine: {based-on: b2}
            databases:
              - path: a.sqlite3
                replica: {url: file:///r}
            """)
        #expect(message.contains("'based-on' in price list 'mine' names 'b2'"), "\(message)")

        message = Self.error(
            """
            prices: [r2]
            databases:
              - path: a.sqlite3
                replica: {url: file:///r}
            """)
        #expect(message.contains("'prices' must be a mapping"), "\(message)")

        message = Self.error(
            """
            price:
              r2: {}
            databases:
              - path: a.sqlite3
                replica: {url: file:///r}
            """)
        #expect(message.contains("unknown key 'price'") && message.contains("'prices'"), "\(message)")

        message = Self.error(
            """
            databases:
              - path: a.sqlite3
                price-list: r2
                replica: {url: file:///r}
            """)
        #expect(message.contains("unknown key 'price-list' in database 'a.sqlite3' (put 'price-list' under 'replica'"), "\(message)")
    }
}
