/// The 64-bit `user_data` cookie of an SQE, packed from integers.
///
/// The kernel hands `user_data` back unchanged in every CQE of the operation
/// (two CQEs for a zero-copy send). We never put object pointers there: the
/// cookie names a preallocated slot instead, so completing an operation needs
/// no allocation, no retain and no lookup table.
///
/// Layout (most significant bit first):
///
/// ```
///  63        56 55                40 39                                      0
/// +------------+--------------------+-----------------------------------------+
/// | kind (8)   | index (16)         | sequence (40)                           |
/// +------------+--------------------+-----------------------------------------+
/// ```
///
/// - `kind`: what the operation is (file write, socket send, wake-up, ...),
///   chosen by the caller. `0xFF` is reserved (see ``reservedKind``).
/// - `index`: which sink, channel or connection the operation belongs to.
/// - `sequence`: a slot or sequence number; 2^40 sub-buffers at one per
///   microsecond wrap after 12.7 days, so callers compare sequences modulo
///   2^40 or use them as slot indices.
package struct URingUserData: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The packed cookie, as stored in `io_uring_sqe.user_data`.
    package var rawValue: UInt64

    /// Bits used by ``kind``.
    package static let kindBits = 8
    /// Bits used by ``index``.
    package static let indexBits = 16
    /// Bits used by ``sequence``.
    package static let sequenceBits = 40

    /// The largest ``sequence`` that fits: 2^40 - 1.
    package static let maxSequence: UInt64 = (1 << UInt64(sequenceBits)) - 1

    /// The kind no cookie may use. liburing 2.3 tags its own internal timeout
    /// CQEs with `user_data == UInt64.max` (`LIBURING_UDATA_TIMEOUT`), which
    /// would decode as kind 0xFF; reserving the kind keeps every cookie we
    /// create distinct from it.
    package static let reservedKind: UInt8 = 0xFF

    private static let sequenceShift: UInt64 = 0
    private static let indexShift: UInt64 = UInt64(sequenceBits)
    private static let kindShift: UInt64 = UInt64(sequenceBits + indexBits)

    /// Wraps a raw `user_data` value taken from a completion.
    package init(rawValue: UInt64) {
        self.rawValue = rawValue
    }

    /// Packs a cookie.
    ///
    /// - Parameters:
    ///   - kind: the operation kind; must not be ``reservedKind``.
    ///   - index: the sink, channel or connection index.
    ///   - sequence: a slot or sequence number, at most ``maxSequence``.
    /// - Precondition: `kind != reservedKind` and `sequence <= maxSequence`.
    @inline(__always)
    package init(kind: UInt8, index: UInt16, sequence: UInt64) {
        precondition(kind != Self.reservedKind, "URingUserData kind 0xFF is reserved for liburing")
        precondition(sequence <= Self.maxSequence, "URingUserData sequence exceeds 40 bits")
        self.rawValue = UInt64(kind) << Self.kindShift | UInt64(index) << Self.indexShift | sequence
    }

    /// Packs a cookie, keeping only the low 40 bits of `sequence`.
    ///
    /// For monotonically increasing counters whose low bits are enough to
    /// tell in-flight operations apart.
    /// - Precondition: `kind != reservedKind`.
    @inline(__always)
    package init(kind: UInt8, index: UInt16, wrappingSequence sequence: UInt64) {
        self.init(kind: kind, index: index, sequence: sequence & Self.maxSequence)
    }

    /// The operation kind (bits 56–63).
    package var kind: UInt8 {
        UInt8(truncatingIfNeeded: self.rawValue >> Self.kindShift)
    }

    /// The sink, channel or connection index (bits 40–55).
    package var index: UInt16 {
        UInt16(truncatingIfNeeded: self.rawValue >> Self.indexShift)
    }

    /// The slot or sequence number (bits 0–39).
    package var sequence: UInt64 {
        self.rawValue & Self.maxSequence
    }

    /// `kind/index/sequence`, for diagnostics.
    package var description: String {
        "URingUserData(kind: \(self.kind), index: \(self.index), sequence: \(self.sequence))"
    }
}
