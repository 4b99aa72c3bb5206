//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

package import Logging

/// How metadata entries are rendered.
package enum MetadataStyle: Equatable, Sendable {
    /// Members of a JSON object: `"key":value`, separated by `,`; nested values stay nested.
    case json
    /// logfmt pairs ` key=value`, nested values flattened with dotted keys.
    case logfmt
    /// RFC 5424 `SD-PARAM`s ` name="value"`, nested values flattened with dotted names (cut to 32
    /// bytes); with `escapeControls`, control characters in values become `#ooo`.
    case structuredData(escapeControls: Bool)
}

/// The names of the fields the logfmt and RFC 5424 encoders write for every record, which a
/// flattened metadata name must never equal.
///
/// The rule: a flattened metadata name that is a fixed field's name preceded by zero or more `_`
/// gets one more `_` in front (logfmt `msg` becomes `_msg`, `_msg` becomes `__msg`; metadata
/// `error: [type: …]` becomes `_error.type`). RFC 5424 names stay within 32 bytes: a 32-byte name
/// that qualifies loses its last byte. Every other name is written unchanged (the common case costs
/// one look at the key's first byte), so a reader can always tell a fixed field from metadata, and
/// stripping one `_` from a name of this shape gives the metadata key back.
///
/// - logfmt: `ts`, `level`, `label`, `msg`, `source`, `file`, `function`, `line`, `error`,
///   `error.type`.
/// - RFC 5424 `SD-PARAM`s: `source`, `file`, `function`, `line`, `error`, `error.type` (the header
///   fields are not `PARAM-NAME`s).
///
/// JSON Lines needs no rule: metadata is nested under `"metadata"`.
package enum FixedFieldNames {
    /// The logfmt fixed keys.
    package static let logfmt: [StaticString] = [
        "ts", "level", "label", "msg", "source", "file", "function", "line", "error", "error.type",
    ]
    /// The RFC 5424 fixed `PARAM-NAME`s.
    package static let structuredData: [StaticString] = [
        "source", "file", "function", "line", "error", "error.type",
    ]
    /// The length of the longest fixed name (`error.type`).
    internal static let longestName = 10

    /// Whether a flattened name starting with `byte` could be a fixed name behind underscores: ASCII
    /// letters and digits other than the fixed names' first letters cannot; anything else (which may be
    /// sanitised to `_`) may.
    internal static func mayStartFixedFieldName(_ byte: UInt8) -> Bool {
        if byte == UInt8(ascii: "t") || byte == UInt8(ascii: "l") || byte == UInt8(ascii: "m")
            || byte == UInt8(ascii: "s") || byte == UInt8(ascii: "f") || byte == UInt8(ascii: "e")
        {
            return true
        }
        let lower = byte | 0x20
        let isLetter = lower >= UInt8(ascii: "a") && lower <= UInt8(ascii: "z")
        let isDigit = byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9")
        return !isLetter && !isDigit
    }

    /// Whether `name` (a rendered name) is `_`* followed by a fixed name of `style`'s format.
    package static func isFixedFieldName(_ name: UnsafeRawBufferPointer, style: NameStyle) -> Bool {
        var start = 0
        while start < name.count, name[start] == UInt8(ascii: "_") { start += 1 }
        let rest = name.count - start
        guard rest > 0, rest <= longestName else { return false }
        let names = style == .logfmtKey ? logfmt : structuredData
        var i = 0
        while i < names.count {
            let candidate = names[i]
            if candidate.utf8CodeUnitCount == rest {
                var j = 0
                while j < rest, candidate.utf8Start[j] == name[start + j] { j += 1 }
                if j == rest { return true }
            }
            i += 1
        }
        return false
    }
}

/// Checks a name fed byte by byte: `_`* followed by a fixed field's name (see
/// ``FixedFieldNames``). Keeps at most ``FixedFieldNames/longestName`` bytes after the
/// underscores, on the stack.
internal struct FixedNameMatcher {
    private var rest: (UInt64, UInt64) = (0, 0)
    private var count = 0
    private var pastUnderscores = false
    /// Whether the name can no longer be a fixed one.
    private(set) var failed = false

    mutating func feed(_ byte: UInt8) {
        guard !self.failed else { return }
        if !self.pastUnderscores {
            if byte == UInt8(ascii: "_") { return }
            self.pastUnderscores = true
        }
        guard self.count < FixedFieldNames.longestName else {
            self.failed = true
            return
        }
        let index = self.count
        withUnsafeMutableBytes(of: &self.rest) { $0[index] = byte }
        self.count += 1
    }

    mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        var i = 0
        while i < bytes.count, !self.failed {
            self.feed(bytes[i])
            i += 1
        }
    }

    func matches(style: NameStyle) -> Bool {
        guard !self.failed else { return false }
        var rest = self.rest
        let count = self.count
        return withUnsafeBytes(of: &rest) {
            FixedFieldNames.isFixedFieldName(UnsafeRawBufferPointer(rebasing: $0[0..<count]), style: style)
        }
    }
}

/// One step of the path to a nested metadata value, kept on the stack while flattening.
internal struct MetadataKeyPathNode {
    var parent: UnsafePointer<MetadataKeyPathNode>?
    var key: String?
    var index: Int
}

/// Byte-wise UTF-8 ordering of two strings (deterministic and allocation-free; equal to `<` for ASCII
/// keys).
internal func utf8Precedes(_ a: String, _ b: String) -> Bool {
    withUTF8Bytes(of: a) { pa in
        withUTF8Bytes(of: b) { pb in
            let n = Swift.min(pa.count, pb.count)
            var i = 0
            while i < n {
                if pa[i] != pb[i] { return pa[i] < pb[i] }
                i += 1
            }
            return pa.count < pb.count
        }
    }
}

/// Calls `body` with the indices of `dictionary` ordered by key (byte-wise UTF-8), or in the
/// dictionary's own iteration order when `sorted` is `false`.
///
/// The indices live in a temporary allocation, which is on the stack for small dictionaries; up to
/// 64 keys are sorted by insertion sort, more by the standard library's sort.
internal func withSortedIndices<R>(
    of dictionary: Logger.Metadata,
    sorted sorting: Bool = true,
    _ body: (UnsafeMutableBufferPointer<Logger.Metadata.Index>) -> R
) -> R {
    withUnsafeTemporaryAllocation(of: Logger.Metadata.Index.self, capacity: dictionary.count) { buffer in
        var n = 0
        var index = dictionary.startIndex
        while index != dictionary.endIndex, n < buffer.count {
            buffer.initializeElement(at: n, to: index)
            n += 1
            dictionary.formIndex(after: &index)
        }
        var sorted = UnsafeMutableBufferPointer(rebasing: buffer[0..<n])
        defer { _ = sorted.deinitialize() }
        if !sorting {
            return body(sorted)
        }
        if n <= 64 {
            var i = 1
            while i < n {
                let current = sorted[i]
                let key = dictionary[current].key
                var j = i
                while j > 0, utf8Precedes(key, dictionary[sorted[j - 1]].key) {
                    sorted[j] = sorted[j - 1]
                    j -= 1
                }
                sorted[j] = current
                i += 1
            }
        } else {
            sorted.sort { utf8Precedes(dictionary[$0].key, dictionary[$1].key) }
        }
        return body(sorted)
    }
}

extension ByteCursor {
    /// Appends one top-level metadata entry with its leading separator (`,` for JSON unless it is the
    /// first member, a space otherwise).
    ///
    /// - Parameters:
    ///   - key: The metadata key.
    ///   - value: The metadata value; `stringConvertible` values are rendered with `description`.
    ///   - style: The rendering.
    ///   - first: For JSON, whether this is the first member of the object (no leading comma).
    ///   - sortKeys: Whether nested dictionaries are written with their keys in byte-wise order
    ///     (otherwise in their iteration order).
    package mutating func appendMetadataEntry(
        key: String,
        value: Logger.MetadataValue,
        style: MetadataStyle,
        first: Bool,
        sortKeys: Bool = true
    ) {
        switch style {
        case .json:
            if !first { self.append(UInt8(ascii: ",")) }
            self.append(UInt8(ascii: "\""))
            self.appendEscaped(key, style: .json)
            self.append("\":")
            self.appendJSONValue(value, sortKeys: sortKeys)
        case .logfmt, .structuredData:
            withUnsafePointer(to: MetadataKeyPathNode(parent: nil, key: key, index: 0)) { path in
                self.appendFlattened(value, path: path, style: style, sortKeys: sortKeys)
            }
        }
    }

    /// Appends a metadata value as JSON (dictionaries with keys in byte-wise order unless `sortKeys` is
    /// `false`).
    package mutating func appendJSONValue(_ value: Logger.MetadataValue, sortKeys: Bool = true) {
        switch value {
        case .string(let string):
            self.append(UInt8(ascii: "\""))
            self.appendEscaped(string, style: .json)
            self.append(UInt8(ascii: "\""))
        case .stringConvertible(let convertible):
            self.append(UInt8(ascii: "\""))
            self.appendEscaped(convertible.description, style: .json)
            self.append(UInt8(ascii: "\""))
        case .array(let array):
            self.append(UInt8(ascii: "["))
            // Index loops, not `for in`: iterating an array allocates in unoptimised builds.
            var i = array.startIndex
            while i < array.endIndex {
                if i != array.startIndex { self.append(UInt8(ascii: ",")) }
                self.appendJSONValue(array[i], sortKeys: sortKeys)
                i += 1
            }
            self.append(UInt8(ascii: "]"))
        case .dictionary(let dictionary):
            self.append(UInt8(ascii: "{"))
            withSortedIndices(of: dictionary, sorted: sortKeys) { indices in
                var first = true
                for index in indices {
                    let (key, element) = dictionary[index]
                    if !first { self.append(UInt8(ascii: ",")) }
                    first = false
                    self.append(UInt8(ascii: "\""))
                    self.appendEscaped(key, style: .json)
                    self.append("\":")
                    self.appendJSONValue(element, sortKeys: sortKeys)
                }
            }
            self.append(UInt8(ascii: "}"))
        }
    }

    private mutating func appendFlattened(
        _ value: Logger.MetadataValue,
        path: UnsafePointer<MetadataKeyPathNode>,
        style: MetadataStyle,
        sortKeys: Bool
    ) {
        switch value {
        case .string(let string):
            self.appendLeaf(path: path, style: style) { cursor, valueStyle in
                cursor.appendValue(string, style: valueStyle)
            }
        case .stringConvertible(let convertible):
            let string = convertible.description
            self.appendLeaf(path: path, style: style) { cursor, valueStyle in
                cursor.appendValue(string, style: valueStyle)
            }
        case .array(let array):
            if array.isEmpty {
                self.appendLeaf(path: path, style: style) { cursor, valueStyle in
                    cursor.appendValue("[]", style: valueStyle)
                }
                return
            }
            // Index loops, not `for in`: iterating an array allocates in unoptimised builds.
            var i = array.startIndex
            while i < array.endIndex {
                withUnsafePointer(to: MetadataKeyPathNode(parent: path, key: nil, index: i - array.startIndex)) {
                    child in
                    self.appendFlattened(array[i], path: child, style: style, sortKeys: sortKeys)
                }
                i += 1
            }
        case .dictionary(let dictionary):
            if dictionary.isEmpty {
                self.appendLeaf(path: path, style: style) { cursor, valueStyle in
                    cursor.appendValue("{}", style: valueStyle)
                }
                return
            }
            withSortedIndices(of: dictionary, sorted: sortKeys) { indices in
                for index in indices {
                    let (key, element) = dictionary[index]
                    withUnsafePointer(to: MetadataKeyPathNode(parent: path, key: key, index: 0)) { child in
                        self.appendFlattened(element, path: child, style: style, sortKeys: sortKeys)
                    }
                }
            }
        }
    }

    /// How a flattened leaf value is written.
    fileprivate enum LeafValueStyle {
        case logfmt
        case structuredData(escapeControls: Bool)
    }

    private mutating func appendLeaf(
        path: UnsafePointer<MetadataKeyPathNode>,
        style: MetadataStyle,
        _ writeValue: (inout ByteCursor, LeafValueStyle) -> Void
    ) {
        self.append(UInt8(ascii: " "))
        switch style {
        case .json:
            preconditionFailure("JSON metadata is not flattened")
        case .logfmt:
            var remaining = Int.max
            if pathNamesFixedField(path, style: .logfmtKey) {
                self.append(UInt8(ascii: "_"))
            }
            self.appendPath(path, style: .logfmtKey, remaining: &remaining)
            self.append(UInt8(ascii: "="))
            writeValue(&self, .logfmt)
        case .structuredData(let escapeControls):
            var remaining = 32
            if pathNamesFixedField(path, style: .structuredDataName) {
                self.append(UInt8(ascii: "_"))
                remaining -= 1
            }
            self.appendPath(path, style: .structuredDataName, remaining: &remaining)
            self.append("=\"")
            writeValue(&self, .structuredData(escapeControls: escapeControls))
            self.append(UInt8(ascii: "\""))
        }
    }

    /// Whether the flattened name of `path` would be a fixed field's name, possibly behind leading
    /// underscores (see ``FixedFieldNames``), so that it must be written with one more `_`.
    ///
    /// Allocation-free: names whose first byte cannot start such a name are rejected without
    /// rendering; others are rendered a piece at a time into a small buffer on the stack and fed to a
    /// ``FixedNameMatcher``, which gives up at the first byte that rules a fixed name out.
    private func pathNamesFixedField(_ path: UnsafePointer<MetadataKeyPathNode>, style: NameStyle) -> Bool {
        var root = path
        while let parent = root.pointee.parent { root = parent }
        if let first = root.pointee.key?.utf8.first, !FixedFieldNames.mayStartFixedFieldName(first) {
            return false
        }
        // 64 bytes on the stack (a tuple: `withUnsafeTemporaryAllocation` allocates in debug builds).
        var scratch: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0, 0, 0, 0, 0)
        return withUnsafeMutableBytes(of: &scratch) { scratch in
            var matcher = FixedNameMatcher()
            var remaining = style == .structuredDataName ? 32 : Int.max
            Self.feedPath(path, style: style, remaining: &remaining, scratch: scratch, into: &matcher)
            return matcher.matches(style: style)
        }
    }

    /// Renders `node`'s path as ``appendPath(_:style:remaining:)`` does, into `matcher`, through
    /// `scratch` (at least 48 bytes) a piece at a time.
    private static func feedPath(
        _ node: UnsafePointer<MetadataKeyPathNode>,
        style: NameStyle,
        remaining: inout Int,
        scratch: UnsafeMutableRawBufferPointer,
        into matcher: inout FixedNameMatcher
    ) {
        if let parent = node.pointee.parent {
            Self.feedPath(parent, style: style, remaining: &remaining, scratch: scratch, into: &matcher)
            guard remaining > 0, !matcher.failed else { return }
            matcher.feed(UInt8(ascii: "."))
            remaining -= 1
        }
        guard remaining > 0, !matcher.failed else { return }
        guard let key = node.pointee.key else {
            var cursor = ByteCursor(scratch)
            var budget = remaining
            let index = UInt64(node.pointee.index)
            let digits = ByteCursor.decimalDigitCount(index)
            guard digits <= budget else {
                remaining = 0
                return
            }
            cursor.appendDecimal(index)
            budget -= digits
            matcher.feed(UnsafeRawBufferPointer(rebasing: scratch[0..<cursor.count]))
            remaining = budget
            return
        }
        if key.isEmpty {
            matcher.feed(UInt8(ascii: "_"))
            remaining -= 1
            return
        }
        withUTF8Bytes(of: key) { bytes in
            // Pieces of at most 48 input bytes, cut at scalar boundaries: sanitising never lengthens
            // a scalar, so each piece fits the scratch buffer.
            var start = 0
            while start < bytes.count, remaining > 0, !matcher.failed {
                var end = Swift.min(start + 48, bytes.count)
                while end < bytes.count, bytes[end] & 0xC0 == 0x80 { end -= 1 }
                var cursor = ByteCursor(scratch)
                cursor.appendSanitizedName(
                    UnsafeBufferPointer(rebasing: bytes[start..<end]), style: style, remaining: &remaining)
                matcher.feed(UnsafeRawBufferPointer(rebasing: scratch[0..<cursor.count]))
                start = end
            }
        }
    }

    private mutating func appendPath(
        _ node: UnsafePointer<MetadataKeyPathNode>,
        style: NameStyle,
        remaining: inout Int
    ) {
        if let parent = node.pointee.parent {
            self.appendPath(parent, style: style, remaining: &remaining)
            guard remaining > 0 else { return }
            self.append(UInt8(ascii: "."))
            remaining -= 1
        }
        guard remaining > 0 else { return }
        if let key = node.pointee.key {
            if key.isEmpty {
                self.append(UInt8(ascii: "_"))
                remaining -= 1
            } else {
                self.appendSanitizedName(key, style: style, remaining: &remaining)
            }
        } else {
            let index = UInt64(node.pointee.index)
            let digits = ByteCursor.decimalDigitCount(index)
            guard digits <= remaining else {
                remaining = 0
                return
            }
            self.appendDecimal(index)
            remaining -= digits
        }
    }

    fileprivate mutating func appendValue(_ string: String, style: LeafValueStyle) {
        switch style {
        case .logfmt:
            self.appendLogfmtValue(string)
        case .structuredData(let escapeControls):
            self.appendEscaped(string, style: .structuredDataValue(escapeControls: escapeControls))
        }
    }

    /// Appends a logfmt value, in double quotes with JSON escapes when it needs them (see
    /// ``logfmtValueNeedsQuotes(_:)``), verbatim otherwise.
    ///
    /// - Parameter string: The value.
    package mutating func appendLogfmtValue(_ string: String) {
        withUTF8Bytes(of: string) { self.appendLogfmtValue(bytes: $0) }
    }

    /// Appends a logfmt value given as UTF-8 bytes (see ``appendLogfmtValue(_:)``).
    package mutating func appendLogfmtValue(bytes: UnsafeBufferPointer<UInt8>) {
        if logfmtValueNeedsQuotes(bytes) {
            self.append(UInt8(ascii: "\""))
            self.appendEscaped(bytes, style: .json)
            self.append(UInt8(ascii: "\""))
        } else {
            self.append(contentsOf: bytes)
        }
    }
}
