/// Parses and formats durations written in configuration files.
///
/// Accepted form: digits, optionally with a fraction, followed by a unit: `ns`, `us` (or `µs`), `ms`, `s`,
/// `m`, `h`, `d` — e.g. `"100ms"`, `"5s"`, `"1m"`, `"1.5s"`. A bare number is rejected because its unit
/// would be a guess. Compound forms (`"1m30s"`) are accepted as a sum of parts.
enum DurationParsing {
    /// The units and their length in nanoseconds.
    static let units: [(suffix: String, nanoseconds: Int64)] = [
        ("ns", 1), ("us", 1_000), ("µs", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000),
        ("m", 60_000_000_000), ("h", 3_600_000_000_000), ("d", 86_400_000_000_000),
    ]

    /// Parses a duration string.
    ///
    /// - Parameter text: e.g. `"100ms"`.
    /// - Returns: The duration.
    /// - Throws: A message (without key path) that explains the accepted syntax.
    static func parse(_ text: String) throws(ConfigIssue) -> Duration {
        let trimmed = text.trimmingASCIIWhitespace()
        guard !trimmed.isEmpty else {
            throw ConfigIssue("empty duration; write e.g. \"100ms\", \"5s\" or \"1m\"")
        }
        var total: Int64 = 0
        var rest = Substring(trimmed)
        while !rest.isEmpty {
            let number = rest.prefix(while: { $0.isASCIIDigit || $0 == "." })
            rest = rest.dropFirst(number.count).drop(while: { $0 == " " })
            let unitText = rest.prefix(while: { !$0.isASCIIDigit && $0 != "." && $0 != " " })
            rest = rest.dropFirst(unitText.count).drop(while: { $0 == " " })
            guard !number.isEmpty, let value = Double(number) else {
                throw ConfigIssue(
                    "\"\(text)\" is not a duration; write a number with a unit, e.g. \"100ms\", \"5s\" or \"1m\""
                )
            }
            guard !unitText.isEmpty else {
                throw ConfigIssue(
                    "\"\(text)\" has no unit; write e.g. \"\(number)s\" or \"\(number)ms\" (units: ns, us, ms, s, m, h, d)"
                )
            }
            guard let unit = Self.units.first(where: { $0.suffix == unitText }) else {
                throw ConfigIssue(
                    "\"\(text)\": unknown unit \"\(unitText)\"; use ns, us, ms, s, m, h or d (e.g. \"100ms\")"
                )
            }
            let nanos = value * Double(unit.nanoseconds)
            guard nanos.isFinite, nanos < Double(Int64.max / 2) else {
                throw ConfigIssue("\"\(text)\" is out of range")
            }
            total += Int64(nanos.rounded())
            guard total < Int64.max / 2 else { throw ConfigIssue("\"\(text)\" is out of range") }
        }
        return .nanoseconds(total)
    }

    /// Formats a duration with the largest unit that represents it exactly (`.milliseconds(100)` → `"100ms"`).
    ///
    /// - Parameter duration: The duration.
    /// - Returns: A string that ``parse(_:)`` maps back to `duration`.
    static func format(_ duration: Duration) -> String {
        let nanos = duration.nanosecondsClamped
        if nanos == 0 { return "0s" }
        for unit in Self.units.reversed() where unit.suffix != "µs" {
            if nanos % unit.nanoseconds == 0 {
                return "\(nanos / unit.nanoseconds)\(unit.suffix)"
            }
        }
        return "\(nanos)ns"
    }
}

extension Duration {
    /// The duration in nanoseconds, clamped to `Int64`.
    var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = self.components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        let (sum, overflow2) = product.addingReportingOverflow(attoseconds / 1_000_000_000)
        if overflow2 { return seconds < 0 ? .min : .max }
        return sum
    }
}
