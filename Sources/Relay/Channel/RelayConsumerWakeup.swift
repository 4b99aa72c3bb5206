internal import CRelayLinux
internal import Glibc
import Synchronization

/// The doorbell between writers and the one consumer of one or more channels.
///
/// The consumer (normally the shipper thread) sleeps on ``futexWord`` — inside
/// io_uring with `IORING_OP_FUTEX_WAIT`, or with futex(2) — after declaring itself
/// asleep. Writers ring only when it has declared that, never once per record:
/// - at every delivery, if the consumer sleeps (`.sleeping` or `.deepSleep`);
/// - when a record lands in an empty sub-buffer, if the consumer is in `.deepSleep`
///   (it sleeps without a switch-timer deadline because every buffer was empty, so it
///   must learn that partial data now exists and arm the timer);
/// - when a channel closes, if the consumer sleeps in any way.
///
/// A consumer that could not act on a delivery before operations already in flight
/// complete (say a socket sink whose one send is in flight) sleeps as
/// `.waitingForCompletions`: writers do not ring it at deliveries, and it takes what they
/// delivered when those completions wake it. That saves a futex wake and a context switch
/// per sub-buffer while a slow peer sets the pace.
///
/// The futex is process-private (`FUTEX_WAKE_PRIVATE`); a waiter must use a private
/// wait (`FUTEX2_PRIVATE` for io_uring).
public final class RelayConsumerWakeup: @unchecked Sendable {
    /// What the consumer is doing.
    public enum State: UInt32, Sendable {
        /// Working; writers do not ring.
        case awake = 0
        /// Asleep until operations in flight complete, which they will (or until a timer):
        /// nothing delivered now could be handed on before then. Writers ring only at a
        /// channel's close; ``RelayConsumerWakeup/ring()`` (commands) wakes it as any sleep.
        case waitingForCompletions = 1
        /// Asleep with a timer: ring at deliveries.
        case sleeping = 2
        /// Asleep without a timer: ring at deliveries and at the first record of a sub-buffer.
        case deepSleep = 3
    }

    struct Storage: ~Copyable {
        let word: Atomic<UInt32>
        let state: Atomic<UInt32>
        let rings: Atomic<UInt64>
        /// An eventfd to signal as well (for consumers without IORING_OP_FUTEX_WAIT), or -1.
        let eventFD: Atomic<Int64>
        /// Bumped by every ``setEventFD(_:)``; its parity picks the `eventFDUsers` counter
        /// that ringers entering now use.
        let eventFDGeneration: Atomic<UInt64>
        /// Ringers between their load of `eventFD` and the end of their write(2) to it, for
        /// even and odd generations: ``setEventFD(_:)`` waits for the old generation's to drain.
        let eventFDUsersEven: Atomic<Int64>
        let eventFDUsersOdd: Atomic<Int64>
        /// ``liveMagic`` while the object lives, 0 once it is being freed: debug builds check
        /// it wherever a writer reaches the storage through a channel (``assertLive(_:)``).
        let live: Atomic<UInt64>
    }

    static let liveMagic: UInt64 = 0x7265_6C61_7964_6231  // "relaydb1"

    /// Debug builds: traps if a writer reaches the storage of a wake-up that was freed (one
    /// that a channel let go while a writer could still hold its address).
    @inline(__always)
    static func assertLive(_ storage: UnsafeMutablePointer<Storage>) {
        // relaxed: a diagnostic; a freed storage reads 0 or garbage either way.
        assert(storage.pointee.live.load(ordering: .relaxed) == Self.liveMagic, "a writer reached a freed consumer wake-up")
    }

    let storage: UnsafeMutablePointer<Storage>

    /// Creates a doorbell.
    public init() {
        self.storage = .allocate(capacity: 1)
        self.storage.initialize(
            to: Storage(
                word: Atomic(0), state: Atomic(0), rings: Atomic(0), eventFD: Atomic(-1), eventFDGeneration: Atomic(0),
                eventFDUsersEven: Atomic(0), eventFDUsersOdd: Atomic(0), live: Atomic(Self.liveMagic)))
    }

    deinit {
        // relaxed: see `assertLive`.
        self.storage.pointee.live.store(0, ordering: .relaxed)
        self.storage.deinitialize(count: 1)
        self.storage.deallocate()
    }

    /// The 32-bit futex word to wait on. Stable for the object's lifetime.
    ///
    /// - Warning: Keep the `RelayConsumerWakeup` alive while any wait on this address
    ///   is pending (including an io_uring FUTEX_WAIT).
    public var futexWord: UnsafeMutablePointer<UInt32> {
        UnsafeMutableRawPointer(self.storage).assumingMemoryBound(to: UInt32.self)
    }

    /// The current value of the futex word: read it *before* ``prepareToSleep(_:)`` and
    /// pass it as the expected value of the wait.
    public var currentWord: UInt32 {
        // acquiring: pairs with the releasing increment in `ring()`.
        self.storage.pointee.word.load(ordering: .acquiring)
    }

    /// Declares the consumer asleep. Call it, then re-check every buffer for work, and
    /// only then wait on ``futexWord`` with the value read before.
    public func prepareToSleep(_ state: State) {
        // sequentiallyConsistent: Dekker with the writers' SC load in `ringIfSleeping`:
        // either a writer sees this state and rings, or our re-check after this store
        // sees its delivery.
        self.storage.pointee.state.store(state.rawValue, ordering: .sequentiallyConsistent)
        // sequentiallyConsistent fence: the re-check reads the buffers' words with relaxed or
        // acquiring loads, which a weakly ordered CPU (aarch64) may satisfy before the store
        // above; the fence keeps them after it (the writers' side has its own, see
        // `RelayChannel.wakeConsumer`). Once per sleep, never per record.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
    }

    /// Declares the consumer awake (after a wait returns).
    public func markAwake() {
        self.storage.pointee.state.store(State.awake.rawValue, ordering: .relaxed)
    }

    /// Also signals `eventFD` (an eventfd) on every ring, for consumers that sleep on an
    /// eventfd read instead of a futex. Pass -1 to stop.
    ///
    /// When it returns, no writer still uses the descriptor set before, so the caller may
    /// close it. (Otherwise a writer that loaded the old number just before it was replaced
    /// could write its 8 bytes into whatever file or socket reused the number after the
    /// close.) It waits only for writers that loaded the old descriptor and are inside their
    /// write(2) to it, which does not block on an eventfd; writers that come later use the new
    /// one and are not waited for. Call it from one thread at a time (the consumer's).
    public func setEventFD(_ eventFD: Int32) {
        let storage = self.storage
        // sequentiallyConsistent: ordered before the generation bump below, so a writer that
        // still validates the old generation loads the old descriptor at the latest then.
        storage.pointee.eventFD.store(Int64(eventFD), ordering: .sequentiallyConsistent)
        // relaxed: only this (the one setting) thread changes the generation.
        let old = storage.pointee.eventFDGeneration.load(ordering: .relaxed)
        // sequentiallyConsistent: Dekker with the writer's increment of its users counter and
        // its re-load of the generation in `ring` (either it sees the new generation and
        // retries, or our load of the old counter below sees its increment).
        storage.pointee.eventFDGeneration.store(old &+ 1, ordering: .sequentiallyConsistent)
        var spins = 0
        // sequentiallyConsistent: the load half of the pair above (and acquiring: the
        // writer's write(2), released by its decrement, is over before we return).
        while Self.users(storage, generation: old) != 0 {
            spins += 1
            if spins > 64 { sched_yield_() }
        }
    }

    /// The number of writers using generation `generation`'s descriptor.
    private static func users(_ storage: UnsafeMutablePointer<Storage>, generation: UInt64) -> Int64 {
        // sequentiallyConsistent: see `setEventFD`.
        generation & 1 == 0
            ? storage.pointee.eventFDUsersEven.load(ordering: .sequentiallyConsistent)
            : storage.pointee.eventFDUsersOdd.load(ordering: .sequentiallyConsistent)
    }

    /// Adds `delta` to generation `generation`'s users: sequentially consistent when entering
    /// (+1, see `signalEventFD`), releasing when leaving (-1: pairs with `setEventFD`'s load).
    private static func addUsers(_ storage: UnsafeMutablePointer<Storage>, generation: UInt64, _ delta: Int64) {
        switch (generation & 1 == 0, delta > 0) {
        case (true, true): storage.pointee.eventFDUsersEven.wrappingAdd(delta, ordering: .sequentiallyConsistent)
        case (true, false): storage.pointee.eventFDUsersEven.wrappingAdd(delta, ordering: .releasing)
        case (false, true): storage.pointee.eventFDUsersOdd.wrappingAdd(delta, ordering: .sequentiallyConsistent)
        case (false, false): storage.pointee.eventFDUsersOdd.wrappingAdd(delta, ordering: .releasing)
        }
    }

    /// Writes to the eventfd, if one is set, such that ``setEventFD(_:)`` cannot return (and
    /// its caller close the descriptor) between our load of it and the end of our write.
    private static func signalEventFD(_ storage: UnsafeMutablePointer<Storage>) {
        var generation: UInt64
        while true {
            // sequentiallyConsistent: pairs with `setEventFD`'s generation store.
            generation = storage.pointee.eventFDGeneration.load(ordering: .sequentiallyConsistent)
            // sequentiallyConsistent (in addUsers): Dekker with `setEventFD`'s generation store
            // and its load of this counter.
            Self.addUsers(storage, generation: generation, 1)
            // sequentiallyConsistent: still this generation after our increment, so a
            // `setEventFD` that replaces the descriptor after this point waits for us.
            if storage.pointee.eventFDGeneration.load(ordering: .sequentiallyConsistent) == generation { break }
            // releasing (in addUsers): pairs with `setEventFD`'s load of the counter.
            Self.addUsers(storage, generation: generation, -1)
        }
        // sequentiallyConsistent: after our validated generation load, so at worst the
        // descriptor this generation's `setEventFD` replaces, which waits for us.
        let eventFD = storage.pointee.eventFD.load(ordering: .sequentiallyConsistent)
        if eventFD >= 0 {
            var one: UInt64 = 1
            _ = write(Int32(eventFD), &one, 8)
        }
        // releasing (in addUsers): pairs with `setEventFD`'s load of the counter; our write(2)
        // is over.
        Self.addUsers(storage, generation: generation, -1)
    }

    /// How many times writers rang (wake-up syscalls issued).
    public var ringCount: UInt64 { self.storage.pointee.rings.load(ordering: .relaxed) }

    /// Wakes the consumer unconditionally.
    public func ring() {
        Self.ring(self.storage)
    }

    static func ring(_ storage: UnsafeMutablePointer<Storage>) {
        // Only one writer needs to issue the syscall: the one that flips the state.
        // sequentiallyConsistent: the writer half of the Dekker pair with `prepareToSleep`'s
        // sequentially consistent store and fence, after which the consumer re-checks for work
        // before it waits: either its re-check sees what this writer published before ringing,
        // or this exchange sees it asleep and wakes it. The exchange also picks the one writer
        // (of several ringing at once) that makes the system call.
        let previous = storage.pointee.state.exchange(State.awake.rawValue, ordering: .sequentiallyConsistent)
        // releasing: the waiter's expected value check (acquiring `currentWord`) sees
        // everything published before this increment.
        storage.pointee.word.wrappingAdd(1, ordering: .releasing)
        if previous != State.awake.rawValue {
            storage.pointee.rings.wrappingAdd(1, ordering: .relaxed)
            let word = UnsafeMutableRawPointer(storage).assumingMemoryBound(to: UInt32.self)
            _ = CRelayLinux_futex_wake(word, Int32.max, 0)
            Self.signalEventFD(storage)
        }
    }

    /// Waits with futex(2) until rung or `timeoutNanoseconds` passes (< 0: forever).
    /// For consumers that do not sleep inside io_uring.
    public func wait(expected: UInt32, timeoutNanoseconds: Int64) {
        _ = CRelayLinux_futex_wait(self.futexWord, expected, timeoutNanoseconds, 0)
    }
}
