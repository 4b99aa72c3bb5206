//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

public import Logging

/// A swift-log `LogHandler` that writes records into a relay channel, from where a
/// `RelayShipper` ships them to files and sockets with io_uring.
///
/// A JSON Lines log call renders its record in one pass into a small buffer on the stack and copies
/// it into the channel's buffer for the current CPU: no lock, no system call, no queue, and in the
/// common case no allocation. It never blocks unless the channel is in `.block` mode (see
/// ``RelayLogWriter`` for the fast path, overload and size limits).
///
/// ```swift
/// let writer = RelayLogWriter(channel: channel)                       // or RelayLoggingService
/// LoggingSystem.bootstrap { label in writer.makeHandler(label: label) }
/// ```
///
/// ## Value semantics
///
/// `logLevel`, `metadata` and `metadataProvider` are values: changing them on a copy of a `Logger`
/// never affects another. The handler's own metadata is rendered for the record format when it is
/// set (in the `metadata` setter and `subscript(metadataKey:)`), not on every call.
///
/// ## Metadata
///
/// Layers merge in swift-log's order: the handler's metadata, then the metadata provider's, then
/// the call's; a later layer wins on a key collision. A record lists the handler's entries (sorted
/// by key), then the provider's, then the call's, each key once. Provider and call entries come in
/// the dictionaries' iteration order unless the writer sorts them
/// (``RelayLogWriter/sortsMetadataKeys``). `event.error` is encoded as the `error` field (JSON
/// Lines: `{"message": …, "type": …}`).
///
/// ## Allocations
///
/// The handler allocates nothing for records whose metadata values are strings, arrays and
/// dictionaries. These allocate: a metadata provider that builds a dictionary, `stringConvertible`
/// values (their `description`), an `error` (its description and type name), and records that must be
/// truncated.
///
/// The record's source is `event.source`. When the call site passes no `source:`, swift-log derives it
/// from `#fileID` on every read of `event.source` and builds a `String` for it (a heap allocation when the
/// module name is longer than 15 UTF-8 bytes). JSON Lines records that take the fast path do not read it:
/// they copy the module name from `event.file` themselves (`ImplicitSourceProbe` tells whether the call
/// site passed a source), so they allocate nothing for it. logfmt and RFC 5424 records read
/// `event.source`, and so allocate once per call for a module name over 15 bytes (as every handler that
/// writes the source does, `StreamLogHandler` included).
public struct RelayLogHandler: LogHandler {
    /// The writer records go through.
    public var writer: RelayLogWriter { self.header.writer }
    /// The label, the pre-rendered record heads and the writer, behind one reference: swift-log copies
    /// the handler on every call, and each reference the copy holds costs an atomic retain and
    /// release (contended when threads share a logger).
    let header: RecordHeader
    var encodedMetadata: PreEncodedMetadata

    /// The level below which calls are discarded (by `Logger`, before they reach the handler).
    public var logLevel: Logger.Level

    /// The metadata provider, asked for metadata on every record. Records logged from inside a
    /// provider (on the thread running it) are written without provider metadata, so a provider that
    /// logs does not ask itself again without end.
    public var metadataProvider: Logger.MetadataProvider?

    /// Creates a handler.
    ///
    /// - Parameters:
    ///   - label: The logger's label.
    ///   - writer: The writer (channel and format) records go through.
    ///   - metadataProvider: The metadata provider.
    ///   - logLevel: The initial level.
    public init(
        label: String,
        writer: RelayLogWriter,
        metadataProvider: Logger.MetadataProvider? = nil,
        logLevel: Logger.Level = .info
    ) {
        self.header = RecordHeader(label: label, writer: writer)
        self.encodedMetadata = PreEncodedMetadata()
        self.logLevel = logLevel
        self.metadataProvider = metadataProvider
    }

    /// The logger's label.
    public var label: String { self.header.label }

    /// The handler's own metadata. Setting it renders it once for the writer's format.
    public var metadata: Logger.Metadata {
        get { self.encodedMetadata.metadata }
        set { self.encodedMetadata = PreEncodedMetadata(newValue, format: self.writer.format) }
    }

    /// One entry of the handler's own metadata.
    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.encodedMetadata.metadata[key] }
        set {
            var metadata = self.encodedMetadata.metadata
            metadata[key] = newValue
            self.metadata = metadata
        }
    }

    /// Writes one record into the relay channel.
    public func log(event: LogEvent) {
        self.header.writer.write(
            event, header: self.header, handlerMetadata: self.encodedMetadata, provider: self.metadataProvider)
    }
}
