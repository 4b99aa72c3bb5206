import Foundation

/// JSON encoding shared by relay-bench's `--json` outputs: one object, sorted keys, unescaped slashes.
enum BenchJSON {
    /// Encodes `value` as a JSON object.
    ///
    /// - Parameters:
    ///   - value: The report to encode.
    ///   - pretty: Multi-line output (still one object) when `true`.
    /// - Returns: The JSON text without a trailing newline.
    static func encode(_ value: some Encodable, pretty: Bool = true) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = pretty ? [.sortedKeys, .prettyPrinted, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do {
            let data = try encoder.encode(value)
            return String(decoding: data, as: UTF8.self)
        } catch {
            // Only non-conforming floats can fail, and they are converted above.
            preconditionFailure("relay-bench report is not encodable: \(error)")
        }
    }
}
