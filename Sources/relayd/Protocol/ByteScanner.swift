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

    /// `Mmm dd hh:mm:ss` (day space- or zero-padded, or a one-digit day without padding, `Mmm d hh:mm:ss`, which
    /// many devices send and rsyslog accepts), leaving the cursor after the seconds.
    mutating func bsdTimestamp() -> SyslogMessage.BSDTimestamp? {
        guard self.position + 14 <= self.bytes.count else { return nil }
        func b(_ offset: Int) -> UInt8? {
            self.position + offset < self.bytes.count ? self.bytes[self.position + offset] : nil
        }
        guard let c0 = b(0), let c1 = b(1), let c2 = b(2) else { return nil }
        let monthCode = (UInt32(c0) << 16) | (UInt32(c1) << 8) | UInt32(c2)
        guard let month = ByteScanner.monthCodes.firstIndex(of: monthCode), b(3) == 0x20, let d4 = b(4), let d5 = b(5)
        else { return nil }
        // The time starts after the day and one SP: at 7 for "Mmm dd " and "Mmm  d ", at 6 for "Mmm d ".
        let day: Int
        let time: Int
        if d5 == 0x20, let ones = ByteScanner.digit(d4) {
            day = ones
            time = 6
        } else {
            let dayTens = d4 == 0x20 ? 0 : ByteScanner.digit(d4)
            guard let tens = dayTens, let ones = ByteScanner.digit(d5), b(6) == 0x20 else { return nil }
            day = tens * 10 + ones
            time = 7
        }
        guard let h1 = b(time).flatMap(ByteScanner.digit), let h2 = b(time + 1).flatMap(ByteScanner.digit),
            b(time + 2) == UInt8(ascii: ":"),
            let m1 = b(time + 3).flatMap(ByteScanner.digit), let m2 = b(time + 4).flatMap(ByteScanner.digit),
            b(time + 5) == UInt8(ascii: ":"),
            let s1 = b(time + 6).flatMap(ByteScanner.digit), let s2 = b(time + 7).flatMap(ByteScanner.digit)
        else { return nil }
        let timestamp = SyslogMessage.BSDTimestamp(
            month: month + 1,
            day: day,
            hour: h1 * 10 + h2,
            minute: m1 * 10 + m2,
            second: s1 * 10 + s2
        )
        guard (1...31).contains(timestamp.day), timestamp.hour < 24, timestamp.minute < 60, timestamp.second <= 60
        else {
            return nil
        }
        self.position += time + 8
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
