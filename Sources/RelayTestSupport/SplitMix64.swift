/// A deterministic random generator (SplitMix64) for randomized tests, so failures reproduce
/// from the seed.
public struct SplitMix64: RandomNumberGenerator {
    /// The generator's state; equal states give equal sequences.
    public var state: UInt64

    /// Creates a generator seeded with `state`.
    public init(state: UInt64) {
        self.state = state
    }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        self.state &+= 0x9E37_79B9_7F4A_7C15
        var z = self.state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
