import Relay
import RelayTestSupport
import Synchronization
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// The doorbell's Dekker pair: a consumer declares itself asleep and then re-checks the
/// buffers; a writer publishes its work and then loads the consumer's state. At least one
/// side must see the other, or the consumer sleeps on work nobody rings for.
@Suite("Consumer wake-up (Dekker with a sleeping consumer)", .serialized)
struct ConsumerWakeupTests {
    static let cpus = CPUAffinity.onlineCount

    final class Rounds: Sendable {
        let go = Atomic<Int>(0)
        let done = Atomic<Int>(0)
        let spin = Atomic<Int>(0)
    }

    /// A store-buffering litmus test on the real code. Each round the writer (CPU 1) writes
    /// the first record of an empty buffer: a restartable sequence (plain stores) moves the
    /// position, then `wakeConsumer` loads the consumer's state. The consumer (CPU 0)
    /// stores `.deepSleep` and re-checks with `hasPartialSubbuffer`, as `ShipperLoop.wait`
    /// does. The consumer's delay adapts until the two race. Without a StoreLoad fence on
    /// the writer's side both can miss each other (seen in optimized builds, a few hundred
    /// rounds in 100,000; debug builds did not show it here): the shipper then sleeps
    /// without a timer while the record waits.
    @Test(
        "the first record of a sub-buffer either rings a deep-sleeping consumer or is seen by its re-check",
        .enabled(if: cpus >= 2, "needs 2 CPUs"))
    func firstRecordReachesDeepSleeper() throws {
        let channel = try RelayChannel(
            RelayChannelConfiguration(
                name: "wake-dekker-\(UInt32.random(in: 0...UInt32.max))", subbufferSize: 4096, subbufferCount: 8,
                mode: .drop))
        let wakeup = RelayConsumerWakeup()
        #expect(channel.attachConsumer(wakeup))
        let rounds = 20_000
        let sync = Rounds()
        let writer = TestThreads.spawn {
            CPUAffinity.pin(to: 1)
            let record = [UInt8](repeating: 0x41, count: 32)
            for round in 1...rounds {
                // acquiring: pairs with the consumer's releasing store of the round.
                while sync.go.load(ordering: .acquiring) != round {}
                record.withUnsafeBytes { _ = channel.write($0) }
                // releasing: pairs with the consumer's acquiring wait for the round.
                sync.done.store(round, ordering: .releasing)
            }
        }
        CPUAffinity.pin(to: 0)
        defer { CPUAffinity.pin(to: nil) }
        var random = SplitMix64(state: 7)
        var center = 0
        var lost = 0
        for round in 1...rounds {
            // Buffer 1 (the writer's) is empty: its next record is the first of sub-buffer 0.
            try channel.reset()
            wakeup.markAwake()
            let ringsBefore = wakeup.ringCount
            let delay = max(0, center + Int(random.next() % 64) - 32)
            // releasing: pairs with the writer's acquiring wait for the round.
            sync.go.store(round, ordering: .releasing)
            for i in 0..<delay { sync.spin.store(i, ordering: .relaxed) }
            wakeup.prepareToSleep(.deepSleep)
            let sawPartial = channel.hasPartialSubbuffer(buffer: 1)
            // acquiring: pairs with the writer's releasing store after its write.
            while sync.done.load(ordering: .acquiring) != round {}
            let rang = wakeup.ringCount != ringsBefore
            if !sawPartial && !rang { lost += 1 }
            // Consumer too early (only the writer saw the other side): wait longer; too late:
            // wait less.
            if rang && !sawPartial { center += 1 } else if sawPartial && !rang { center = max(0, center - 1) }
        }
        TestThreads.join(writer)
        wakeup.markAwake()
        #expect(lost == 0, "\(lost) of \(rounds) rounds: the writer did not ring and the consumer's re-check saw nothing")
    }

    final class Stop: Sendable {
        let flag = Atomic<Bool>(false)
    }

    /// A ringer loads the eventfd's number, then writes 8 bytes to it. If the consumer could
    /// replace and close the descriptor between the two, the write would land in whatever
    /// file the number was reused for. Ringers ring as fast as they can while the consumer
    /// replaces its descriptor, closes it, and opens a file that usually gets the same
    /// number; that file must never receive a byte. (The "eventfd" is an unlinked file here: the
    /// ringer's write(2) is the same. Without the wait in `setEventFD`, a ringer preempted
    /// between its load and its write hit the reused descriptor within 0.5 s in each of 5 runs here (two ringers);
    /// with it, hundreds of rounds in 1 s saw no write.)
    @Test("a descriptor replaced by setEventFD is never written afterwards (it can be closed and reused)")
    func replacedEventFDIsNotWritten() throws {
        let wakeup = RelayConsumerWakeup()
        let stop = Stop()
        let ringers = (0..<2).map { _ in
            TestThreads.spawn {
                while !stop.flag.load(ordering: .relaxed) {
                    wakeup.prepareToSleep(.sleeping)
                    wakeup.ring()
                }
            }
        }
        // Anonymous files: created and unlinked at once.
        let directory = "/tmp/relay-eventfd-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        var files = 0
        func anonymousFile(_ name: String) -> Int32 {
            files += 1
            let path = "\(directory)-\(name)-\(files)"
            let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            precondition(fd >= 0, "cannot create \(path): errno \(errno)")
            unlink(path)
            return fd
        }
        func size(_ fd: Int32) -> Int {
            var st = stat()
            precondition(fstat(fd, &st) == 0)
            return Int(st.st_size)
        }
        var rounds = 0
        var reused = 0
        var written = 0
        var current = anonymousFile("eventfd-stand-in")
        // At least 1 s and 50 rounds (a loaded host may need longer for those), at most 10 s.
        let deadline = ContinuousClock.now + .seconds(1)
        let limit = ContinuousClock.now + .seconds(10)
        while (ContinuousClock.now < deadline || rounds < 50) && ContinuousClock.now < limit && written == 0 {
            rounds += 1
            let next = anonymousFile("eventfd-stand-in")
            wakeup.setEventFD(next)
            // The old descriptor is no longer used: close it and reuse its number.
            close(current)
            let bystander = anonymousFile("bystander")
            if bystander == current { reused += 1 }
            // Give a ringer that still held the old number time to write.
            let until = ContinuousClock.now + .microseconds(50)
            while ContinuousClock.now < until {}
            if size(bystander) != 0 { written += 1 }
            close(bystander)
            current = next
        }
        wakeup.setEventFD(-1)
        close(current)
        stop.flag.store(true, ordering: .relaxed)
        for ringer in ringers { TestThreads.join(ringer) }
        #expect(rounds >= 50, "only \(rounds) rounds ran")
        // Other suites open descriptors in this process too, so not every round reuses the number.
        #expect(reused >= 10, "descriptor numbers were reused in only \(reused) of \(rounds) rounds")
        #expect(written == 0, "a ringer wrote into a closed-and-reused eventfd number in \(written) of \(rounds) rounds")
    }
}

@Suite("Consumer detach")
struct ConsumerDetachTests {
    /// A writer that rings is inside `wakeConsumer`, holding the wake-up's address, until its
    /// write(2) to the consumer's eventfd returns. Here that write blocks (the "eventfd" is a
    /// full blocking pipe), which holds the writer there: detaching must wait for it, and only
    /// then let the wake-up go. Before, the channel kept every detached wake-up until it died.
    @Test("detachConsumer waits for a writer still ringing the detached wake-up, then lets it go")
    func detachWaitsForRinger() throws {
        let channel = try RelayChannel(
            RelayChannelConfiguration(
                name: "detach-\(UInt32.random(in: 0...UInt32.max))", subbufferSize: 4096, subbufferCount: 8, mode: .drop,
                buffers: 1))
        var ends: [Int32] = [-1, -1]
        try #require(pipe(&ends) == 0)
        let (readEnd, eventFD) = (ends[0], ends[1])
        defer {
            close(readEnd)
            close(eventFD)
        }
        // Fill the pipe without blocking, then make its writes block: the next write(2) waits for a read.
        let flags = fcntl(eventFD, F_GETFL)
        try #require(fcntl(eventFD, F_SETFL, flags | O_NONBLOCK) == 0)
        var filler = [UInt8](repeating: 0, count: 4096)
        while write(eventFD, &filler, filler.count) > 0 {}
        while write(eventFD, &filler, 1) > 0 {}  // to the last byte: an 8-byte write(2) needs 8 free
        try #require(fcntl(eventFD, F_SETFL, flags) == 0)

        weak var released: RelayConsumerWakeup?
        let detached = Atomic<Bool>(false)
        var detacher: TestThreads.Handle?
        do {
            let wakeup = RelayConsumerWakeup()
            released = wakeup
            wakeup.setEventFD(eventFD)
            wakeup.prepareToSleep(.sleeping)
            #expect(channel.attachConsumer(wakeup))
            // A delivery rings the sleeping consumer: the futex wake, then the blocking write.
            let writer = TestThreads.spawn {
                let record = [UInt8](repeating: 0x61, count: 100)
                while channel.stats().total.subbuffersProduced == 0 { channel.write(record) }
            }
            let deadline = monotonicSeconds() + 10
            while wakeup.ringCount == 0 && monotonicSeconds() < deadline { usleep(1000) }
            try #require(wakeup.ringCount == 1, "the delivery rang the sleeping consumer")
            detacher = TestThreads.spawn {
                channel.detachConsumer()
                detached.store(true, ordering: .releasing)
            }
            usleep(300_000)
            let early = detached.load(ordering: .acquiring)
            #expect(!early, "detach returned while a writer was still ringing the wake-up")
            // Let the write(2) through: the writer leaves, then the detach returns.
            #expect(read(readEnd, &filler, filler.count) == filler.count)
            TestThreads.join(writer)
            while !detached.load(ordering: .acquiring) && monotonicSeconds() < deadline { usleep(1000) }
            let done = detached.load(ordering: .acquiring)
            #expect(done, "detach returned once the writer left")
            wakeup.setEventFD(-1)
        }
        if let detacher { TestThreads.join(detacher) }
        #expect(released == nil, "the channel let the detached wake-up go")
        withExtendedLifetime(channel) {}
    }

    @Test("attaching and detaching wake-ups while writers deliver keeps none of them")
    func churn() throws {
        let channel = try RelayChannel(
            RelayChannelConfiguration(
                name: "detach-churn-\(UInt32.random(in: 0...UInt32.max))", subbufferSize: 4096, subbufferCount: 4,
                mode: .overwrite, buffers: 2))
        let stop = Atomic<Bool>(false)
        let writers = (0..<2).map { _ in
            TestThreads.spawn {
                let record = [UInt8](repeating: 0x62, count: 200)
                while !stop.load(ordering: .relaxed) { channel.write(record) }
            }
        }
        var kept = 0
        for round in 0..<2000 {
            weak var released: RelayConsumerWakeup?
            do {
                let wakeup = RelayConsumerWakeup()
                released = wakeup
                wakeup.prepareToSleep(round % 2 == 0 ? .sleeping : .deepSleep)
                #expect(channel.attachConsumer(wakeup))
                sched_yield()
                channel.detachConsumer()
            }
            if released != nil { kept += 1 }
        }
        stop.store(true, ordering: .relaxed)
        for writer in writers { TestThreads.join(writer) }
        #expect(kept == 0, "\(kept) detached wake-ups were kept alive")
        #expect(channel.stats().total.subbuffersProduced > 0, "the writers delivered while wake-ups came and went")
    }
}
