//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Logging

/// Tells whether a `LogEvent` carries a source its call site passed, without reading
/// `LogEvent.source`.
///
/// When a call site passes no `source:`, swift-log 1.16 stores `nil` in the event and derives the
/// source from `#fileID` on **every** read of `event.source`: a generic byte search, a `Substring` and
/// a new `String` (about 50 ns of a JSON Lines record's cost, and a malloc for module names over 15
/// bytes). The handler writes the source's bytes straight into the record, so when it knows the
/// stored source is `nil` it writes the `#fileID` prefix itself (the same rule: the bytes before the
/// first `/`, or `n/a`) and builds no `String`.
///
/// swift-log keeps that `nil` in a non-public stored property (`_source: String?`), so the probe finds
/// it by layout, and only ever uses it as a yes/no answer:
///
/// - **Where.** `LogEvent` is not compiled for library evolution, so its layout is fixed when this
///   module is built. `_source` is declared between the public stored properties `metadata` and
///   `file`; the probe takes the offset right after `metadata` and requires that exactly one
///   `String?` fits between the two (`MemoryLayout.offset(of:)` of the public key paths).
/// - **Checked against swift-log itself.** At start-up it builds events through swift-log's public
///   initializer and `source` setter (no source, an empty one, a small one, a heap-allocated one) and
///   requires the 16 bytes at that offset to be exactly the bytes of the `String?` each event was
///   given. Any mismatch (another swift-log version, another layout) disables the probe: every record
///   then reads `event.source`, as before.
/// - **Compared, never loaded.** Per record, the 16 bytes are compared with the bit pattern of
///   `String?.none`; they are never loaded as a `String`. A non-`nil` `String?` never has that bit
///   pattern (it is an extra inhabitant of `String`, not a value of it), so the worst a wrong answer
///   could do is say "explicit" for a `nil` source, which makes the handler read `event.source`: the
///   public, always-correct path.
struct ImplicitSourceProbe: Sendable {
    /// The byte offset of the stored source in `LogEvent`, or -1 when the probe is disabled.
    let offset: Int
    /// The two words of `String?.none`.
    let none0: UInt64
    let none1: UInt64

    /// The probe for the linked swift-log, validated (see the type's documentation).
    static let shared = ImplicitSourceProbe()

    /// Whether the probe is in use (this swift-log has the layout it checks).
    var isEnabled: Bool { self.offset >= 0 }

    private init() {
        let (none0, none1) = withUnsafeBytes(of: String?.none) { raw in
            (raw.loadUnaligned(as: UInt64.self), raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        }
        self.none0 = none0
        self.none1 = none1
        self.offset = Self.validatedOffset(none: (none0, none1)) ?? -1
    }

    /// The offset of the stored source after checking it (see the type's documentation), or `nil`.
    private static func validatedOffset(none: (UInt64, UInt64)) -> Int? {
        guard MemoryLayout<String?>.size == 16, MemoryLayout<String?>.alignment == 8,
            let metadata = MemoryLayout<LogEvent>.offset(of: \LogEvent.metadata),
            let file = MemoryLayout<LogEvent>.offset(of: \LogEvent.file)
        else { return nil }
        let candidate = metadata + MemoryLayout<Logger.Metadata?>.size
        guard candidate % 8 == 0, file - candidate == MemoryLayout<String?>.size,
            candidate + 16 <= MemoryLayout<LogEvent>.size
        else { return nil }
        let base = LogEvent(
            level: .info, message: "probe", metadata: nil, source: nil, file: "Probe/Probe.swift",
            function: "probe()", line: 1)
        // A heap string (longer than 15 bytes), an empty one and a small one: every representation.
        let sources: [String?] = [nil, "", "src", String(repeating: "explicit-source-", count: 4)]
        for source in sources {
            var event = base
            if let source { event.source = source }
            let stored = withUnsafeBytes(of: event) { raw in
                (
                    raw.loadUnaligned(fromByteOffset: candidate, as: UInt64.self),
                    raw.loadUnaligned(fromByteOffset: candidate + 8, as: UInt64.self)
                )
            }
            let expected = withUnsafeBytes(of: source) { raw in
                (raw.loadUnaligned(as: UInt64.self), raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            }
            guard stored == expected, (stored == none) == (source == nil) else { return nil }
        }
        return candidate
    }

    /// Whether `event` carries no source of its call site's (so its source is derived from `file`).
    /// `false` when the probe is disabled.
    @inline(__always)
    func hasImplicitSource(_ event: borrowing LogEvent) -> Bool {
        let offset = self.offset
        guard offset >= 0 else { return false }
        return withUnsafeBytes(of: event) { raw in
            raw.loadUnaligned(fromByteOffset: offset, as: UInt64.self) == self.none0
                && raw.loadUnaligned(fromByteOffset: offset &+ 8, as: UInt64.self) == self.none1
        }
    }
}

/// The length of the module name at the start of a `#fileID` (`Module/File.swift`): the bytes before
/// the first `/`, or `nil` when there is none (swift-log's `source` is then `n/a`). Scans 16 bytes at a
/// time (a byte loop cost about 10 ns per record at a 15-byte module name).
@inline(__always)
func moduleNameLength(inFileID base: UnsafeRawPointer, count: Int) -> Int? {
    var i = 0
    while i < count {
        let remaining = count &- i
        var flags = BlockFlags(ByteBlock.load(from: base + i, remaining: remaining).lanesEqual(to: UInt8(ascii: "/")))
        flags.keepFirst(Swift.min(remaining, 16))
        if !flags.isEmpty { return i &+ flags.first }
        i &+= 16
    }
    return nil
}
