/// "Did you mean" suggestions for misspelt keys and enum values.
enum KeySuggestion {
    /// The candidate closest to `word`, if it is close enough to be a plausible typo.
    ///
    /// Close enough means an edit distance of at most 2 (at most 1 for words of up to 4 characters),
    /// after treating `-` and `_` as equal and ignoring case.
    ///
    /// - Parameters:
    ///   - word: What the user wrote.
    ///   - candidates: The valid spellings.
    /// - Returns: The best candidate, or `nil`.
    static func closest(to word: String, among candidates: [String]) -> String? {
        let normalizedWord = Self.normalize(word)
        var best: (candidate: String, distance: Int)?
        for candidate in candidates {
            let distance = Self.editDistance(normalizedWord, Self.normalize(candidate))
            if best == nil || distance < best!.distance {
                best = (candidate, distance)
            }
        }
        guard let best else { return nil }
        let limit = normalizedWord.count <= 4 ? 1 : 2
        return best.distance <= limit ? best.candidate : nil
    }

    /// `; did you mean "x"?` or, without a close candidate, `; valid keys: a, b, c`.
    ///
    /// - Parameters:
    ///   - word: What the user wrote.
    ///   - candidates: The valid spellings.
    ///   - noun: What the candidates are ("keys", "values").
    /// - Returns: The hint, starting with `; `.
    static func hint(for word: String, among candidates: [String], noun: String = "keys") -> String {
        if let suggestion = Self.closest(to: word, among: candidates) {
            return "; did you mean \"\(suggestion)\"?"
        }
        return "; valid \(noun): " + candidates.joined(separator: ", ")
    }

    private static func normalize(_ word: String) -> [UInt8] {
        word.lowercased().utf8.map { $0 == UInt8(ascii: "-") ? UInt8(ascii: "_") : $0 }
    }

    /// Levenshtein distance with adjacent transposition counted as one edit.
    static func editDistance(_ a: [UInt8], _ b: [UInt8]) -> Int {
        if a.isEmpty { return b.count }
        if b.isEmpty { return a.count }
        var previousPrevious = [Int](repeating: 0, count: b.count + 1)
        var previous = Array(0...b.count)
        var current = [Int](repeating: 0, count: b.count + 1)
        for i in 1...a.count {
            current[0] = i
            for j in 1...b.count {
                let cost = a[i - 1] == b[j - 1] ? 0 : 1
                current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
                if i > 1, j > 1, a[i - 1] == b[j - 2], a[i - 2] == b[j - 1] {
                    current[j] = min(current[j], previousPrevious[j - 2] + 1)
                }
            }
            (previousPrevious, previous, current) = (previous, current, previousPrevious)
        }
        return previous[b.count]
    }
}
