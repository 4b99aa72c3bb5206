//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

/// How a string value is escaped when it is written into a record.
///
/// Inputs are always valid UTF-8 (the UTF-8 view of a Swift `String` is; strings built with
/// `String(decoding:as:)` from invalid bytes already carry U+FFFD in place of the bad bytes). The
/// escapers copy whole Unicode scalars and cut only between scalars, so their output is valid UTF-8
/// too.
package enum EscapeStyle: Equatable, Sendable {
    /// The body of a JSON string (RFC 8259), also used inside quoted logfmt values.
    ///
    /// `"` and `\` get a backslash; `\b \t \n \f \r` use their short escapes; every other C0 control,
    /// DEL (U+007F), NEL (U+0085), LINE SEPARATOR (U+2028) and PARAGRAPH SEPARATOR (U+2029) become
    /// `\u00XX` / `\u2028` / `\u2029`, so the record never contains anything a line splitter could
    /// take for a line break. Other non-ASCII text is copied as UTF-8.
    case json

    /// An RFC 5424 `PARAM-VALUE` (between the double quotes).
    ///
    /// `"`, `\` and `]` get a backslash (RFC 5424 §6.3.3). With `escapeControls`, C0 controls and DEL
    /// become `#ooo` (three octal digits, the rsyslog convention) so that LF framing is never broken;
    /// without it (octet-counted framing) they are copied as they are.
    case structuredDataValue(escapeControls: Bool)

    /// The RFC 5424 `MSG` part. With `escapeControls`, C0 controls and DEL become `#ooo`; otherwise
    /// the text is copied as it is.
    case syslogMessage(escapeControls: Bool)
}

@inline(__always)
private func isContinuationByte(_ b: UInt8) -> Bool {
    b & 0xC0 == 0x80
}

/// The length of the UTF-8 sequence that starts with lead byte `b` (1 for a stray byte, which valid
/// input never has).
@inline(__always)
internal func utf8SequenceLength(lead b: UInt8) -> Int {
    if b < 0x80 { return 1 }
    if b >= 0xF0 { return 4 }
    if b >= 0xE0 { return 3 }
    if b >= 0xC0 { return 2 }
    return 1
}

/// If the scalar at `i` is NEL, LS or PS (the non-ASCII line breaks), returns its length in bytes.
@inline(__always)
private func unicodeLineBreakLength(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> Int {
    let b = bytes[i]
    if b == 0xC2, i + 1 < bytes.count, bytes[i + 1] == 0x85 { return 2 }
    if b == 0xE2, i + 2 < bytes.count, bytes[i + 1] == 0x80, bytes[i + 2] == 0xA8 || bytes[i + 2] == 0xA9 {
        return 3
    }
    return 0
}

/// The rules of one escaping style, as static functions so each style gets its own loop.
private protocol EscapePolicy {
    /// The bytes worth a closer look (found 16 at a time).
    associatedtype Candidates: ByteClass
    /// For a candidate byte: how many input bytes the unit at `i` has, and how long its escape is (0
    /// when it is copied as is after all).
    static func classify(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> (input: Int, escaped: Int)
}

private enum JSONEscaping: EscapePolicy {
    typealias Candidates = JSONSpecialBytes

    @inline(__always)
    static func classify(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> (input: Int, escaped: Int) {
        jsonEscapeClass(UnsafeRawPointer(bytes.baseAddress!), at: i, count: bytes.count)
    }
}

private enum StructuredDataEscaping: EscapePolicy {
    typealias Candidates = StructuredDataSpecialBytes

    static func classify(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> (input: Int, escaped: Int) {
        (1, 2)
    }
}

private enum StructuredDataEscapingControls: EscapePolicy {
    typealias Candidates = StructuredDataSpecialOrControlBytes

    static func classify(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> (input: Int, escaped: Int) {
        let b = bytes[i]
        return b == 0x22 || b == 0x5C || b == 0x5D ? (1, 2) : (1, 4)
    }
}

private enum SyslogMessageEscapingControls: EscapePolicy {
    typealias Candidates = ControlBytes

    static func classify(_ bytes: UnsafeBufferPointer<UInt8>, at i: Int) -> (input: Int, escaped: Int) {
        (1, 4)
    }
}

/// How a JSON string body holds the unit at `i`, a ``JSONSpecialBytes`` candidate: the number of input
/// bytes of the unit and the length of its escape, or 0 when it is copied as it is (a non-ASCII
/// scalar other than U+0085, U+2028 and U+2029).
@inline(__always)
internal func jsonEscapeClass(_ base: UnsafeRawPointer, at i: Int, count: Int) -> (input: Int, escaped: Int) {
    let b = base.load(fromByteOffset: i, as: UInt8.self)
    if b < 0x80 {
        switch b {
        case 0x08, 0x09, 0x0A, 0x0C, 0x0D, 0x22, 0x5C: return (1, 2)
        default: return (1, 6)  // other C0 controls and DEL
        }
    }
    let length = Swift.min(utf8SequenceLength(lead: b), count &- i)
    if b == 0xC2, length == 2, base.load(fromByteOffset: i &+ 1, as: UInt8.self) == 0x85 { return (2, 6) }
    if b == 0xE2, length == 3, base.load(fromByteOffset: i &+ 1, as: UInt8.self) == 0x80 {
        let last = base.load(fromByteOffset: i &+ 2, as: UInt8.self)
        if last == 0xA8 || last == 0xA9 { return (3, 6) }
    }
    return (length, 0)
}

/// Writes the JSON escape of the unit at `i` (classified by ``jsonEscapeClass(_:at:count:)`` with a
/// non-zero escape length `escaped`) at `out`.
@inline(__always)
internal func writeJSONEscape(_ base: UnsafeRawPointer, at i: Int, input: Int, escaped: Int, to out: UnsafeMutableRawPointer) {
    let b = base.load(fromByteOffset: i, as: UInt8.self)
    out.storeBytes(of: UInt8(ascii: "\\"), as: UInt8.self)
    if escaped == 2 {
        let second: UInt8
        switch b {
        case 0x08: second = UInt8(ascii: "b")
        case 0x09: second = UInt8(ascii: "t")
        case 0x0A: second = UInt8(ascii: "n")
        case 0x0C: second = UInt8(ascii: "f")
        case 0x0D: second = UInt8(ascii: "r")
        default: second = b  // '"' or '\'
        }
        out.storeBytes(of: second, toByteOffset: 1, as: UInt8.self)
        return
    }
    // \uXXXX for a C0 control, DEL, NEL, LS or PS.
    let scalar: UInt32
    switch input {
    case 1: scalar = UInt32(b)
    case 2: scalar = 0x85
    default: scalar = base.load(fromByteOffset: i &+ 2, as: UInt8.self) == 0xA8 ? 0x2028 : 0x2029
    }
    @inline(__always) func hex(_ v: UInt32) -> UInt8 {
        let d = UInt8(truncatingIfNeeded: v & 0xF)
        return d < 10 ? d &+ 0x30 : d &+ 0x57
    }
    out.storeBytes(of: UInt8(ascii: "u"), toByteOffset: 1, as: UInt8.self)
    out.storeBytes(of: hex(scalar >> 12), toByteOffset: 2, as: UInt8.self)
    out.storeBytes(of: hex(scalar >> 8), toByteOffset: 3, as: UInt8.self)
    out.storeBytes(of: hex(scalar >> 4), toByteOffset: 4, as: UInt8.self)
    out.storeBytes(of: hex(scalar), toByteOffset: 5, as: UInt8.self)
}

extension ByteCursor {
    /// Appends `bytes` escaped in `style`, optionally stopping at a byte budget.
    ///
    /// With a `limit`, the output stops before the first Unicode scalar whose (escaped) form would
    /// make it longer than `limit` bytes, so the output is always whole scalars and whole escapes.
    ///
    /// - Parameters:
    ///   - bytes: Valid UTF-8 input.
    ///   - style: How to escape.
    ///   - limit: The most output bytes to append (`Int.max` for no limit).
    /// - Returns: How many input bytes were consumed (`bytes.count` when nothing was cut) and how many
    ///   output bytes were appended.
    @discardableResult
    package mutating func appendEscaped(
        _ bytes: UnsafeBufferPointer<UInt8>,
        style: EscapeStyle,
        limit: Int = Int.max
    ) -> (consumed: Int, written: Int) {
        // One specialised loop per style, so the per-byte test is a few compares.
        switch style {
        case .json:
            return self.appendEscaped(bytes, JSONEscaping.self, style: style, limit: limit)
        case .structuredDataValue(escapeControls: true):
            return self.appendEscaped(bytes, StructuredDataEscapingControls.self, style: style, limit: limit)
        case .structuredDataValue(escapeControls: false):
            return self.appendEscaped(bytes, StructuredDataEscaping.self, style: style, limit: limit)
        case .syslogMessage(escapeControls: true):
            return self.appendEscaped(bytes, SyslogMessageEscapingControls.self, style: style, limit: limit)
        case .syslogMessage(escapeControls: false):
            return self.appendRun(bytes, from: 0, to: bytes.count, limit: limit)
        }
    }

    private mutating func appendEscaped<Policy: EscapePolicy>(
        _ bytes: UnsafeBufferPointer<UInt8>,
        _ policy: Policy.Type,
        style: EscapeStyle,
        limit: Int
    ) -> (consumed: Int, written: Int) {
        guard let base = bytes.baseAddress else { return (0, 0) }
        let n = bytes.count
        var i = 0
        var runStart = 0
        var written = 0
        while true {
            i = Policy.Candidates.firstCandidate(in: UnsafeRawPointer(base), from: i, count: n)
            if i == n { break }
            let (inputLength, escapedLength) = Policy.classify(bytes, at: i)
            if escapedLength == 0 {
                i += inputLength
                continue
            }
            let run = self.appendRun(bytes, from: runStart, to: i, limit: limit - written)
            written += run.written
            guard run.consumed == i else { return (run.consumed, written) }
            guard written <= limit - escapedLength else { return (i, written) }
            self.appendEscape(of: bytes, at: i, inputLength: inputLength, escapedLength: escapedLength, style: style)
            written += escapedLength
            i += inputLength
            runStart = i
        }
        let run = self.appendRun(bytes, from: runStart, to: n, limit: limit - written)
        return (run.consumed, written + run.written)
    }

    /// Copies the unescaped run `bytes[start..<end]`, or the longest prefix of whole scalars of it that
    /// fits in `limit` bytes. Returns where the copy stopped (`end` when it copied all) and how many bytes
    /// it wrote.
    private mutating func appendRun(
        _ bytes: UnsafeBufferPointer<UInt8>,
        from start: Int,
        to end: Int,
        limit: Int
    ) -> (consumed: Int, written: Int) {
        var cut = end
        if end - start > limit {
            cut = start + Swift.max(0, limit)
            while cut > start, isContinuationByte(bytes[cut]) {
                cut -= 1
            }
        }
        if cut > start {
            self.append(contentsOf: UnsafeRawBufferPointer(start: bytes.baseAddress! + start, count: cut - start))
        }
        return (cut, cut - start)
    }

    private mutating func appendEscape(
        of bytes: UnsafeBufferPointer<UInt8>,
        at i: Int,
        inputLength: Int,
        escapedLength: Int,
        style: EscapeStyle
    ) {
        let b = bytes[i]
        guard let p = self.claim(escapedLength) else { return }
        @inline(__always) func put(_ byte: UInt8, _ offset: Int) {
            p.storeBytes(of: byte, toByteOffset: offset, as: UInt8.self)
        }
        switch style {
        case .json:
            writeJSONEscape(
                UnsafeRawPointer(bytes.baseAddress!), at: i, input: inputLength, escaped: escapedLength, to: p)
        case .structuredDataValue, .syslogMessage:
            if escapedLength == 2 {
                put(UInt8(ascii: "\\"), 0)
                put(b, 1)
            } else {
                put(UInt8(ascii: "#"), 0)
                put(UInt8(ascii: "0") &+ (b >> 6), 1)
                put(UInt8(ascii: "0") &+ ((b >> 3) & 7), 2)
                put(UInt8(ascii: "0") &+ (b & 7), 3)
            }
        }
    }

    /// Appends a string escaped in `style` (see ``appendEscaped(_:style:limit:)``).
    ///
    /// - Parameters:
    ///   - string: The text to append.
    ///   - style: How to escape.
    ///   - limit: The most output bytes to append.
    /// - Returns: How many UTF-8 bytes of `string` were consumed and how many bytes were appended.
    @discardableResult
    package mutating func appendEscaped(
        _ string: String,
        style: EscapeStyle,
        limit: Int = Int.max
    ) -> (consumed: Int, written: Int) {
        withUTF8Bytes(of: string) { self.appendEscaped($0, style: style, limit: limit) }
    }
}

// MARK: - Names and unquoted values

/// How a key is turned into a name a format accepts.
package enum NameStyle: Equatable, Sendable {
    /// A logfmt key: any UTF-8 text without space, control characters, `=`, `"`, DEL or a Unicode line
    /// break; each offending scalar becomes `_`.
    case logfmtKey
    /// An RFC 5424 `SD-NAME` (`PARAM-NAME`, `SD-ID`): printable US-ASCII except `=`, space, `]` and
    /// `"`; each other scalar becomes `_`.
    case structuredDataName
}

extension ByteCursor {
    /// Appends `bytes` sanitised as a name in `style`, writing at most `remaining` bytes and
    /// decreasing `remaining` by what it wrote.
    ///
    /// - Parameters:
    ///   - bytes: Valid UTF-8 input.
    ///   - style: Which characters are allowed.
    ///   - remaining: The name's remaining byte budget (RFC 5424 names have at most 32).
    package mutating func appendSanitizedName(
        _ bytes: UnsafeBufferPointer<UInt8>,
        style: NameStyle,
        remaining: inout Int
    ) {
        var i = 0
        while i < bytes.count, remaining > 0 {
            let b = bytes[i]
            let length = utf8SequenceLength(lead: b)
            switch style {
            case .logfmtKey:
                if b < 0x80 {
                    let bad = b <= 0x20 || b == UInt8(ascii: "=") || b == UInt8(ascii: "\"") || b == 0x7F
                    self.append(bad ? UInt8(ascii: "_") : b)
                    remaining -= 1
                    i += 1
                    continue
                }
                let breakLength = unicodeLineBreakLength(bytes, at: i)
                if breakLength > 0 {
                    self.append(UInt8(ascii: "_"))
                    remaining -= 1
                    i += breakLength
                    continue
                }
                let end = Swift.min(i + length, bytes.count)
                guard end - i <= remaining else { return }
                self.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[i..<end]))
                remaining -= end - i
                i = end
            case .structuredDataName:
                let ok =
                    b > 0x20 && b < 0x7F && b != UInt8(ascii: "=") && b != UInt8(ascii: "]")
                    && b != UInt8(ascii: "\"")
                self.append(ok ? b : UInt8(ascii: "_"))
                remaining -= 1
                i += length
            }
        }
    }

    /// Appends a sanitised name (see ``appendSanitizedName(_:style:remaining:)``).
    package mutating func appendSanitizedName(_ string: String, style: NameStyle, remaining: inout Int) {
        withUTF8Bytes(of: string) { self.appendSanitizedName($0, style: style, remaining: &remaining) }
    }
}

/// Whether a logfmt value must be written in double quotes: it is empty, or contains a space, a
/// control character, `=`, `"`, `\`, DEL or a Unicode line break.
///
/// - Parameter bytes: Valid UTF-8 input.
/// - Returns: `true` when the value needs quotes.
package func logfmtValueNeedsQuotes(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
    guard let base = bytes.baseAddress, !bytes.isEmpty else { return true }
    let raw = UnsafeRawPointer(base)
    var i = 0
    while true {
        i = LogfmtSpecialBytes.firstCandidate(in: raw, from: i, count: bytes.count)
        if i == bytes.count { return false }
        let b = bytes[i]
        if b < 0x80 { return true }
        if (b == 0xC2 || b == 0xE2), unicodeLineBreakLength(bytes, at: i) > 0 { return true }
        i += utf8SequenceLength(lead: b)
    }
}
