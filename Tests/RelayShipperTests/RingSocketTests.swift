import CRelayLinux
import RelayShipper
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Sends on a loopback TCP connection made with the ring's ACCEPT and CONNECT.
@Suite("IOURing sockets")
struct RingSocketTests {
    static let sendKind: UInt8 = 1
    static let recvKind: UInt8 = 2

    /// Receives on `server` through the ring until `expected` bytes arrived,
    /// while the send with cookie `send` completes. Returns the bytes received
    /// and every completion of the send, in arrival order.
    static func pump(
        _ ring: inout IOURing,
        _ buffer: inout CompletionBuffer,
        server: FileDescriptor,
        expected: Int,
        send: UInt64
    ) throws -> (received: [UInt8], sendCompletions: [Completion]) {
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 16)
        defer { scratch.deallocate() }
        let recvCookie = URingUserData(kind: Self.recvKind, index: 0, sequence: 0).rawValue
        var received: [UInt8] = []
        var sendCompletions: [Completion] = []
        var sendFinished = false
        try ring.recv(server, into: scratch, messageFlags: 0, userData: recvCookie)
        var emptyRounds = 0
        while !(sendFinished && received.count >= expected) && emptyRounds < 3 {
            try ring.submitAndWait(minCompletions: 1, timeoutNanoseconds: RingTestSupport.waitNanoseconds)
            let reaped = try ring.reap(into: &buffer)
            emptyRounds = reaped == 0 ? emptyRounds + 1 : 0
            for index in 0..<reaped {
                let completion = buffer[index]
                switch completion.userData {
                case send:
                    sendCompletions.append(completion)
                    // The send is done with its buffer at the CQE without F_MORE.
                    sendFinished = !completion.hasMore
                case recvCookie:
                    #expect(completion.result > 0, "recv: \(completion.error.map { "\($0)" } ?? "EOF")")
                    guard completion.result > 0 else { return (received, sendCompletions) }
                    received += UnsafeRawBufferPointer(rebasing: scratch[..<Int(completion.result)])
                    if received.count < expected {
                        try ring.recv(server, into: scratch, messageFlags: 0, userData: recvCookie)
                    }
                default:
                    Issue.record("unexpected completion \(completion)")
                }
            }
        }
        #expect(emptyRounds < 3, "the transfer stalled")
        return (received, sendCompletions)
    }

    @Test("send delivers 256 KiB intact over loopback TCP")
    func plainSend() throws {
        try RingTestSupport.requireIOURing(.accept, .connect, .send, .recv)
        var ring = try IOURing(entries: 8, cqEntries: 32)
        var buffer = CompletionBuffer(capacity: 32)
        let (client, server) = try RingTestSupport.loopbackPair(&ring, &buffer)
        defer {
            try? client.close()
            try? server.close()
        }
        let count = 256 * 1024
        let payload = UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 4096)
        defer { payload.deallocate() }
        RingTestSupport.fill(payload, seed: 0x5e4d)

        let cookie = URingUserData(kind: Self.sendKind, index: 0, sequence: 1).rawValue
        // MSG_WAITALL: the kernel retries a short send; one send in flight.
        try ring.send(
            client, UnsafeRawBufferPointer(payload), messageFlags: Int32(MSG_NOSIGNAL) | Int32(MSG_WAITALL),
            userData: cookie
        )
        let (received, sendCompletions) = try Self.pump(
            &ring, &buffer, server: server, expected: count, send: cookie
        )
        #expect(sendCompletions == [Completion(userData: cookie, result: Int32(count), flags: 0)])
        #expect(received.count == count)
        #expect(received.elementsEqual(UnsafeRawBufferPointer(payload)))
    }

    @Test("sendZC posts F_MORE then F_NOTIF, reports the copy on loopback, and delivers intact", arguments: [false, true])
    func zeroCopySend(fixedBuffer: Bool) throws {
        try RingTestSupport.requireIOURing(.accept, .connect, .sendZC, .recv)
        var ring = try IOURing(entries: 8, cqEntries: 32)
        var buffer = CompletionBuffer(capacity: 32)
        let (client, server) = try RingTestSupport.loopbackPair(&ring, &buffer)
        defer {
            try? client.close()
            try? server.close()
        }
        let count = 64 * 1024
        let region = try RingTestMapping(count: count, owning: nil)
        RingTestSupport.fill(region.bytes, seed: fixedBuffer ? 0x2c0f : 0x2c0e)
        if fixedBuffer {
            let registered = ring.registerBuffers([region.bytes])
            #expect(registered.succeeded, "\(registered)")
            try registered.get()
        }

        let cookie = URingUserData(kind: Self.sendKind, index: 0, sequence: 2).rawValue
        try ring.sendZC(
            client, UnsafeRawBufferPointer(region.bytes),
            messageFlags: Int32(MSG_NOSIGNAL) | Int32(MSG_WAITALL),
            zcFlags: .reportUsage,
            fixedBufferIndex: fixedBuffer ? 0 : nil,
            userData: cookie
        )
        let (received, sendCompletions) = try Self.pump(
            &ring, &buffer, server: server, expected: count, send: cookie
        )
        #expect(received.count == count)
        #expect(received.elementsEqual(UnsafeRawBufferPointer(region.bytes)))

        // First the send result with F_MORE, then the notification: the
        // buffer may be reused only after the latter.
        try #require(sendCompletions.count == 2, "\(sendCompletions)")
        let result = sendCompletions[0]
        let notification = sendCompletions[1]
        #expect(result.hasMore && !result.isNotification)
        #expect(result.result == Int32(count))
        #expect(notification.isNotification && !notification.hasMore)
        // Loopback always copies (skb_orphan_frags_rx); REPORT_USAGE says so.
        #expect(notification.zcCopied)
    }
}
