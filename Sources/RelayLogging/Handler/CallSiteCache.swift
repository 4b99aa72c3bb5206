//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Synchronization

/// The JSON Lines rendering of each call site's source, file, function and line, kept so that a call
/// site renders them once instead of on every record.
///
/// A JSON Lines record ends with `"source":"…","file":"…","function":"…","line":N`. Those four fields
/// are the same on every call from one call site, and rendering them (the module name found in
/// `#fileID`, three escaped strings, a decimal line) is about a quarter of what the handler spends on a
/// record. The cache keeps the rendered bytes of recently seen call sites, keyed by the **bits** of the
/// strings (and the line), and a record whose key matches copies them.
///
/// ## When bits identify text
///
/// Equal `String` bits mean equal text only for two representations of the standard library's
/// 64-bit `_StringObject`, and only those are cached (``CallSiteKey/init(source:file:function:line:)``
/// returns `nil` for any other):
/// - **small** strings (up to 15 UTF-8 bytes): the bytes are in the two words themselves;
/// - **immortal** large strings: string literals, which `#fileID` and `#function` are. Their second
///   word holds the address of the literal's bytes in the executable, which are never freed or reused,
///   so equal words mean the same bytes. A heap string's address can be freed and reused for other
///   text, so heap strings (a file name built at run time, say) are never cached.
///
/// The second word's top byte tells them apart: bit 7 *immortal*, bit 5 *small*, bit 4 *foreign*, bit 6
/// *bridged* for large strings (never on Linux); an immortal large native string also has bit 60
/// (*tail-allocated*) of the first word set. This is not API, so ``CallSiteCache/isSupported`` checks it
/// once per process: literals of several lengths must classify as cacheable, strings built at run time
/// (native heap strings, copies of substrings) must not, and small strings must. Any surprise turns the
/// cache off; every record then renders the four fields, as before.
///
/// ## Concurrency: one seqlock per slot
///
/// The cache is shared by every thread that logs through the writer. Each of its 128 slots is a
/// sequence lock: a version word (odd while a writer fills the slot), the key, the length and the bytes,
/// every one an `Atomic<UInt64>` word bound into memory allocated once. A reader loads the version
/// (acquiring), compares the key and copies the bytes with relaxed loads, then fences (acquiring) and
/// re-loads the version: if it is odd or changed, the copy may be torn and the record renders the
/// fields itself (the renderer overwrites what was copied). A writer claims a slot by moving its
/// version from even to odd with an acquiring compare-and-exchange (so the previous writer's stores
/// come before its own), stores the key, length and bytes with relaxed stores after a releasing
/// fence, and publishes with a releasing store of the next even version. A
/// writer that loses the claim simply does not cache. No lock, no allocation and no system call on the
/// record path: a hit is a few compares and a copy of about 100 bytes; a miss renders as before, and
/// then fills the slot (two call sites that share a slot take turns).
final class CallSiteCache: @unchecked Sendable {
    /// Whether this process's standard library has the string layout the keys rely on (see the type's
    /// documentation).
    static let isSupported: Bool = StringBits.verify()

    /// The largest rendering kept (a call site with a longer one renders every time).
    static let maxBytes = 192
    /// Slots: direct-mapped by a hash of the key.
    static let slotCount = 128
    /// Words per slot: version, 7 key words, length, then the bytes.
    static let headerWords = 9
    static let slotWords = headerWords + maxBytes / 8

    /// `slotCount × slotWords` atomic words (see the type's documentation), or `nil` when unsupported.
    private let words: UnsafeMutablePointer<Atomic<UInt64>>?

    /// Creates an empty cache (a disabled one where ``isSupported`` is false).
    init() {
        guard Self.isSupported else {
            self.words = nil
            return
        }
        let count = Self.slotCount * Self.slotWords
        let words = UnsafeMutablePointer<Atomic<UInt64>>.allocate(capacity: count)
        for i in 0..<count {
            (words + i).initialize(to: Atomic(0))
        }
        self.words = words
    }

    deinit {
        guard let words = self.words else { return }
        words.deinitialize(count: Self.slotCount * Self.slotWords)
        words.deallocate()
    }

    /// Whether the cache is in use.
    var isEnabled: Bool { self.words != nil }

    @inline(__always)
    private func slot(_ key: CallSiteKey) -> UnsafeMutablePointer<Atomic<UInt64>>? {
        guard let words = self.words else { return nil }
        return words + key.slotIndex(count: Self.slotCount) &* Self.slotWords
    }

    /// Copies the rendering cached for `key` to `out` (which has room for ``maxBytes`` + 8 bytes) and
    /// returns its length, or returns `nil` (having possibly written garbage at `out`, which the caller
    /// overwrites) when the key is not cached or the slot was being written.
    @inline(__always)
    func copy(_ key: CallSiteKey, to out: UnsafeMutableRawPointer) -> Int? {
        guard let slot = self.slot(key) else { return nil }
        // acquiring: pairs with the releasing store of the version in `store`; the key and bytes
        // stored before it are visible to the relaxed loads below.
        let version = slot[0].load(ordering: .acquiring)
        guard version & 1 == 0, version != 0 else { return nil }
        // relaxed (key, length, bytes): validated by the version re-check below.
        guard slot[1].load(ordering: .relaxed) == key.words.0, slot[2].load(ordering: .relaxed) == key.words.1,
            slot[3].load(ordering: .relaxed) == key.words.2, slot[4].load(ordering: .relaxed) == key.words.3,
            slot[5].load(ordering: .relaxed) == key.words.4, slot[6].load(ordering: .relaxed) == key.words.5,
            slot[7].load(ordering: .relaxed) == key.words.6
        else { return nil }
        let length = Int(truncatingIfNeeded: slot[8].load(ordering: .relaxed))
        guard length <= Self.maxBytes else { return nil }
        var i = 0
        while i < length {
            (out + i).storeBytes(of: slot[Self.headerWords &+ (i &>> 3)].load(ordering: .relaxed), as: UInt64.self)
            i &+= 8
        }
        // acquiring fence, then a relaxed re-load: the relaxed loads above happen before the re-load, so
        // if a writer stored into the slot meanwhile, the re-load sees its odd or newer version.
        atomicMemoryFence(ordering: .acquiring)
        guard slot[0].load(ordering: .relaxed) == version else { return nil }
        return length
    }

    /// Caches `bytes` (at most ``maxBytes``) as the rendering for `key`, unless another thread is
    /// writing the slot right now.
    func store(_ key: CallSiteKey, _ bytes: UnsafeRawBufferPointer) {
        guard bytes.count <= Self.maxBytes, bytes.baseAddress != nil, let slot = self.slot(key) else { return }
        // relaxed: a first look; the compare-exchange below decides.
        let version = slot[0].load(ordering: .relaxed)
        // acquiring: pairs with the previous writer's releasing store of `version`, so its key and
        // byte stores happen before ours and come first in each word's modification order (a
        // reader that sees our version can then never see its bytes).
        guard version & 1 == 0,
            slot[0].compareExchange(expected: version, desired: version &+ 1, ordering: .acquiring).exchanged
        else { return }
        // releasing fence: pairs with the readers' acquiring fence in `copy`; a reader that loads any of
        // the relaxed stores below also sees the odd version on its re-load.
        atomicMemoryFence(ordering: .releasing)
        // relaxed (key, length, bytes): published by the releasing version store below.
        slot[1].store(key.words.0, ordering: .relaxed)
        slot[2].store(key.words.1, ordering: .relaxed)
        slot[3].store(key.words.2, ordering: .relaxed)
        slot[4].store(key.words.3, ordering: .relaxed)
        slot[5].store(key.words.4, ordering: .relaxed)
        slot[6].store(key.words.5, ordering: .relaxed)
        slot[7].store(key.words.6, ordering: .relaxed)
        slot[8].store(UInt64(bytes.count), ordering: .relaxed)
        var i = 0
        while i < bytes.count {
            var word: UInt64 = 0
            let chunk = UnsafeRawBufferPointer(rebasing: bytes[i..<min(i &+ 8, bytes.count)])
            withUnsafeMutableBytes(of: &word) { $0.copyMemory(from: chunk) }
            slot[Self.headerWords &+ (i &>> 3)].store(word, ordering: .relaxed)
            i &+= 8
        }
        // releasing: pairs with the acquiring version load in `copy`. Even again, and never 0 (empty).
        slot[0].store(version &+ 2, ordering: .releasing)
    }
}

/// What identifies a call site's rendering: the bits of its source (or none: derived from the file),
/// file and function strings, and its line. Only built for strings whose bits identify their text
/// (see ``CallSiteCache``).
struct CallSiteKey {
    var words: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64)

    /// The key, or `nil` when a string's bits do not identify its text (a heap string).
    @inline(__always)
    init?(source: String?, file: String, function: String, line: UInt) {
        let f = StringBits(file)
        let g = StringBits(function)
        guard f.identifiesText, g.identifiesText else { return nil }
        var s0: UInt64 = 0
        var s1: UInt64 = 0
        if let source {
            let s = StringBits(source)
            guard s.identifiesText else { return nil }
            // Never both 0: the second word of a string this accepts has its immortal bit set.
            s0 = s.low
            s1 = s.high
        }
        self.words = (s0, s1, f.low, f.high, g.low, g.high, UInt64(line))
    }

    /// A slot index below `count` (a power of two).
    @inline(__always)
    func slotIndex(count: Int) -> Int {
        // The literals' addresses and the line, mixed (multiply-shift).
        let mixed = (self.words.3 ^ (self.words.5 &<< 1) ^ (self.words.6 &* 0x9E37_79B9_7F4A_7C15) ^ self.words.1)
            &* 0xFF51_AFD7_ED55_8CCD
        return Int(truncatingIfNeeded: mixed &>> 57) & (count &- 1)
    }
}

/// The two words of a `String` and what they say about its representation (see ``CallSiteCache``).
struct StringBits {
    let low: UInt64
    let high: UInt64

    @inline(__always)
    init(_ string: String) {
        (self.low, self.high) = withUnsafeBytes(of: string) { raw in
            (raw.loadUnaligned(as: UInt64.self), raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        }
    }

    /// Small: immortal and small set, foreign clear (the ASCII bit either way).
    @inline(__always)
    var isSmall: Bool { self.high & (0xB0 << 56) == 0xA0 << 56 }

    /// Immortal, large, native: immortal set; small, foreign and bridged clear; tail-allocated set.
    @inline(__always)
    var isImmortalLiteral: Bool {
        self.high & (0xF0 << 56) == 0x80 << 56 && self.low & (1 << 60) != 0
    }

    /// Whether equal bits mean equal text.
    @inline(__always)
    var identifiesText: Bool { self.isSmall || self.isImmortalLiteral }

    /// Checks the classification against strings of known representation (see ``CallSiteCache``).
    static func verify() -> Bool {
        guard MemoryLayout<String>.size == 16, UInt16(1).littleEndian == 1 else { return false }
        // Literals: immortal (large ones) or small.
        let literals: [String] = [
            "", "a", "abcdefghijklmno", "abcdefghijklmnop", "Module/File.swift",
            "a literal of quite some length, longer than any small string could be",
            "logOnce(_:entries:)", "é literal non-ASCII of some length",
        ]
        for literal in literals {
            let bits = StringBits(literal)
            let small = literal.utf8.count <= 15
            guard bits.isSmall == small, bits.isImmortalLiteral == !small else { return false }
        }
        // Built at run time: small ones are small; large ones are heap strings, never cacheable.
        for count in [0, 1, 7, 8, 15, 16, 17, 40, 200] {
            let built = String(repeating: "x", count: count)
            let bits = StringBits(built)
            guard bits.isSmall == (count <= 15), !bits.isImmortalLiteral else { return false }
            if count > 15 && bits.identifiesText { return false }
        }
        // Decoded from bytes in an array (the optimizer may fold operations on literals, such as a
        // concatenation, into a new literal, which would rightly be immortal).
        let large = Array("a literal longer than fifteen bytes, to decode at run time".utf8)
        let heapStrings: [String] = [
            String(decoding: large, as: UTF8.self), String(decoding: large.reversed(), as: UTF8.self),
            String(decoding: large.dropFirst(3), as: UTF8.self),
        ]
        for built in heapStrings {
            guard !StringBits(built).identifiesText else { return false }
        }
        // Small strings: the count and bytes are in the words (what makes equal bits equal text).
        for sample in ["", "a", "user", "request-id", "/api/v1/items", "é", "日本語"] {
            let built = String(decoding: Array(sample.utf8), as: UTF8.self)
            let bits = StringBits(built)
            let count = Int(truncatingIfNeeded: (bits.high &>> 56) & 0x0F)
            guard bits.isSmall, count == sample.utf8.count else { return false }
            let decoded = withUnsafeBytes(of: (bits.low, bits.high)) { Array($0.prefix(sample.utf8.count)) }
            guard decoded == Array(sample.utf8) else { return false }
        }
        return true
    }
}
