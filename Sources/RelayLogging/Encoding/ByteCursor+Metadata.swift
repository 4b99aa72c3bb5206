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
            self.appendPath(path, style: .logfmtKey, remaining: &remaining)
            self.append(UInt8(ascii: "="))
            writeValue(&self, .logfmt)
        case .structuredData(let escapeControls):
            var remaining = 32
            self.appendPath(path, style: .structuredDataName, remaining: &remaining)
            self.append("=\"")
            writeValue(&self, .structuredData(escapeControls: escapeControls))
            self.append(UInt8(ascii: "\""))
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
