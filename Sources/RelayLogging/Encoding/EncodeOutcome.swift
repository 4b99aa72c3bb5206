//===----------------------------------------------------------------------===//
//
// This source file is part of the swift-relay open source project
//
// SPDX-License-Identifier: Apache-2.0
//
//===----------------------------------------------------------------------===//

/// What happened when a record was encoded.
///
/// Exactly one of three things happens:
///
/// | case                  | `bytesWritten` | `requiredCapacity`    | the caller should                         |
/// |-----------------------|----------------|-----------------------|-------------------------------------------|
/// | ``isComplete``        | > 0            | == `bytesWritten`     | commit `bytesWritten` bytes               |
/// | ``needsLargerBuffer`` | 0              | > free space          | reserve `requiredCapacity` bytes, retry   |
/// | ``isDropped``         | 0              | 0                     | count a dropped record (`maxBytes` is too |
/// |                       |                |                       | small for even a truncated record)        |
///
/// ``truncated`` is `true` when the record had to be shortened to `maxBytes` (a complete record that
/// carries a `…[truncated N bytes]` marker, or a retry that will carry one) or was dropped for size.
package struct EncodeOutcome: Equatable, Sendable {
    /// The number of bytes written into the cursor (0 when nothing was written).
    package var bytesWritten: Int
    /// Whether the record was truncated (or dropped) to respect `maxBytes`.
    package var truncated: Bool
    /// The exact number of bytes the (possibly truncated) record takes; 0 when it was dropped.
    package var requiredCapacity: Int

    /// Creates an outcome.
    ///
    /// - Parameters:
    ///   - bytesWritten: Bytes written.
    ///   - truncated: Whether the record was truncated or dropped for size.
    ///   - requiredCapacity: Bytes the record needs.
    package init(bytesWritten: Int, truncated: Bool, requiredCapacity: Int) {
        self.bytesWritten = bytesWritten
        self.truncated = truncated
        self.requiredCapacity = requiredCapacity
    }

    /// The record was written completely (possibly truncated).
    package var isComplete: Bool {
        self.bytesWritten > 0
    }

    /// Nothing was written because the cursor had less free space than ``requiredCapacity``, which
    /// does not exceed `maxBytes`.
    package var needsLargerBuffer: Bool {
        self.bytesWritten == 0 && self.requiredCapacity > 0
    }

    /// Nothing was written because `maxBytes` cannot hold even a fully truncated record.
    package var isDropped: Bool {
        self.bytesWritten == 0 && self.requiredCapacity == 0
    }

    internal static func written(_ n: Int, truncated: Bool) -> EncodeOutcome {
        EncodeOutcome(bytesWritten: n, truncated: truncated, requiredCapacity: n)
    }

    internal static func needs(_ n: Int, truncated: Bool) -> EncodeOutcome {
        EncodeOutcome(bytesWritten: 0, truncated: truncated, requiredCapacity: n)
    }

    internal static let dropped = EncodeOutcome(bytesWritten: 0, truncated: true, requiredCapacity: 0)
}
