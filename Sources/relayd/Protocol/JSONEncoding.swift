/// JSON string encoding with UTF-8 validation.
enum JSONEncoding {
    private static let hexDigits: StaticString = "0123456789abcdef"

    /// Appends `"…"`: `"` and `\` escaped, control characters as `\n`, `\r`, `\t`, `\b`, `\f` or `\u00XX`, valid
    /// UTF-8 sequences copied, each byte of an invalid sequence replaced by U+FFFD.
    static func appendString<Sink: ByteSink>(_ bytes: UnsafeRawBufferPointer, into sink: inout Sink) {
        sink.append(UInt8(ascii: "\""))
        var index = 0
        var runStart = 0
        let count = bytes.count
        @inline(__always)
        func flush(_ end: Int, _ sink: inout Sink) {
            if end > runStart { sink.append(UnsafeRawBufferPointer(rebasing: bytes[runStart..<end])) }
        }
        while index < count {
            let byte = bytes[index]
            if byte >= 0x20 && byte < 0x80 && byte != UInt8(ascii: "\"") && byte != UInt8(ascii: "\\") {
                index += 1
                continue
            }
            if byte >= 0x80 {
                let length = Self.validSequenceLength(bytes, at: index)
                if length > 0 {
                    index += length
                    continue
                }
                flush(index, &sink)
                sink.append(0xEF)
                sink.append(0xBF)
                sink.append(0xBD)
                index += 1
                runStart = index
                continue
            }
            flush(index, &sink)
            sink.append(UInt8(ascii: "\\"))
            switch byte {
            case UInt8(ascii: "\""): sink.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"): sink.append(UInt8(ascii: "\\"))
            case 0x0A: sink.append(UInt8(ascii: "n"))
            case 0x0D: sink.append(UInt8(ascii: "r"))
            case 0x09: sink.append(UInt8(ascii: "t"))
            case 0x08: sink.append(UInt8(ascii: "b"))
            case 0x0C: sink.append(UInt8(ascii: "f"))
            default:
                sink.append("u00")
                sink.append(Self.hexDigits.utf8Start[Int(byte >> 4)])
                sink.append(Self.hexDigits.utf8Start[Int(byte & 0xF)])
            }
            index += 1
            runStart = index
        }
        flush(count, &sink)
        sink.append(UInt8(ascii: "\""))
    }

    /// The length (2...4) of the well-formed UTF-8 sequence starting at `index`, or 0 (RFC 3629 table 3-7:
    /// no overlongs, no surrogates, nothing above U+10FFFF).
    static func validSequenceLength(_ bytes: UnsafeRawBufferPointer, at index: Int) -> Int {
        let first = bytes[index]
        let remaining = bytes.count - index
        func continuation(_ offset: Int, _ low: UInt8 = 0x80, _ high: UInt8 = 0xBF) -> Bool {
            offset < remaining && bytes[index + offset] >= low && bytes[index + offset] <= high
        }
        switch first {
        case 0xC2...0xDF:
            return continuation(1) ? 2 : 0
        case 0xE0:
            return continuation(1, 0xA0, 0xBF) && continuation(2) ? 3 : 0
        case 0xE1...0xEC, 0xEE...0xEF:
            return continuation(1) && continuation(2) ? 3 : 0
        case 0xED:
            return continuation(1, 0x80, 0x9F) && continuation(2) ? 3 : 0
        case 0xF0:
            return continuation(1, 0x90, 0xBF) && continuation(2) && continuation(3) ? 4 : 0
        case 0xF1...0xF3:
            return continuation(1) && continuation(2) && continuation(3) ? 4 : 0
        case 0xF4:
            return continuation(1, 0x80, 0x8F) && continuation(2) && continuation(3) ? 4 : 0
        default:
            return 0
        }
    }
}
