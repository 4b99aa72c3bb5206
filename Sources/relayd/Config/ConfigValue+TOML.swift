import TOMLKit

extension ConfigValue {
    /// Parses a TOML document into a ``ConfigValue`` table.
    ///
    /// - Parameter text: The TOML document.
    /// - Returns: The root table.
    /// - Throws: ``ConfigError`` with the line and column of the first syntax error.
    static func parseTOML(_ text: String) throws(ConfigError) -> ConfigValue {
        let table: TOMLTable
        do {
            table = try TOMLTable(string: text)
        } catch let error as TOMLParseError {
            throw ConfigError(
                keyPath: "",
                message: "TOML syntax error at line \(error.source.begin.line), column \(error.source.begin.column): "
                    + "\(error.description); fix the syntax (strings need quotes, e.g. subbuf_size = \"1MiB\")"
            )
        } catch {
            throw ConfigError(keyPath: "", message: "cannot parse the TOML document: \(error)")
        }
        return Self.convert(table)
    }

    private static func convert(_ table: TOMLTable) -> ConfigValue {
        var entries: [(key: String, value: ConfigValue)] = []
        entries.reserveCapacity(table.count)
        var rendered: String?
        for (key, value) in table {
            var converted = Self.convert(value)
            // Permission modes (`file_mode`, `socket_mode`): the reader returns 0o640 and 416 alike, but only the
            // octal literal means rw-r-----; `file_mode = 440` is decimal (0o670). Octal literals are passed on as
            // their octal text, so the decoder can tell them from decimal integers, which it rejects.
            if key.hasSuffix("_mode"), case .integer(let mode) = converted {
                // toml++ keeps each integer's base and writes octal literals back as 0o….
                let text = rendered ?? table.convert(to: .toml)
                rendered = text
                let prefix = key + " = 0o"
                if text.split(separator: "\n").contains(where: { $0.trimmingASCIIWhitespace().hasPrefix(prefix) }) {
                    converted = .string("0o" + String(mode, radix: 8))
                }
            }
            entries.append((key: key, value: converted))
        }
        return .table(entries)
    }

    private static func convert(_ value: any TOMLValueConvertible) -> ConfigValue {
        switch value.type {
        case .table:
            return value.table.map { Self.convert($0) } ?? .table([])
        case .array:
            guard let array = value.array else { return .array([]) }
            return .array(array.map { Self.convert($0) })
        case .string:
            return .string(value.string ?? "")
        case .int:
            return .integer(value.int ?? 0)
        case .double:
            return .float(value.double ?? 0)
        case .bool:
            return .bool(value.bool ?? false)
        case .date, .time, .dateTime:
            return .dateTime(value.debugDescription)
        }
    }
}
