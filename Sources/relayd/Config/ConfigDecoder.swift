/// Typed accessors that record a ``ConfigError`` (and return `nil`) instead of throwing, so that one run
/// reports every problem in the file.
struct ConfigDecoder {
    /// Everything found so far.
    var errors: [ConfigError] = []
    /// The key path (`inputs[3]`) of each decoded input, parallel to ``RelaydConfig/inputs``.
    var inputPaths: [String] = []
    /// The key path (`outputs[1]`) of each decoded output, parallel to ``RelaydConfig/outputs``.
    var outputPaths: [String] = []
    /// Names of the inputs routed to outputs that were rejected (and so are missing from the configuration).
    var inputsOfRejectedOutputs: Set<String> = []

    /// Records an error.
    mutating func report(_ keyPath: String, _ message: String) {
        self.errors.append(ConfigError(keyPath: keyPath, message: message))
    }

    /// Reports every key of `table` that is not in `allowed`.
    ///
    /// - Parameters:
    ///   - table: The table.
    ///   - allowed: The keys valid here.
    ///   - elsewhere: Keys that are valid for another `type`, with the explanation to show.
    mutating func rejectUnknownKeys(in table: ConfigTable, allowed: [String], elsewhere: [String: String] = [:]) {
        for (key, _) in table.entries where !allowed.contains(key) {
            if let explanation = elsewhere[key] {
                self.report(table.path(key), "\(explanation); remove it")
            } else {
                self.report(
                    table.path(key),
                    "unknown key" + KeySuggestion.hint(for: key, among: allowed)
                )
            }
        }
    }

    /// A nested table, or `nil` (with an error when the value has another type).
    mutating func table(_ table: ConfigTable, _ key: String, example: String) -> ConfigTable? {
        guard let value = table[key] else { return nil }
        guard case .table(let entries) = value else {
            self.report(
                table.path(key),
                "expected a table, found \(value.typeName) \(value.shortDescription); write \(example)"
            )
            return nil
        }
        return ConfigTable(path: table.path(key), entries: entries)
    }

    /// An array of tables (`[[inputs]]`), or an empty array (with an error for other types).
    mutating func arrayOfTables(_ table: ConfigTable, _ key: String) -> [ConfigTable] {
        guard let value = table[key] else { return [] }
        guard case .array(let elements) = value else {
            self.report(
                table.path(key),
                "expected an array of tables, found \(value.typeName); write a [[\(key)]] section for each entry"
            )
            return []
        }
        var tables: [ConfigTable] = []
        for (index, element) in elements.enumerated() {
            let path = "\(table.path(key))[\(index)]"
            guard case .table(let entries) = element else {
                self.report(
                    path,
                    "expected a table, found \(element.typeName); write a [[\(key)]] section for each entry"
                )
                continue
            }
            tables.append(ConfigTable(path: path, entries: entries))
        }
        return tables
    }

    /// A string value.
    mutating func string(_ table: ConfigTable, _ key: String) -> String? {
        guard let value = table[key] else { return nil }
        guard case .string(let string) = value else {
            self.report(
                table.path(key),
                "expected a string, found \(value.typeName) \(value.shortDescription); write \(key) = \"\(value.shortDescription)\""
            )
            return nil
        }
        return string
    }

    /// A boolean value.
    mutating func bool(_ table: ConfigTable, _ key: String) -> Bool? {
        guard let value = table[key] else { return nil }
        guard case .bool(let bool) = value else {
            var fix = "write \(key) = true or \(key) = false"
            if case .string(let text) = value, text == "true" || text == "false" {
                fix = "remove the quotes: \(key) = \(text)"
            }
            self.report(
                table.path(key),
                "expected a boolean, found \(value.typeName) \(value.shortDescription); \(fix)"
            )
            return nil
        }
        return bool
    }

    /// An integer value within `range`.
    mutating func integer(_ table: ConfigTable, _ key: String, in range: ClosedRange<Int>) -> Int? {
        guard let value = table[key] else { return nil }
        let integer: Int
        switch value {
        case .integer(let i):
            integer = i
        case .string(let text) where Int(text) != nil:
            self.report(
                table.path(key),
                "expected an integer, found string \(value.shortDescription); remove the quotes: \(key) = \(text)"
            )
            return nil
        default:
            self.report(table.path(key), "expected an integer, found \(value.typeName) \(value.shortDescription)")
            return nil
        }
        guard range.contains(integer) else {
            self.report(
                table.path(key),
                "\(integer) is out of range; use a value in \(range.lowerBound)...\(range.upperBound)"
            )
            return nil
        }
        return integer
    }

    /// A size: an integer or a string like `"64KiB"` (see ``ByteSize``).
    mutating func size(_ table: ConfigTable, _ key: String) -> Int? {
        guard let value = table[key] else { return nil }
        switch value {
        case .integer(let i):
            guard i >= 0 else {
                self.report(table.path(key), "\(i) is negative; sizes are byte counts ≥ 0")
                return nil
            }
            return i
        case .string(let text):
            do {
                return try ByteSize.parse(text)
            } catch {
                self.report(table.path(key), error.message)
                return nil
            }
        default:
            self.report(
                table.path(key),
                "expected a size such as \"64KiB\" or an integer byte count, found \(value.typeName) \(value.shortDescription)"
            )
            return nil
        }
    }

    /// A duration string like `"100ms"` (see ``DurationParsing``).
    mutating func duration(_ table: ConfigTable, _ key: String) -> Duration? {
        guard let value = table[key] else { return nil }
        guard case .string(let text) = value else {
            var fix = "write e.g. \(key) = \"100ms\""
            if case .integer(let i) = value {
                fix = "durations need a unit: write \(key) = \"\(i)s\" or \"\(i)ms\""
            }
            self.report(
                table.path(key),
                "expected a duration string, found \(value.typeName) \(value.shortDescription); \(fix)"
            )
            return nil
        }
        do {
            return try DurationParsing.parse(text)
        } catch {
            self.report(table.path(key), error.message)
            return nil
        }
    }

    /// One of the raw values of `E`.
    mutating func choice<E: RawRepresentable & CaseIterable>(_ table: ConfigTable, _ key: String, as type: E.Type) -> E?
    where E.RawValue == String {
        guard let text = self.string(table, key) else { return nil }
        if let value = E(rawValue: text) { return value }
        let valid = E.allCases.map(\.rawValue)
        let quoted = valid.map { "\"\($0)\"" }.joined(separator: ", ")
        if let suggestion = KeySuggestion.closest(to: text, among: valid) {
            self.report(table.path(key), "\"\(text)\" is not valid; did you mean \"\(suggestion)\"? (one of \(quoted))")
        } else {
            self.report(table.path(key), "\"\(text)\" is not valid; use one of \(quoted)")
        }
        return nil
    }

    /// An array of strings.
    mutating func stringArray(_ table: ConfigTable, _ key: String) -> [String]? {
        guard let value = table[key] else { return nil }
        guard case .array(let elements) = value else {
            var fix = "write \(key) = [\"a\", \"b\"]"
            if case .string(let text) = value { fix = "write \(key) = [\"\(text)\"]" }
            self.report(table.path(key), "expected an array of strings, found \(value.typeName); \(fix)")
            return nil
        }
        var strings: [String] = []
        for (index, element) in elements.enumerated() {
            guard case .string(let text) = element else {
                self.report(
                    "\(table.path(key))[\(index)]",
                    "expected a string, found \(element.typeName) \(element.shortDescription)"
                )
                continue
            }
            strings.append(text)
        }
        return strings
    }
}
