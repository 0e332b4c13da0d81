import Foundation

/// Restoring several databases to one instant (`vfs-rebuild --all --timestamp T`): an app's
/// databases (primary, cache, queue, cable) come back as one application state only if each is
/// taken to its newest restore point at or before the same T, and only if all of them can be.
/// This is the pure part: from each database's listing, the plans, the skew between the chosen
/// restore points, and every reason it cannot be done, named by database. No I/O.
///
/// ```swift
/// let plan = try ConsistentRestore.plan(target: .timestamp(t), databases: candidates)
/// for line in ConsistentRestore.planLines(plan) { print(line) }
/// ```
public enum ConsistentRestore {
    /// One configured database, as listed.
    public struct Candidate: Sendable {
        public var database: String
        public var replica: String
        public var output: String
        /// Its replica's files (dated, for a time target), or why they could not be listed.
        public var listing: Result<[LTXFileInfo], ReplicationError>
        /// A database with no files in its replica is skipped (a new database) instead of failing.
        public var skipIfEmpty: Bool
        /// Why this database is left alone (its output exists and the caller asked to keep it).
        public var skipReason: String?

        public init(
            database: String, replica: String, output: String, listing: Result<[LTXFileInfo], ReplicationError>,
            skipIfEmpty: Bool = false, skipReason: String? = nil
        ) {
            self.database = database
            self.replica = replica
            self.output = output
            self.listing = listing
            self.skipIfEmpty = skipIfEmpty
            self.skipReason = skipReason
        }
    }

    public struct Entry: Sendable, Equatable {
        public var database: String
        public var replica: String
        public var output: String
        public var plan: RestorePlan
        /// The chosen restore point's time (its last file's).
        public var time: Date? { plan.timestamp }
    }

    public struct Plan: Sendable, Equatable {
        public var target: RestoreTarget
        public var entries: [Entry]
        /// (database, why) for those left alone.
        public var skipped: [Skip]
        /// The oldest and newest chosen restore points' times.
        public var oldest: Date?
        public var newest: Date?
        /// The skew: how far apart in time the chosen restore points are (newest minus oldest).
        public var spread: TimeInterval? {
            guard let oldest, let newest else { return nil }
            return newest.timeIntervalSince(oldest)
        }
    }

    public struct Skip: Sendable, Equatable {
        public var database: String
        public var replica: String
        public var reason: String
    }

    /// Plans every candidate to `target`, or throws one error naming every database that
    /// cannot be restored to it (so nothing is written when one of them cannot be), and every
    /// two databases that would be written to the same file.
    public static func plan(target: RestoreTarget, databases: [Candidate]) throws -> Plan {
        var entries: [Entry] = []
        var skipped: [Skip] = []
        var failures: [(database: String, error: ReplicationError)] = []
        for candidate in databases {
            if let reason = candidate.skipReason {
                skipped.append(Skip(database: candidate.database, replica: candidate.replica, reason: reason))
                continue
            }
            do {
                let files = try candidate.listing.get()
                if files.isEmpty && candidate.skipIfEmpty {
                    skipped.append(
                        Skip(
                            database: candidate.database, replica: candidate.replica,
                            reason: "no LTX files in \(candidate.replica)"))
                    continue
                }
                let plan = try RestorePlanner.plan(files: files, target: target, location: candidate.replica)
                entries.append(
                    Entry(
                        database: candidate.database, replica: candidate.replica, output: candidate.output, plan: plan))
            } catch let error as ReplicationError {
                failures.append((candidate.database, error))
            } catch {
                failures.append((candidate.database, ReplicationError(.io, "\(error)")))
            }
        }
        var byOutput: [String: String] = [:]
        for entry in entries {
            if let other = byOutput[entry.output] {
                failures.append(
                    (
                        entry.database,
                        ReplicationError(
                            .invalidArgument,
                            "would be written to \(entry.output), as \(other) is (give each its own file name)")
                    ))
            }
            byOutput[entry.output] = entry.database
        }
        if !failures.isEmpty {
            let total = databases.count
            throw ReplicationError(
                failures[0].error.code,
                "cannot restore every database to \(target): \(failures.count) of \(total) cannot be; nothing was written: "
                    + failures.map { "\($0.database): \($0.error.message)" }.joined(separator: "; "))
        }
        let times = entries.compactMap(\.time)
        return Plan(target: target, entries: entries, skipped: skipped, oldest: times.min(), newest: times.max())
    }

    /// The plan in text: a head line with the skew, then one line per database (chosen TXID,
    /// its time and how long before the target it is, files and bytes), then the skipped.
    public static func planLines(_ plan: Plan) -> [String] {
        var head = "plan: \(plan.entries.count) databases to \(plan.target)"
        if let spread = plan.spread, let oldest = plan.oldest, let newest = plan.newest {
            head +=
                "; skew \(seconds(spread)) (restore points from \(RestorePlanner.format(oldest)) "
                + "to \(RestorePlanner.format(newest)))"
        }
        var lines = [head]
        for e in plan.entries {
            var line = "  \(e.database): TXID \(hex16(e.plan.txid)) (\(e.plan.txid))"
            if let time = e.time {
                line += " at \(RestorePlanner.format(time))"
                if case .timestamp(let t) = plan.target {
                    line += ", \(seconds(t.timeIntervalSince(time))) before the target"
                }
            }
            line +=
                ", \(e.plan.files.count) files, \(RestoreProgressRenderer.formatBytes(e.plan.bytes)) -> \(e.output)"
            lines.append(line)
        }
        for s in plan.skipped { lines.append("  \(s.database): skipped: \(s.reason)") }
        return lines
    }

    /// The skew of restores already made (the times they reached), as `plan`'s.
    public static func spread(_ times: [Date]) -> TimeInterval? {
        guard let lo = times.min(), let hi = times.max() else { return nil }
        return hi.timeIntervalSince(lo)
    }

    static func seconds(_ value: TimeInterval) -> String {
        String(format: "%.3f s", value)
    }
}
