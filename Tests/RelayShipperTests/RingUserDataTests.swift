import RelayShipper
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Packing of the 64-bit user_data cookie.
@Suite("URingUserData")
struct RingUserDataTests {
    @Test("the fields tile 64 bits")
    func layout() {
        #expect(URingUserData.kindBits + URingUserData.indexBits + URingUserData.sequenceBits == 64)
        #expect(MemoryLayout<URingUserData>.size == MemoryLayout<UInt64>.size)
        #expect(URingUserData.maxSequence == 0xFF_FFFF_FFFF)
        #expect(URingUserData(kind: 0x12, index: 0x3456, sequence: 0x78_9ABC_DEF0).rawValue == 0x1234_5678_9ABC_DEF0)
    }

    @Test(
        "pack and unpack round-trip",
        arguments: [
            (UInt8(0), UInt16(0), UInt64(0)),
            (1, 1, 1),
            (0xFE, 0xFFFF, URingUserData.maxSequence),
            (0x80, 0x8000, 1 << 39),
            (7, 300, 123_456_789_012),
        ]
    )
    func roundTrip(kind: UInt8, index: UInt16, sequence: UInt64) {
        let packed = URingUserData(kind: kind, index: index, sequence: sequence)
        #expect(packed.kind == kind)
        #expect(packed.index == index)
        #expect(packed.sequence == sequence)
        #expect(URingUserData(rawValue: packed.rawValue) == packed)
    }

    @Test("fields do not bleed into each other at their limits")
    func limits() {
        let all = URingUserData(kind: 0xFE, index: 0xFFFF, sequence: URingUserData.maxSequence)
        #expect(all.rawValue == 0xFEFF_FFFF_FFFF_FFFF)
        #expect(URingUserData(kind: 0, index: 0xFFFF, sequence: 0).rawValue == 0x00FF_FF00_0000_0000)
        #expect(URingUserData(kind: 0xFE, index: 0, sequence: 0).rawValue == 0xFE00_0000_0000_0000)
        // No cookie can equal liburing's internal timeout marker.
        #expect(all.rawValue != UInt64.max)
    }

    @Test("wrapping sequences keep the low 40 bits")
    func wrapping() {
        let wrapped = URingUserData(kind: 2, index: 9, wrappingSequence: (1 << 40) + 5)
        #expect(wrapped.sequence == 5)
        #expect(wrapped.kind == 2 && wrapped.index == 9)
        #expect(URingUserData(kind: 2, index: 9, wrappingSequence: UInt64.max).sequence == URingUserData.maxSequence)
    }

    @Test("the reserved kind and oversized sequences trap")
    func preconditions() async {
        await #expect(processExitsWith: .failure) {
            _ = URingUserData(kind: URingUserData.reservedKind, index: 0, sequence: 0)
        }
        await #expect(processExitsWith: .failure) {
            _ = URingUserData(kind: 1, index: 0, sequence: URingUserData.maxSequence + 1)
        }
    }
}
