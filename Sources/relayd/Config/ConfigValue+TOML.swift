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
        for (key, value) in table {
            entries.append((key: key, value: Self.convert(value)))
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
