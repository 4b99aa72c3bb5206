/// A parsed configuration document, independent of the file syntax.
///
/// The TOML reader (``ConfigValue/parseTOML(_:)``) converts the document into this tree at once, so the
/// decoder and validator never touch the TOML library's reference types and the tree can cross threads.
/// Table entries keep the order the reader reports (TOML tables come back sorted by key; arrays keep
/// document order, which is what error paths such as `inputs[1]` rely on).
enum ConfigValue: Sendable, Equatable {
    /// A TOML string.
    case string(String)
    /// A TOML integer.
    case integer(Int)
    /// A TOML float.
    case float(Double)
    /// A TOML boolean.
    case bool(Bool)
    /// A TOML date, time or date-time, kept as its text; relayd has no key that takes one.
    case dateTime(String)
    /// A TOML array (or array of tables).
    case array([ConfigValue])
    /// A TOML table (standard or inline), entries in reader order.
    case table([(key: String, value: ConfigValue)])

    /// Structural equality (tables compare entries in order).
    static func == (lhs: ConfigValue, rhs: ConfigValue) -> Bool {
        switch (lhs, rhs) {
        case (.string(let a), .string(let b)): return a == b
        case (.integer(let a), .integer(let b)): return a == b
        case (.float(let a), .float(let b)): return a == b
        case (.bool(let a), .bool(let b)): return a == b
        case (.dateTime(let a), .dateTime(let b)): return a == b
        case (.array(let a), .array(let b)): return a == b
        case (.table(let a), .table(let b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    /// The TOML type name used in error messages ("string", "integer", ...).
    var typeName: String {
        switch self {
        case .string: return "string"
        case .integer: return "integer"
        case .float: return "float"
        case .bool: return "boolean"
        case .dateTime: return "date-time"
        case .array: return "array"
        case .table: return "table"
        }
    }

    /// A short rendering of the value for error messages, e.g. `"64K"` or `64` or `[...]`.
    var shortDescription: String {
        switch self {
        case .string(let s): return "\"\(s)\""
        case .integer(let i): return String(i)
        case .float(let d): return String(d)
        case .bool(let b): return String(b)
        case .dateTime(let s): return s
        case .array: return "an array"
        case .table: return "a table"
        }
    }
}
