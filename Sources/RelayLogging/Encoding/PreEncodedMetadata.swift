//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

package import Logging

/// A log handler's own metadata, rendered once for one record format.
///
/// Build it when the handler's metadata changes (in the `metadata` `didSet` and the
/// `subscript(metadataKey:)` setter), never per record. Encoding a record then copies these bytes:
/// the whole block when no provider or per-call key overrides a handler key (the common case), or
/// entry by entry, leaving out the overridden keys, when one does.
///
/// Entries are sorted by key (byte-wise UTF-8) so that output is deterministic. `stringConvertible`
/// values are rendered with `description` at build time, like `StreamLogHandler` does: a later change
/// of what `description` returns is not seen until the metadata is set again.
package struct PreEncodedMetadata: Sendable {
    /// The rendering, shared by copies (immutable): copying handler metadata, or passing it to a
    /// closure, costs one reference count operation, not one per array.
    private final class Storage: Sendable {
        let metadata: Logger.Metadata
        let style: MetadataStyle?
        let bytes: [UInt8]
        let entryEnds: [Int]
        let sortedEntries: [(key: String, value: Logger.MetadataValue)]
        let keyFilter: UInt64

        init(
            metadata: Logger.Metadata,
            style: MetadataStyle?,
            bytes: [UInt8],
            entryEnds: [Int],
            sortedEntries: [(key: String, value: Logger.MetadataValue)]
        ) {
            self.metadata = metadata
            self.style = style
            self.bytes = bytes
            self.entryEnds = entryEnds
            self.sortedEntries = sortedEntries
            var filter: UInt64 = 0
            for entry in sortedEntries {
                filter |= MetadataKeyFilter.bit(of: entry.key)
            }
            self.keyFilter = filter
        }
    }

    /// `nil` for no metadata.
    private let storage: Storage?

    /// The metadata this was built from (used to detect key collisions).
    package var metadata: Logger.Metadata { self.storage?.metadata ?? [:] }

    /// The style the bytes are rendered in; `nil` when there is no metadata.
    internal var style: MetadataStyle? { self.storage?.style }

    /// All entries, each with its leading separator (`,` for JSON, a space otherwise).
    internal var bytes: [UInt8] { self.storage?.bytes ?? [] }

    /// `entryEnds[i]` is the end offset of entry `i` in ``bytes``; entry `i` starts at
    /// `entryEnds[i - 1]` (or 0).
    internal var entryEnds: [Int] { self.storage?.entryEnds ?? [] }

    /// The keys in the order of the entries, with their values (`stringConvertible` values frozen to
    /// strings), for encoding in another style than the one built.
    internal var sortedEntries: [(key: String, value: Logger.MetadataValue)] { self.storage?.sortedEntries ?? [] }

    /// One bit per key (see ``MetadataKeyFilter``): a key of another layer whose bit is not set here
    /// cannot collide with a handler key, which saves a hash lookup per key and record.
    internal var keyFilter: UInt64 { self.storage?.keyFilter ?? 0 }

    /// Empty handler metadata.
    package init() {
        self.storage = nil
    }

    private init(
        metadata: Logger.Metadata,
        style: MetadataStyle?,
        bytes: [UInt8],
        entryEnds: [Int],
        sortedEntries: [(key: String, value: Logger.MetadataValue)]
    ) {
        self.storage = Storage(
            metadata: metadata, style: style, bytes: bytes, entryEnds: entryEnds, sortedEntries: sortedEntries)
    }

    /// Renders `metadata` for `format`.
    ///
    /// - Parameters:
    ///   - metadata: The handler's metadata.
    ///   - format: The format the handler encodes records in.
    package init(_ metadata: Logger.Metadata, format: RecordFormat) {
        self.init(metadata, style: format.metadataStyle)
    }

    /// Renders `metadata` in `style`.
    ///
    /// - Parameters:
    ///   - metadata: The handler's metadata.
    ///   - style: The rendering.
    package init(_ metadata: Logger.Metadata, style: MetadataStyle) {
        guard !metadata.isEmpty else {
            self.init()
            return
        }
        let entries = metadata.map { (key: $0.key, value: Self.frozen($0.value)) }
            .sorted { utf8Precedes($0.key, $1.key) }

        // Measure each entry (deterministic now that descriptions are frozen), then render.
        var ends: [Int] = []
        ends.reserveCapacity(entries.count)
        var measure = ByteCursor.measuring()
        for entry in entries {
            measure.appendMetadataEntry(key: entry.key, value: entry.value, style: style, first: false)
            ends.append(measure.count)
        }
        let total = measure.count
        let rendered = [UInt8](unsafeUninitializedCapacity: total) { buffer, initialized in
            var cursor = ByteCursor(UnsafeMutableRawBufferPointer(buffer))
            for entry in entries {
                cursor.appendMetadataEntry(key: entry.key, value: entry.value, style: style, first: false)
            }
            precondition(cursor.count == total, "PreEncodedMetadata: rendering is not deterministic")
            initialized = total
        }
        self.init(metadata: metadata, style: style, bytes: rendered, entryEnds: ends, sortedEntries: entries)
    }

    /// Whether there are no entries.
    package var isEmpty: Bool {
        self.storage == nil
    }

    /// The number of top-level entries.
    package var count: Int {
        self.storage?.entryEnds.count ?? 0
    }

    /// `value` with every `stringConvertible` replaced by the string its `description` returns now.
    static func frozen(_ value: Logger.MetadataValue) -> Logger.MetadataValue {
        switch value {
        case .string:
            return value
        case .stringConvertible(let convertible):
            return .string(convertible.description)
        case .array(let array):
            return .array(array.map(Self.frozen))
        case .dictionary(let dictionary):
            return .dictionary(dictionary.mapValues(Self.frozen))
        }
    }

    /// Calls `body` with the bytes of entry `i` (including its leading separator).
    internal func withEntryBytes<R>(_ i: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R {
        let storage = self.storage!
        let start = i == 0 ? 0 : storage.entryEnds[i - 1]
        let end = storage.entryEnds[i]
        return storage.bytes.withUnsafeBytes { all in
            body(UnsafeRawBufferPointer(rebasing: all[start..<end]))
        }
    }

    /// Calls `body` with all the rendered entries.
    internal func withBytes<R>(_ body: (UnsafeRawBufferPointer) -> R) -> R {
        guard let storage = self.storage else { return body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return storage.bytes.withUnsafeBytes(body)
    }
}

/// A 64-bit summary of a set of metadata keys, to rule out collisions between metadata layers
/// without hashing: each ASCII key sets one bit chosen from its length and first and last bytes.
///
/// A key with a non-ASCII byte sets every bit: `String` equality (which `Logger.Metadata` lookups and
/// swift-log's merge use) is canonical equivalence, so such a key can equal a key with other bytes
/// (`"caf\u{E9}"` and `"cafe\u{301}"`, or KELVIN SIGN and `"K"`), which a filter of bytes would miss.
/// Two ASCII keys are equal exactly when their bytes are.
internal enum MetadataKeyFilter {
    /// The bit of `key` (every bit for a key with a non-ASCII byte).
    @inline(__always)
    static func bit(of key: String) -> UInt64 {
        withUTF8Bytes(of: key) { bytes in
            let count = bytes.count
            guard count > 0, let base = bytes.baseAddress else { return 1 }
            guard Self.isASCII(UnsafeRawPointer(base), count: count) else { return ~0 }
            let first = UInt64(bytes[0])
            let last = UInt64(bytes[count &- 1])
            return 1 &<< ((UInt64(count) &* 7 &+ first &* 3 &+ last) & 63)
        }
    }

    /// Whether the `count` bytes at `base` are all ASCII (8 at a time).
    @inline(__always)
    static func isASCII(_ base: UnsafeRawPointer, count: Int) -> Bool {
        var bits: UInt64 = 0
        var i = 0
        while i &+ 8 <= count {
            bits |= base.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            i &+= 8
        }
        while i < count {
            bits |= UInt64(base.load(fromByteOffset: i, as: UInt8.self))
            i &+= 1
        }
        return bits & 0x8080_8080_8080_8080 == 0
    }

    /// The bits of every key of `layer` (0 for none).
    @inline(__always)
    static func filter(of layer: Logger.Metadata?) -> UInt64 {
        guard let layer else { return 0 }
        var filter: UInt64 = 0
        for key in layer.keys {
            filter |= Self.bit(of: key)
        }
        return filter
    }

    /// Whether `key` is a key of `layer`, whose keys `filter` summarises (exact: a filter hit is
    /// confirmed with a hash lookup).
    @inline(__always)
    static func contains(_ key: String, filter: UInt64, in layer: Logger.Metadata?) -> Bool {
        guard filter & Self.bit(of: key) != 0, let layer else { return false }
        return layer[key] != nil
    }

    /// Whether some key of `layer` is a key of `handler` (exact: a filter hit is confirmed with a
    /// hash lookup).
    @inline(__always)
    static func collides(_ layer: Logger.Metadata?, with handler: borrowing PreEncodedMetadata) -> Bool {
        guard let layer, !layer.isEmpty, handler.keyFilter != 0 else { return false }
        for key in layer.keys where handler.keyFilter & Self.bit(of: key) != 0 {
            if handler.metadata[key] != nil { return true }
        }
        return false
    }
}
