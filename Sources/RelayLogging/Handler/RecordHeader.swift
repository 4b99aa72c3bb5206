//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

import Logging

/// The parts of a handler's records that only depend on its label and the level, rendered once when
/// the handler is created, and the handler's writer.
///
/// For JSON Lines that is `","level":"info","label":"<label>","message":"`, one segment per level,
/// so a record copies one block instead of escaping the label every time.
internal final class RecordHeader: @unchecked Sendable {
    /// The logger's label.
    let label: String
    /// The writer the handler's records go through (kept here so a handler holds one reference).
    let writer: RelayLogWriter
    /// The segments, back to back (immutable after `init`).
    private let storage: UnsafeMutableRawBufferPointer
    /// `offsets[i]..<offsets[i + 1]` is the segment of the level with index `i`.
    private let offsets: UnsafeMutablePointer<Int>

    init(label: String, writer: RelayLogWriter) {
        self.label = label
        self.writer = writer
        var bytes: [UInt8] = []
        var offsets: [Int] = [0]
        for level in Logger.Level.allCases {
            var measure = ByteCursor.measuring()
            Self.render(level: level, label: label, into: &measure)
            let start = bytes.count
            bytes.append(contentsOf: repeatElement(0, count: measure.count))
            bytes.withUnsafeMutableBytes { raw in
                var cursor = ByteCursor(UnsafeMutableRawBufferPointer(rebasing: raw[start...]))
                Self.render(level: level, label: label, into: &cursor)
            }
            offsets.append(bytes.count)
        }
        // `padding` zero bytes after the last segment: the renderer copies segments in 16-byte blocks,
        // reading up to 15 bytes past a segment's end (see `JSONLineRenderer.padded(_:)`).
        self.storage = UnsafeMutableRawBufferPointer.allocate(byteCount: bytes.count + Self.padding, alignment: 16)
        self.storage.copyBytes(from: bytes)
        (self.storage.baseAddress! + bytes.count).initializeMemory(as: UInt8.self, repeating: 0, count: Self.padding)
        self.offsets = UnsafeMutablePointer<Int>.allocate(capacity: offsets.count)
        self.offsets.initialize(from: offsets, count: offsets.count)
    }

    /// Readable bytes after every segment's end (at least 15).
    static let padding = 16

    deinit {
        self.storage.deallocate()
        self.offsets.deallocate()
    }

    private static func render(level: Logger.Level, label: String, into cursor: inout ByteCursor) {
        cursor.append("\",\"level\":\"")
        cursor.append(level.staticName)
        cursor.append("\",\"label\":\"")
        cursor.appendEscaped(label, style: .json)
        cursor.append("\",\"message\":\"")
    }

    /// The JSON segment of `level` (valid while the header is alive), followed by at least
    /// ``padding`` readable bytes.
    @inline(__always)
    func jsonSegment(_ level: Logger.Level) -> UnsafeRawBufferPointer {
        let index = level.index
        let start = self.offsets[index]
        return UnsafeRawBufferPointer(start: self.storage.baseAddress! + start, count: self.offsets[index + 1] - start)
    }
}

extension Logger.Level {
    /// The position of the level in `allCases` (trace is 0, critical is 6).
    @inline(__always)
    var index: Int {
        switch self {
        case .trace: return 0
        case .debug: return 1
        case .info: return 2
        case .notice: return 3
        case .warning: return 4
        case .error: return 5
        case .critical: return 6
        }
    }
}
