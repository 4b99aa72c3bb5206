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

/// Which completions a socket sink takes for its current connection and send.
@Suite("Socket sink cookies")
struct SocketCookieTests {
    static let connect: UInt8 = 4
    static let poll: UInt8 = 8

    @Test(
        "a CONNECT or POLL_ADD completion of an earlier connection is stale, also across 8-, 16-, 32- and 40-bit wrap points",
        arguments: [UInt64(0), 1, 255, 256, 65_535, 1 << 32, URingUserData.maxSequence - 1, URingUserData.maxSequence, 1 << 40]
    )
    func staleConnections(generation: UInt64) {
        for kind in [Self.connect, Self.poll] {
            let cookie = SocketCookie.connection(kind, sink: 3, generation: generation)
            let data = URingUserData(rawValue: cookie)
            #expect(data.kind == kind && data.index == 3)
            #expect(SocketCookie.isCurrent(cookie, counter: generation))
            // A peer that flaps: that many connections later, the completion is stale.
            for later: UInt64 in [1, 2, 255, 256, 257, 512, 65_536, 1 << 24, 1 << 32, (1 << 32) + 256, 1 << 39] {
                #expect(
                    !SocketCookie.isCurrent(cookie, counter: generation &+ later),
                    "generation \(generation) taken as current at \(generation &+ later)")
            }
        }
    }

    @Test(
        "a send's completion or notification is current only for that send, however many sends or connections later",
        arguments: [UInt64(1), 200, 255, 256, 1 << 32, URingUserData.maxSequence]
    )
    func staleSends(serial: UInt64) {
        let cookie = SocketCookie.send(sink: 7, serial: serial)
        let data = URingUserData(rawValue: cookie)
        #expect(data.index == 7 && data.kind == 5)
        #expect(SocketCookie.isCurrent(cookie, counter: serial))
        for later: UInt64 in [1, 255, 256, 65_536, 1 << 32, 1 << 39] {
            #expect(!SocketCookie.isCurrent(cookie, counter: serial &+ later), "send \(serial) taken for send \(serial &+ later)")
        }
        // Distinct sends have distinct cookies, so each zero-copy notification names its own send.
        #expect(SocketCookie.send(sink: 7, serial: serial &+ 256) != cookie)
        #expect(SocketCookie.send(sink: 7, serial: serial &+ (1 << 32)) != cookie)
        #expect(SocketCookie.send(sink: 8, serial: serial) != cookie)
    }

    @Test("connection and send cookies never collide: their kinds differ")
    func kindsDiffer() {
        let connect = SocketCookie.connection(Self.connect, sink: 1, generation: 9)
        let poll = SocketCookie.connection(Self.poll, sink: 1, generation: 9)
        let send = SocketCookie.send(sink: 1, serial: 9)
        #expect(Set([connect, poll, send]).count == 3)
    }
}
