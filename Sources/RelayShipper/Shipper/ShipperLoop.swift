internal import CRelayLinux
internal import Glibc
import Logging
import Relay
import Synchronization
import SystemPackage

/// The ring owner: runs on one dedicated OS thread, which created the ring
/// (`SINGLE_ISSUER | DEFER_TASKRUN`) and is the only thread that touches it.
///
/// Each iteration: take commands, take newly delivered sub-buffers from every channel
/// (in sequence order per buffer), hand them to the sinks, let the sinks submit, then
/// sleep inside io_uring until a completion, a wake-up (an armed `FUTEX_WAIT` on the
/// consumer doorbell, or an eventfd read) or the next timer. Completions release
/// sub-buffers back to their channel in order (`subbufsConsumed`).
final class ShipperLoop {
    /// What a completion belongs to (the `kind` byte of `user_data`).
    enum OpKind: UInt8 {
        case wake = 1
        case fileWrite = 2
        case fileFsync = 3
        case socketConnect = 4
        case socketSend = 5
        case eventRead = 6
        case cancel = 7
        case socketPoll = 8
        case fileWriteback = 9
    }

    enum Sink {
        case file(FileSink)
        case socket(SocketSink)
        case discard(position: Int, stats: RelaySinkStatsBox)
    }

    struct ChannelEntry {
        let channel: RelayChannel
        var sinks: [Sink]
        let trackers: Range<Int>
    }

    var ring: IOURing
    let logger: Logger
    let configuration: RelayShipperConfiguration
    let shared: ShipperShared
    var channels: [ChannelEntry] = []
    var trackers: [BufferTracker] = []
    private(set) var buffersRegistered = false
    var registrationFallback = false
    /// Whether sockets may use `SEND_ZC`: the probe found the opcode; cleared for good when the
    /// kernel refuses the usage-report flag every zero-copy send asks for (`-EINVAL`: kernels
    /// 6.0 to 6.1.1 have the opcode but not the flag).
    var supportsSendZC: Bool
    /// Peer-liveness polls still to fail (``RelayShipperFaults/failingPeerPolls``).
    var failingPeerPolls: Int
    let supportsFutexWait: Bool
    private var wakeArmed = false
    private var eventFD: FileDescriptor?
    private var eventBuffer = UnsafeMutableRawPointer.allocate(byteCount: 8, alignment: 8)
    private var switchDeadline: UInt64?
    private var completions: CompletionBuffer
    private var delays = DelayHistogram()
    private var shipped: UInt64 = 0
    private var released: UInt64 = 0
    private var overwritten: UInt64 = 0
    private var timerFlushes: UInt64 = 0
    private var iterations: UInt64 = 0
    private var sleeps: UInt64 = 0
    private var lastPublish: UInt64 = 0
    private var publishedAtIteration: UInt64 = 0
    private var drainDeadline: UInt64?
    private var exitRequested = false
    /// Set while the loop waits for its last completions.
    private(set) var isShuttingDown = false

    /// Creates the ring on the calling thread and opens every sink.
    init(
        configuration: RelayShipperConfiguration, registrations: [ShipperRegistration], shared: ShipperShared,
        logger: Logger
    ) throws(RelayShipperError) {
        self.configuration = configuration
        self.shared = shared
        self.logger = logger
        let capabilities: IOURingProbe.Capabilities
        switch IOURingProbe.result {
        case .success(let c): capabilities = c
        case .failure(let error): throw RelayShipperError(message: error.message)
        }
        self.supportsSendZC = capabilities.sendZC
        self.failingPeerPolls = configuration.faults.failingPeerPolls
        self.supportsFutexWait = capabilities.futexWait && !configuration.wakesThroughEventFD
        do {
            // The kernel's limits: 32768 SQ entries, 65536 CQ entries.
            let entries = UInt32(min(max(8, configuration.ringEntries), 32768))
            self.ring = try IOURing(entries: entries, cqEntries: min(entries * 4, 65536))
        } catch {
            throw RelayShipperError(message: "cannot create the io_uring ring: \(error)", errno: error)
        }
        self.completions = CompletionBuffer(capacity: 256)
        if !self.ring.setup.refused.isEmpty {
            logger.notice("\(self.ring.setup.note)")
        }

        // Channels, trackers and sinks.
        var sinkIndex = 0
        for (channelIndex, registration) in registrations.enumerated() {
            let channel = registration.channel
            let first = self.trackers.count
            let mask = registration.sinks.count >= 64 ? UInt64.max : (UInt64(1) << UInt64(registration.sinks.count)) - 1
            for buffer in 0..<channel.buffers {
                self.trackers.append(BufferTracker(channelIndex: channelIndex, channel: channel, buffer: buffer, allSinks: mask, fixedIndex: nil))
            }
            var sinks: [Sink] = []
            for (position, sink) in registration.sinks.enumerated() {
                switch sink.kind {
                case .file(let c):
                    let fileSink: FileSink
                    do {
                        fileSink = try FileSink(
                            index: sinkIndex, position: position, configuration: c, buffers: channel.buffers,
                            subbufferSize: channel.configuration.subbufferSize, queueDepth: configuration.fileQueueDepth,
                            label: sink.label)
                    } catch {
                        self.abandonSetup(sinks)
                        throw error
                    }
                    sinks.append(.file(fileSink))
                case .socket(let c):
                    sinks.append(.socket(SocketSink(index: sinkIndex, position: position, configuration: c, label: sink.label)))
                case .discard:
                    sinks.append(.discard(position: position, stats: RelaySinkStatsBox(RelaySinkStats(label: sink.label))))
                }
                sinkIndex += 1
            }
            self.channels.append(ChannelEntry(channel: channel, sinks: sinks, trackers: first..<self.trackers.count))
        }
        if configuration.registerBuffers {
            self.registerRegions()
        }
        if !self.supportsFutexWait {
            switch negativeErrno(CRelayLinux_eventfd()) {
            case .success(let fd):
                self.eventFD = FileDescriptor(rawValue: fd)
                shared.wakeup.setEventFD(fd)
            case .failure(let errno):
                self.abandonSetup([])
                throw RelayShipperError(message: "cannot create an eventfd for wake-ups: \(errno)", errno: errno)
            }
        }
        // Last, once nothing can throw: a failed start must not leave a channel attached
        // to this doorbell, or the next shipper's attach is refused and its writers ring
        // a doorbell nobody waits on.
        // A channel has one consumer: a second one (another running shipper, or a reader that
        // attached) would ship the same sub-buffers and release them while this one still
        // writes them out.
        for (index, entry) in self.channels.enumerated() where !entry.channel.attachConsumer(shared.wakeup) {
            for attached in self.channels[..<index] { attached.channel.detachConsumer() }
            self.abandonSetup([])
            if let eventFD = self.eventFD {
                shared.wakeup.setEventFD(-1)
                Files.close(eventFD)
            }
            throw RelayShipperError(
                message: "channel '\(entry.channel.configuration.name)' already has a consumer (another running shipper); "
                    + "stop it (and wait for it to exit) before starting this one")
        }
    }

    deinit {
        // The wake-up read's 8 bytes stay valid until its final completion: `shutdown()` cancels
        // the read and waits for that completion (up to its deadline). A read still armed past the
        // deadline may yet complete into the buffer while the ring is torn down (after this body),
        // so its 8 bytes are left to it (`KernelHeldMemory`), as `shutdown()` leaves staging
        // copies to late operations.
        if self.wakeArmed {
            KernelHeldMemory.keep(allocation: self.eventBuffer)
        } else {
            self.eventBuffer.deallocate()
        }
    }

    /// A failed start leaves nothing behind: closes the files its sinks (those of
    /// `self.channels` and `pending`) opened and frees the staging copies. No operation
    /// was queued yet.
    private func abandonSetup(_ pending: [Sink]) {
        for entry in self.channels {
            for case .file(let s) in entry.sinks { s.closeAll(fsync: false) }
        }
        for case .file(let s) in pending { s.closeAll(fsync: false) }
        for t in self.trackers { t.staging?.deallocate() }
        self.unregisterRegions()
    }

    /// Gives the registered sub-buffers back now: the kernel unpins them and returns their
    /// pages to the RLIMIT_MEMLOCK budget before this returns. Closing the ring's descriptor
    /// does that too, but in work the kernel queues for later, which may run after `stop()` (or
    /// a failed `start()`) returned, so a shipper started at once could find the budget still
    /// taken and fall back to unregistered writes. Only with no operation in flight: where the
    /// kernel quiesces the buffer table, an unregister waits for the operations using it, which
    /// past a stop deadline may never end; those buffers are left to the descriptor's close.
    private func unregisterRegions() {
        guard self.ring.registeredBufferCount > 0, self.outstandingOps() == 0 else { return }
        if case .failure(let errno) = self.ring.unregisterBuffers() {
            // The descriptor's close still releases them.
            self.logger.debug("unregistering the relay buffers failed", metadata: ["errno": "\(errno)"])
        }
    }

    private func registerRegions() {
        var regions: [UnsafeMutableRawBufferPointer] = []
        for tracker in self.trackers {
            // The sub-buffers only: fixed writes and sends never read the control state, and a
            // 1 GiB buffer's whole region is over io_uring's 1 GiB limit per registered buffer.
            regions.append(tracker.channel.subbufferArea(buffer: tracker.buffer))
        }
        guard !regions.isEmpty else { return }
        guard regions.count <= 16384 else {
            // The kernel's limit on registered buffers (IORING_MAX_REG_BUFFERS): say so, as for any
            // other failure.
            self.registrationFallback = true
            self.logger.warning(
                "relay buffers not registered with io_uring; using unregistered writes and sends",
                metadata: ["reason": "\(regions.count) buffers, more than the 16384 io_uring can register; use fewer buffers"])
            return
        }
        switch self.ring.registerBuffers(regions) {
        case .success:
            self.buffersRegistered = true
            for i in self.trackers.indices {
                let t = self.trackers[i]
                // The replacement stages in memory of its own; nothing refers to this yet.
                t.staging?.deallocate()
                self.trackers[i] = BufferTracker(
                    channelIndex: t.channelIndex, channel: t.channel, buffer: t.buffer, allSinks: t.allSinks, fixedIndex: UInt16(i))
            }
        case .failure(let errno):
            self.registrationFallback = true
            let bytes = regions.reduce(0) { $0 + $1.count }
            self.logger.warning(
                "relay buffers not registered with io_uring; using unregistered writes and sends",
                metadata: ["reason": "\(IOURing.registrationFailureMessage(errno, bytes: bytes))"])
        }
    }

    // MARK: The loop

    func run() {
        while true {
            let now = Clock.now
            self.iterations += 1
            self.processCommands(now: now)
            if self.exitRequested { break }
            self.collectDelivered(now: now)
            self.runSwitchTimer(now: now)
            self.pumpSinks(now: now)
            if let deadline = self.drainDeadline {
                if self.isDrained() {
                    self.logger.debug("shipper drained")
                    // releasing: pairs with the acquiring load in `RelayShipper.drained`, after
                    // the exit event.
                    self.shared.drained.store(true, ordering: .releasing)
                    break
                }
                if now >= deadline {
                    self.logger.warning("shipper stop deadline passed before everything was shipped", metadata: ["undelivered_subbuffers": "\(self.undelivered())"])
                    break
                }
            }
            self.publishStats(now: now, force: false)
            self.wait(now: now)
            self.reapAll()
        }
        self.shutdown()
    }

    private func wait(now: UInt64) {
        self.armWake()
        // With every sink at its limit (a socket's one send in flight, a file's queue depth of
        // writes), what writers deliver now waits for those completions anyway, and the loop
        // takes it when they wake it: writers need not ring.
        let completionsFirst = self.sinksAwaitCompletions()
        let deepSleep = !completionsFirst && self.switchDeadline == nil && self.drainDeadline == nil
        self.shared.wakeup.prepareToSleep(completionsFirst ? .waitingForCompletions : deepSleep ? .deepSleep : .sleeping)
        // Re-check after declaring sleep (Dekker with the writers' delivery, and with `ring`
        // for commands).
        if (!completionsFirst && self.anyDelivered()) || self.shared.hasCommands {
            self.shared.wakeup.markAwake()
            self.submitOnly()
            return
        }
        if deepSleep && self.anyPartial() {
            self.shared.wakeup.markAwake()
            self.submitOnly()
            return
        }
        var timeout: Int64? = nil
        if let deadline = self.nextDeadline() {
            timeout = deadline > now ? Int64(clamping: deadline - now) : 0
        }
        if timeout == 0 {
            self.shared.wakeup.markAwake()
            self.submitOnly()
            return
        }
        if timeout == nil || timeout! > 50_000_000 {
            // A long sleep: make the counters current first (stats() readers would
            // otherwise see the state from before the last burst until the next wake-up).
            self.publishStats(now: now, force: self.iterations != self.publishedAtIteration)
        }
        self.sleeps += 1
        do {
            _ = try self.ring.submitAndWait(minCompletions: 1, timeoutNanoseconds: timeout)
        } catch {
            self.logger.error("io_uring_enter failed", metadata: ["errno": "\(error)"])
        }
        self.shared.wakeup.markAwake()
    }

    private func submitOnly() {
        do {
            _ = try self.ring.submitAndWait(minCompletions: 0, timeoutNanoseconds: nil)
        } catch {
            self.logger.error("io_uring_enter failed", metadata: ["errno": "\(error)"])
        }
    }

    private func armWake() {
        guard !self.wakeArmed else { return }
        let userData = URingUserData(kind: OpKind.wake.rawValue, index: 0, sequence: 0).rawValue
        do {
            if let eventFD = self.eventFD {
                try self.ring.read(eventFD, into: UnsafeMutableRawBufferPointer(start: self.eventBuffer, count: 8), at: 0, userData: userData)
            } else {
                let expected = self.shared.wakeup.currentWord
                try self.ring.futexWait(self.shared.wakeup.futexWord, expected: expected, isPrivate: true, userData: userData)
            }
            self.wakeArmed = true
        } catch {
            // SQ full: the completions we are about to wait for free it.
        }
    }

    private func reapAll() {
        while true {
            let count: Int
            do {
                count = try self.ring.reap(into: &self.completions)
            } catch {
                self.logger.error("reaping completions failed", metadata: ["errno": "\(error)"])
                return
            }
            if count == 0 { return }
            let now = Clock.now
            for i in 0..<count {
                self.dispatch(self.completions[i], now: now)
            }
        }
    }

    private func dispatch(_ completion: Completion, now: UInt64) {
        let data = URingUserData(rawValue: completion.userData)
        guard let kind = OpKind(rawValue: data.kind) else { return }
        switch kind {
        case .wake:
            self.wakeArmed = false
        case .eventRead:
            break
        case .cancel:
            break
        case .fileWrite:
            if case .file(let sink) = self.sink(Int(data.index)) {
                sink.completed(op: Int(data.sequence), result: completion.result, loop: self, now: now)
            }
        case .fileFsync:
            if case .file(let sink) = self.sink(Int(data.index)) {
                sink.fsyncCompleted(sequence: data.sequence, result: completion.result, loop: self, now: now)
            }
        case .fileWriteback:
            if case .file(let sink) = self.sink(Int(data.index)) {
                sink.writebackCompleted(sequence: data.sequence, result: completion.result, loop: self, now: now)
            }
        case .socketConnect:
            if case .socket(let sink) = self.sink(Int(data.index)) {
                sink.connectCompleted(result: completion.result, userData: data, loop: self, now: now)
            }
        case .socketSend:
            if case .socket(let sink) = self.sink(Int(data.index)) {
                sink.sendCompleted(completion, loop: self, now: now)
            }
        case .socketPoll:
            if case .socket(let sink) = self.sink(Int(data.index)) {
                sink.pollCompleted(result: completion.result, userData: data, loop: self, now: now)
            }
        }
    }

    private var sinkTable: [Sink] = []

    private func sink(_ index: Int) -> Sink? {
        if self.sinkTable.isEmpty {
            self.sinkTable = self.channels.flatMap(\.sinks)
        }
        return index < self.sinkTable.count ? self.sinkTable[index] : nil
    }

    // MARK: Taking delivered sub-buffers

    private func anyDelivered() -> Bool {
        for t in self.trackers where t.inFlight < t.subbufCount {
            if t.channel.delivered(buffer: t.buffer, sequence: t.nextToShip) != nil { return true }
            // Overwrite mode: writers lapped the sub-buffer it needs next. The deliveries after it
            // may all have rung before this loop prepared to sleep (when it still had sends in
            // flight and could not take them): `collectDelivered` must skip to them now, or the
            // loop sleeps until the next delivery, which may never come.
            if let target = t.channel.lapTarget(buffer: t.buffer, nextSequence: t.nextToShip), target > t.nextToShip {
                return true
            }
            // A delivered sub-buffer whose state word was overwritten: no delivery will ring for it
            // again, so `collectDelivered` must pass it now (the last delivery may have rung before
            // this loop prepared to sleep, when it was not yet passable).
            if t.channel.hasCorruptSlot(buffer: t.buffer, sequence: t.nextToShip) { return true }
        }
        return false
    }

    /// Whether no sub-buffer delivered now could be handed to the kernel before an operation
    /// already in flight completes: every sink of every channel waits for its own completions
    /// (`FileSink.awaitsCompletions`, `SocketSink.awaitsCompletions`). Never in overwrite mode,
    /// where taking a delivered sub-buffer early (copying it out) keeps writers from lapping it.
    private func sinksAwaitCompletions() -> Bool {
        if self.channels.isEmpty || self.trackers.contains(where: { $0.staging != nil }) { return false }
        for entry in self.channels {
            if entry.sinks.isEmpty { return false }
            for sink in entry.sinks {
                switch sink {
                case .file(let s): if !s.awaitsCompletions { return false }
                case .socket(let s): if !s.awaitsCompletions { return false }
                case .discard: return false
                }
            }
        }
        return true
    }

    private func anyPartial() -> Bool {
        self.trackers.contains { $0.channel.hasPartialSubbuffer(buffer: $0.buffer) }
    }

    private func collectDelivered(now: UInt64) {
        for index in self.trackers.indices {
            while self.trackers[index].inFlight < self.trackers[index].subbufCount {
                let t = self.trackers[index]
                guard let delivered = t.channel.delivered(buffer: t.buffer, sequence: t.nextToShip) else {
                    if let target = t.channel.lapTarget(buffer: t.buffer, nextSequence: t.nextToShip), target > t.nextToShip {
                        // Overwrite mode: writers lapped us; those sub-buffers are gone (told
                        // to the channel's client before they are released).
                        self.overwritten += target - t.nextToShip
                        t.channel.reportOverwritten(buffer: t.buffer, sequences: t.nextToShip..<target)
                        self.skip(tracker: index, to: target)
                        continue
                    }
                    if t.channel.passCorruptSlot(buffer: t.buffer, sequence: t.nextToShip) {
                        // No-overwrite modes: delivered, but its state word is not one the engine stores
                        // (another process wrote into the shared region; the channel counts it in
                        // corruptSubbuffers). Waiting for it would wedge the buffer: passed like a
                        // sub-buffer with a corrupt header.
                        self.passCorrupt(tracker: index, sequence: t.nextToShip)
                        continue
                    }
                    break
                }
                self.take(tracker: index, delivered)
            }
        }
    }

    private func skip(tracker index: Int, to target: UInt64) {
        // Nothing of the skipped range is in flight for any sink (they were never taken).
        if self.trackers[index].consumed == self.trackers[index].nextToShip {
            self.trackers[index].consumed = target
        }
        self.trackers[index].skipped += target - self.trackers[index].nextToShip
        self.trackers[index].nextToShip = target
        self.advanceConsumed(tracker: index)
    }

    private func take(tracker index: Int, _ d: DeliveredSubbuffer) {
        let t = self.trackers[index]
        let slot = t.slot(d.sequence)
        var packetStart = UnsafeRawPointer(t.base + d.regionOffset)
        var fixed = t.fixedIndex
        if let staging = t.staging {
            // Overwrite mode: copy out, then check no writer reused it meanwhile.
            let copy = staging + slot * d.size
            copy.copyMemory(from: packetStart, byteCount: d.size)
            if !t.channel.isIntact(buffer: t.buffer, sequence: d.sequence) {
                self.overwritten += 1
                t.channel.reportOverwritten(buffer: t.buffer, sequences: d.sequence..<d.sequence + 1)
                self.trackers[index].skipped += 1
                self.trackers[index].nextToShip += 1
                if self.trackers[index].consumed == d.sequence { self.trackers[index].consumed += 1 }
                self.advanceConsumed(tracker: index)
                return
            }
            packetStart = UnsafeRawPointer(copy)
            fixed = nil
        }
        let packet = UnsafeRawBufferPointer(start: packetStart, count: d.size)
        guard t.channel.isSound(d, packet: packet) else {
            // A header the engine did not write (another process wrote into the shared region;
            // the channel counts it in corruptSubbuffers): its sizes cannot be trusted, so it is
            // not shipped, and it is released like a lapped one.
            self.passCorrupt(tracker: index, sequence: d.sequence)
            return
        }
        let content = UnsafeRawBufferPointer(start: packetStart + d.headerSize, count: d.contentSize)
        let item = ShipItem(tracker: index, sequence: d.sequence, content: content, packet: packet, fixedIndex: fixed)
        self.trackers[index].pending[slot] = t.allSinks
        self.trackers[index].beginTimes[slot] = d.beginTimeNanoseconds
        self.trackers[index].nextToShip = d.sequence + 1
        self.shipped += 1
        for sink in self.channels[t.channelIndex].sinks {
            switch sink {
            case .file(let s): s.enqueue(item, buffer: t.buffer)
            case .socket(let s): s.enqueue(item)
            case .discard(let position, let stats):
                stats.value.bytes += UInt64(content.count)
                stats.value.subbuffers += 1
                // Finished at once, with nothing handed to the kernel: sent and reusable too.
                stats.value.sentSubbuffers += 1
                stats.value.reusableSubbuffers += 1
                self.sinkFinished(position, item: item, bytes: content.count)
            }
        }
    }

    /// Passes sub-buffer `sequence` (the next to ship) without shipping it and releases it: the
    /// channel found it corrupt (and counted and reported it).
    private func passCorrupt(tracker index: Int, sequence: UInt64) {
        self.trackers[index].skipped += 1
        self.trackers[index].nextToShip += 1
        if self.trackers[index].consumed == sequence { self.trackers[index].consumed += 1 }
        self.advanceConsumed(tracker: index)
    }

    /// A sink finished a sub-buffer.
    func sinkFinished(_ position: Int, item: ShipItem, bytes: Int) {
        let slot = self.trackers[item.tracker].slot(item.sequence)
        let bit = UInt64(1) << UInt64(position)
        let before = self.trackers[item.tracker].pending[slot]
        guard before & bit != 0 else { return }
        let after = before & ~bit
        self.trackers[item.tracker].pending[slot] = after
        if after == 0 {
            let begin = self.trackers[item.tracker].beginTimes[slot]
            let nowWall = Clock.wallNow
            if nowWall > begin { self.delays.record((nowWall - begin) / 1000) }
            self.released += 1
            self.advanceConsumed(tracker: item.tracker)
        }
    }

    private func advanceConsumed(tracker index: Int) {
        let before = self.trackers[index].consumed
        var consumed = before
        while consumed < self.trackers[index].nextToShip && self.trackers[index].pending[self.trackers[index].slot(consumed)] == 0 {
            consumed += 1
        }
        if consumed != before || consumed > self.trackers[index].channel.consumedCount(buffer: self.trackers[index].buffer) {
            self.trackers[index].consumed = consumed
            self.trackers[index].channel.setConsumed(buffer: self.trackers[index].buffer, to: consumed)
        }
    }

    // MARK: Timers

    private func runSwitchTimer(now: UInt64) {
        if let deadline = self.switchDeadline {
            if now >= deadline {
                self.switchDeadline = nil
                var flushed = false
                for t in self.trackers where t.channel.hasPartialSubbuffer(buffer: t.buffer) {
                    t.channel.flush(buffer: t.buffer)
                    flushed = true
                }
                if flushed {
                    self.timerFlushes += 1
                    self.collectDelivered(now: now)
                }
            }
        }
        if self.drainDeadline != nil {
            for entry in self.channels { entry.channel.flush() }
            self.collectDelivered(now: now)
        }
        if self.switchDeadline == nil && self.anyPartial() {
            // Saturating: a huge interval means "never", not an overflow trap.
            self.switchDeadline = now.saturatingAdding(self.configuration.switchInterval.nanoseconds)
        }
    }

    private func pumpSinks(now: UInt64) {
        for entry in self.channels {
            for sink in entry.sinks {
                switch sink {
                case .file(let s):
                    s.pump(self, now: now)
                    if let next = s.nextAgeRotation, now >= next { s.rotateByAge(loop: self, now: now) }
                case .socket(let s):
                    s.pump(self, now: now)
                case .discard:
                    break
                }
            }
        }
    }

    private func nextDeadline() -> UInt64? {
        var deadline = self.switchDeadline
        func consider(_ value: UInt64?) {
            guard let value else { return }
            deadline = min(deadline ?? value, value)
        }
        consider(self.drainDeadline.map { _ in Clock.now + 1_000_000 })
        for entry in self.channels {
            for sink in entry.sinks {
                switch sink {
                case .file(let s):
                    consider(s.retryAt)
                    consider(s.nextFsyncDeadline)
                    consider(s.nextAgeRotation)
                case .socket(let s):
                    consider(s.nextDeadline)
                case .discard:
                    break
                }
            }
        }
        return deadline
    }

    // MARK: Commands, draining, shutdown

    private func processCommands(now: UInt64) {
        for command in self.shared.takeCommands() {
            switch command {
            case .reopen:
                for entry in self.channels {
                    for case .file(let s) in entry.sinks { s.reopen(loop: self, now: now) }
                }
            case .flush:
                for entry in self.channels { entry.channel.flush() }
            case .stop(let timeout):
                // Saturating, as the switch deadline. The earliest deadline requested wins: a
                // later stop with a shorter timeout (a cancellation after a graceful shutdown
                // began, `requestStop(timeout: .zero)`) must not wait out an earlier, longer one.
                let deadline = now.saturatingAdding(timeout.nanoseconds)
                self.drainDeadline = min(self.drainDeadline ?? deadline, deadline)
            case .abort:
                self.exitRequested = true
            case .publishStats:
                self.publishStats(now: now, force: true)
            case .resolved(let index, let request, let result):
                // Its thread is past posting this: join it (and any other finished one).
                self.shared.resolvers.joinFinished()
                if case .socket(let sink) = self.sink(index) {
                    sink.lookUpCompleted(request: request, result: result, loop: self, now: now)
                }
            }
        }
    }

    private func isDrained() -> Bool {
        for t in self.trackers {
            if t.channel.hasPartialSubbuffer(buffer: t.buffer) { return false }
            if t.consumed < t.channel.producedCount(buffer: t.buffer) { return false }
            if t.nextToShip != t.consumed { return false }
        }
        for entry in self.channels {
            for sink in entry.sinks {
                switch sink {
                case .file(let s): if s.hasWork { return false }
                case .socket(let s): if s.hasWork { return false }
                case .discard: break
                }
            }
        }
        return true
    }

    private func undelivered() -> UInt64 {
        self.trackers.reduce(0) { $0 + ($1.channel.producedCount(buffer: $1.buffer) - min($1.consumed, $1.channel.producedCount(buffer: $1.buffer))) }
    }

    private func shutdown() {
        // Cancel what is still in the kernel (wake-up wait, stuck sends) and wait for every
        // final completion: memory an SQE points to must stay valid until then.
        let cancelData = URingUserData(kind: OpKind.cancel.rawValue, index: 0, sequence: 0).rawValue
        if self.wakeArmed {
            let wakeData = URingUserData(kind: OpKind.wake.rawValue, index: 0, sequence: 0).rawValue
            // One wake-up read is armed at a time, so no CANCEL_ALL flag: kernels before 5.19
            // reject any cancel flag (EINVAL), which would leave the read armed.
            try? self.ring.cancel(wakeData, all: false, userData: cancelData)
        }
        self.isShuttingDown = true
        for entry in self.channels {
            for case .socket(let s) in entry.sinks { s.close(self) }
        }
        let deadline = Clock.now + 2_000_000_000
        while self.outstandingOps() > 0 && Clock.now < deadline {
            _ = try? self.ring.submitAndWait(minCompletions: 1, timeoutNanoseconds: 50_000_000)
            self.reapAllQuietly()
        }
        for entry in self.channels {
            for case .file(let s) in entry.sinks {
                s.cutUnfinishedWrites(loop: self)
                if case .none = s.configuration.fsync { s.closeAll(fsync: false) } else { s.closeAll(fsync: true, loop: self) }
            }
            // Nothing is submitted after this: descriptors still waiting for their SQEs to be
            // taken (the kernel refused them) can no longer be named by a submission.
            for case .socket(let s) in entry.sinks { s.closeDeferred() }
            entry.channel.detachConsumer()
        }
        // Resolver threads post to the command queue and ring the doorbell (its eventfd):
        // join them before the eventfd is closed, or abandon the ones still looking up.
        let resolvers = self.shared.resolvers.reap()
        if resolvers.abandoned > 0 {
            self.logger.warning(
                "shipper stopped while host name look-ups were still running; their threads were left to finish on their own and their results are dropped (a slow or unreachable DNS server? check /etc/resolv.conf, or use an IP address)",
                metadata: [
                    "abandoned_lookups": "\(resolvers.abandoned)",
                    "waited_ms": "\(self.shared.resolvers.joinTimeoutNanoseconds.load(ordering: .relaxed) / 1_000_000)",
                ]
            )
        }
        if let eventFD = self.eventFD {
            self.shared.wakeup.setEventFD(-1)
            Files.close(eventFD)
        }
        // Overwrite channels' staging copies, once no operation can still read them (past
        // the deadline some may: then the memory is left to them).
        for t in self.trackers {
            guard let staging = t.staging else { continue }
            if self.outstandingOps() == 0 { staging.deallocate() } else { KernelHeldMemory.keep(allocation: staging) }
        }
        // A sink operation the kernel still has after the wait (a device or filesystem that
        // does not complete I/O: NFS down, a frozen filesystem, a failing disk) may read channel
        // memory whenever the kernel gets to it: a plain file write reads its sub-buffers then,
        // not at submission. Keep every channel, so its regions stay mapped for the rest of the
        // process however the caller lets go of it, and say so.
        let stuck = self.outstandingOps() - (self.wakeArmed ? 1 : 0)
        if stuck > 0 {
            for entry in self.channels { KernelHeldMemory.keep(entry.channel) }
            self.logger.error(
                "shipper stopped with operations still in the kernel; their channels' memory is kept for the rest of the process",
                metadata: [
                    "operations": "\(stuck)",
                    "advice": "the device or filesystem did not complete I/O within the stop's wait (NFS down, a frozen filesystem, a failing disk?); what those operations carry may not arrive",
                ])
        }
        self.unregisterRegions()
        self.publishStats(now: Clock.now, force: true)
    }

    private func outstandingOps() -> Int {
        var n = self.wakeArmed ? 1 : 0
        for entry in self.channels {
            for sink in entry.sinks {
                switch sink {
                case .file(let s): n += s.inFlight - s.parked.count
                case .socket(let s): n += s.inFlight
                case .discard: break
                }
            }
        }
        return n
    }

    private func reapAllQuietly() {
        while let count = try? self.ring.reap(into: &self.completions), count > 0 {
            let now = Clock.now
            for i in 0..<count { self.dispatch(self.completions[i], now: now) }
        }
    }

    // MARK: Stats

    func publishStats(now: UInt64, force: Bool) {
        guard force || now - self.lastPublish >= 50_000_000 else { return }
        self.lastPublish = now
        self.publishedAtIteration = self.iterations
        var sinks: [RelaySinkStats] = []
        for entry in self.channels {
            for sink in entry.sinks {
                switch sink {
                case .file(let s):
                    var stats = s.stats
                    // Failed writes parked until their retry are not in the kernel (as in
                    // `outstandingOps`): a failing sink between retry rounds has none in flight.
                    stats.inFlight = UInt64(s.inFlight - s.parked.count)
                    sinks.append(stats)
                case .socket(let s):
                    var stats = s.stats
                    stats.inFlight = UInt64(s.inFlight)
                    sinks.append(stats)
                case .discard(_, let stats):
                    sinks.append(stats.value)
                }
            }
        }
        let stats = RelayShipperStats(
            sinks: sinks,
            registeredBuffers: self.buffersRegistered ? self.trackers.count : 0,
            registrationFallback: self.registrationFallback,
            ringSetup: self.ring.setup.note,
            subbuffersShipped: self.shipped,
            subbuffersReleased: self.released,
            subbuffersOverwritten: self.overwritten,
            timerFlushes: self.timerFlushes,
            delayMicroseconds: self.delays.summary,
            loopIterations: self.iterations,
            sleeps: self.sleeps,
            doorbellRings: self.shared.wakeup.ringCount,
            threadCPUSeconds: ThreadCPU.seconds()
        )
        self.shared.publish(stats)
    }
}

/// A mutable box so the discard sink's counters live in the enum payload.
final class RelaySinkStatsBox {
    var value: RelaySinkStats
    init(_ value: RelaySinkStats) { self.value = value }
}

enum Clock {
    /// CLOCK_MONOTONIC ns.
    static var now: UInt64 { CRelayLinux_monotonic_ns() }
    /// CLOCK_REALTIME ns (sub-buffer headers use it).
    static var wallNow: UInt64 { CRelayLinux_realtime_ns() }
}

enum ThreadCPU {
    /// CPU seconds (user + system) of the calling thread.
    static func seconds() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}
