import CRelayLinux
import RelayShipper
import Synchronization
import SystemPackage
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Wake-ups into the ring from other threads: FUTEX_WAIT, eventfd, poll, cancel.
@Suite("IOURing wake-ups")
struct RingWakeTests {
    /// A futex word in a MAP_SHARED memfd page, like the relay arena's headers.
    struct FutexWord: ~Copyable {
        let mapping: RingTestMapping
        var pointer: UnsafeMutablePointer<Atomic<UInt32>> {
            self.mapping.bytes.baseAddress!.assumingMemoryBound(to: Atomic<UInt32>.self)
        }
        var address: UInt { UInt(bitPattern: self.mapping.bytes.baseAddress!) }

        init(initialValue: UInt32) throws {
            self.mapping = try RingTestMapping.memfd(count: 4096)
            self.mapping.bytes.baseAddress!.bindMemory(to: Atomic<UInt32>.self, capacity: 1)
                .initialize(to: Atomic(initialValue))
        }
    }

    @Test("FUTEX_WAIT armed in the ring completes when another thread calls FUTEX_WAKE", arguments: [true, false])
    func futexWaitWokenFromAnotherThread(isPrivate: Bool) throws {
        try RingTestSupport.requireIOURing(.futexWait)
        var ring = try IOURing(entries: 4)
        var buffer = CompletionBuffer(capacity: 4)
        let word = try FutexWord(initialValue: 0)

        try ring.futexWait(UnsafeRawPointer(word.pointer), expected: 0, isPrivate: isPrivate, userData: 11)
        #expect(try ring.submit() == 1)
        #expect(try RingTestSupport.drainNow(&ring, &buffer).isEmpty, "the wait must sleep while the word is 0")

        let address = word.address
        let result = RingTestCell()
        let thread = RingTestThread { [address] in
            let atomic = UnsafeMutablePointer<Atomic<UInt32>>(bitPattern: address)!
            // Releasing store pairs with the ring owner's read of the word
            // after the wait completes.
            atomic.pointee.store(1, ordering: .releasing)
            let count = CRelayLinux_futex_wake(
                UnsafeMutablePointer<UInt32>(bitPattern: address)!, 1, isPrivate ? 0 : 1
            )
            result.set(count)
        }
        thread.join()
        #expect(result.get() == 1, "FUTEX_WAKE must find the ring's waiter")

        let completions = try RingTestSupport.collect(&ring, &buffer, count: 1)
        #expect(completions == [Completion(userData: 11, result: 0, flags: 0)])
        // Acquiring load pairs with the waker's releasing store.
        #expect(word.pointer.pointee.load(ordering: .acquiring) == 1)
    }

    @Test("FUTEX_WAIT with a stale expected value completes at once with EAGAIN")
    func futexWaitStaleValue() throws {
        try RingTestSupport.requireIOURing(.futexWait)
        var ring = try IOURing(entries: 4)
        var buffer = CompletionBuffer(capacity: 4)
        let word = try FutexWord(initialValue: 5)
        try ring.futexWait(UnsafeRawPointer(word.pointer), expected: 4, isPrivate: true, userData: 12)
        let completions = try RingTestSupport.collect(&ring, &buffer, count: 1)
        #expect(completions == [Completion(userData: 12, result: -EAGAIN, flags: 0)])
    }

    @Test("a private FUTEX_WAIT on shared memory is not reached by a shared FUTEX_WAKE; cancel ends it")
    func futexKindMustMatch() throws {
        try RingTestSupport.requireIOURing(.futexWait, .asyncCancel)
        var ring = try IOURing(entries: 4)
        var buffer = CompletionBuffer(capacity: 4)
        let word = try FutexWord(initialValue: 0)
        try ring.futexWait(UnsafeRawPointer(word.pointer), expected: 0, isPrivate: true, userData: 13)
        try ring.submit()

        let address = word.address
        let result = RingTestCell()
        let thread = RingTestThread {
            let count = CRelayLinux_futex_wake(UnsafeMutablePointer<UInt32>(bitPattern: address)!, 1, 1)
            result.set(count)
        }
        thread.join()
        #expect(result.get() == 0, "a shared wake keys on the memfd page, the private wait on the address")
        #expect(try RingTestSupport.drainNow(&ring, &buffer).isEmpty)

        try ring.cancel(13, userData: 14)
        let completions = try RingTestSupport.collect(&ring, &buffer, count: 2)
        #expect(completions.first { $0.userData == 13 }?.error == .canceled)
        // 0, or the number cancelled (futex cancellation reports a count).
        let cancel = try #require(completions.first { $0.userData == 14 })
        #expect(cancel.result >= 0)
    }

    @Test("an eventfd read armed in the ring completes when another thread writes; reap alone flushes it")
    func eventfdRead() throws {
        let capabilities = try RingTestSupport.requireIOURing(.read)
        var ring = try IOURing(entries: 4)
        var buffer = CompletionBuffer(capacity: 4)
        let efd = eventfd(0, Int32(EFD_CLOEXEC))
        #expect(efd >= 0)
        let eventFD = FileDescriptor(rawValue: efd)
        defer { try? eventFD.close() }

        let counter = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
        defer { counter.deallocate() }
        counter.storeBytes(of: UInt64(0), as: UInt64.self)
        try ring.read(eventFD, into: counter, at: 0, userData: 21)
        #expect(try ring.submit() == 1)
        #expect(try RingTestSupport.drainNow(&ring, &buffer).isEmpty, "nothing to read yet")

        let thread = RingTestThread {
            #expect(eventfd_write(efd, 3) == 0)
        }
        thread.join()

        let completions: [Completion]
        if capabilities.setup.deferTaskrun {
            // The wake-up queued deferred task work and raised IORING_SQ_TASKRUN;
            // reap sees the flag and runs it without a wait.
            let reaped = try ring.reap(into: &buffer)
            completions = (0..<reaped).map { buffer[$0] }
        } else {
            completions = try RingTestSupport.collect(&ring, &buffer, count: 1)
        }
        #expect(completions == [Completion(userData: 21, result: 8, flags: 0)])
        #expect(counter.load(as: UInt64.self) == 3)
    }

    @Test("a poll for POLLIN completes when the eventfd becomes readable")
    func pollAdd() throws {
        try RingTestSupport.requireIOURing(.pollAdd)
        var ring = try IOURing(entries: 4)
        var buffer = CompletionBuffer(capacity: 4)
        let efd = eventfd(0, Int32(EFD_CLOEXEC))
        #expect(efd >= 0)
        let eventFD = FileDescriptor(rawValue: efd)
        defer { try? eventFD.close() }

        try ring.pollAdd(eventFD, events: UInt32(POLLIN), userData: 31)
        try ring.submit()
        #expect(try RingTestSupport.drainNow(&ring, &buffer).isEmpty)
        #expect(eventfd_write(efd, 1) == 0)
        let completions = try RingTestSupport.collect(&ring, &buffer, count: 1)
        let poll = try #require(completions.first)
        #expect(poll.userData == 31)
        #expect(poll.result > 0 && poll.result & Int32(POLLIN) != 0)
    }
}
