import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What the uploader of one database has done, as `StatusFileObserver` keeps it in
/// `<db>-vfsrepl/status.json` (readable by `vfs-status` and the dashboard from any process).
///
/// ```json
/// {"version":1,"database":"/srv/app/storage/production.sqlite3","pid":4242,"uploading":true,
///  "lastUpload":"2026-11-26T14:03:27.120Z","filesUploaded":120,"bytesUploaded":5242880,
///  "requests":[{"day":"2026-11-26","PUT":121,"GET":0,"LIST":4,"DELETE":0,"egressBytes":0}],
///  "countingSince":"2026-11-02T09:00:00.000Z","replicaBytes":48234496,"replicaFiles":37, ...}
/// ```
///
/// Updating it is pure (`apply`); the observer does the I/O.
public struct UploaderRecord: Sendable, Equatable, Codable {
    public static let currentVersion = 1
    /// Days of request counts kept (today included): enough for this month and the last whole,
    /// so month totals (`CostEstimate`) survive restarts.
    public static let requestDays = 62

    public var version: Int = UploaderRecord.currentVersion
    public var database: String
    /// Process id of the uploader that wrote the record.
    public var pid: Int32?
    /// Whether that process was the database's uploader when it wrote the record.
    public var uploading: Bool = false
    public var updatedAt: Date?
    public var lastUpload: Date?
    public var lastSnapshot: Date?
    public var filesUploaded: Int = 0
    public var bytesUploaded: Int64 = 0
    public var snapshots: Int = 0
    /// Requests by UTC day, oldest first, at most `requestDays`.
    public var requests: [DailyRequests] = []
    /// When the first request in `requests` was counted (where a cost projection's rate may start).
    public var countingSince: Date?
    /// The replica's size as the uploader's own listing knows it (sum of object sizes, no extra
    /// request), and when it was last reported.
    public var replicaBytes: Int64?
    public var replicaFiles: Int?
    public var replicaSizeAt: Date?
    /// The last failure; `resolvedAt` is set once a later attempt succeeded.
    public var lastError: ErrorRecord?
    /// Set when another writer owns the replica and shipping stopped.
    public var fenced: ErrorRecord?
    /// The oldest transaction waiting to ship, as the uploader last reported it.
    public var oldestPendingCommit: Date?
    public var pendingTransactions: Int = 0
    public var pendingPageBytes: Int = 0

    public init(database: String) { self.database = database }

    public struct ErrorRecord: Sendable, Equatable, Codable {
        public var message: String
        public var at: Date
        public var resolvedAt: Date?

        public init(message: String, at: Date, resolvedAt: Date? = nil) {
            self.message = message
            self.at = at
            self.resolvedAt = resolvedAt
        }
    }

    /// Requests of one UTC day by kind.
    public struct DailyRequests: Sendable, Equatable, Codable {
        /// `yyyy-MM-dd`, UTC.
        public var day: String
        public var counts: [RequestKind: Int]
        /// Bytes GET requests returned (billed as egress by some providers).
        public var egressBytes: Int64

        public init(day: String, counts: [RequestKind: Int] = [:], egressBytes: Int64 = 0) {
            self.day = day
            self.counts = counts
            self.egressBytes = egressBytes
        }

        public subscript(kind: RequestKind) -> Int { counts[kind] ?? 0 }

        private struct Key: CodingKey {
            var stringValue: String
            var intValue: Int? { nil }
            init(stringValue: String) { self.stringValue = stringValue }
            init?(intValue: Int) { nil }
        }

        public init(from decoder: any Decoder) throws {
            let c = try decoder.container(keyedBy: Key.self)
            day = try c.decode(String.self, forKey: Key(stringValue: "day"))
            counts = [:]
            for kind in RequestKind.allCases {
                if let n = try c.decodeIfPresent(Int.self, forKey: Key(stringValue: kind.rawValue)), n != 0 {
                    counts[kind] = n
                }
            }
            egressBytes = try c.decodeIfPresent(Int64.self, forKey: Key(stringValue: "egressBytes")) ?? 0
        }

        public func encode(to encoder: any Encoder) throws {
            var c = encoder.container(keyedBy: Key.self)
            try c.encode(day, forKey: Key(stringValue: "day"))
            for kind in RequestKind.allCases { try c.encode(self[kind], forKey: Key(stringValue: kind.rawValue)) }
            try c.encode(egressBytes, forKey: Key(stringValue: "egressBytes"))
        }
    }

    /// Whether the last error is still unresolved.
    public var isErroring: Bool { lastError != nil && lastError?.resolvedAt == nil }

    /// Requests made on the UTC day of `date`, by kind.
    public func requests(on date: Date) -> DailyRequests {
        let day = Self.day(date)
        return requests.first { $0.day == day } ?? DailyRequests(day: day)
    }

    /// Takes one uploader event into account.
    public mutating func apply(_ event: UploaderEvent, now: Date, pid: Int32) {
        updatedAt = now
        switch event {
        case .elected(let value):
            if value && self.pid != pid {
                // A new uploader process: what the previous one reported has ended with it (the
                // new one reports again what still fails).
                if isErroring { lastError?.resolvedAt = now }
                oldestPendingCommit = nil
                pendingTransactions = 0
                pendingPageBytes = 0
            }
            uploading = value
            self.pid = pid
        case .shipped(let level, _, _, let bytes, _, _):
            lastUpload = now
            filesUploaded += 1
            bytesUploaded += bytes
            if level == RestorePlanner.snapshotLevel {
                lastSnapshot = now
                snapshots += 1
            }
            fenced = nil
        case .pending(let oldestCommitMs, let transactions, let pageBytes):
            oldestPendingCommit = oldestCommitMs.map(Date.init(epochMilliseconds:))
            pendingTransactions = transactions
            pendingPageBytes = pageBytes
        case .request(let kind, let count):
            let i = dayIndex(now)
            requests[i].counts[kind, default: 0] += count
            trimDays()
        case .downloaded(let bytes):
            let i = dayIndex(now)
            requests[i].egressBytes += bytes
            trimDays()
        case .stored(let bytes, let files):
            replicaBytes = bytes
            replicaFiles = files
            replicaSizeAt = now
        case .error(let message):
            if let message {
                lastError = ErrorRecord(message: message, at: now)
            } else if lastError != nil, lastError?.resolvedAt == nil {
                lastError?.resolvedAt = now
            }
        case .fenced(let message):
            fenced = ErrorRecord(message: message, at: now)
        case .replica, .replicaRequest, .replicaDownloaded:
            break
        }
    }

    /// The index of the day of `now` in `requests`, added if missing.
    private mutating func dayIndex(_ now: Date) -> Int {
        if countingSince == nil { countingSince = requests.isEmpty ? now : CostEstimate.dayStart(requests[0].day) }
        let day = Self.day(now)
        if requests.last?.day != day, !requests.contains(where: { $0.day == day }) {
            requests.append(DailyRequests(day: day))
            requests.sort { $0.day < $1.day }
        }
        return requests.lastIndex { $0.day == day }!
    }

    private mutating func trimDays() {
        guard requests.count > Self.requestDays else { return }
        requests.removeFirst(requests.count - Self.requestDays)
        // The rate of a projection must not reach back past the days still kept.
        if let first = requests.first.flatMap({ CostEstimate.dayStart($0.day) }), let since = countingSince,
            since < first
        {
            countingSince = first
        }
    }

    /// `yyyy-MM-dd` of `date` in UTC.
    public static func day(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let c = calendar.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d-%02d-%02d", c.year ?? 0, c.month ?? 0, c.day ?? 0)
    }

    // MARK: - JSON

    /// Dates as ISO 8601 with milliseconds, keys sorted (stable files, readable diffs).
    public static func makeEncoder() -> JSONEncoder {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .custom { date, encoder in
            var c = encoder.singleValueContainer()
            try c.encode(formatDate(date))
        }
        return encoder
    }

    public static func makeDecoder() -> JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .custom { decoder in
            let c = try decoder.singleValueContainer()
            let text = try c.decode(String.self)
            guard let date = parseDate(text) else {
                throw DecodingError.dataCorruptedError(in: c, debugDescription: "not an ISO 8601 date: \(text)")
            }
            return date
        }
        return decoder
    }

    static func formatDate(_ date: Date) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.string(from: date)
    }

    static func parseDate(_ text: String) -> Date? {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        if let d = f.date(from: text) { return d }
        f.formatOptions = [.withInternetDateTime]
        return f.date(from: text)
    }

    /// Reads a record file; nil if it does not exist or cannot be decoded (a status file is
    /// advisory: a damaged one is replaced by the next write).
    public static func load(path: String) -> UploaderRecord? {
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        return try? makeDecoder().decode(UploaderRecord.self, from: data)
    }

    /// Writes the record atomically (a temporary file renamed over the old one; no fsync: the
    /// file is rewritten often and losing the last second of it on power loss is harmless).
    public func write(path: String) throws {
        let data = try Self.makeEncoder().encode(self)
        try StatusFiles.writeAtomically(data, to: path)
    }
}

enum StatusFiles {
    /// Writes `data` to a temporary file beside `path` and renames it into place.
    static func writeAtomically(_ data: Data, to path: String) throws {
        let tmp = path + ".tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        var fd: Int32
        repeat { fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644) } while fd < 0 && errno == EINTR
        guard fd >= 0 else { throw ReplicationError(.io, "cannot create \(tmp): \(String(cString: strerror(errno)))") }
        var failure: Int32 = 0
        data.withUnsafeBytes { buf in
            var done = 0
            while done < buf.count {
                let n = Glibc.write(fd, buf.baseAddress! + done, buf.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    failure = errno
                    return
                }
                done += n
            }
        }
        close(fd)
        guard failure == 0 else {
            unlink(tmp)
            throw ReplicationError(.io, "cannot write \(tmp): \(String(cString: strerror(failure)))")
        }
        guard rename(tmp, path) == 0 else {
            let reason = String(cString: strerror(errno))
            unlink(tmp)
            throw ReplicationError(.io, "cannot rename \(tmp) to \(path): \(reason)")
        }
    }
}
