//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Logging

/// The text of one JSON Lines record, borrowed from the event for the duration of a log call.
///
/// The fast path renders the same bytes as ``LogRecordEncoder`` with ``RecordFormat/jsonLines``
/// (differential tests check this), for records that need no truncation and whose metadata holds
/// no `stringConvertible` values.
internal struct JSONRecordText {
    /// `","level":"info","label":"…","message":"`: everything between the timestamp and the message,
    /// rendered once per handler (see ``RecordHeader``).
    var header: UnsafeRawBufferPointer
    /// The message.
    var message: TextPiece
    /// The source (the module part of `file` when the call site gave none).
    var source: TextPiece
    /// The file.
    var file: TextPiece
    /// The function.
    var function: TextPiece
    /// The error's description and type name, when there is an error.
    var error: (message: TextPiece, type: TextPiece)?
    /// The 27-byte RFC 3339 timestamp.
    var timestamp: UnsafeRawBufferPointer
    /// The line.
    var line: UInt
}

/// How the three metadata layers of one record are merged (decided once per record, before the
/// sizing pass, so both passes agree).
internal struct MetadataMergePlan {
    /// Whether some handler key is overridden by the provider or the call (then handler entries are
    /// copied one by one, leaving those out).
    var handlerOverridden: Bool
    /// Whether some provider key is overridden by the call.
    var providerOverridden: Bool
    /// Whether keys are sorted (see ``LogRecordEncoder/sortsMetadataKeys``).
    var sortKeys: Bool
}

/// One piece of a record's rendered metadata: up to 7 bytes of JSON syntax, then a text.
internal struct MetadataPiece {
    /// The syntax (see ``RecordEmitter/syntax(_:)``).
    var syntax: UInt64
    /// The text after it (a key, a string value, or the handler's pre-rendered members).
    var text: TextPiece
}

/// Up to 7 bytes of JSON syntax, packed: the bytes in the low 56 bits (first byte lowest), the count
/// in the top byte.
internal struct Syntax {
    let rawValue: UInt64

    static let quote = Syntax(rawValue: 1 << 56 | 0x22)  // "
    static let commaQuote = Syntax(rawValue: 2 << 56 | 0x22_2C)  // ,"
    static let quoteColonQuote = Syntax(rawValue: 3 << 56 | 0x22_3A_22)  // ":"
    static let quoteColon = Syntax(rawValue: 2 << 56 | 0x3A_22)  // ":
    static let comma = Syntax(rawValue: 1 << 56 | 0x2C)  // ,
    static let openBracket = Syntax(rawValue: 1 << 56 | 0x5B)  // [
    static let closeBracket = Syntax(rawValue: 1 << 56 | 0x5D)  // ]
    static let openBrace = Syntax(rawValue: 1 << 56 | 0x7B)  // {
    static let closeBrace = Syntax(rawValue: 1 << 56 | 0x7D)  // }
}

/// Builds the ``MetadataPiece``s of a record's metadata: the handler's pre-rendered members, then the
/// provider's and the call's entries in output order, with their JSON syntax, every string located and
/// measured once. Both passes then only read this table, so they touch no dictionary, no `String` and
/// no reference count.
internal struct JSONMetadataCollector {
    let table: UnsafeMutablePointer<MetadataPiece>
    let capacity: Int
    /// 16 bytes per piece, for the bytes of small strings.
    let scratch: UnsafeMutableRawPointer
    var count = 0
    /// Syntax not yet attached to a text.
    var pending: UInt64 = 0
    var pendingCount = 0
    /// Whether the next member of the metadata object is its first.
    var first = true
    /// Set when a value is `stringConvertible` (as opposed to the table being too small).
    var unsupported = false

    init(table: UnsafeMutablePointer<MetadataPiece>, capacity: Int, scratch: UnsafeMutableRawPointer) {
        self.table = table
        self.capacity = capacity
        self.scratch = scratch
    }

    /// The pieces collected, to measure them in place.
    var mutablePieces: UnsafeMutableBufferPointer<MetadataPiece> {
        UnsafeMutableBufferPointer(start: self.table, count: self.count)
    }

    /// Appends syntax (see ``Syntax``) to the pending syntax.
    @inline(__always)
    mutating func syntax(_ syntax: Syntax) -> Bool {
        let count = Int(syntax.rawValue &>> 56)
        if self.pendingCount &+ count > 7 {
            guard self.flush(TextPiece(raw: UnsafeRawBufferPointer(start: nil, count: 0))) else { return false }
        }
        self.pending |= (syntax.rawValue & 0x00FF_FFFF_FFFF_FFFF) &<< UInt64(self.pendingCount &* 8)
        self.pendingCount &+= count
        return true
    }

    /// Closes the pending syntax with `text`.
    @inline(__always)
    mutating func flush(_ text: TextPiece) -> Bool {
        guard self.count < self.capacity else { return false }
        (self.table + self.count).initialize(
            to: MetadataPiece(syntax: self.pending | (UInt64(self.pendingCount) &<< 56), text: text))
        self.count &+= 1
        self.pending = 0
        self.pendingCount = 0
        return true
    }

    /// A string as a JSON string body.
    @inline(__always)
    mutating func text(_ string: String) -> Bool {
        guard self.count < self.capacity,
            let bytes = borrowUTF8(string, smallStringSlot: self.scratch + self.count &* 16)
        else { return false }
        return self.flush(TextPiece(unmeasuredJSONText: bytes))
    }

    /// The handler's pre-rendered members (each starts with `,`, which the first member leaves out).
    @inline(__always)
    mutating func rendered(_ members: UnsafeRawBufferPointer) -> Bool {
        guard !members.isEmpty else { return true }
        let skip = self.first ? 1 : 0
        self.first = false
        return self.flush(TextPiece(raw: UnsafeRawBufferPointer(rebasing: members[skip...])))
    }

    /// One `"key":value` member of the metadata object.
    @inline(__always)
    mutating func member(key: String, value: Logger.MetadataValue, sortKeys: Bool) -> Bool {
        guard self.syntax(self.first ? .quote : .commaQuote), self.text(key) else { return false }
        self.first = false
        if case .string(let string) = value {
            return self.syntax(.quoteColonQuote) && self.text(string) && self.syntax(.quote)
        }
        return self.syntax(.quoteColon) && self.nested(value, sortKeys: sortKeys)
    }

    /// A value inside an array or dictionary, or one that is not a string. `false` for a
    /// `stringConvertible` value (the general encoder renders those) or when the table is full.
    @inline(never)
    mutating func nested(_ value: Logger.MetadataValue, sortKeys: Bool) -> Bool {
        switch value {
        case .string(let string):
            return self.syntax(.quote) && self.text(string) && self.syntax(.quote)
        case .stringConvertible:
            self.unsupported = true
            return false
        case .array(let array):
            guard self.syntax(.openBracket) else { return false }
            var i = array.startIndex
            while i < array.endIndex {
                if i != array.startIndex, !self.syntax(.comma) { return false }
                guard self.nested(array[i], sortKeys: sortKeys) else { return false }
                i += 1
            }
            return self.syntax(.closeBracket)
        case .dictionary(let dictionary):
            guard self.syntax(.openBrace) else { return false }
            var firstMember = true
            let complete = forEachMetadataEntry(dictionary, sorted: sortKeys) { key, element in
                guard self.syntax(firstMember ? .quote : .commaQuote), self.text(key), self.syntax(.quoteColon) else {
                    return false
                }
                firstMember = false
                return self.nested(element, sortKeys: sortKeys)
            }
            return complete && self.syntax(.closeBrace)
        }
    }

    /// Attaches the remaining syntax.
    @inline(__always)
    mutating func finish() -> Bool {
        self.pendingCount == 0 || self.flush(TextPiece(raw: UnsafeRawBufferPointer(start: nil, count: 0)))
    }
}

extension JSONMetadataCollector {
    /// Collects the three layers of a record in swift-log's merge order: the handler's members
    /// (without the keys a later layer overrides), the provider's (without the keys the call
    /// overrides), then the call's.
    ///
    /// - Returns: `false` when a value is `stringConvertible` or the table is too small; the caller
    ///   then uses the general encoder.
    @inline(__always)
    mutating func collect(
        handler: borrowing PreEncodedMetadata,
        provider: Logger.Metadata?,
        call: Logger.Metadata?,
        plan: MetadataMergePlan
    ) -> Bool {
        if !handler.isEmpty {
            if !plan.handlerOverridden {
                let complete = handler.withBytes { self.rendered($0) }
                guard complete else { return false }
            } else {
                for i in 0..<handler.count
                where !MetadataMerge.isHandlerKeyOverridden(handler.sortedEntries[i].key, provider: provider, call: call) {
                    let complete = handler.withEntryBytes(i) { self.rendered($0) }
                    guard complete else { return false }
                }
            }
        }
        if let provider, !provider.isEmpty {
            let skipOverridden = plan.providerOverridden
            let complete = forEachMetadataEntry(provider, sorted: plan.sortKeys) { key, value in
                if skipOverridden, call?[key] != nil { return true }
                return self.member(key: key, value: value, sortKeys: plan.sortKeys)
            }
            guard complete else { return false }
        }
        if let call, !call.isEmpty {
            let complete = forEachMetadataEntry(call, sorted: plan.sortKeys) { key, value in
                self.member(key: key, value: value, sortKeys: plan.sortKeys)
            }
            guard complete else { return false }
        }
        return self.finish()
    }
}

/// Renders a JSON Lines record into `emitter`, with its metadata collected in `metadata` (empty for
/// none).
@inline(__always)
internal func emitJSONRecord<Emitter: RecordEmitter>(
    into emitter: inout Emitter,
    _ text: JSONRecordText,
    metadata: UnsafeBufferPointer<MetadataPiece>
) {
    emitter.literal("{\"timestamp\":\"")
    emitter.bytes(text.timestamp)
    emitter.bytes(text.header)
    emitter.piece(text.message)
    if !metadata.isEmpty {
        emitter.literal("\",\"metadata\":{")
        var i = 0
        while i < metadata.count {
            emitter.syntax(metadata[i].syntax)
            emitter.piece(metadata[i].text)
            i &+= 1
        }
        emitter.literal("},\"source\":\"")
    } else {
        emitter.literal("\",\"source\":\"")
    }
    emitter.piece(text.source)
    emitter.literal("\",\"file\":\"")
    emitter.piece(text.file)
    emitter.literal("\",\"function\":\"")
    emitter.piece(text.function)
    emitter.literal("\",\"line\":")
    emitter.decimal(UInt64(text.line))
    if let error = text.error {
        emitter.literal(",\"error\":{\"message\":\"")
        emitter.piece(error.message)
        emitter.literal("\",\"type\":\"")
        emitter.piece(error.type)
        emitter.literal("\"}")
    }
    emitter.literal("}\n")
}

/// Calls `body` for each entry, in key order or in iteration order; stops when it returns `false`.
@inline(__always)
internal func forEachMetadataEntry(
    _ metadata: Logger.Metadata,
    sorted: Bool,
    _ body: (String, Logger.MetadataValue) -> Bool
) -> Bool {
    if !sorted {
        for (key, value) in metadata {
            if !body(key, value) { return false }
        }
        return true
    }
    return withSortedIndices(of: metadata) { indices in
        for index in indices {
            let (key, value) = metadata[index]
            if !body(key, value) { return false }
        }
        return true
    }
}

/// The module part of a `#fileID` (`Module/File.swift`), which is what swift-log reports as the
/// source when a call site gives none; `n/a` when there is no `/`.
@inline(__always)
internal func moduleName(ofFileID file: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
    var i = 0
    while i < file.count {
        if file[i] == UInt8(ascii: "/") {
            return UnsafeRawBufferPointer(rebasing: file[0..<i])
        }
        i &+= 1
    }
    let unknown: StaticString = "n/a"
    return UnsafeRawBufferPointer(start: unknown.utf8Start, count: unknown.utf8CodeUnitCount)
}

/// Tells whether a `LogEvent` carries an explicit source without asking `LogEvent.source`.
///
/// `LogEvent.source` derives the module name from `file` on every access when the call site passed
/// no source, and builds a `String` for it, which allocates for module names longer than 15 bytes.
/// swift-log keeps the explicit source in an internal stored property (`_source: String?`), so the
/// probe finds that property's offset once, by comparing the bytes of two events that differ only in
/// it, and later checks whether an event's bytes there are those of `nil`.
///
/// The offset is validated: it must hold the bit pattern of a known heap string in one event and
/// that of `nil` in the other, and no other offset may. If swift-log's layout ever defeats this,
/// ``isAvailable`` is `false` and callers use `LogEvent.source` (correct, possibly allocating).
internal struct LogEventSourceProbe: Sendable {
    /// The byte offset of `_source` in `LogEvent`, or -1 when it could not be validated.
    let offset: Int
    /// The bits of `String?.none`.
    let noneLow: UInt64
    let noneHigh: UInt64

    init() {
        let marker = String(repeating: "relay-source-probe ", count: 3)  // a heap string: unique bits
        let withSource = LogEvent(
            level: .info, message: "m", metadata: nil, source: marker, file: "probe/file", function: "f", line: 1)
        let withoutSource = LogEvent(
            level: .info, message: "m", metadata: nil, source: nil, file: "probe/file", function: "f", line: 1)
        let none: String? = nil
        let (noneLow, noneHigh) = withUnsafeBytes(of: none) {
            ($0.loadUnaligned(fromByteOffset: 0, as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        }
        let some: String? = marker
        let (someLow, someHigh) = withUnsafeBytes(of: some) {
            ($0.loadUnaligned(fromByteOffset: 0, as: UInt64.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        }
        var matches: [Int] = []
        withUnsafeBytes(of: withSource) { a in
            withUnsafeBytes(of: withoutSource) { b in
                var offset = 0
                while offset + 16 <= a.count {
                    let aLow = a.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                    let aHigh = a.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)
                    let bLow = b.loadUnaligned(fromByteOffset: offset, as: UInt64.self)
                    let bHigh = b.loadUnaligned(fromByteOffset: offset + 8, as: UInt64.self)
                    if aLow == someLow, aHigh == someHigh, bLow == noneLow, bHigh == noneHigh {
                        matches.append(offset)
                    }
                    offset += MemoryLayout<String?>.alignment
                }
            }
        }
        withExtendedLifetime(marker) {}
        self.offset = matches.count == 1 ? matches[0] : -1
        self.noneLow = noneLow
        self.noneHigh = noneHigh
    }

    /// Whether the probe found `_source`.
    var isAvailable: Bool { self.offset >= 0 }

    /// Whether `event` was created without an explicit source (only valid when ``isAvailable``).
    @inline(__always)
    func hasNoExplicitSource(_ event: borrowing LogEvent) -> Bool {
        withUnsafeBytes(of: event) { raw in
            raw.loadUnaligned(fromByteOffset: self.offset, as: UInt64.self) == self.noneLow
                && raw.loadUnaligned(fromByteOffset: self.offset + 8, as: UInt64.self) == self.noneHigh
        }
    }
}

extension JSONRecordText {
    /// Measures every text (see ``TextPiece/measure()``).
    mutating func measure() {
        self.message.measure()
        self.source.measure()
        self.file.measure()
        self.function.measure()
        if var error = self.error {
            error.message.measure()
            error.type.measure()
            self.error = error
        }
    }
}
