import Foundation

/// Settings read from environment variables rather than from the configuration file, checked as
/// strictly as the file's values: a bad one is a one-line error when replication starts, never a
/// trap later (`Int64(.nan * 1000)` at exit killed the host with SIGILL).
public enum EnvironmentSettings {
    public static let exitFlushVariable = "VFS_REPLICATION_EXIT_FLUSH_SECONDS"
    public static let defaultExitFlushTimeout: Duration = .seconds(30)
    public static let longestExitFlushTimeout: Duration = .seconds(3600)

    /// `VFS_REPLICATION_EXIT_FLUSH_SECONDS`: how long the loadable extension waits at process exit
    /// for committed transactions to reach the replica. Seconds (`30`, `2.5`) or a duration
    /// (`500ms`), 0 to 3600; unset or empty: 30 s.
    public static func exitFlushTimeout(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> Duration {
        guard let text = environment[exitFlushVariable], !text.isEmpty else { return defaultExitFlushTimeout }
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        var value = ConfigValues.parseDuration(trimmed)
        // A plain decimal number of seconds; `Double` alone would take nan, inf and 1e300.
        if value == nil, !trimmed.isEmpty, trimmed.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }),
            trimmed.filter({ $0 == "." }).count <= 1, trimmed != "."
        {
            value = ConfigValues.parseDuration(trimmed + "s")
        }
        guard let value, value <= longestExitFlushTimeout else {
            throw ReplicationError(
                .invalidConfig,
                "\(exitFlushVariable)='\(ConfigValues.oneLine(text))' must be a number of seconds from 0 to 3600 "
                    + "(or a duration such as 500ms)")
        }
        return value
    }
}
