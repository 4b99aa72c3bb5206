import Glibc

/// A sparse set of sequence numbers, one bit per sequence, allocated on demand in 32 KiB chunks.
///
/// 100 million sequences of one producer take 12.5 MB. Chunks are created only where sequences
/// occur, so a stray huge sequence number costs one chunk, not a dense array up to it. Lookups
/// go through a one-entry cache because a producer's sequences arrive mostly in order.
final class SequenceBitset {
    /// Sequences per chunk (2^18 bits = 32 KiB).
    static let chunkShift: UInt64 = 18
    /// Sequences per chunk.
    static let chunkBits: UInt64 = 1 << chunkShift
    /// 64-bit words per chunk.
    static let wordsPerChunk = Int(chunkBits / 64)

    private var chunks: [UInt64: UnsafeMutablePointer<UInt64>] = [:]
    private var cachedIndex: UInt64 = .max
    private var cachedChunk: UnsafeMutablePointer<UInt64>?

    /// The number of distinct sequences inserted.
    private(set) var count: UInt64 = 0

    /// The number of allocated chunks.
    var chunkCount: Int { self.chunks.count }

    /// Creates an empty set; chunks are allocated on first use.
    init() {}

    deinit {
        for chunk in self.chunks.values {
            chunk.deallocate()
        }
    }

    /// Inserts `sequence`.
    ///
    /// - Returns: `true` when the sequence was new, `false` when it was already present (a duplicate).
    @inline(__always)
    func insert(_ sequence: UInt64) -> Bool {
        let index = sequence >> SequenceBitset.chunkShift
        let chunk: UnsafeMutablePointer<UInt64>
        if index == self.cachedIndex, let cached = self.cachedChunk {
            chunk = cached
        } else {
            chunk = self.chunk(at: index)
        }
        let bit = sequence & (SequenceBitset.chunkBits - 1)
        let word = Int(bit >> 6)
        let mask: UInt64 = 1 << (bit & 63)
        let old = chunk[word]
        if old & mask != 0 { return false }
        chunk[word] = old | mask
        self.count += 1
        return true
    }

    /// Whether `sequence` is present.
    func contains(_ sequence: UInt64) -> Bool {
        guard let chunk = self.chunks[sequence >> SequenceBitset.chunkShift] else { return false }
        let bit = sequence & (SequenceBitset.chunkBits - 1)
        return chunk[Int(bit >> 6)] & (1 << (bit & 63)) != 0
    }

    /// The number of present sequences below `limit`.
    func count(below limit: UInt64) -> UInt64 {
        var total: UInt64 = 0
        for (index, chunk) in self.chunks {
            let start = index << SequenceBitset.chunkShift
            guard start < limit else { continue }
            let end = min(start + SequenceBitset.chunkBits, limit)
            let bits = end - start
            let fullWords = Int(bits / 64)
            for word in 0..<fullWords {
                total += UInt64(chunk[word].nonzeroBitCount)
            }
            let rest = bits & 63
            if rest != 0 {
                total += UInt64((chunk[fullWords] & ((1 << rest) - 1)).nonzeroBitCount)
            }
        }
        return total
    }

    /// The first `maxRanges` runs of absent sequences in `0..<limit`, as closed ranges.
    func missingRanges(below limit: UInt64, maxRanges: Int) -> [ClosedRange<UInt64>] {
        guard maxRanges > 0, limit > 0 else { return [] }
        let keys = self.chunks.keys.sorted()
        var ranges: [ClosedRange<UInt64>] = []
        var position: UInt64 = 0
        while ranges.count < maxRanges && position < limit {
            let firstMissing = self.next(from: position, present: false, limit: limit, sortedKeys: keys)
            guard firstMissing < limit else { break }
            let nextPresent = self.next(from: firstMissing, present: true, limit: limit, sortedKeys: keys)
            ranges.append(firstMissing...(nextPresent - 1))
            position = nextPresent
        }
        return ranges
    }

    /// The first sequence `>= position` and `< limit` whose presence equals `present`, or `limit`.
    private func next(from start: UInt64, present: Bool, limit: UInt64, sortedKeys: [UInt64]) -> UInt64 {
        var position = start
        while position < limit {
            let index = position >> SequenceBitset.chunkShift
            guard let chunk = self.chunks[index] else {
                if !present { return position }
                // Jump to the next allocated chunk after this one.
                guard let nextKey = SequenceBitset.firstKey(after: index, in: sortedKeys) else { return limit }
                position = nextKey << SequenceBitset.chunkShift
                continue
            }
            let chunkStart = index << SequenceBitset.chunkShift
            var bit = position - chunkStart
            while bit < SequenceBitset.chunkBits {
                let wordIndex = Int(bit >> 6)
                var word = chunk[wordIndex]
                if !present { word = ~word }
                word &= ~UInt64(0) << (bit & 63)  // ignore bits before `bit`
                if word != 0 {
                    let found = chunkStart + UInt64(wordIndex) * 64 + UInt64(word.trailingZeroBitCount)
                    return min(found, limit)
                }
                bit = UInt64(wordIndex + 1) * 64
                if chunkStart + bit >= limit { return limit }
            }
            position = chunkStart + SequenceBitset.chunkBits
        }
        return limit
    }

    private static func firstKey(after index: UInt64, in sortedKeys: [UInt64]) -> UInt64? {
        var low = 0
        var high = sortedKeys.count
        while low < high {
            let middle = (low + high) / 2
            if sortedKeys[middle] <= index { low = middle + 1 } else { high = middle }
        }
        return low < sortedKeys.count ? sortedKeys[low] : nil
    }

    private func chunk(at index: UInt64) -> UnsafeMutablePointer<UInt64> {
        let chunk: UnsafeMutablePointer<UInt64>
        if let existing = self.chunks[index] {
            chunk = existing
        } else {
            chunk = .allocate(capacity: SequenceBitset.wordsPerChunk)
            chunk.initialize(repeating: 0, count: SequenceBitset.wordsPerChunk)
            self.chunks[index] = chunk
        }
        self.cachedIndex = index
        self.cachedChunk = chunk
        return chunk
    }
}
