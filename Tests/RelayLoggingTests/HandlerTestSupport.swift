//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

// Helpers of the handler suites: channels read in memory (no shipper), record splitting, JSON.

import Foundation
import Logging
import Relay
import Testing

@testable import RelayLogging

/// A channel with one buffer (so records come out in logging order) that tests drain themselves.
func makeTestChannel(
    mode: RelayMode = .drop,
    subbufferSize: Int = 64 * 1024,
    subbufferCount: Int = 4,
    buffers: Int = 1
) throws -> RelayChannel {
    try RelayChannel(
        RelayChannelConfiguration(
            name: "log-test-\(UInt32.random(in: 0...UInt32.max))",
            subbufferSize: subbufferSize,
            subbufferCount: subbufferCount,
            mode: mode,
            buffers: buffers,
            prefault: false
        ))
}

/// Reads (and releases) every delivered sub-buffer of every buffer, in buffer and sequence order.
func drainChannel(_ channel: RelayChannel, flush: Bool = true) -> [UInt8] {
    if flush { channel.flush() }
    var bytes: [UInt8] = []
    for buffer in 0..<channel.buffers {
        while case .read(let content) = channel.withNextSubbuffer(buffer: buffer, consume: true, { Array($0.content) }) {
            bytes += content
        }
    }
    return bytes
}

/// Splits newline-terminated records (each keeps its `\n`).
func splitLines(_ bytes: [UInt8]) -> [[UInt8]] {
    var lines: [[UInt8]] = []
    var start = 0
    for i in bytes.indices where bytes[i] == 0x0A {
        lines.append(Array(bytes[start...i]))
        start = i + 1
    }
    if start < bytes.count { lines.append(Array(bytes[start...])) }
    return lines
}

/// Replaces the RFC 3339 timestamp (the first `YYYY-MM-DDTHH:MM:SS.uuuuuuZ`) with `<ts>`.
func maskTimestamp(_ text: String) -> String {
    guard let range = text.range(of: #"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z"#, options: .regularExpression) else {
        return text
    }
    return text.replacingCharacters(in: range, with: "<ts>")
}

/// Parses one JSON Lines record.
func parseJSONLine(_ line: [UInt8], sourceLocation: SourceLocation = #_sourceLocation) -> [String: Any]? {
    let object = try? JSONSerialization.jsonObject(with: Data(line), options: [.fragmentsAllowed])
    let dictionary = object as? [String: Any]
    #expect(
        dictionary != nil, "not a JSON object: \(String(decoding: line, as: UTF8.self))", sourceLocation: sourceLocation)
    return dictionary
}

/// A logger writing through `writer` with the handler's defaults.
func makeTestLogger(
    _ writer: RelayLogWriter,
    label: String = "test",
    metadataProvider: Logger.MetadataProvider? = nil,
    level: Logger.Level = .trace
) -> Logger {
    var logger = Logger(label: label) { label in
        writer.makeHandler(label: label, metadataProvider: metadataProvider, logLevel: level)
    }
    logger.logLevel = level
    return logger
}

/// What the general encoder writes for one record, with the writer's settings (the reference the
/// fast path must match).
func referenceEncoding(
    _ record: LogRecordFields,
    writer: RelayLogWriter
) -> [UInt8] {
    let encoder = LogRecordEncoder(format: writer.format, sortsMetadataKeys: writer.sortsMetadataKeys)
    let outcome = encoder.measure(record, maxBytes: writer.maxRecordSize)
    var storage = [UInt8](repeating: 0, count: max(outcome.requiredCapacity, 1))
    let written = storage.withUnsafeMutableBytes { raw in
        var cursor = ByteCursor(raw)
        return encoder.encode(record, into: &cursor, maxBytes: writer.maxRecordSize).bytesWritten
    }
    return Array(storage[0..<written])
}
