/// Pure parsers for configuration values: durations, byte sizes, booleans, `$VAR` expansion and
/// "did you mean" suggestions. No I/O; unit-tested directly.
enum ConfigValues {
    // MARK: Durations

    private static let nanosecondsPerUnit: [String: Int64] = [
        "ns": 1,
        "us": 1_000, "\u{00B5}s": 1_000, "\u{03BC}s": 1_000,
        "ms": 1_000_000,
        "s": 1_000_000_000,
        "m": 60_000_000_000,
        "h": 3_600_000_000_000,
    ]

    /// Parses a Go-style duration as Litestream accepts it: `50ms`, `1s`, `1.5s`, `2m`, `1h30m`,
    /// `24h`; `0` alone is zero. Units: ns, us (µs), ms, s, m, h. Nil when malformed, negative or
    /// beyond ~292 years.
    ///
    /// See https://pkg.go.dev/time#ParseDuration
    static func parseDuration(_ text: String) -> Duration? {
        let scalars = Array(text.unicodeScalars)
        if text == "0" { return .zero }
        guard !scalars.isEmpty else { return nil }
        var total: Int64 = 0
        var position = 0
        func isDigit(_ s: Unicode.Scalar) -> Bool { s >= "0" && s <= "9" }
        while position < scalars.count {
            var whole = ""
            var fraction = ""
            while position < scalars.count, isDigit(scalars[position]) {
                whole.unicodeScalars.append(scalars[position])
                position += 1
            }
            if position < scalars.count, scalars[position] == "." {
                position += 1
                while position < scalars.count, isDigit(scalars[position]) {
                    fraction.unicodeScalars.append(scalars[position])
                    position += 1
                }
            }
            guard !whole.isEmpty || !fraction.isEmpty else { return nil }
            var unit = ""
            while position < scalars.count, !isDigit(scalars[position]), scalars[position] != "." {
                unit.unicodeScalars.append(scalars[position])
                position += 1
            }
            guard let perUnit = nanosecondsPerUnit[unit], let wholeValue = Int64(whole.isEmpty ? "0" : whole)
            else { return nil }
            let (wholeNanos, overflow1) = wholeValue.multipliedReportingOverflow(by: perUnit)
            guard !overflow1 else { return nil }
            // Exact decimal fraction: each digit is worth a tenth of the previous one.
            var fractionNanos: Int64 = 0
            var scale = perUnit
            for digit in fraction.utf8 {
                scale /= 10
                if scale == 0 { break }
                fractionNanos += Int64(digit - UInt8(ascii: "0")) * scale
            }
            let (partial, overflow2) = total.addingReportingOverflow(wholeNanos)
            let (sum, overflow3) = partial.addingReportingOverflow(fractionNanos)
            guard !overflow2, !overflow3 else { return nil }
            total = sum
        }
        return .nanoseconds(total)
    }

    /// Formats a duration the way the config spells it (`1s`, `250ms`, `1.5s`, `2m`), for messages.
    static func formatDuration(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        let nanos = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        let units: [(String, Int64)] = [("h", 3_600_000_000_000), ("m", 60_000_000_000), ("s", 1_000_000_000)]
        for (unit, size) in units where nanos >= size && nanos % size == 0 {
            return "\(nanos / size)\(unit)"
        }
        if nanos >= 1_000_000_000 {
            var fraction = String(nanos % 1_000_000_000)
            fraction = String(repeating: "0", count: 9 - fraction.count) + fraction
            while fraction.hasSuffix("0") { fraction.removeLast() }
            return "\(nanos / 1_000_000_000).\(fraction)s"
        }
        for (unit, size) in [("ms", Int64(1_000_000)), ("us", 1_000)] where nanos >= size && nanos % size == 0 {
            return "\(nanos / size)\(unit)"
        }
        return "\(nanos)ns"
    }

    // MARK: Sizes

    private static let bytesPerUnit: [String: Int64] = [
        "": 1, "b": 1,
        "kb": 1_000, "mb": 1_000_000, "gb": 1_000_000_000, "tb": 1_000_000_000_000,
        "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
    ]

    /// Parses a byte size: a plain integer (`67108864`, `67_108_864`), or a number with a unit:
    /// `64MiB`, `1GiB`, `1.5GiB` (KiB, MiB, GiB, TiB: powers of 1024), `500MB` (kB, MB, GB, TB:
    /// powers of 1000), `B`. Units are case-insensitive; a space before the unit is allowed.
    /// Fractional results round down to whole bytes. Nil when malformed or out of range.
    static func parseByteSize(_ text: String) -> Int64? {
        var number = ""
        var unit = ""
        var inUnit = false
        for character in text {
            if !inUnit, character.isASCII, character.isNumber || character == "." || character == "_" {
                number.append(character)
            } else {
                inUnit = true
                if character != " " || !unit.isEmpty { unit.append(character) }
            }
        }
        number.removeAll { $0 == "_" }
        let parts = number.split(separator: ".", omittingEmptySubsequences: false)
        guard !number.isEmpty, !number.hasPrefix("."), parts.count <= 2,
            let multiplier = bytesPerUnit[unit.lowercased()],
            let whole = Int64(parts[0])
        else { return nil }
        let (wholeBytes, overflow) = whole.multipliedReportingOverflow(by: multiplier)
        guard !overflow else { return nil }
        var fractionBytes: Int64 = 0
        if parts.count == 2 {
            guard !parts[1].isEmpty else { return nil }
            // Enough digits for byte precision at TiB scale; the rest cannot change the result.
            let digits = parts[1].prefix(15)
            guard let fraction = Int64(digits) else { return nil }
            var scale: Int64 = 1
            for _ in 0..<digits.count { scale *= 10 }
            let (product, productOverflow) = fraction.multipliedReportingOverflow(by: multiplier)
            fractionBytes =
                productOverflow
                ? Int64((Double(fraction) / Double(scale)) * Double(multiplier))
                : product / scale
        }
        let (total, sumOverflow) = wholeBytes.addingReportingOverflow(fractionBytes)
        return sumOverflow ? nil : total
    }

    // MARK: Booleans

    /// `true`/`false`, and YAML 1.1's `yes`/`no`/`on`/`off`, case-insensitive.
    static func parseBool(_ text: String) -> Bool? {
        switch text.lowercased() {
        case "true", "yes", "on": return true
        case "false", "no", "off": return false
        default: return nil
        }
    }

    // MARK: Environment expansion

    enum ExpansionError: Error, Equatable {
        /// `${NAME}` or `$NAME` names a variable that is not set.
        case undefined(String)
        /// `${` without `}`, or `${...}` holding something that is not a variable name.
        case malformed(String)
    }

    /// Expands `${NAME}` and `$NAME` from `environment`; `$$` is a literal `$`, and a `$` followed by
    /// anything else stays as it is. Names are `[A-Za-z_][A-Za-z0-9_]*`.
    static func expandEnvironment(_ text: String, _ environment: [String: String]) throws(ExpansionError)
        -> String
    {
        guard text.contains("$") else { return text }
        let scalars = Array(text.unicodeScalars)
        var result = String.UnicodeScalarView()
        var position = 0
        func isNameStart(_ s: Unicode.Scalar) -> Bool { s == "_" || (s.isASCII && s.properties.isAlphabetic) }
        func isName(_ s: Unicode.Scalar) -> Bool { isNameStart(s) || (s >= "0" && s <= "9") }
        while position < scalars.count {
            let scalar = scalars[position]
            guard scalar == "$", position + 1 < scalars.count else {
                result.append(scalar)
                position += 1
                continue
            }
            let next = scalars[position + 1]
            if next == "$" {
                result.append("$")
                position += 2
            } else if next == "{" {
                guard let close = scalars[(position + 2)...].firstIndex(of: "}") else {
                    throw .malformed(String(String.UnicodeScalarView(scalars[position...])))
                }
                let name = String(String.UnicodeScalarView(scalars[(position + 2)..<close]))
                guard let first = name.unicodeScalars.first, isNameStart(first), name.unicodeScalars.allSatisfy(isName)
                else { throw .malformed("${" + name + "}") }
                guard let value = environment[name] else { throw .undefined(name) }
                result.append(contentsOf: value.unicodeScalars)
                position = close + 1
            } else if isNameStart(next) {
                var end = position + 1
                while end < scalars.count, isName(scalars[end]) { end += 1 }
                let name = String(String.UnicodeScalarView(scalars[(position + 1)..<end]))
                guard let value = environment[name] else { throw .undefined(name) }
                result.append(contentsOf: value.unicodeScalars)
                position = end
            } else {
                result.append(scalar)
                position += 1
            }
        }
        return String(result)
    }

    // MARK: Messages

    /// `text` on one line: line breaks and other control characters are shown escaped (`\n`),
    /// so an error quoting a value stays the one line tools print.
    static func oneLine(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isControl) else { return text }
        var result = ""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\n": result += "\\n"
            case "\r": result += "\\r"
            case "\t": result += "\\t"
            case _ where isControl(scalar):
                result += "\\u{" + String(scalar.value, radix: 16) + "}"
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result
    }

    private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
        scalar.value < 0x20 || scalar.value == 0x7F || (0x80...0x9F).contains(scalar.value)
            || scalar.value == 0x2028 || scalar.value == 0x2029
    }

    // MARK: Suggestions

    /// The known key the user most likely meant, if one is close: same letters ignoring case,
    /// `-` and `_` (`max_delay`, `maxDelay`, `MaxDelay` -> `max-delay`), or at most two edits away
    /// (one for keys shorter than six letters; typos, transpositions), and unambiguous.
    static func suggestion(for key: String, among known: [String]) -> String? {
        func squeezed(_ s: String) -> String { s.lowercased().filter { $0 != "-" && $0 != "_" && $0 != " " } }
        let target = squeezed(key)
        if let exact = known.first(where: { squeezed($0) == target }) { return exact }
        let normalized = key.lowercased().replacingOccurrences(of: "_", with: "-")
        // Short keys allow one edit, longer ones two; one- and two-letter keys are not guessed at.
        let limit = normalized.count >= 6 ? 2 : normalized.count >= 3 ? 1 : 0
        let scored = known.map { ($0, editDistance(normalized, $0)) }.filter { $0.1 <= limit }
        guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
        return scored.filter { $0.1 == best.1 }.count == 1 ? best.0 : nil
    }

    /// Optimal string alignment distance (Levenshtein plus adjacent transpositions).
    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a)
        let b = Array(b)
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var d = Array(repeating: Array(repeating: 0, count: b.count + 1), count: a.count + 1)
        for i in 0...a.count { d[i][0] = i }
        for j in 0...b.count { d[0][j] = j }
        for i in 1...a.count {
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                d[i][j] = min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    d[i][j] = min(d[i][j], d[i - 2][j - 2] + 1)
                }
            }
        }
        return d[a.count][b.count]
    }
}
