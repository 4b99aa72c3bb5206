/// Parses and formats durations written in configuration files.
///
/// Accepted form: one or more parts, each a number (digits, optionally with a fraction) followed by a
/// unit: `ns`, `us` (or `µs`), `ms`, `s`, `m`, `h`, `d`. Several parts add up, written from the largest unit
/// to the smallest, each unit at most once, optionally separated by spaces (a space may also stand between
/// a number and its unit): `"100ms"`, `"5s"`, `"1.5s"`, `"1m30s"`, `"1h2m3s"`, `"1s500ms"`, `"2m 30s"`.
/// Rejected: a bare number (its unit would be a guess), a part without a unit (`"1m30"`), units out of
/// order or repeated (`"30s1m"`, `"5s5s"`, most likely typos), signs, and totals of 2^62 ns (~146 years)
/// or more. Fractions are exact to the nanosecond (rounded half up), without floating point.
enum DurationParsing {
    /// The units and their length in nanoseconds.
    static let units: [(suffix: String, nanoseconds: Int64)] = [
        ("ns", 1), ("us", 1_000), ("µs", 1_000), ("ms", 1_000_000), ("s", 1_000_000_000),
        ("m", 60_000_000_000), ("h", 3_600_000_000_000), ("d", 86_400_000_000_000),
    ]

    /// The largest total accepted, exclusive: 2^62 ns (about 146 years), far beyond any setting, so sums and
    /// comparisons of parsed durations cannot overflow.
    static let limit: Int64 = Int64.max / 2

    /// The syntax, for error messages.
    private static let help = "write a number with a unit, e.g. \"100ms\", \"5s\" or \"1m30s\" (units: ns, us, ms, s, m, h, d)"

    /// Whether `text` is meant as a duration rather than a byte count: the letters after its first number
    /// are a duration unit (`"1m30s"`: `m`; `"64MiB"`: `MiB`, not one).
    static func looksLikeDuration(_ text: String) -> Bool {
        let rest = text.trimmingASCIIWhitespace().drop(while: { $0.isASCIIDigit || $0 == "." }).drop(while: { $0 == " " })
        let unit = rest.prefix(while: { $0.isLetter })
        return Self.units.contains(where: { $0.suffix == unit })
    }

    /// Parses a duration string.
    ///
    /// - Parameter text: e.g. `"100ms"` or `"1m30s"`.
    /// - Returns: The duration: the sum of its parts.
    /// - Throws: A message (without key path) that explains the accepted syntax.
    static func parse(_ text: String) throws(ConfigIssue) -> Duration {
        let trimmed = text.trimmingASCIIWhitespace()
        guard !trimmed.isEmpty else {
            throw ConfigIssue("empty duration; write e.g. \"100ms\", \"5s\" or \"1m30s\"")
        }
        var total: Int64 = 0
        var rest = Substring(trimmed)
        // The length of the previous part's unit: each part's unit must be shorter.
        var previousUnit: Int64? = nil
        while !rest.isEmpty {
            let number = rest.prefix(while: { $0.isASCIIDigit || $0 == "." })
            rest = rest.dropFirst(number.count).drop(while: { $0 == " " })
            let unitText = rest.prefix(while: { $0.isLetter })
            rest = rest.dropFirst(unitText.count).drop(while: { $0 == " " })
            let digits = number.split(separator: ".", omittingEmptySubsequences: false)
            guard !number.isEmpty, digits.count <= 2, !digits[0].isEmpty, digits.count == 1 || !digits[1].isEmpty else {
                if number.isEmpty && previousUnit == nil && trimmed.first == "-" {
                    throw ConfigIssue("\"\(text)\" is negative; durations are ≥ 0, e.g. \"0s\" or \"5s\"")
                }
                throw ConfigIssue("\"\(text)\" is not a duration; \(Self.help)")
            }
            guard !unitText.isEmpty else {
                let example = previousUnit == nil ? "\"\(number)s\" or \"\(number)ms\"" : "\"1m30s\""
                throw ConfigIssue("\"\(text)\": \"\(number)\" has no unit; write e.g. \(example) (units: ns, us, ms, s, m, h, d)")
            }
            guard let unit = Self.units.first(where: { $0.suffix == unitText })?.nanoseconds else {
                throw ConfigIssue(
                    "\"\(text)\": unknown unit \"\(unitText)\"; use ns, us, ms, s, m, h or d (e.g. \"100ms\" or \"1m30s\")"
                )
            }
            if let previousUnit, unit >= previousUnit {
                throw ConfigIssue(
                    "\"\(text)\": the parts of a duration go from the largest unit to the smallest, each unit once; write e.g. \"1h2m3s\" or \"1s500ms\""
                )
            }
            previousUnit = unit
            guard let nanoseconds = Self.nanoseconds(whole: digits[0], fraction: digits.count == 2 ? digits[1] : "", unit: unit),
                case (let sum, false) = total.addingReportingOverflow(nanoseconds), sum < Self.limit
            else {
                throw ConfigIssue("\"\(text)\" is out of range; durations must be shorter than 146 years (e.g. \"1d\")")
            }
            total = sum
        }
        return .nanoseconds(total)
    }

    /// `whole.fraction` units in nanoseconds, rounded half up; nil at `limit` or beyond.
    private static func nanoseconds(whole: Substring, fraction: Substring, unit: Int64) -> Int64? {
        var value: Int64 = 0
        for digit in whole.utf8 {
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (next, o2) = times10.addingReportingOverflow(Int64(digit &- UInt8(ascii: "0")))
            guard !o1, !o2, next < Self.limit else { return nil }
            value = next
        }
        let (wholeNanoseconds, overflow) = value.multipliedReportingOverflow(by: unit)
        guard !overflow, wholeNanoseconds < Self.limit else { return nil }
        // The fraction's first 18 digits (10^18 fits in 64 bits; later digits are worth less than
        // 10^-18 × 1d < 1 ns): unit × digits / 10^count, in 128-bit arithmetic, rounded half up.
        var numerator: UInt64 = 0
        var scale: UInt64 = 1
        for digit in fraction.utf8.prefix(18) {
            numerator = numerator * 10 + UInt64(digit &- UInt8(ascii: "0"))
            scale *= 10
        }
        let product = UInt64(unit).multipliedFullWidth(by: numerator)
        let (quotient, remainder) = scale.dividingFullWidth(product)
        let fractionNanoseconds = Int64(quotient) + (remainder >= scale - remainder ? 1 : 0)
        let (sum, overflow2) = wholeNanoseconds.addingReportingOverflow(fractionNanoseconds)
        guard !overflow2, sum < Self.limit else { return nil }
        return sum
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
