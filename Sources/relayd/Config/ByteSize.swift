/// Parses byte sizes written in configuration files.
///
/// Accepted forms: a TOML integer (`4096`), a string of digits (`"4096"`), or digits followed by a
/// binary unit (`"64KiB"`, `"1MiB"`, `"2GiB"`, `"512B"`; an optional space before the unit is allowed).
/// Decimal units (`KB`, `MB`, `k`, `M`) are rejected on purpose: sub-buffer geometry must be a power of two,
/// and "1MB" silently meaning 1,000,000 bytes is a classic way to get that wrong.
enum ByteSize {
    /// The binary units and their multipliers.
    static let units: [(suffix: String, multiplier: Int)] = [
        ("B", 1), ("KiB", 1 << 10), ("MiB", 1 << 20), ("GiB", 1 << 30), ("TiB", 1 << 40),
    ]

    /// Parses a size string.
    ///
    /// - Parameter text: e.g. `"64KiB"`.
    /// - Returns: The number of bytes.
    /// - Throws: A message (without key path) that explains the accepted syntax.
    static func parse(_ text: String) throws(ConfigIssue) -> Int {
        let trimmed = text.trimmingASCIIWhitespace()
        if trimmed.hasPrefix("-"), trimmed.dropFirst().first?.isASCIIDigit == true {
            throw ConfigIssue("\"\(text)\" is negative; sizes are byte counts ≥ 0")
        }
        if let fractional = Self.fractionHelp(for: text, trimmed: trimmed) {
            throw ConfigIssue(fractional)
        }
        var digits = Substring(trimmed)
        var multiplier = 1
        var unitText = ""
        if let unitStart = trimmed.firstIndex(where: { !$0.isASCIIDigit }) {
            digits = trimmed[..<unitStart]
            unitText = String(trimmed[unitStart...]).trimmingASCIIWhitespace()
            guard let unit = Self.units.first(where: { $0.suffix == unitText }) else {
                throw ConfigIssue(Self.unitHelp(for: text, unitText: unitText))
            }
            multiplier = unit.multiplier
        }
        if !digits.isEmpty, Int(digits) == nil {
            throw ConfigIssue("\"\(text)\" is too large")
        }
        guard !digits.isEmpty, let value = Int(digits) else {
            throw ConfigIssue(
                "\"\(text)\" is not a size; write a byte count or a number with a binary unit, e.g. \"64KiB\" or \"1MiB\""
            )
        }
        let (product, overflow) = value.multipliedReportingOverflow(by: multiplier)
        guard !overflow else {
            throw ConfigIssue("\"\(text)\" is too large")
        }
        return product
    }

    /// For `"1.5MiB"`: sizes are whole numbers, with the same size in a smaller unit when there is one.
    private static func fractionHelp(for text: String, trimmed: String) -> String? {
        let number = trimmed.prefix(while: { $0.isASCIIDigit || $0 == "." })
        guard number.contains("."), let value = Double(number) else { return nil }
        let unitText = trimmed.dropFirst(number.count).trimmingASCIIWhitespace()
        var help = "\"\(text)\": sizes are whole numbers"
        if let unit = Self.units.first(where: { $0.suffix == unitText }) {
            let bytes = value * Double(unit.multiplier)
            if bytes.rounded() == bytes, bytes < Double(Int.max / 2) {
                help += "; write \"\(Self.format(Int(bytes)))\""
                return help
            }
        }
        return help + " of bytes or of a binary unit, e.g. \"1536KiB\" rather than \"1.5MiB\""
    }

    private static func unitHelp(for text: String, unitText: String) -> String {
        let decimal: [String: String] = [
            "K": "KiB", "k": "KiB", "KB": "KiB", "kB": "KiB", "kb": "KiB", "Kb": "KiB", "KIB": "KiB", "kib": "KiB",
            "M": "MiB", "MB": "MiB", "mb": "MiB", "m": "MiB", "MIB": "MiB", "mib": "MiB",
            "G": "GiB", "GB": "GiB", "gb": "GiB", "g": "GiB", "GIB": "GiB", "gib": "GiB",
            "T": "TiB", "TB": "TiB", "b": "B", "bytes": "B", "byte": "B",
        ]
        if let suggestion = decimal[unitText] {
            let number = text.prefix(while: { $0.isASCIIDigit || $0 == " " }).trimmingASCIIWhitespace()
            return "\"\(text)\": unit \"\(unitText)\" is ambiguous or unknown; relayd sizes use binary units, "
                + "write \"\(number)\(suggestion)\""
        }
        return "\"\(text)\": unknown unit \"\(unitText)\"; use B, KiB, MiB, GiB or TiB (e.g. \"64KiB\")"
    }

    /// Formats a byte count with the largest binary unit that divides it exactly (`65536` → `"64KiB"`).
    ///
    /// - Parameter bytes: The byte count.
    /// - Returns: A string that ``parse(_:)`` maps back to `bytes`.
    static func format(_ bytes: Int) -> String {
        for unit in Self.units.reversed() where unit.multiplier > 1 {
            if bytes != 0 && bytes % unit.multiplier == 0 {
                return "\(bytes / unit.multiplier)\(unit.suffix)"
            }
        }
        return String(bytes)
    }
}

extension Character {
    /// `true` for `0`...`9` only (not other Unicode digits).
    var isASCIIDigit: Bool {
        guard let ascii = self.asciiValue else { return false }
        return ascii >= UInt8(ascii: "0") && ascii <= UInt8(ascii: "9")
    }
}

extension StringProtocol {
    /// The string without leading and trailing spaces and tabs.
    func trimmingASCIIWhitespace() -> String {
        let isSpace: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        guard let first = self.firstIndex(where: { !isSpace($0) }),
            let last = self.lastIndex(where: { !isSpace($0) })
        else { return "" }
        return String(self[first...last])
    }
}
