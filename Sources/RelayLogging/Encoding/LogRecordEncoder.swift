//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Logging

/// Encodes log records straight into caller-provided memory, in one ``RecordFormat``.
///
/// ```swift
/// let encoder = LogRecordEncoder(format: .jsonLines)
/// let outcome = reservation.withUnsafeMutableBytes { raw in   // memory reserved in a relay channel
///     var cursor = ByteCursor(raw)
///     return encoder.encode(fields, into: &cursor, maxBytes: 16 * 1024)
/// }
/// if outcome.isComplete { reservation.commit(outcome.bytesWritten) }
/// else if outcome.needsLargerBuffer { /* reserve outcome.requiredCapacity bytes and encode again */ }
/// else { /* outcome.isDropped: count it */ }
/// ```
///
/// Encoding builds no intermediate `String` or `Array` and, for records without an error and without
/// `stringConvertible` metadata (whose `description` is called), does not allocate. The handler's
/// metadata is written in byte-wise UTF-8 key order (it is rendered once); provider and call
/// metadata, and dictionaries nested in them, in that order too with ``sortsMetadataKeys``, or in
/// the dictionaries' iteration order without it. The three metadata layers are merged as described
/// in ``MetadataMerge``.
///
/// ## Size limit and truncation
///
/// A record never exceeds `maxBytes` and is never split. When it would, the encoder shortens it in
/// this order until it fits, and appends the marker `…[truncated N bytes]` to the message, where N
/// is the number of encoded bytes removed:
///
/// 1. the message is cut (at a Unicode scalar boundary, never inside an escape);
/// 2. then the message is emptied and whole top-level metadata entries are dropped from the end
///    (handler entries come first, then provider entries, then call entries, each in output order);
/// 3. then all metadata is dropped and the error description is cut.
///
/// The result is still one valid JSON line, logfmt line or RFC 5424 message (with a correct octet
/// count). If even that does not fit (a tiny `maxBytes`, or a huge label, file or function name),
/// nothing is written and the outcome ``EncodeOutcome/isDropped``.
///
/// ## Passes
///
/// The common case is one pass straight into the destination. The cursor keeps counting when the
/// destination is too small, so a failed pass yields the exact size (``EncodeOutcome/requiredCapacity``).
/// Truncation costs two more passes (one measuring, one writing). With RFC 6587 octet counting the
/// length prefix is not known until the body is written, so the body is written at an offset that
/// leaves room for the longest possible prefix (as many digits as the free space has), then the
/// exact prefix is written and the body moved left over the unused digits — one `memmove` of the
/// body, cheaper than an extra measuring pass over every record.
///
/// - Note: `stringConvertible` descriptions and the error's description are expected to be
///   deterministic; when a retry or truncation pass sees a different length, the outcome reports the
///   new size (or a drop) instead of writing a wrong frame.
package struct LogRecordEncoder: Sendable {
    /// The format records are encoded in.
    package let format: RecordFormat

    /// Whether provider and per-call metadata (and dictionaries nested in any metadata) are written
    /// with their keys in byte-wise order. Otherwise they are written in the dictionaries' iteration
    /// order, which saves sorting on every record; the handler's own metadata is always sorted (it is
    /// rendered once).
    package let sortsMetadataKeys: Bool

    /// Creates an encoder.
    ///
    /// - Parameters:
    ///   - format: The record format (JSON Lines by default).
    ///   - sortsMetadataKeys: Whether per-record metadata keys are sorted (see ``sortsMetadataKeys``).
    package init(format: RecordFormat = .jsonLines, sortsMetadataKeys: Bool = true) {
        self.format = format
        self.sortsMetadataKeys = sortsMetadataKeys
    }

    /// Encodes one record at the cursor's current position.
    ///
    /// On success the cursor has advanced by ``EncodeOutcome/bytesWritten``; otherwise it is unchanged
    /// (bytes after its position may have been scribbled on). With a measuring cursor
    /// (``ByteCursor/measuring()``) this computes the record's exact size without writing.
    ///
    /// - Parameters:
    ///   - record: The record.
    ///   - cursor: Where to write.
    ///   - maxBytes: The largest record allowed, framing included (the trailing LF, or the RFC 6587
    ///     length prefix). Larger records are truncated.
    /// - Returns: What was written, or what is needed.
    package func encode(
        _ record: borrowing LogRecordFields,
        into cursor: inout ByteCursor,
        maxBytes: Int
    ) -> EncodeOutcome {
        let inputs = EncodingInputs(record)
        if case .rfc5424(let options) = self.format, options.octetCounting {
            return self.encodeOctetCounted(record, inputs, into: &cursor, maxBytes: maxBytes)
        }
        return self.encodeDelimited(record, inputs, into: &cursor, maxBytes: maxBytes)
    }

    /// Computes the exact size of a record (after truncation to `maxBytes`) without writing it.
    ///
    /// - Parameters:
    ///   - record: The record.
    ///   - maxBytes: The largest record allowed.
    /// - Returns: The outcome a large enough buffer would get (`bytesWritten` is the size).
    package func measure(_ record: borrowing LogRecordFields, maxBytes: Int) -> EncodeOutcome {
        var cursor = ByteCursor.measuring()
        return self.encode(record, into: &cursor, maxBytes: maxBytes)
    }

    // MARK: - Framing

    /// JSON Lines, logfmt and LF-terminated RFC 5424: the record is one body with its terminator.
    private func encodeDelimited(
        _ record: borrowing LogRecordFields,
        _ inputs: EncodingInputs,
        into cursor: inout ByteCursor,
        maxBytes: Int
    ) -> EncodeOutcome {
        guard maxBytes > 0 else { return .dropped }
        var sizes = ComponentSizes()
        var body = cursor.subcursor(skipping: 0, limit: maxBytes)
        self.writeBody(record, inputs, plan: TruncationPlan(), into: &body, sizes: &sizes)
        if !body.overflowed {
            cursor.advance(by: body.count)
            return .written(body.count, truncated: false)
        }
        if body.count <= maxBytes {
            return .needs(body.count, truncated: false)
        }
        guard let plan = self.truncationPlan(record, inputs, total: body.count, sizes: sizes, limit: maxBytes) else {
            return .dropped
        }
        body = cursor.subcursor(skipping: 0, limit: maxBytes)
        self.writeBody(record, inputs, plan: plan, into: &body, sizes: &sizes)
        if !body.overflowed {
            cursor.advance(by: body.count)
            return .written(body.count, truncated: true)
        }
        return body.count <= maxBytes ? .needs(body.count, truncated: true) : .dropped
    }

    /// RFC 6587 octet counting: `MSG-LEN SP SYSLOG-MSG`.
    private func encodeOctetCounted(
        _ record: borrowing LogRecordFields,
        _ inputs: EncodingInputs,
        into cursor: inout ByteCursor,
        maxBytes: Int
    ) -> EncodeOutcome {
        var sizes = ComponentSizes()
        let untruncated = self.attemptFrame(
            record, inputs, plan: TruncationPlan(), truncated: false, into: &cursor, sizes: &sizes, maxBytes: maxBytes
        )
        if let outcome = untruncated.outcome { return outcome }

        // The body alone is too large: truncate it to the largest body whose frame fits maxBytes.
        var bodyMax = maxBytes - 2
        while bodyMax > 0, ByteCursor.decimalDigitCount(UInt64(bodyMax)) + 1 > maxBytes - bodyMax {
            bodyMax -= 1
        }
        guard bodyMax > 0,
            let plan = self.truncationPlan(record, inputs, total: untruncated.body, sizes: sizes, limit: bodyMax)
        else {
            return .dropped
        }
        return self.attemptFrame(
            record, inputs, plan: plan, truncated: true, into: &cursor, sizes: &sizes, maxBytes: maxBytes
        )
        .outcome ?? .dropped
    }

    private static func frameLength(body: Int) -> Int {
        ByteCursor.decimalDigitCount(UInt64(body)) + 1 + body
    }

    /// Encodes one octet-counted frame with `plan`. The body goes at an offset that leaves room for the
    /// longest possible prefix; if that reservation made it not fit although the exact frame fits, it is
    /// encoded once more at the exact offset. Returns `nil` with the body length when the body exceeds
    /// `maxBytes`.
    private func attemptFrame(
        _ record: borrowing LogRecordFields,
        _ inputs: EncodingInputs,
        plan: TruncationPlan,
        truncated: Bool,
        into cursor: inout ByteCursor,
        sizes: inout ComponentSizes,
        maxBytes: Int
    ) -> (outcome: EncodeOutcome?, body: Int) {
        let free = cursor.isMeasuring ? Int.max : cursor.remainingCapacity
        let frameCapacity = Swift.min(free, maxBytes)
        let guessDigits = ByteCursor.decimalDigitCount(UInt64(Swift.max(0, frameCapacity)))
        let first = self.writeFrame(
            record, inputs, plan: plan, into: &cursor, sizes: &sizes,
            prefixDigits: guessDigits, bodyLimit: frameCapacity - guessDigits - 1
        )
        if let frame = first.frame { return (.written(frame, truncated: truncated), first.body) }
        let needed = Self.frameLength(body: first.body)
        guard needed <= maxBytes else { return (nil, first.body) }
        guard needed <= free else { return (.needs(needed, truncated: truncated), first.body) }
        let second = self.writeFrame(
            record, inputs, plan: plan, into: &cursor, sizes: &sizes,
            prefixDigits: ByteCursor.decimalDigitCount(UInt64(first.body)), bodyLimit: first.body
        )
        if let frame = second.frame { return (.written(frame, truncated: truncated), second.body) }
        let retryNeeded = Self.frameLength(body: second.body)
        return (retryNeeded <= maxBytes ? .needs(retryNeeded, truncated: truncated) : .dropped, second.body)
    }

    /// Writes the body at offset `prefixDigits + 1`, then moves it right behind its exact `MSG-LEN SP`
    /// prefix. Returns the frame length, or `nil` and the body length when the body did not fit.
    private func writeFrame(
        _ record: borrowing LogRecordFields,
        _ inputs: EncodingInputs,
        plan: TruncationPlan,
        into cursor: inout ByteCursor,
        sizes: inout ComponentSizes,
        prefixDigits: Int,
        bodyLimit: Int
    ) -> (frame: Int?, body: Int) {
        var body = cursor.subcursor(skipping: prefixDigits + 1, limit: bodyLimit)
        self.writeBody(record, inputs, plan: plan, into: &body, sizes: &sizes)
        let bodyLength = body.count
        guard !body.overflowed else { return (nil, bodyLength) }
        let digits = ByteCursor.decimalDigitCount(UInt64(bodyLength))
        let start = cursor.count
        cursor.moveBytes(from: start + prefixDigits + 1, to: start + digits + 1, length: bodyLength)
        cursor.appendDecimal(UInt64(bodyLength))
        cursor.append(UInt8(ascii: " "))
        cursor.advance(by: bodyLength)
        return (digits + 1 + bodyLength, bodyLength)
    }

    // MARK: - Truncation

    /// Decides how much of the message, metadata and error description a record may keep to fit
    /// `limit` bytes, and how many bytes that removes (for the marker). Returns `nil` when even the
    /// fixed fields do not fit.
    private func truncationPlan(
        _ record: borrowing LogRecordFields,
        _ inputs: EncodingInputs,
        total: Int,
        sizes: ComponentSizes,
        limit: Int
    ) -> TruncationPlan? {
        let fixed = total - sizes.message - sizes.metadata - sizes.error
        // The marker can never report more bytes than the record had. RFC 5424 adds the space before
        // MSG when the message was empty.
        var markerRoom = TruncationPlan.markerLength(droppedBytes: total)
        if case .rfc5424 = self.format { markerRoom += 1 }

        var plan = TruncationPlan()
        if fixed + sizes.metadata + sizes.error + markerRoom <= limit {
            plan.messageLimit = limit - fixed - sizes.metadata - sizes.error - markerRoom
        } else if fixed + sizes.error + markerRoom <= limit {
            plan.messageLimit = 0
            plan.metadataLimit = limit - fixed - sizes.error - markerRoom
        } else if fixed + markerRoom <= limit {
            plan.messageLimit = 0
            plan.metadataLimit = 0
            plan.errorLimit = limit - fixed - markerRoom
        } else {
            return nil
        }

        // Measure what survives to count the removed bytes.
        plan.droppedBytes = 0
        var measure = ByteCursor.measuring()
        var kept = ComponentSizes()
        self.writeBody(record, inputs, plan: plan, into: &measure, sizes: &kept)
        plan.droppedBytes =
            (sizes.message - kept.message) + (sizes.metadata - kept.metadata) + (sizes.error - kept.error)
        return plan
    }

    // MARK: - Bodies

    private func writeBody(
        _ record: borrowing LogRecordFields,
        _ inputs: EncodingInputs,
        plan: TruncationPlan,
        into cursor: inout ByteCursor,
        sizes: inout ComponentSizes
    ) {
        switch self.format {
        case .jsonLines:
            self.writeJSONLine(record, inputs, plan: plan, into: &cursor, sizes: &sizes)
        case .logfmt:
            self.writeLogfmtLine(record, inputs, plan: plan, into: &cursor, sizes: &sizes)
        case .rfc5424(let options):
            self.writeSyslogMessage(record, inputs, options: options, plan: plan, into: &cursor, sizes: &sizes)
        }
    }

    /// Writes the message (cut to the plan) and, when truncating, the marker.
    internal func writeMessage(
        _ record: borrowing LogRecordFields,
        style: EscapeStyle,
        plan: TruncationPlan,
        into cursor: inout ByteCursor,
        sizes: inout ComponentSizes
    ) {
        let result = cursor.appendEscaped(record.message.description, style: style, limit: plan.messageLimit)
        sizes.message = result.written
        if let dropped = plan.droppedBytes {
            TruncationPlan.appendMarker(droppedBytes: dropped, into: &cursor)
        }
    }

    /// Writes the error description (cut to the plan).
    internal func writeErrorMessage(
        _ inputs: EncodingInputs,
        style: EscapeStyle,
        plan: TruncationPlan,
        into cursor: inout ByteCursor,
        sizes: inout ComponentSizes
    ) {
        guard let message = inputs.errorMessage else { return }
        sizes.error = cursor.appendEscaped(message, style: style, limit: plan.errorLimit).written
    }

    /// Writes all metadata entries (handler, then provider, then call; overridden keys left out), each
    /// with its leading separator, dropping whole entries past the plan's metadata budget.
    internal func writeMetadataEntries(
        _ record: borrowing LogRecordFields,
        _ inputs: EncodingInputs,
        style: MetadataStyle,
        plan: TruncationPlan,
        into cursor: inout ByteCursor,
        sizes: inout ComponentSizes
    ) {
        var emitter = MetadataEmitter(start: cursor.count, limit: plan.metadataLimit)
        let handler = record.handlerMetadata
        let provider = record.providerMetadata
        let call = record.callMetadata
        let isJSON = style == .json

        if !handler.isEmpty {
            if handler.style == style {
                if !inputs.handlerOverridden && plan.metadataLimit == Int.max {
                    // Common case: copy the pre-rendered block.
                    handler.withBytes { all in
                        let skip = isJSON && emitter.first ? 1 : 0
                        cursor.append(contentsOf: UnsafeRawBufferPointer(rebasing: all[skip...]))
                    }
                    emitter.first = false
                } else {
                    for i in 0..<handler.count {
                        if inputs.handlerOverridden,
                            MetadataMerge.isHandlerKeyOverridden(
                                handler.sortedEntries[i].key, provider: provider, call: call)
                        {
                            continue
                        }
                        emitter.emit(into: &cursor) { cursor, first in
                            handler.withEntryBytes(i) { bytes in
                                let skip = isJSON && first ? 1 : 0
                                cursor.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[skip...]))
                            }
                        }
                    }
                }
            } else {
                // Built for another format: render from the frozen entries.
                for i in 0..<handler.count {
                    let entry = handler.sortedEntries[i]
                    if inputs.handlerOverridden,
                        MetadataMerge.isHandlerKeyOverridden(entry.key, provider: provider, call: call)
                    {
                        continue
                    }
                    emitter.emit(into: &cursor) { cursor, first in
                        cursor.appendMetadataEntry(key: entry.key, value: entry.value, style: style, first: first)
                    }
                }
            }
        }
        let sortKeys = self.sortsMetadataKeys
        if let provider, !provider.isEmpty {
            withSortedIndices(of: provider, sorted: sortKeys) { indices in
                for index in indices {
                    let (key, value) = provider[index]
                    if inputs.providerOverridden, call?[key] != nil { continue }
                    emitter.emit(into: &cursor) { cursor, first in
                        cursor.appendMetadataEntry(key: key, value: value, style: style, first: first, sortKeys: sortKeys)
                    }
                }
            }
        }
        if let call, !call.isEmpty {
            withSortedIndices(of: call, sorted: sortKeys) { indices in
                for index in indices {
                    let (key, value) = call[index]
                    emitter.emit(into: &cursor) { cursor, first in
                        cursor.appendMetadataEntry(key: key, value: value, style: style, first: first, sortKeys: sortKeys)
                    }
                }
            }
        }
        sizes.metadata = cursor.count - emitter.start
    }
}

// MARK: - Encoding state

/// Per-record facts computed once per `encode` call and shared by its passes.
internal struct EncodingInputs {
    /// `String(describing: error)`, when there is an error.
    let errorMessage: String?
    /// `String(reflecting: type(of: error))`, when there is an error.
    let errorType: String?
    /// Whether the provider or the call overrides a handler key.
    let handlerOverridden: Bool
    /// Whether the call overrides a provider key.
    let providerOverridden: Bool
    /// Whether any metadata layer has entries.
    let hasMetadata: Bool

    init(_ record: borrowing LogRecordFields) {
        if let frozen = record.frozenError {
            self.errorMessage = frozen.message
            self.errorType = frozen.type
        } else if let error = record.error {
            self.errorMessage = String(describing: error)
            self.errorType = String(reflecting: type(of: error))
        } else {
            self.errorMessage = nil
            self.errorType = nil
        }
        let handler = record.handlerMetadata
        self.handlerOverridden =
            !handler.isEmpty
            && (MetadataMerge.overridesAny(record.providerMetadata, in: handler.metadata)
                || MetadataMerge.overridesAny(record.callMetadata, in: handler.metadata))
        if let provider = record.providerMetadata {
            self.providerOverridden = MetadataMerge.overridesAny(record.callMetadata, in: provider)
        } else {
            self.providerOverridden = false
        }
        self.hasMetadata =
            !handler.isEmpty || !(record.providerMetadata?.isEmpty ?? true) || !(record.callMetadata?.isEmpty ?? true)
    }
}

/// Byte budgets for a truncated record. The default plan keeps everything and writes no marker.
internal struct TruncationPlan {
    /// The most escaped bytes of message text.
    var messageLimit = Int.max
    /// The most bytes of metadata entries (whole entries only).
    var metadataLimit = Int.max
    /// The most escaped bytes of error description.
    var errorLimit = Int.max
    /// When set, the marker `…[truncated N bytes]` is written after the message.
    var droppedBytes: Int?

    /// The length of the marker for `droppedBytes` (the marker is ASCII except for the 3-byte `…`).
    static func markerLength(droppedBytes: Int) -> Int {
        21 + ByteCursor.decimalDigitCount(UInt64(Swift.max(0, droppedBytes)))
    }

    static func appendMarker(droppedBytes: Int, into cursor: inout ByteCursor) {
        cursor.append("…[truncated ")
        cursor.appendDecimal(UInt64(Swift.max(0, droppedBytes)))
        cursor.append(" bytes]")
    }
}

/// The lengths of the parts of a record that truncation can shorten, as written in a pass.
internal struct ComponentSizes {
    /// Escaped message text (without the marker).
    var message = 0
    /// All metadata entries with their separators (without the enclosing syntax).
    var metadata = 0
    /// Escaped error description.
    var error = 0
}

/// Writes top-level metadata entries while they fit a budget; after the first that does not, it
/// writes nothing more.
internal struct MetadataEmitter {
    let start: Int
    let limit: Int
    var first = true
    var stopped = false

    init(start: Int, limit: Int) {
        self.start = start
        self.limit = limit
    }

    mutating func emit(into cursor: inout ByteCursor, _ write: (inout ByteCursor, _ first: Bool) -> Void) {
        guard !self.stopped else { return }
        let mark = cursor.count
        write(&cursor, self.first)
        if cursor.count - self.start > self.limit {
            cursor.rewind(to: mark)
            self.stopped = true
            return
        }
        self.first = false
    }
}
