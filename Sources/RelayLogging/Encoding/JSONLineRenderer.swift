//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Logging

/// Renders one JSON Lines record in a single pass into a small buffer on the caller's stack (the
/// fast path of ``RelayLogWriter``; the record is then written into the channel with one copy).
///
/// It renders the same bytes as ``LogRecordEncoder`` with ``RecordFormat/jsonLines`` (differential
/// tests check this) for records that fit the buffer and need no truncation.
///
/// ## Room
///
/// The last ``slack`` bytes of the buffer are a margin, so that short writes need no check:
/// - every text of variable length (a string, the handler's rendered metadata) first checks that its
///   worst case fits before ``limit`` (6 output bytes per input byte: a JSON escape is at most 6 bytes);
/// - texts are copied in 16-byte blocks, so a copy may store up to 15 bytes past its end (the next
///   write overwrites them);
/// - between two checks at most 48 bytes of fixed syntax, the timestamp or a line number are written
///   unchecked (``fits`` is the check where no text follows).
///
/// Every method that returns `Bool` returns `false` when the record may not fit; the caller then
/// renders it with the general encoder.
internal struct JSONLineRenderer {
    /// The margin after ``limit`` (see the type's documentation).
    static let slack = 64

    /// The first byte of the buffer.
    let start: UnsafeMutableRawPointer
    /// Where the next byte goes.
    var position: UnsafeMutableRawPointer
    /// The buffer's end minus ``slack``.
    let limit: UnsafeMutableRawPointer

    /// Renders into `buffer` (at least 128 bytes).
    @inline(always)
    init(_ buffer: UnsafeMutableRawBufferPointer) {
        assert(buffer.count >= 128)
        self.start = buffer.baseAddress!
        self.position = self.start
        self.limit = self.start + (buffer.count &- Self.slack)
    }

    /// Continues rendering at `position` of a buffer whose ``limit`` is `limit` (the same slack after
    /// it): for a part rendered out of line.
    @inline(always)
    init(position: UnsafeMutableRawPointer, limit: UnsafeMutableRawPointer) {
        self.start = position
        self.position = position
        self.limit = limit
    }

    /// The bytes rendered so far.
    @inline(always)
    var rendered: UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: self.start, count: self.position - self.start)
    }

    /// Whether up to 48 more bytes may be written unchecked.
    @inline(always)
    var fits: Bool { self.position <= self.limit }

    /// Fixed syntax (a constant-size copy, which the compiler turns into a few moves).
    @inline(always)
    mutating func literal(_ string: StaticString) {
        self.position.copyMemory(from: string.utf8Start, byteCount: string.utf8CodeUnitCount)
        self.position += string.utf8CodeUnitCount
    }

    /// Skips `count` bytes that the caller wrote at ``position`` itself (at most 48, unchecked).
    @inline(always)
    mutating func advance(by count: Int) {
        self.position += count
    }

    /// Bytes copied as they are (already rendered).
    @inline(always)
    mutating func raw(_ bytes: UnsafeRawBufferPointer) -> Bool {
        guard bytes.count <= self.limit - self.position else { return false }
        if let base = bytes.baseAddress {
            self.position.copyMemory(from: base, byteCount: bytes.count)
            self.position += bytes.count
        }
        return true
    }

    /// Bytes copied as they are, in 16-byte blocks (inline, no `memmove` call): it reads up to 15
    /// bytes past the end of `bytes`, which must be readable (``RecordHeader`` pads its segments), and
    /// stores up to 15 bytes past the copy (within the slack; the next write overwrites them).
    @inline(always)
    mutating func padded(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let count = bytes.count
        guard count <= self.limit - self.position else { return false }
        guard let base = bytes.baseAddress else { return true }
        var i = 0
        while i < count {
            (self.position + i).storeBytes(
                of: base.loadUnaligned(fromByteOffset: i, as: ByteBlock.self), as: ByteBlock.self)
            i &+= 16
        }
        self.position += count
        return true
    }

    /// An unsigned integer in decimal (at most 20 bytes, unchecked).
    @inline(always)
    mutating func decimal(_ value: UInt) {
        let digits = ByteCursor.decimalDigitCount(UInt64(value))
        var v = UInt64(value)
        var offset = digits
        while offset >= 2 {
            offset &-= 2
            let q = v / 100
            RFC3339.pair(v &- q &* 100, at: offset, self.position)
            v = q
        }
        if offset == 1 {
            self.position.storeBytes(of: UInt8(truncatingIfNeeded: v) &+ 0x30, as: UInt8.self)
        }
        self.position += digits
    }

    /// A string as the body of a JSON string.
    @inline(always)
    mutating func string(_ string: String) -> Bool {
        let result = string.utf8.withContiguousStorageIfAvailable { utf8 -> Bool in
            self.text(UnsafeRawPointer(utf8.baseAddress), count: utf8.count)
        }
        return result ?? false  // not contiguous UTF-8 (never on Linux): the general encoder copes
    }

    /// The module name of a `#fileID` (`Module/File.swift`) as the body of a JSON string: what
    /// swift-log derives as `LogEvent.source` when the call site passes none (the bytes before the
    /// first `/`, or `n/a` when there is none).
    @inline(always)
    mutating func module(ofFileID fileID: String) -> Bool {
        let result = fileID.utf8.withContiguousStorageIfAvailable { utf8 -> Bool in
            guard let base = utf8.baseAddress, let length = moduleNameLength(inFileID: base, count: utf8.count) else {
                return self.string("n/a")
            }
            return self.text(UnsafeRawPointer(base), count: length)
        }
        return result ?? false  // not contiguous UTF-8 (never on Linux): the general encoder copes
    }

    /// `count` UTF-8 bytes as the body of a JSON string.
    ///
    /// Up to 16 bytes (most keys and values) are loaded, stored and tested as one block; longer texts
    /// loop over blocks out of line. A text with a byte that needs escaping continues in
    /// ``escapeRest(_:count:from:to:)``.
    @inline(always)
    mutating func text(_ base: UnsafeRawPointer?, count: Int) -> Bool {
        // A String holds fewer than 2^48 bytes, so `count &* 6` cannot overflow.
        guard count &* 6 <= self.limit - self.position else { return false }
        guard let base, count > 0 else { return true }
        if count > 16 {
            self.position = Self.longText(base, count: count, to: self.position)
            return true
        }
        // Two 8-byte loads: a small string's bytes were just copied to the stack as two words, which
        // the compiler then forwards from registers (a 16-byte load would stall on store forwarding).
        let block = ByteBlock.loadWords(from: base, remaining: count)
        self.position.storeBytes(of: block, as: ByteBlock.self)
        var flags = BlockFlags(JSONSpecialBytes.candidates(block))
        flags.keepFirst(count)
        if _fastPath(flags.isEmpty) {
            self.position += count
        } else {
            let plain = flags.first
            self.position = Self.escapeRest(base, count: count, from: plain, to: self.position + plain)
        }
        return true
    }

    /// A text of more than 16 bytes written at `out` (room was checked by the caller): whole 16-byte
    /// blocks, then the last 16 bytes (overlapping the previous block, so the tail needs no mask and no
    /// load past the end). Returns the end of what it wrote.
    ///
    /// The out-of-line text helpers take and return positions rather than `inout self`, so no call of
    /// the inlined common path takes the renderer's address.
    @inline(never)
    static func longText(_ base: UnsafeRawPointer, count: Int, to out: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
        // Blocks at 0, 16, 32, … and finally at `count - 16`. Bytes before a block's start were
        // checked, so a candidate found in the overlapping last block lies at or after them.
        let last = count &- 16
        var i = 0
        while true {
            let block = base.loadUnaligned(fromByteOffset: i, as: ByteBlock.self)
            (out + i).storeBytes(of: block, as: ByteBlock.self)
            let flags = BlockFlags(JSONSpecialBytes.candidates(block))
            if _slowPath(!flags.isEmpty) {
                let plain = i &+ flags.first
                return Self.escapeRest(base, count: count, from: plain, to: out + plain)
            }
            if i == last { return out + count }
            i = min(i &+ 16, last)
        }
    }

    /// Escapes `base[start..<count]`, where `base[start]` is a candidate, at `out` (room was checked by
    /// the caller). Returns the end of what it wrote.
    @inline(never)
    static func escapeRest(
        _ base: UnsafeRawPointer, count: Int, from start: Int, to out: UnsafeMutableRawPointer
    ) -> UnsafeMutableRawPointer {
        var position = out
        var i = start
        while i < count {
            let (input, escaped) = jsonEscapeClass(base, at: i, count: count)
            if escaped == 0 {
                position.copyMemory(from: base + i, byteCount: input)
                position += input
            } else {
                writeJSONEscape(base, at: i, input: input, escaped: escaped, to: position)
                position += escaped
            }
            i &+= input
            // Copy up to the next candidate, 16 bytes at a time.
            while i < count {
                let remaining = count &- i
                let block = ByteBlock.load(from: base + i, remaining: remaining)
                position.storeBytes(of: block, as: ByteBlock.self)
                var flags = BlockFlags(JSONSpecialBytes.candidates(block))
                if remaining < 16 { flags.keepFirst(remaining) }
                if !flags.isEmpty {
                    let plain = flags.first
                    position += plain
                    i &+= plain
                    break
                }
                let chunk = remaining < 16 ? remaining : 16
                position += chunk
                i &+= chunk
            }
        }
        return position
    }

    /// Runs an out-of-line renderer method on a copy, so that `self` does not have its address taken
    /// (which would keep the common path's renderer in memory rather than in registers).
    @inline(always)
    mutating func detached(_ body: (inout JSONLineRenderer) -> Bool) -> Bool {
        var copy = self
        let result = body(&copy)
        self = copy
        return result
    }

    /// The error member: `,"error":{"message":…,"type":…}` (allocates: the description and the type
    /// name are built as strings).
    @inline(never)
    mutating func error(_ error: any Error) -> Bool {
        let message = String(describing: error)
        let type = String(reflecting: Swift.type(of: error))
        guard self.fits else { return false }
        self.literal(",\"error\":{\"message\":\"")
        guard self.string(message) else { return false }
        self.literal("\",\"type\":\"")
        guard self.string(type) else { return false }
        self.literal("\"}")
        return true
    }
}

// MARK: - Metadata

extension JSONLineRenderer {
    /// The members of the `metadata` object: the handler's (without the keys a later layer overrides),
    /// the provider's (without the keys the call overrides), then the call's; swift-log's merge
    /// order, each key once.
    ///
    /// The common case, per-call metadata only, costs one pass over the call's dictionary and no
    /// hashing; layered metadata rules collisions out with ``MetadataKeyFilter`` first, so it hashes
    /// only keys that may collide.
    @inline(always)
    mutating func metadata(
        handler: borrowing PreEncodedMetadata,
        provider: Logger.Metadata?,
        call: Logger.Metadata?,
        sortKeys: Bool
    ) -> Bool {
        if _slowPath(!handler.isEmpty || !(provider?.isEmpty ?? true)) {
            return self.detached {
                $0.layeredMetadata(handler: handler, provider: provider, call: call, sortKeys: sortKeys)
            }
        }
        guard let call else { return true }
        var first = true
        return self.members(of: call, skipping: nil, first: &first, sortKeys: sortKeys)
    }

    /// The entries of `layer` (without those whose key is also in `skipping`, which `skipFilter`
    /// summarises), after `first` members.
    @inline(always)
    mutating func members(
        of layer: Logger.Metadata,
        skipping: Logger.Metadata?,
        skipFilter: UInt64 = 0,
        first: inout Bool,
        sortKeys: Bool
    ) -> Bool {
        if _slowPath(sortKeys) {
            return self.detached {
                $0.sortedMembers(of: layer, skipping: skipping, skipFilter: skipFilter, first: &first)
            }
        }
        // The dictionary's iterator, matched in place: the iterator finds the next occupied bucket
        // inline, where walking indices costs an out-of-line `index(after:)` and two index validations
        // (`keys[i]`, `values[i]`) per entry. Matching `.string` straight on `next()`'s result reads the
        // string's two words from where the iterator copied the entry; binding the entry first (`while
        // case let (key, value)?`) moves the whole 41-byte value with 16-byte loads right after the
        // iterator stored it 8 bytes at a time, a store-forwarding stall per entry.
        var iterator = layer.makeIterator()
        while true {
            switch iterator.next() {
            case nil:
                return true
            case let (key, .string(string))?:
                if _slowPath(skipFilter != 0), MetadataKeyFilter.contains(key, filter: skipFilter, in: skipping) {
                    continue
                }
                guard self.memberKey(key, first: first), self.stringValue(string) else { return false }
            case let (key, other)?:
                if _slowPath(skipFilter != 0), MetadataKeyFilter.contains(key, filter: skipFilter, in: skipping) {
                    continue
                }
                guard self.memberKey(key, first: first) else { return false }
                self.literal("\":")
                guard self.detached({ $0.value(other, sortKeys: false) }) else { return false }
            }
            first = false
        }
    }

    /// ``members(of:skipping:skipFilter:first:sortKeys:)`` in key order.
    @inline(never)
    mutating func sortedMembers(
        of layer: Logger.Metadata,
        skipping: Logger.Metadata?,
        skipFilter: UInt64,
        first: inout Bool
    ) -> Bool {
        var isFirst = first
        let complete = withSortedIndices(of: layer, sorted: true) { indices -> Bool in
            for index in indices {
                let (key, value) = layer[index]
                if skipFilter != 0, MetadataKeyFilter.contains(key, filter: skipFilter, in: skipping) { continue }
                guard self.member(key: key, value: value, first: isFirst, sortKeys: true) else { return false }
                isFirst = false
            }
            return true
        }
        first = isFirst
        return complete
    }

    /// Metadata with handler or provider entries.
    @inline(never)
    mutating func layeredMetadata(
        handler: borrowing PreEncodedMetadata,
        provider: Logger.Metadata?,
        call: Logger.Metadata?,
        sortKeys: Bool
    ) -> Bool {
        let provider = (provider?.isEmpty ?? true) ? nil : provider
        let call = (call?.isEmpty ?? true) ? nil : call
        var first = true
        if !handler.isEmpty {
            let overridden =
                MetadataKeyFilter.collides(provider, with: handler) || MetadataKeyFilter.collides(call, with: handler)
            if !overridden {
                // Common case: the pre-rendered block (each entry starts with `,`; the first drops it).
                guard handler.withBytes({ self.raw(UnsafeRawBufferPointer(rebasing: $0[1...])) }) else { return false }
                first = false
            } else {
                for i in 0..<handler.count
                where !MetadataMerge.isHandlerKeyOverridden(handler.sortedEntries[i].key, provider: provider, call: call) {
                    let skip = first ? 1 : 0
                    guard handler.withEntryBytes(i, { self.raw(UnsafeRawBufferPointer(rebasing: $0[skip...])) }) else {
                        return false
                    }
                    first = false
                }
            }
        }
        if let provider {
            let callFilter = MetadataKeyFilter.filter(of: call)
            guard self.members(of: provider, skipping: call, skipFilter: callFilter, first: &first, sortKeys: sortKeys)
            else { return false }
        }
        if let call {
            return self.members(of: call, skipping: nil, first: &first, sortKeys: sortKeys)
        }
        return true
    }

    /// One `"key":value` member (with a leading comma unless it is the first).
    @inline(always)
    mutating func member(key: String, value: Logger.MetadataValue, first: Bool, sortKeys: Bool) -> Bool {
        guard self.memberKey(key, first: first) else { return false }
        if case .string(let string) = value {
            return self.stringValue(string)
        }
        self.literal("\":")
        return self.detached { $0.value(value, sortKeys: sortKeys) }
    }

    /// `"key` or `,"key` (the start of a member).
    @inline(always)
    mutating func memberKey(_ key: String, first: Bool) -> Bool {
        if first {
            self.literal("\"")
        } else {
            self.literal(",\"")
        }
        return self.string(key)
    }

    /// `":"value"` (the rest of a member whose value is a string).
    @inline(always)
    mutating func stringValue(_ string: String) -> Bool {
        self.literal("\":\"")
        guard self.string(string) else { return false }
        self.literal("\"")
        return true
    }

    /// A metadata value: a string, a `stringConvertible` (its `description`, which allocates), or an
    /// array or dictionary (dictionary keys in byte-wise order when `sortKeys`).
    @inline(never)
    mutating func value(_ value: Logger.MetadataValue, sortKeys: Bool) -> Bool {
        guard self.fits else { return false }
        switch value {
        case .string(let string):
            self.literal("\"")
            guard self.string(string) else { return false }
            self.literal("\"")
        case .stringConvertible(let convertible):
            self.literal("\"")
            guard self.string(convertible.description) else { return false }
            self.literal("\"")
        case .array(let array):
            self.literal("[")
            var i = array.startIndex
            while i < array.endIndex {
                if i != array.startIndex { self.literal(",") }
                guard self.value(array[i], sortKeys: sortKeys) else { return false }
                i += 1
            }
            guard self.fits else { return false }
            self.literal("]")
        case .dictionary(let dictionary):
            self.literal("{")
            let complete = withSortedIndices(of: dictionary, sorted: sortKeys) { indices -> Bool in
                var first = true
                for index in indices {
                    let (key, element) = dictionary[index]
                    guard self.fits else { return false }
                    if first {
                        self.literal("\"")
                    } else {
                        self.literal(",\"")
                    }
                    first = false
                    guard self.string(key) else { return false }
                    self.literal("\":")
                    guard self.value(element, sortKeys: sortKeys) else { return false }
                }
                return true
            }
            guard complete, self.fits else { return false }
            self.literal("}")
        }
        return true
    }
}
