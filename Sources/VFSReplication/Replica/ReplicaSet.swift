import Foundation
import Logging

/// One replica of a database that has several (`replicas:`), as its uploader last saw it.
public struct ReplicaMemberStatus: Sendable, Equatable {
    public enum State: String, Sendable, Equatable, Codable {
        /// Not looked at yet in this process.
        case unknown
        /// Holds every file the others hold; gets every new file as it is shipped.
        case current
        /// Missed files (unreachable, or new): it gets no new files until the missing ones are
        /// copied to it from the other replicas.
        case behind
        /// Holds an object that this database did not write: another writer uses it.
        case fenced
    }
    /// The replica's `name` in the config.
    public var name: String
    public var location: String
    public var state: State
    /// The highest TXID of a file it is known to hold (0: none known).
    public var txid: UInt64
    /// Why it is behind or fenced (nil while current).
    public var lastError: String?
    /// When a request to it last succeeded in this process.
    public var lastSuccess: Date?

    public init(
        name: String, location: String, state: State, txid: UInt64, lastError: String? = nil, lastSuccess: Date? = nil
    ) {
        self.name = name
        self.location = location
        self.state = state
        self.txid = txid
        self.lastError = lastError
        self.lastSuccess = lastSuccess
    }
}

/// The replicas of one database behind one `ReplicaClient`: every file the uploader or its
/// maintainer publishes goes to every current replica at once (in parallel), and counts as
/// published when `durable` of them hold it (`durable-replicas`).
///
/// A replica that fails a request, or that the first listing finds short of files the others
/// hold, is *behind*: it gets no new files (so its chain never has a hole) until `catchUp`
/// copies it the files it lacks from the replicas that have them, oldest first, then it is
/// current again. Only files this database is known to have shipped are copied (TXID at most
/// `confirmedTXID`, or published by this set in this process), so a replica is never given a
/// state the database did not have. Retention deletes go to every replica.
///
/// Listing returns the union of what the replicas answering hold; fetching tries the current
/// replicas in order, then the rest. An object that exists with other contents in any replica
/// fences the whole database (`.fenced`, naming the replica): another writer is shipping to
/// it, most likely to the others too.
///
/// Called from one database's uploader turn at a time (the uploader and its maintainer share
/// the thread), so the set keeps its state without racing itself; `statuses` may be read from
/// any thread.
final class ReplicaSet: ReplicaClient, @unchecked Sendable {
    struct Member {
        var name: String
        var client: any ReplicaClient
        var status: ReplicaMemberStatus
        /// When a behind replica is tried next.
        var retryAt: Date = .distantPast
        var backoff: TimeInterval = ReplicaSet.firstBackoff
        /// Files it holds by level, as this process knows them (nil: not listed yet).
        var files: [Int: [String: LTXFileInfo]]?
        /// Files it took in a publish that failed as a whole (too few replicas): a retry of the
        /// same file skips it, since a directory replica refuses an object that exists.
        var tookInFailedPublish: Set<String> = []
    }

    static let firstBackoff: TimeInterval = 1
    static let maxBackoff: TimeInterval = 60

    let durable: Int
    private var members: [Member]
    private let logger: Logger
    /// The highest TXID the database has confirmed shipped (its spool's shipped TXID).
    private let confirmedTXID: @Sendable () -> UInt64
    /// Names of files this set published in this process: safe to copy to a replica catching
    /// up even above `confirmedTXID` (a batch that reached fewer than `durable` replicas).
    private var ownFiles: Set<String> = []
    private let lock = NSLock()
    private var report: @Sendable (ReplicaMemberStatus) -> Void = { _ in }

    /// `members` in config order (the first is tried first for reads); `durable` from 1 to
    /// their count.
    init(
        members: [(name: String, client: any ReplicaClient)], durable: Int, logger: Logger,
        confirmedTXID: @escaping @Sendable () -> UInt64 = { UInt64.max }
    ) {
        precondition(!members.isEmpty && (1...members.count).contains(durable))
        self.members = members.map {
            Member(
                name: $0.name, client: $0.client,
                status: ReplicaMemberStatus(name: $0.name, location: $0.client.location, state: .unknown, txid: 0))
        }
        self.durable = durable
        self.logger = logger
        self.confirmedTXID = confirmedTXID
    }

    /// Wraps each member so its requests are reported (`wrap`), and receives state changes.
    func observe(
        wrap: (String, any ReplicaClient) -> any ReplicaClient, report: @escaping @Sendable (ReplicaMemberStatus) -> Void
    ) {
        lock.lock()
        for i in members.indices { members[i].client = wrap(members[i].name, members[i].client) }
        self.report = report
        lock.unlock()
        for s in statuses { report(s) }
    }

    var location: String { members.map { "\($0.name)=\($0.status.location)" }.joined(separator: ", ") }

    /// Every replica's state, in config order.
    var statuses: [ReplicaMemberStatus] {
        lock.lock()
        defer { lock.unlock() }
        return members.map(\.status)
    }

    private func update(_ i: Int, _ change: (inout ReplicaMemberStatus) -> Void) {
        lock.lock()
        let before = members[i].status
        change(&members[i].status)
        let after = members[i].status
        let report = self.report
        lock.unlock()
        if before.state != after.state || before.lastError != after.lastError || before.txid != after.txid {
            report(after)
        }
    }

    private func succeeded(_ i: Int) {
        members[i].backoff = Self.firstBackoff
        update(i) {
            $0.lastSuccess = Date()
            if $0.state == .current { $0.lastError = nil }
        }
    }

    private func fellBehind(_ i: Int, _ error: Error) {
        let message = (error as? ReplicationError)?.message ?? "\(error)"
        let wasBehind = members[i].status.state == .behind
        members[i].retryAt = Date().addingTimeInterval(members[i].backoff)
        members[i].backoff = min(members[i].backoff * 2, Self.maxBackoff)
        update(i) {
            if $0.state != .fenced { $0.state = .behind }
            $0.lastError = message
        }
        if !wasBehind {
            logger.warning(
                "replica behind: it gets no new files until it is caught up from the others",
                metadata: ["replica": "\(members[i].name)", "error": "\(message)"])
        }
    }

    private func fence(_ i: Int, _ error: ReplicationError) -> ReplicationError {
        update(i) {
            $0.state = .fenced
            $0.lastError = error.message
        }
        return ReplicationError(.fenced, "replica '\(members[i].name)': \(error.message)")
    }

    private func noteHas(_ i: Int, _ file: LTXFileInfo) {
        if members[i].files != nil { members[i].files![file.level, default: [:]][file.name] = file }
        if file.maxTXID > members[i].status.txid { update(i) { $0.txid = file.maxTXID } }
    }

    // MARK: - Listing

    /// Lists every replica completely (levels, then files), records what each holds, and marks
    /// the ones that lack files another holds as behind. Throws when no replica answers.
    private func survey() throws -> [Int: [LTXFileInfo]] {
        var firstError: Error?
        for i in members.indices where members[i].status.state != .fenced {
            do {
                var byLevel: [Int: [String: LTXFileInfo]] = [:]
                for level in try members[i].client.listLevels() {
                    var files: [String: LTXFileInfo] = [:]
                    for f in try members[i].client.listFiles(level: level) { files[f.name] = f }
                    byLevel[level] = files
                }
                members[i].files = byLevel
                let top = byLevel.values.flatMap(\.values).map(\.maxTXID).max() ?? 0
                succeeded(i)
                update(i) { $0.txid = top }
            } catch {
                members[i].files = nil
                fellBehind(i, error)
                firstError = firstError ?? error
            }
        }
        var union: [Int: [String: LTXFileInfo]] = [:]
        for m in members { for (level, files) in m.files ?? [:] { union[level, default: [:]].merge(files) { a, _ in a } } }
        if members.allSatisfy({ $0.files == nil }), let firstError { throw firstError }
        for i in members.indices where members[i].files != nil && members[i].status.state != .fenced {
            let missing = Self.missing(in: members[i].files!, union: union, limit: .max, own: [])
            if missing.isEmpty {
                update(i) {
                    $0.state = .current
                    $0.lastError = nil
                }
            } else if members[i].status.state != .behind {
                fellBehind(
                    i, ReplicationError(.gap, "lacks \(missing.count) file(s) the other replicas hold, from \(missing[0])"))
                members[i].retryAt = .distantPast
            }
        }
        return union.mapValues { $0.values.sorted(by: Self.order) }
    }

    private var surveyed: (at: Date, files: [Int: [LTXFileInfo]])?

    func listLevels() throws -> [Int] {
        let union = try survey()
        surveyed = (Date(), union)
        return union.keys.sorted()
    }

    func listFiles(level: Int) throws -> [LTXFileInfo] {
        // Right after `listLevels` (a start-up, an index load), its survey answers.
        if let surveyed, Date().timeIntervalSince(surveyed.at) < 2 { return surveyed.files[level] ?? [] }
        var union: [String: LTXFileInfo] = [:]
        var firstError: Error?
        var answered = false
        for i in members.indices where members[i].status.state != .fenced {
            do {
                for f in try members[i].client.listFiles(level: level) where union[f.name] == nil { union[f.name] = f }
                answered = true
                succeeded(i)
            } catch {
                fellBehind(i, error)
                firstError = firstError ?? error
            }
        }
        if !answered, let firstError { throw firstError }
        return union.values.sorted(by: Self.order)
    }

    static func order(_ a: LTXFileInfo, _ b: LTXFileInfo) -> Bool {
        (a.minTXID, a.maxTXID) < (b.minTXID, b.maxTXID)
    }

    /// Files of `union` a replica holding `have` lacks and must get to continue every level's
    /// chain, oldest first: at each level, those newer than the newest it holds there (files it
    /// lacks below that are ones retention removed from it, or an older history it never had),
    /// with max TXID at most `limit` or named in `own`. Pure.
    static func missing(
        in have: [Int: [String: LTXFileInfo]], union: [Int: [String: LTXFileInfo]], limit: UInt64, own: Set<String>
    ) -> [LTXFileInfo] {
        var result: [LTXFileInfo] = []
        for (level, files) in union {
            let mine = have[level] ?? [:]
            let top = mine.values.map(\.maxTXID).max() ?? 0
            for f in files.values where mine[f.name] == nil && f.maxTXID > top && (f.maxTXID <= limit || own.contains(f.name)) {
                result.append(f)
            }
        }
        // Snapshots and compacted files first (a restore can start from them), then level 0.
        return result.sorted { ($0.level != $1.level) ? $0.level > $1.level : order($0, $1) }
    }

    // MARK: - Reading

    func fetch(_ file: LTXFileInfo) throws -> LocalLTXFile {
        var errors: [String] = []
        let order = members.indices.sorted { rank(members[$0]) < rank(members[$1]) }
        for i in order where members[i].status.state != .fenced {
            if let known = members[i].files?[file.level], known[file.name] == nil, members[i].status.state == .current {
                continue  // it does not hold the file
            }
            do {
                let local = try members[i].client.fetch(file)
                succeeded(i)
                return local
            } catch {
                errors.append("\(members[i].name): \((error as? ReplicationError)?.message ?? "\(error)")")
            }
        }
        throw ReplicationError(
            .missingReplica, "\(file) could not be read from any replica (\(errors.joined(separator: "; ")))")
    }

    private func rank(_ m: Member) -> Int {
        switch m.status.state {
        case .current: 0
        case .unknown: 1
        case .behind: 2
        case .fenced: 3
        }
    }

    // MARK: - Writing

    func publish(level: Int, minTXID: UInt64, maxTXID: UInt64, localPath: String, timestamp: Date) throws {
        let name = LTXFileInfo.fileName(minTXID: minTXID, maxTXID: maxTXID)
        let file = LTXFileInfo(
            level: level, minTXID: minTXID, maxTXID: maxTXID,
            size: Int64((try? FileManager.default.attributesOfItem(atPath: localPath)[.size] as? Int) ?? 0),
            createdAt: timestamp)
        // Too few current replicas to succeed: catch the behind ones up first (the set waits
        // anyway), however long their back-off still is.
        if currentCount < durable { _ = try catchUp(deadline: Date().addingTimeInterval(30), force: true) }
        var targets: [Int] = []
        var held = 0
        surveyed = nil
        for i in members.indices where members[i].status.state == .current || members[i].status.state == .unknown {
            if members[i].tookInFailedPublish.contains(name) { held += 1 } else { targets.append(i) }
        }
        var results = [Error?](repeating: nil, count: targets.count)
        let clients = targets.map { members[$0].client }
        if clients.count == 1 {
            do { try clients[0].publish(level: level, minTXID: minTXID, maxTXID: maxTXID, localPath: localPath, timestamp: timestamp) } catch { results[0] = error }
        } else if clients.count > 1 {
            // Each replica is a separate host (or disk): their uploads overlap.
            let box = ResultBox(count: clients.count)
            DispatchQueue.concurrentPerform(iterations: clients.count) { k in
                do {
                    try clients[k].publish(
                        level: level, minTXID: minTXID, maxTXID: maxTXID, localPath: localPath, timestamp: timestamp)
                } catch { box.set(k, error) }
            }
            results = box.values
        }
        ownFiles.insert(name)
        var fenced: ReplicationError?
        var failures: [String] = []
        for (k, i) in targets.enumerated() {
            if let error = results[k] {
                if let r = error as? ReplicationError, r.code == .fenced {
                    fenced = fenced ?? fence(i, r)
                } else {
                    fellBehind(i, error)
                }
                failures.append("\(members[i].name): \((error as? ReplicationError)?.message ?? "\(error)")")
            } else {
                held += 1
                succeeded(i)
                if members[i].status.state == .unknown { update(i) { $0.state = .current } }
                noteHas(i, file)
                members[i].tookInFailedPublish.insert(name)
            }
        }
        if let fenced { throw fenced }
        if held >= durable {
            for i in members.indices { members[i].tookInFailedPublish.remove(name) }
        } else {
            throw ReplicationError(
                .io,
                "L\(level)/\(name) is in \(held) of \(members.count) replicas, fewer than durable-replicas (\(durable)): \(failures.joined(separator: "; "))"
            )
        }
    }

    private var currentCount: Int {
        members.filter { $0.status.state == .current || $0.status.state == .unknown }.count
    }

    func delete(_ files: [LTXFileInfo]) throws {
        surveyed = nil
        var firstError: Error?
        var deleted = 0
        for i in members.indices where members[i].status.state != .fenced {
            do {
                try members[i].client.delete(files)
                deleted += 1
                for f in files { members[i].files?[f.level]?[f.name] = nil }
            } catch {
                // A replica that missed a deletion keeps old files; the next pass of retention
                // (which lists the union) deletes them again.
                logger.notice(
                    "replica: deletion failed; retention tries again", metadata: ["replica": "\(members[i].name)", "error": "\(error)"])
                firstError = firstError ?? error
            }
        }
        if deleted == 0, let firstError { throw firstError }
    }

    // MARK: - Catching up

    /// When a behind replica should be tried next (nil: none is behind).
    func nextCatchUp() -> Date? {
        members.filter { $0.status.state == .behind }.map(\.retryAt).min()
    }

    /// Copies behind replicas, whose back-off has passed (or all with `force`), the files they
    /// lack from the replicas holding them, until `deadline`; a replica that gets them all is
    /// current again. Returns how many files were copied.
    @discardableResult
    func catchUp(deadline: Date, force: Bool = false) throws -> Int {
        let due = members.indices.filter {
            members[$0].status.state == .behind && (force || members[$0].retryAt <= Date())
        }
        guard !due.isEmpty else { return 0 }
        _ = try survey()
        var union: [Int: [String: LTXFileInfo]] = [:]
        for m in members where m.status.state != .fenced {
            for (level, files) in m.files ?? [:] { union[level, default: [:]].merge(files) { a, _ in a } }
        }
        let limit = confirmedTXID()
        var copied = 0
        for i in due where members[i].status.state == .behind {
            guard let have = members[i].files else { continue }  // still unreachable
            let missing = Self.missing(in: have, union: union, limit: limit, own: ownFiles)
            var complete = true
            for f in missing {
                if Date() >= deadline {
                    complete = false
                    break
                }
                do {
                    try copy(f, to: i)
                    copied += 1
                } catch let error as ReplicationError where error.code == .fenced {
                    throw fence(i, error)
                } catch {
                    fellBehind(i, error)
                    complete = false
                    break
                }
            }
            if complete {
                // Files past `limit` that are not our own stay uncopied: they are not known to be
                // this database's, so the replica stays as it is without them.
                logger.info("replica caught up", metadata: ["replica": "\(members[i].name)", "files": "\(missing.count)"])
                members[i].backoff = Self.firstBackoff
                update(i) {
                    $0.state = .current
                    $0.lastError = nil
                }
            }
        }
        return copied
    }

    /// One file from a replica holding it to replica `i`, checked on the way: the header must
    /// name the file's TXID range.
    private func copy(_ file: LTXFileInfo, to i: Int) throws {
        var errors: [String] = []
        for s in members.indices where s != i && members[s].files?[file.level]?[file.name] != nil {
            let local: LocalLTXFile
            do {
                local = try members[s].client.fetch(file)
            } catch {
                errors.append("\(members[s].name): \((error as? ReplicationError)?.message ?? "\(error)")")
                continue
            }
            defer { local.release() }
            let header = try LTXDecoder.readHeader(path: local.path)
            guard header.minTXID == file.minTXID, header.maxTXID == file.maxTXID else {
                errors.append("\(members[s].name): \(file) holds TXIDs \(header.minTXID)-\(header.maxTXID)")
                continue
            }
            try members[i].client.publish(
                level: file.level, minTXID: file.minTXID, maxTXID: file.maxTXID, localPath: local.path,
                timestamp: file.createdAt ?? Date(timeIntervalSince1970: Double(header.timestamp) / 1000))
            noteHas(i, file)
            return
        }
        throw ReplicationError(
            .missingReplica, "\(file) for replica '\(members[i].name)' could not be read from another replica (\(errors.joined(separator: "; ")))")
    }
}

/// Results of parallel uploads, one slot each.
private final class ResultBox: @unchecked Sendable {
    private let lock = NSLock()
    private var slots: [Error?]
    init(count: Int) { slots = Array(repeating: nil, count: count) }
    func set(_ k: Int, _ error: Error) {
        lock.lock()
        slots[k] = error
        lock.unlock()
    }
    var values: [Error?] {
        lock.lock()
        defer { lock.unlock() }
        return slots
    }
}
