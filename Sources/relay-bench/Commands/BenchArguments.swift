import ArgumentParser

/// A byte-count argument: `4096`, `64KiB`, `1MiB`, `1M`, `2G` (binary multiples, see ``SizeParser``).
struct ByteCountArgument: ExpressibleByArgument, Sendable, Hashable, CustomStringConvertible {
    /// The byte count.
    var value: Int

    /// Creates an argument holding `value` bytes.
    init(_ value: Int) {
        self.value = value
    }

    /// Parses `4096`, `64KiB`, `1M` and the like; `nil` for anything else.
    init?(argument: String) {
        guard let bytes = SizeParser.parseSize(argument), bytes <= UInt64(Int.max) else { return nil }
        self.value = Int(bytes)
    }

    /// The value in the largest exact binary unit, e.g. `1MiB`.
    var description: String { SizeParser.formatSize(UInt64(max(0, self.value))) }

    /// How `--help` prints the default.
    var defaultValueDescription: String { self.description }
}

/// A count argument with optional decimal suffixes: `1000000`, `1_000_000`, `500k`, `16M`, `2G`.
///
/// The suffixes are powers of ten (`k` = 1 000, `M` = 1 000 000, `G` = 10⁹), as record counts
/// and rates are usually quoted, unlike byte sizes.
struct CountArgument: ExpressibleByArgument, Sendable, Hashable, CustomStringConvertible {
    /// The count.
    var value: UInt64

    /// Creates an argument holding `value`.
    init(_ value: UInt64) {
        self.value = value
    }

    /// Parses a count; `nil` for anything that is not a whole number with an optional suffix.
    init?(argument: String) {
        guard let value = CountArgument.parse(argument) else { return nil }
        self.value = value
    }

    /// `value` with the largest exact decimal suffix, e.g. `16M`.
    var description: String {
        for (suffix, multiplier) in [("G", UInt64(1_000_000_000)), ("M", 1_000_000), ("k", 1_000)] {
            if self.value >= multiplier && self.value % multiplier == 0 { return "\(self.value / multiplier)\(suffix)" }
        }
        return "\(self.value)"
    }

    /// How `--help` prints the default.
    var defaultValueDescription: String { self.description }

    /// Parses `123`, `1_000`, `500k`, `500K`, `16M`, `2G`.
    static func parse(_ text: String) -> UInt64? {
        var digits = Substring(text.filter { $0 != "_" })
        var multiplier: UInt64 = 1
        if let last = digits.last {
            switch last {
            case "k", "K": multiplier = 1_000
            case "m", "M": multiplier = 1_000_000
            case "g", "G": multiplier = 1_000_000_000
            default: break
            }
            if multiplier != 1 { digits = digits.dropLast() }
        }
        guard !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }), let number = UInt64(digits) else { return nil }
        let (product, overflow) = number.multipliedReportingOverflow(by: multiplier)
        return overflow ? nil : product
    }
}

/// A rate argument in records per second: `250000`, `250k`, `1.5M`.
struct RateArgument: ExpressibleByArgument, Sendable, Hashable, CustomStringConvertible {
    /// Records per second.
    var value: Double

    /// Creates an argument holding `value` records per second.
    init(_ value: Double) {
        self.value = value
    }

    /// Parses a positive rate with an optional `k`/`M`/`G` suffix.
    init?(argument: String) {
        var digits = Substring(argument.filter { $0 != "_" })
        var multiplier = 1.0
        switch digits.last {
        case "k", "K": multiplier = 1e3
        case "m", "M": multiplier = 1e6
        case "g", "G": multiplier = 1e9
        default: break
        }
        if multiplier != 1 { digits = digits.dropLast() }
        guard let number = Double(digits), number.isFinite, number > 0 else { return nil }
        self.value = number * multiplier
    }

    /// The rate as given, without a suffix.
    var description: String { "\(self.value)" }
}

/// A comma-separated list of values, for the swept parameter of `relay-bench sweep`
/// (`--record-size 64,256,1024`); a single value is a list of one.
struct CommaList<Element: ExpressibleByArgument & Sendable & Hashable>: ExpressibleByArgument, Sendable, Hashable {
    /// The values in the order given.
    var values: [Element]

    /// Creates a list.
    init(_ values: [Element]) {
        self.values = values
    }

    /// Parses `a,b,c`; `nil` when any element does not parse or the list is empty.
    init?(argument: String) {
        var values: [Element] = []
        for part in argument.split(separator: ",", omittingEmptySubsequences: false) {
            guard let value = Element(argument: String(part)) else { return nil }
            values.append(value)
        }
        guard !values.isEmpty else { return nil }
        self.values = values
    }
}
