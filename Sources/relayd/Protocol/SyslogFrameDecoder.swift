import CRelayLinux

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One record cut out of a byte stream by ``SyslogFrameDecoder``.
///
/// - Warning: ``bytes`` points into the chunk passed to ``SyslogFrameDecoder/decode(_:onFrame:)`` or into the
///   decoder's reassembly buffer; it is valid only inside the `onFrame` call. Copy (encode) it before returning.
struct SyslogFrame {
    /// How the frame was delimited on the wire.
    enum Framing: Equatable, Sendable {
        /// RFC 6587 §3.4.1 `MSG-LEN SP SYSLOG-MSG`.
        case octetCounted
        /// RFC 6587 §3.4.2 non-transparent framing, trailer LF (or NUL when enabled).
        case lf
    }

    /// The frame payload: without the length prefix and without the trailer.
    var bytes: UnsafeRawBufferPointer
    /// How it was delimited.
    var framing: Framing
    /// The frame was longer than `maxFrame`; ``bytes`` holds its first `maxFrame` bytes and the rest was skipped.
    var isTruncated: Bool
    /// The stream ended inside this frame (emitted by ``SyslogFrameDecoder/finish(onFrame:)``).
    var isIncomplete: Bool
}

/// What the owner of a connection should do after ``SyslogFrameDecoder/decode(_:onFrame:)``.
enum FrameDecoderOutcome: Equatable, Sendable {
    /// Keep reading.
    case continueReading
    /// Close the connection: with `framing = "octet-counting"` a frame did not start with `MSG-LEN SP`,
    /// so the stream cannot be resynchronised.
    case closeConnection
}

/// Counters kept by one ``SyslogFrameDecoder``; add them into the input's metrics with ``takeCounters()``-style
/// deltas.
struct FrameDecoderCounters: Sendable, Equatable {
    /// Frames emitted (including truncated and incomplete ones).
    var frames: UInt64 = 0
    /// Emitted frames that were octet-counted.
    var octetCounted: UInt64 = 0
    /// Emitted frames that were LF/NUL-delimited (including bad-prefix fallbacks).
    var lf: UInt64 = 0
    /// Emitted frames that were cut at `maxFrame`.
    var truncated: UInt64 = 0
    /// Frames that started with a digit but had no valid `MSG-LEN SP` prefix.
    var badPrefix: UInt64 = 0
    /// Empty LF frames skipped (a lone LF, e.g. a trailer after an octet-counted frame).
    var emptySkipped: UInt64 = 0
    /// Frames cut short by the end of the stream (an octet-counted frame whose sender closed right
    /// after its `MSG-LEN SP` is counted here too, though it has no byte to emit).
    var incomplete: UInt64 = 0
}

/// An RFC 6587 frame decoder: a pure state machine fed with arbitrary chunks of a byte stream.
///
/// ## Detection (`framing = "auto"`, like rsyslog imtcp)
/// Decided per frame by its first byte:
/// - `1`...`9` starts a length prefix. `MSG-LEN SP` with `MSG-LEN ≤ maxDeclaredLength` makes an octet-counted
///   frame of exactly `MSG-LEN` bytes (no trailer; a stray LF after it becomes an empty frame and is skipped).
/// - Anything else starts an LF-delimited frame, which ends at LF (or NUL when `nulDelimiter` is on).
///   An empty frame (a lone LF) is skipped, as rsyslog discards zero-sized messages.
///
/// ## Bad length prefixes
/// Digits followed by something other than SP, or a length above `maxDeclaredLength` (default `64 × maxFrame`),
/// are counted in ``FrameDecoderCounters/badPrefix``. In `auto` mode the frame is then read as an LF frame that
/// *includes* the digits and the byte after them, so nothing is lost (`"2024-01-01 boot\n"` stays intact). This
/// follows rsyslog, which also falls back to octet stuffing for a zero or too-large count and never closes the
/// connection; it differs in two details: rsyslog keeps octet counting when the delimiter is not SP and drops
/// the delimiter byte, which silently merges messages. With `framing = "octet-counting"` a bad prefix returns
/// ``FrameDecoderOutcome/closeConnection`` (there is no way to resynchronise); LF, CR, NUL and SP between frames
/// are tolerated. With `framing = "lf"` digits are ordinary text.
///
/// ## Oversized frames
/// A frame longer than `maxFrame` is emitted with its first `maxFrame` bytes and ``SyslogFrame/isTruncated``
/// set, as soon as those bytes have arrived; the rest of the frame is skipped (to its octet count or to the next
/// delimiter), so the connection survives. This is rsyslog's `discardTruncatedMsg="on"` behaviour; rsyslog's
/// default would deliver the remainder as further messages. A frame of exactly `maxFrame` bytes is not truncated.
///
/// ## Memory
/// A frame that lies entirely inside one chunk is emitted as a slice of that chunk (no copy). A frame that spans
/// chunks is collected in one reassembly buffer of `maxFrame` bytes allocated at init. No allocation per frame.
struct SyslogFrameDecoder: ~Copyable {
    private enum State {
        /// Between frames.
        case frameStart
        /// Reading `MSG-LEN`; `length` so far.
        case prefix(length: Int)
        /// Reading an LF-delimited frame.
        case lfBody
        /// Reading an octet-counted frame of `total` bytes; `pending` bytes are stored.
        case octetBody(total: Int)
        /// Skipping the unread rest of a truncated octet-counted frame.
        case skipOctets(remaining: Int)
        /// Skipping the rest of a truncated LF frame.
        case skipToDelimiter
        /// A fatal framing error closed the stream (strict octet counting).
        case closed
    }

    /// The largest frame emitted; longer frames are truncated.
    let maxFrame: Int
    /// Declared lengths above this are bad prefixes (a desynchronised stream), not oversized frames.
    let maxDeclaredLength: Int
    /// `auto`, `octet-counting` or `lf`.
    let mode: InputFraming
    /// Whether NUL ends an LF frame as well.
    let nulDelimiter: Bool
    /// Totals since init (or since the last ``takeCounters()``).
    private(set) var counters = FrameDecoderCounters()
    /// Where, in the chunk of the ``decode(_:onFrame:)`` call that returned ``FrameDecoderOutcome/closeConnection``,
    /// the offending frame starts (for the log line).
    private(set) var closedAt: Int?

    private var state: State = .frameStart
    /// Reassembly buffer, `maxFrame` bytes.
    private let buffer: UnsafeMutableRawPointer
    /// Bytes of the current frame held in `buffer`.
    private var pending = 0

    /// Creates a decoder.
    ///
    /// - Parameters:
    ///   - maxFrame: The largest frame to emit (≥ 32).
    ///   - mode: Frame detection; see ``InputFraming``.
    ///   - nulDelimiter: Also end LF frames at NUL.
    ///   - maxDeclaredLength: Larger `MSG-LEN` values are bad prefixes; default `64 × maxFrame`.
    init(maxFrame: Int, mode: InputFraming = .auto, nulDelimiter: Bool = false, maxDeclaredLength: Int? = nil) {
        precondition(maxFrame >= 32, "maxFrame must be at least 32 bytes")
        self.maxFrame = maxFrame
        self.maxDeclaredLength = max(
            maxDeclaredLength ?? (maxFrame > Int.max / 64 ? Int.max : maxFrame * 64),
            maxFrame
        )
        self.mode = mode
        self.nulDelimiter = nulDelimiter
        self.buffer = UnsafeMutableRawPointer.allocate(byteCount: maxFrame, alignment: 16)
    }

    deinit {
        self.buffer.deallocate()
    }

    /// Returns the counters accumulated since the last call and resets them, for adding into shared metrics.
    mutating func takeCounters() -> FrameDecoderCounters {
        defer { self.counters = FrameDecoderCounters() }
        return self.counters
    }

    /// Feeds one chunk of the stream and emits every frame it completes.
    ///
    /// - Parameters:
    ///   - chunk: Bytes just read; may end anywhere, even inside a length prefix.
    ///   - onFrame: Called for each complete (or truncated) frame, in stream order.
    /// - Returns: Whether to keep reading.
    /// - Throws: Whatever `onFrame` throws; the frame that was being delivered counts as consumed.
    mutating func decode<E: Error>(
        _ chunk: UnsafeRawBufferPointer,
        onFrame: (SyslogFrame) throws(E) -> Void
    ) throws(E) -> FrameDecoderOutcome {
        guard let base = chunk.baseAddress, !chunk.isEmpty else {
            if case .closed = self.state { return .closeConnection }
            return .continueReading
        }
        let end = chunk.count
        var position = 0
        // Start (in `chunk`) of the current frame's bytes that are not yet in `buffer`.
        var frameStart = 0
        while position < end {
            switch self.state {
            case .closed:
                return .closeConnection

            case .frameStart:
                let byte = base.load(fromByteOffset: position, as: UInt8.self)
                self.pending = 0
                if self.mode != .lf, byte >= UInt8(ascii: "1"), byte <= UInt8(ascii: "9") {
                    self.state = .prefix(length: Int(byte &- UInt8(ascii: "0")))
                    frameStart = position
                    position += 1
                } else if self.mode == .octetCounting {
                    if byte == 0x0A || byte == 0x0D || byte == 0x00 || byte == 0x20 {
                        position += 1
                    } else {
                        self.counters.badPrefix += 1
                        self.state = .closed
                        self.closedAt = position
                        return .closeConnection
                    }
                } else if byte == 0x0A || (self.nulDelimiter && byte == 0x00) {
                    self.counters.emptySkipped += 1
                    position += 1
                } else {
                    self.state = .lfBody
                    frameStart = position
                }

            case .prefix(var length):
                var valid = true
                while position < end {
                    let byte = base.load(fromByteOffset: position, as: UInt8.self)
                    guard byte >= UInt8(ascii: "0"), byte <= UInt8(ascii: "9") else { break }
                    length = length * 10 + Int(byte &- UInt8(ascii: "0"))
                    position += 1
                    if length > self.maxDeclaredLength {
                        valid = false
                        break
                    }
                }
                if valid && position == end {
                    // The prefix continues in the next chunk; its digits are stashed after the loop.
                    self.state = .prefix(length: length)
                    break
                }
                if valid && base.load(fromByteOffset: position, as: UInt8.self) == 0x20 {
                    position += 1
                    self.pending = 0
                    frameStart = position
                    self.state = .octetBody(total: length)
                } else {
                    self.counters.badPrefix += 1
                    if self.mode == .octetCounting {
                        self.state = .closed
                        self.closedAt = frameStart
                        return .closeConnection
                    }
                    // Fall back to an LF frame that keeps the digits (stashed and/or at `frameStart`); the byte at
                    // `position` is re-examined as frame content, so "123\n" is the frame "123".
                    self.state = .lfBody
                }

            case .octetBody(let total):
                let wanted = min(total, self.maxFrame)
                let needed = wanted - self.pending
                let available = end - position
                if needed <= available {
                    let frameBytes: UnsafeRawBufferPointer
                    if self.pending == 0 {
                        frameBytes = UnsafeRawBufferPointer(start: base + position, count: needed)
                    } else {
                        (self.buffer + self.pending).copyMemory(from: base + position, byteCount: needed)
                        frameBytes = UnsafeRawBufferPointer(start: self.buffer, count: wanted)
                    }
                    position += needed
                    self.pending = 0
                    let truncated = total > self.maxFrame
                    self.state = truncated ? .skipOctets(remaining: total - wanted) : .frameStart
                    self.counters.frames += 1
                    self.counters.octetCounted += 1
                    if truncated { self.counters.truncated += 1 }
                    try onFrame(
                        SyslogFrame(
                            bytes: frameBytes,
                            framing: .octetCounted,
                            isTruncated: truncated,
                            isIncomplete: false
                        )
                    )
                } else {
                    (self.buffer + self.pending).copyMemory(from: base + position, byteCount: available)
                    self.pending += available
                    position = end
                }

            case .lfBody:
                let delimiter = self.findDelimiter(base, from: position, to: end)
                let chunkPart = (delimiter ?? end) - frameStart
                let length = self.pending + chunkPart
                if delimiter == nil && length <= self.maxFrame {
                    self.stash(base + frameStart, count: chunkPart)
                    position = end
                    frameStart = end
                    break
                }
                let truncated = length > self.maxFrame
                let emitted = min(length, self.maxFrame)
                let frameBytes: UnsafeRawBufferPointer
                if self.pending == 0 {
                    frameBytes = UnsafeRawBufferPointer(start: base + frameStart, count: emitted)
                } else {
                    (self.buffer + self.pending).copyMemory(from: base + frameStart, byteCount: emitted - self.pending)
                    frameBytes = UnsafeRawBufferPointer(start: self.buffer, count: emitted)
                }
                self.pending = 0
                if let delimiter {
                    position = delimiter + 1
                    self.state = .frameStart
                } else {
                    position = end
                    self.state = .skipToDelimiter
                }
                self.counters.frames += 1
                self.counters.lf += 1
                if truncated { self.counters.truncated += 1 }
                try onFrame(SyslogFrame(bytes: frameBytes, framing: .lf, isTruncated: truncated, isIncomplete: false))

            case .skipOctets(let remaining):
                let skipped = min(remaining, end - position)
                position += skipped
                self.state = remaining == skipped ? .frameStart : .skipOctets(remaining: remaining - skipped)

            case .skipToDelimiter:
                if let delimiter = self.findDelimiter(base, from: position, to: end) {
                    position = delimiter + 1
                    self.state = .frameStart
                } else {
                    position = end
                }
            }
        }
        switch self.state {
        case .prefix, .lfBody:
            // The chunk ended inside a length prefix (keep its digits in case it turns out to be bad and the frame
            // has to be read as LF text that includes them) or right after a bad prefix was recognised.
            // `.lfBody` stashes its own bytes and moves `frameStart` to `end`, so this only copies a few digits.
            if frameStart < end { self.stash(base + frameStart, count: end - frameStart) }
        default:
            break
        }
        return .continueReading
    }

    /// Signals the end of the stream: emits a partly received frame, as rsyslog does when a sender closes
    /// mid-frame, with ``SyslogFrame/isIncomplete`` set, and resets the decoder.
    ///
    /// - Parameter onFrame: Called at most once.
    /// - Throws: Whatever `onFrame` throws.
    mutating func finish<E: Error>(onFrame: (SyslogFrame) throws(E) -> Void) throws(E) {
        let framing: SyslogFrame.Framing
        switch self.state {
        case .prefix where self.mode == .octetCounting:
            // Strict octet counting: digits the stream ended in are the start of a length prefix, not a
            // frame of their own. A frame was announced and nothing of it arrived: counted, not emitted.
            self.state = .frameStart
            self.pending = 0
            self.counters.incomplete += 1
            return
        case .prefix, .lfBody: framing = .lf
        case .octetBody: framing = .octetCounted
        case .frameStart, .skipOctets, .skipToDelimiter, .closed:
            self.state = .frameStart
            self.pending = 0
            return
        }
        self.state = .frameStart
        let count = self.pending
        self.pending = 0
        guard count > 0 else {
            // A declared frame of which nothing arrived: nothing to emit, but it was lost.
            if framing == .octetCounted { self.counters.incomplete += 1 }
            return
        }
        self.counters.frames += 1
        self.counters.incomplete += 1
        if framing == .lf { self.counters.lf += 1 } else { self.counters.octetCounted += 1 }
        try onFrame(
            SyslogFrame(
                bytes: UnsafeRawBufferPointer(start: self.buffer, count: count),
                framing: framing,
                isTruncated: false,
                isIncomplete: true
            )
        )
    }

    /// Appends bytes of the current frame to the reassembly buffer (callers keep `pending + count ≤ maxFrame`).
    private mutating func stash(_ source: UnsafeRawPointer, count: Int) {
        guard count > 0 else { return }
        (self.buffer + self.pending).copyMemory(from: source, byteCount: count)
        self.pending += count
    }

    /// The index of the first LF (or NUL, when enabled) in `base[from..<to]`.
    private func findDelimiter(_ base: UnsafeRawPointer, from: Int, to: Int) -> Int? {
        guard from < to else { return nil }
        let length = to - from
        let lf = memchr(base + from, 0x0A, length)
        var found = lf.map { UnsafeRawPointer($0) - base }
        if self.nulDelimiter {
            let searchLength = (found ?? to) - from
            if searchLength > 0, let nul = memchr(base + from, 0x00, searchLength) {
                found = UnsafeRawPointer(nul) - base
            }
        }
        return found
    }
}
