/// A cursor over message bytes with the small grammar pieces syslog needs.
struct ByteScanner {
    /// The bytes scanned.
    let bytes: UnsafeRawBufferPointer
    /// The cursor.
    var position: Int = 0

    /// Whether the cursor is past the last byte.
    var atEnd: Bool { self.position >= self.bytes.count }

    /// The byte `offset` bytes after the cursor, or `nil` past the end.
    func peek(offset: Int = 0) -> UInt8? {
        let index = self.position + offset
        return index < self.bytes.count ? self.bytes[index] : nil
    }

    /// `<PRI>` with 1-3 digits, value 0...191, no leading zeros except `<0>`.
    mutating func priority() -> Int? {
        guard self.peek() == UInt8(ascii: "<") else { return nil }
        var index = self.position + 1
        var value = 0
        let digitsStart = index
        while index < self.bytes.count, index - digitsStart < 3, let digit = ByteScanner.digit(self.bytes[index]) {
            value = value * 10 + digit
            index += 1
        }
        let digitCount = index - digitsStart
        guard digitCount > 0, index < self.bytes.count, self.bytes[index] == UInt8(ascii: ">"), value <= 191,
            digitCount == 1 || self.bytes[digitsStart] != UInt8(ascii: "0")
        else { return nil }
        self.position = index + 1
        return value
    }

    /// The next run of non-SP bytes (possibly empty → `nil`).
    mutating func token() -> Range<Int>? {
        guard let range = self.peekToken() else { return nil }
        self.position = range.upperBound
        return range
    }

    /// The run of non-SP bytes at the cursor, without consuming it.
    func peekToken() -> Range<Int>? {
        var end = self.position
        while end < self.bytes.count, self.bytes[end] != 0x20 { end += 1 }
        return end > self.position ? self.position..<end : nil
    }

    /// Consumes exactly one SP.
    mutating func skipSpace() -> Bool {
        guard self.peek() == 0x20 else { return false }
        self.position += 1
        return true
    }

    /// Whether `range` is the NILVALUE `-`.
    func isNil(_ range: Range<Int>) -> Bool {
        range.count == 1 && self.bytes[range.lowerBound] == UInt8(ascii: "-")
    }

    /// One or more SD-ELEMENTs: `[SD-ID *(SP PARAM-NAME="value")]` (RFC 5424 §6.3; names are 1-32 printable
    /// characters other than `=`, `]` and `"`), values with `\"`, `\\`, `\]` escapes. Anything else is not
    /// structured data (`nil`): encoders copy the SD verbatim, so it must be well-formed.
    mutating func structuredData() -> Range<Int>? {
        let start = self.position
        var index = self.position
        guard index < self.bytes.count, self.bytes[index] == UInt8(ascii: "[") else { return nil }
        while index < self.bytes.count, self.bytes[index] == UInt8(ascii: "[") {
            guard let idEnd = self.sdNameEnd(from: index + 1) else { return nil }
            index = idEnd
            while index < self.bytes.count, self.bytes[index] == 0x20 {
                guard let nameEnd = self.sdNameEnd(from: index + 1), nameEnd + 1 < self.bytes.count,
                    self.bytes[nameEnd] == UInt8(ascii: "="), self.bytes[nameEnd + 1] == UInt8(ascii: "\"")
                else { return nil }
                index = nameEnd + 2
                let valueStart = index
                var ascii = true
                while true {
                    guard index < self.bytes.count else { return nil }
                    let byte = self.bytes[index]
                    if byte == UInt8(ascii: "\\") {
                        index += 2
                        continue
                    }
                    if byte == UInt8(ascii: "\"") { break }
                    if byte >= 0x80 { ascii = false }
                    index += 1
                }
                // PARAM-VALUE is UTF-8 (RFC 5424 §6.3.3): copied through verbatim, it must be valid.
                guard ascii || Self.isValidUTF8(UnsafeRawBufferPointer(rebasing: self.bytes[valueStart..<index])) else {
                    return nil
                }
                index += 1  // past the closing '"'
            }
            guard index < self.bytes.count, self.bytes[index] == UInt8(ascii: "]") else { return nil }
            index += 1  // past ']'
        }
        self.position = index
        return start..<index
    }

    /// Whether `bytes` are well-formed UTF-8.
    static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }

    /// The end of the SD-NAME (SD-ID or PARAM-NAME) that starts at `start`: 1-32 bytes of `!`...`~` other than
    /// `=`, `]` and `"`; `nil` when there is none or it is longer.
    private func sdNameEnd(from start: Int) -> Int? {
        var index = start
        while index < self.bytes.count {
            let byte = self.bytes[index]
            guard byte > 32, byte < 127, byte != UInt8(ascii: "="), byte != UInt8(ascii: "]"), byte != UInt8(ascii: "\"")
            else { break }
            index += 1
        }
        guard index > start, index - start <= 32 else { return nil }
        return index
    }

    /// `Mmm dd hh:mm:ss` (day space- or zero-padded), leaving the cursor after the seconds.
    mutating func bsdTimestamp() -> SyslogMessage.BSDTimestamp? {
        guard self.position + 15 <= self.bytes.count else { return nil }
        let field = UnsafeRawBufferPointer(rebasing: self.bytes[self.position..<(self.position + 15)])
        func b(_ offset: Int) -> UInt8 { field[offset] }
        let monthCode = (UInt32(b(0)) << 16) | (UInt32(b(1)) << 8) | UInt32(b(2))
        guard let month = ByteScanner.monthCodes.firstIndex(of: monthCode), b(3) == 0x20 else { return nil }
        let dayTens = b(4) == 0x20 ? 0 : ByteScanner.digit(b(4))
        guard let tens = dayTens, let ones = ByteScanner.digit(b(5)), b(6) == 0x20,
            let h1 = ByteScanner.digit(b(7)), let h2 = ByteScanner.digit(b(8)), b(9) == UInt8(ascii: ":"),
            let m1 = ByteScanner.digit(b(10)), let m2 = ByteScanner.digit(b(11)), b(12) == UInt8(ascii: ":"),
            let s1 = ByteScanner.digit(b(13)), let s2 = ByteScanner.digit(b(14))
        else { return nil }
        let timestamp = SyslogMessage.BSDTimestamp(
            month: month + 1,
            day: tens * 10 + ones,
            hour: h1 * 10 + h2,
            minute: m1 * 10 + m2,
            second: s1 * 10 + s2
        )
        guard (1...31).contains(timestamp.day), timestamp.hour < 24, timestamp.minute < 60, timestamp.second <= 60
        else {
            return nil
        }
        self.position += 15
        return timestamp
    }

    /// `Jan`...`Dec` packed into 24 bits each, so a month is one integer comparison per candidate.
    static let monthCodes: [UInt32] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ].map {
        let u = Array($0.utf8)
        return (UInt32(u[0]) << 16) | (UInt32(u[1]) << 8) | UInt32(u[2])
    }

    /// The value of an ASCII digit.
    static func digit(_ byte: UInt8) -> Int? {
        byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") ? Int(byte &- UInt8(ascii: "0")) : nil
    }
}
