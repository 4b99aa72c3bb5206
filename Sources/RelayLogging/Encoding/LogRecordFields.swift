//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

package import Logging

/// Everything a record encoder needs to render one log record.
///
/// Filling it copies references only (strings, dictionaries and the error are retained, not
/// copied), so `log(event:)` can build one per event without allocating. Metadata is kept in its
/// three layers and merged while encoding, in swift-log's documented order: handler metadata, then
/// the metadata provider, then the per-call metadata; a later layer wins on a key collision.
package struct LogRecordFields {
    /// The record's time, in nanoseconds since the Unix epoch (UTC).
    package var timestampNanoseconds: Int64
    /// The level.
    package var level: Logger.Level
    /// The logger's label.
    package var label: String
    /// The message.
    package var message: Logger.Message
    /// The handler's own metadata, pre-rendered (lowest precedence).
    package var handlerMetadata: PreEncodedMetadata
    /// What the metadata provider returned for this record, if any (middle precedence).
    package var providerMetadata: Logger.Metadata?
    /// The metadata passed with the log call, if any (highest precedence).
    package var callMetadata: Logger.Metadata?
    /// The source (usually the module) the record comes from, when the call site gave one.
    ///
    /// `nil` means the module part of ``file`` (what swift-log derives), which encoders write
    /// straight from the file's bytes instead of building a `String` (that allocates for module
    /// names longer than 15 bytes).
    package var explicitSource: String?

    /// The source: ``explicitSource``, or the module part of ``file`` (allocates when it is longer than
    /// 15 bytes; for tests and slow paths).
    package var source: String {
        get {
            if let explicitSource { return explicitSource }
            return withUTF8Bytes(of: self.file) { bytes in
                String(decoding: moduleName(ofFileID: UnsafeRawBufferPointer(bytes)), as: UTF8.self)
            }
        }
        set { self.explicitSource = newValue }
    }
    /// The file (a `#fileID`) the record comes from.
    package var file: String
    /// The function the record comes from.
    package var function: String
    /// The line the record comes from.
    package var line: UInt
    /// The error logged with the record, if any. Encoding it calls `String(describing:)` and
    /// `String(reflecting: type(of:))`, which allocate.
    package var error: (any Error)?
    /// The error's description and type name taken once by ``freezeDescriptions()``; encoders use
    /// them instead of describing ``error`` again.
    var frozenError: (message: String, type: String)?

    /// Creates the fields of one record.
    ///
    /// - Parameters:
    ///   - timestampNanoseconds: Nanoseconds since the Unix epoch.
    ///   - level: The level.
    ///   - label: The logger's label.
    ///   - message: The message.
    ///   - handlerMetadata: The handler's pre-rendered metadata.
    ///   - providerMetadata: The metadata provider's metadata.
    ///   - callMetadata: The per-call metadata.
    ///   - source: The source module.
    ///   - file: The file.
    ///   - function: The function.
    ///   - line: The line.
    ///   - error: The error, if any.
    package init(
        timestampNanoseconds: Int64,
        level: Logger.Level,
        label: String,
        message: Logger.Message,
        handlerMetadata: PreEncodedMetadata = PreEncodedMetadata(),
        providerMetadata: Logger.Metadata? = nil,
        callMetadata: Logger.Metadata? = nil,
        source: String,
        file: String,
        function: String,
        line: UInt,
        error: (any Error)? = nil
    ) {
        self.timestampNanoseconds = timestampNanoseconds
        self.level = level
        self.label = label
        self.message = message
        self.handlerMetadata = handlerMetadata
        self.providerMetadata = providerMetadata
        self.callMetadata = callMetadata
        self.explicitSource = source
        self.file = file
        self.function = function
        self.line = line
        self.error = error
    }

    /// Creates the fields of the record for a swift-log event.
    ///
    /// The source is `event.source` unless `explicitSource` is given. (swift-log derives
    /// `event.source` from `event.file` on every access when the call site gave no source, which
    /// allocates for module names longer than 15 UTF-8 bytes.)
    ///
    /// - Parameters:
    ///   - event: The event passed to `log(event:)`.
    ///   - label: The logger's label.
    ///   - timestampNanoseconds: Nanoseconds since the Unix epoch.
    ///   - handlerMetadata: The handler's pre-rendered metadata.
    ///   - providerMetadata: What the handler's metadata provider returned, if it has one.
    ///   - explicitSource: When given: the event's explicit source, or `nil` for the module of its file.
    package init(
        event: LogEvent,
        label: String,
        timestampNanoseconds: Int64,
        handlerMetadata: PreEncodedMetadata,
        providerMetadata: Logger.Metadata?,
        explicitSource: String?? = .none
    ) {
        self.init(
            timestampNanoseconds: timestampNanoseconds,
            level: event.level,
            label: label,
            message: event.message,
            handlerMetadata: handlerMetadata,
            providerMetadata: providerMetadata,
            callMetadata: event.metadata,
            source: "",
            file: event.file,
            function: event.function,
            line: event.line,
            error: event.error
        )
        switch explicitSource {
        case .none: self.explicitSource = event.source
        case .some(let source): self.explicitSource = source
        }
    }
}

extension LogRecordFields {
    /// Takes every description once: replaces the `stringConvertible` values of the provider and call
    /// metadata with the strings their `description` returns now, and describes the error, so that
    /// measuring and encoding the record see the same text. Allocates only when there is such a value or
    /// an error (which allocate anyway).
    mutating func freezeDescriptions() {
        if let provider = self.providerMetadata, Self.hasStringConvertible(provider) {
            self.providerMetadata = provider.mapValues(PreEncodedMetadata.frozen)
        }
        if let call = self.callMetadata, Self.hasStringConvertible(call) {
            self.callMetadata = call.mapValues(PreEncodedMetadata.frozen)
        }
        if let error = self.error {
            self.frozenError = (String(describing: error), String(reflecting: type(of: error)))
        }
    }

    private static func hasStringConvertible(_ metadata: Logger.Metadata) -> Bool {
        var index = metadata.startIndex
        while index != metadata.endIndex {
            if Self.hasStringConvertible(metadata.values[index]) { return true }
            metadata.formIndex(after: &index)
        }
        return false
    }

    private static func hasStringConvertible(_ value: Logger.MetadataValue) -> Bool {
        switch value {
        case .string:
            return false
        case .stringConvertible:
            return true
        case .array(let array):
            // Index loop, not `for in`: iterating an array allocates in unoptimised builds.
            var i = array.startIndex
            while i < array.endIndex {
                if Self.hasStringConvertible(array[i]) { return true }
                i += 1
            }
            return false
        case .dictionary(let dictionary):
            return Self.hasStringConvertible(dictionary)
        }
    }

    /// Calls `body` with the UTF-8 bytes of the source (without building a `String` for a derived one).
    @discardableResult
    func withSourceBytes<R>(_ body: (UnsafeBufferPointer<UInt8>) -> R) -> R {
        if let explicitSource {
            return withUTF8Bytes(of: explicitSource, body)
        }
        return withUTF8Bytes(of: self.file) { file in
            body(moduleName(ofFileID: UnsafeRawBufferPointer(file)).assumingMemoryBound(to: UInt8.self))
        }
    }
}

/// The module part of a `#fileID` (`Module/File.swift`), which is what swift-log reports as the
/// source when a call site gives none; `n/a` when there is no `/`.
internal func moduleName(ofFileID file: UnsafeRawBufferPointer) -> UnsafeRawBufferPointer {
    var i = 0
    while i < file.count {
        if file[i] == UInt8(ascii: "/") {
            return UnsafeRawBufferPointer(rebasing: file[0..<i])
        }
        i &+= 1
    }
    let unknown: StaticString = "n/a"
    return UnsafeRawBufferPointer(start: unknown.utf8Start, count: unknown.utf8CodeUnitCount)
}
