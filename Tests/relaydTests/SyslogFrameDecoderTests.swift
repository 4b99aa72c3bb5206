import RelayTestSupport
import Testing

@testable import relayd

/// A frame copied out of the decoder's callback.
struct DecodedFrame: Equatable, CustomStringConvertible {
    var text: String
    var framing: SyslogFrame.Framing
    var truncated = false
    var incomplete = false

    init(_ text: String, _ framing: SyslogFrame.Framing, truncated: Bool = false, incomplete: Bool = false) {
        self.text = text
        self.framing = framing
        self.truncated = truncated
        self.incomplete = incomplete
    }

    init(_ frame: SyslogFrame) {
        self.text = String(decoding: frame.bytes, as: UTF8.self)
        self.framing = frame.framing
        self.truncated = frame.isTruncated
        self.incomplete = frame.isIncomplete
    }

    var description: String {
        "\(self.framing == .lf ? "lf" : "oc")\(self.truncated ? "/trunc" : "")\(self.incomplete ? "/incomplete" : ""):\(self.text.debugDescription)"
    }
}

struct DecodeResult {
    var frames: [DecodedFrame] = []
    var counters = FrameDecoderCounters()
    var closed = false
    /// Frames whose bytes pointed into the caller's chunk (zero-copy) rather than the reassembly buffer.
    var zeroCopyFrames = 0
}

/// Feeds `stream` to a fresh decoder in chunks ending at `cuts` and collects the frames.
func decodeFrames(
    _ stream: [UInt8],
    cuts: [Int] = [],
    maxFrame: Int = 64,
    mode: InputFraming = .auto,
    nulDelimiter: Bool = false,
    finish: Bool = false
) -> DecodeResult {
    var decoder = SyslogFrameDecoder(maxFrame: maxFrame, mode: mode, nulDelimiter: nulDelimiter)
    var result = DecodeResult()
    var start = 0
    for end in cuts.map({ min($0, stream.count) }) + [stream.count] where end >= start {
        stream[start..<end].withUnsafeBytes { chunk in
            let outcome = decoder.decode(chunk) { frame in
                result.frames.append(DecodedFrame(frame))
                if let base = chunk.baseAddress, let framePointer = frame.bytes.baseAddress,
                    framePointer >= base, framePointer < base + chunk.count
                {
                    result.zeroCopyFrames += 1
                }
            }
            if outcome == .closeConnection { result.closed = true }
        }
        start = end
    }
    if finish {
        decoder.finish { result.frames.append(DecodedFrame($0)) }
    }
    result.counters = decoder.counters
    return result
}

func utf8Bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

@Suite("RFC 6587 frame decoder")
struct SyslogFrameDecoderTests {
    /// Octet-counted and LF frames, an empty line, a multi-digit length, a frame whose prefix is bad.
    static let mixedStream = utf8Bytes(
        "11 <13>1 hello<13>lf one\n\n24 <13>1 - - - - - - second2024-01-01 text\n5 abcde"
    )
    static let mixedExpected = [
        DecodedFrame("<13>1 hello", .octetCounted),
        DecodedFrame("<13>lf one", .lf),
        DecodedFrame("<13>1 - - - - - - second", .octetCounted),
        DecodedFrame("2024-01-01 text", .lf),
        DecodedFrame("abcde", .octetCounted),
    ]

    @Test func mixedFramesInOneRead() {
        let result = decodeFrames(Self.mixedStream)
        #expect(result.frames == Self.mixedExpected)
        #expect(result.counters.frames == 5)
        #expect(result.counters.octetCounted == 3)
        #expect(result.counters.lf == 2)
        #expect(result.counters.badPrefix == 1)
        #expect(result.counters.emptySkipped == 1)
        #expect(result.zeroCopyFrames == 5)
        #expect(!result.closed)
    }

    @Test func everySplitPositionGivesTheSameFrames() {
        for cut in 0...Self.mixedStream.count {
            let result = decodeFrames(Self.mixedStream, cuts: [cut])
            #expect(result.frames == Self.mixedExpected, "cut at \(cut)")
            #expect(result.counters.badPrefix == 1, "cut at \(cut)")
        }
    }

    @Test func everyPairOfSplitPositions() {
        let stream = Self.mixedStream
        for first in 0...stream.count {
            for second in first...stream.count {
                let result = decodeFrames(stream, cuts: [first, second])
                #expect(result.frames == Self.mixedExpected, "cuts at \(first), \(second)")
            }
        }
    }

    @Test func oneByteAtATime() {
        let result = decodeFrames(Self.mixedStream, cuts: Array(1..<Self.mixedStream.count))
        #expect(result.frames == Self.mixedExpected)
        #expect(result.zeroCopyFrames == 0)
    }

    @Test func manyFramesInOneRead() {
        var stream: [UInt8] = []
        var expected: [DecodedFrame] = []
        for index in 0..<2000 {
            let message = "<14>1 - host app - - - message \(index)"
            if index % 2 == 0 {
                stream += utf8Bytes("\(message.utf8.count) \(message)")
                expected.append(DecodedFrame(message, .octetCounted))
            } else {
                stream += utf8Bytes(message + "\n")
                expected.append(DecodedFrame(message, .lf))
            }
        }
        let result = decodeFrames(stream, maxFrame: 1024)
        #expect(result.frames == expected)
        #expect(result.counters.frames == 2000)
        #expect(result.zeroCopyFrames == 2000)
    }

    @Test(arguments: [SyslogFrame.Framing.octetCounted, .lf])
    func frameOfExactlyMaxSizeIsNotTruncated(framing: SyslogFrame.Framing) {
        let payload = String(repeating: "x", count: 64)
        let stream = framing == .lf ? utf8Bytes(payload + "\nnext\n") : utf8Bytes("64 " + payload + "4 next")
        for cut in 0...stream.count {
            let result = decodeFrames(stream, cuts: [cut], maxFrame: 64)
            #expect(result.frames == [DecodedFrame(payload, framing), DecodedFrame("next", framing)], "cut at \(cut)")
            #expect(result.counters.truncated == 0)
        }
    }

    @Test func oversizedOctetCountedFrameIsTruncatedAndTheNextFrameParses() {
        let payload = String(repeating: "a", count: 64) + String(repeating: "b", count: 36)
        let stream = utf8Bytes("100 " + payload + "5 after<13>lf\n")
        for cut in 0...stream.count {
            let result = decodeFrames(stream, cuts: [cut], maxFrame: 64)
            #expect(
                result.frames == [
                    DecodedFrame(String(repeating: "a", count: 64), .octetCounted, truncated: true),
                    DecodedFrame("after", .octetCounted),
                    DecodedFrame("<13>lf", .lf),
                ],
                "cut at \(cut)"
            )
            #expect(result.counters.truncated == 1)
        }
    }

    @Test func oversizedLFFrameIsTruncatedAndTheRestOfTheLineSkipped() {
        let stream = utf8Bytes(String(repeating: "a", count: 64) + String(repeating: "b", count: 100) + "\nnext line\n")
        for cut in stride(from: 0, through: stream.count, by: 7) {
            let result = decodeFrames(stream, cuts: [cut, cut + 50], maxFrame: 64)
            #expect(
                result.frames == [
                    DecodedFrame(String(repeating: "a", count: 64), .lf, truncated: true),
                    DecodedFrame("next line", .lf),
                ],
                "cuts at \(cut)"
            )
            #expect(result.counters.truncated == 1)
            #expect(result.counters.frames == 2)
        }
    }

    @Test func lfFrameOneByteOverMaxIsTruncatedEvenWhenTheLFArrivesLater() {
        let payload = String(repeating: "z", count: 65)
        let result = decodeFrames(utf8Bytes(payload + "\nok\n"), cuts: [64, 65], maxFrame: 64)
        #expect(
            result.frames == [DecodedFrame(String(payload.prefix(64)), .lf, truncated: true), DecodedFrame("ok", .lf)]
        )
    }

    @Test(arguments: [
        // Digits not followed by SP: an LF frame that keeps everything.
        ("12abc\nnext\n", ["12abc", "next"], 1),
        // A digit then LF.
        ("7\n", ["7"], 1),
        // A length far above maxFrame (64 × 64 = 4096): a desynchronised stream, read as LF text.
        ("1700000000 epoch line\n", ["1700000000 epoch line"], 1),
        ("99999999999999999999999 x\n", ["99999999999999999999999 x"], 1),
        // Leading zero: not a valid MSG-LEN start; plain LF text, not counted as a bad prefix.
        ("0 zero\n", ["0 zero"], 0),
        // Non-digit start: an LF frame.
        ("<13>hello\n", ["<13>hello"], 0),
    ])
    func badLengthPrefixesFallBackToLFFrames(stream: String, expected: [String], badPrefixes: UInt64) {
        let data = utf8Bytes(stream)
        for cut in 0...data.count {
            let result = decodeFrames(data, cuts: [cut], maxFrame: 64)
            #expect(result.frames.map(\.text) == expected, "cut at \(cut)")
            #expect(result.frames.allSatisfy { $0.framing == .lf })
            #expect(result.counters.badPrefix == badPrefixes)
            #expect(!result.closed)
        }
    }

    @Test func lengthAboveMaxFrameButBelowTheDesyncLimitIsATruncatedFrame() {
        let body = String(repeating: "q", count: 200)
        let result = decodeFrames(utf8Bytes("200 \(body)3 end"), maxFrame: 64)
        #expect(
            result.frames == [
                DecodedFrame(String(body.prefix(64)), .octetCounted, truncated: true),
                DecodedFrame("end", .octetCounted),
            ]
        )
        #expect(result.counters.badPrefix == 0)
    }

    @Test func strictOctetCountingClosesOnABadPrefix() {
        let good = decodeFrames(utf8Bytes("3 abc\n\r\n3 def"), mode: .octetCounting)
        #expect(good.frames == [DecodedFrame("abc", .octetCounted), DecodedFrame("def", .octetCounted)])
        #expect(!good.closed)

        let letters = decodeFrames(utf8Bytes("3 abchello\n3 def"), mode: .octetCounting)
        #expect(letters.frames == [DecodedFrame("abc", .octetCounted)])
        #expect(letters.closed)
        #expect(letters.counters.badPrefix == 1)

        let noSpace = decodeFrames(utf8Bytes("3x abc"), cuts: [1], mode: .octetCounting)
        #expect(noSpace.frames.isEmpty)
        #expect(noSpace.closed)
    }

    @Test func lfModeTreatsDigitsAsText() {
        let result = decodeFrames(utf8Bytes("5 abcde\n12 x\n"), mode: .lf)
        #expect(result.frames == [DecodedFrame("5 abcde", .lf), DecodedFrame("12 x", .lf)])
        #expect(result.counters.octetCounted == 0)
    }

    @Test func emptyLinesAreSkippedAndCounted() {
        let result = decodeFrames(utf8Bytes("\n\n\none\n\n\ntwo\n\n"))
        #expect(result.frames.map(\.text) == ["one", "two"])
        #expect(result.counters.emptySkipped == 6)
        #expect(result.counters.frames == 2)
    }

    @Test func nulDelimiterWhenEnabled() {
        let stream: [UInt8] = utf8Bytes("<13>a") + [0] + utf8Bytes("<13>b\n<13>c") + [0]
        let enabled = decodeFrames(stream, nulDelimiter: true)
        #expect(enabled.frames.map(\.text) == ["<13>a", "<13>b", "<13>c"])
        let disabled = decodeFrames(stream, nulDelimiter: false)
        #expect(disabled.frames.map(\.text) == ["<13>a\u{0}<13>b"])
    }

    @Test func finishEmitsAPartialFrameAsIncomplete() {
        let lf = decodeFrames(utf8Bytes("one\ntwo without newline"), cuts: [6], finish: true)
        #expect(lf.frames == [DecodedFrame("one", .lf), DecodedFrame("two without newline", .lf, incomplete: true)])
        #expect(lf.counters.incomplete == 1)

        let octet = decodeFrames(utf8Bytes("10 abc"), finish: true)
        #expect(octet.frames == [DecodedFrame("abc", .octetCounted, incomplete: true)])

        let digits = decodeFrames(utf8Bytes("123"), finish: true)
        #expect(digits.frames == [DecodedFrame("123", .lf, incomplete: true)])

        // Strict octet counting: digits the stream ended in begin a length prefix, they are no frame of
        // their own. Nothing is emitted; the announced frame is counted lost.
        let strictDigits = decodeFrames(utf8Bytes("3 abc12"), mode: .octetCounting, finish: true)
        #expect(strictDigits.frames == [DecodedFrame("abc", .octetCounted)])
        #expect(strictDigits.counters.incomplete == 1)

        let clean = decodeFrames(utf8Bytes("3 abc"), finish: true)
        #expect(clean.frames == [DecodedFrame("abc", .octetCounted)])

        // The sender closed right after the length prefix: nothing to emit, but the frame is counted lost.
        let empty = decodeFrames(utf8Bytes("3 abc10 "), finish: true)
        #expect(empty.frames == [DecodedFrame("abc", .octetCounted)])
        #expect(empty.counters.incomplete == 1)
    }

    @Test func takeCountersResets() {
        var decoder = SyslogFrameDecoder(maxFrame: 64)
        utf8Bytes("a\nb\n").withUnsafeBytes { _ = decoder.decode($0) { _ in } }
        let first = decoder.takeCounters()
        #expect(first.frames == 2)
        #expect(decoder.counters == FrameDecoderCounters())
    }

    struct Stop: Error {}

    @Test func aThrowingCallbackStopsDecoding() {
        var decoder = SyslogFrameDecoder(maxFrame: 64)
        var seen = 0
        #expect(throws: Stop.self) {
            try utf8Bytes("a\nb\nc\n").withUnsafeBytes { chunk in
                _ = try decoder.decode(chunk) { (_: SyslogFrame) throws(Stop) in
                    seen += 1
                    if seen == 2 { throw Stop() }
                }
            }
        }
        #expect(seen == 2)
    }
}

@Suite("RFC 6587 frame decoder, randomized")
struct SyslogFrameDecoderRandomizedTests {
    /// Random streams of valid, oversized, empty and bad-prefix frames decode identically however they are split.
    @Test(arguments: [InputFraming.auto, .lf], [false, true])
    func splittingNeverChangesTheResult(mode: InputFraming, nul: Bool) {
        var random = SplitMix64(state: 0x5EED)
        for round in 0..<200 {
            var stream: [UInt8] = []
            for _ in 0..<Int.random(in: 1...12, using: &random) {
                let length = Int.random(in: 0...100, using: &random)
                let body = (0..<length).map { _ in
                    UInt8.random(in: UInt8(ascii: "a")...UInt8(ascii: "z"), using: &random)
                }
                switch Int.random(in: 0..<5, using: &random) {
                case 0 where length > 0: stream += utf8Bytes("\(length) ") + body
                case 1: stream += utf8Bytes("\(length)x") + body + [0x0A]
                case 2: stream += [0x0A]
                case 3: stream += body + [0x00]
                default: stream += body + [0x0A]
                }
            }
            let reference = decodeFrames(stream, maxFrame: 48, mode: mode, nulDelimiter: nul, finish: true)
            let cuts = (0..<Int.random(in: 1...6, using: &random)).map { _ in
                Int.random(in: 0...stream.count, using: &random)
            }.sorted()
            let split = decodeFrames(stream, cuts: cuts, maxFrame: 48, mode: mode, nulDelimiter: nul, finish: true)
            #expect(split.frames == reference.frames, "round \(round), cuts \(cuts)")
            #expect(split.counters == reference.counters, "round \(round), cuts \(cuts)")
            #expect(reference.frames.allSatisfy { $0.text.utf8.count <= 48 })
        }
    }
}
