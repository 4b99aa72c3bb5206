internal import CRelayLinux
internal import Glibc
import Logging
import SystemPackage

/// Sends sub-buffers to a TCP or Unix stream socket with io_uring, straight from relay
/// memory.
///
/// - One send in flight per socket (several independent sends could reorder the
///   stream). `MSG_WAITALL` makes the kernel retry partial sends; a short result is
///   resubmitted for the rest. Sub-buffers queued behind the send in flight go out
///   together in the next one (``SubbufferBatch``): one `SENDMSG`, so small sub-buffers
///   do not cost a ring round trip each.
/// - Zero-copy (`SEND_ZC`, from the registered region when available) is used for large
///   payloads to non-loopback peers, and switched off while the kernel's notifications
///   report that it copied anyway. A sub-buffer is released only after its final
///   completion (the notification, for zero-copy).
/// - A sub-buffer is finished only when the peer's TCP has acknowledged all of its
///   bytes (`SIOCOUTQ`); on disconnect every unfinished sub-buffer is sent again, whole,
///   on the next connection. See docs/ARCHITECTURE.md "Delivery guarantees".
final class SocketSink {
    struct Entry {
        let id: UInt64
        let item: ShipItem
        let bytes: UnsafeRawBufferPointer
        /// Stream offset (on the current connection) just after this entry's last byte,
        /// once it is fully sent; nil before.
        var endOffset: Int64?
    }

    enum State {
        case disconnected
        case connecting(FileDescriptor)
        case connected(FileDescriptor)
    }

    let index: Int
    let position: Int
    let configuration: RelaySocketSinkConfiguration
    /// The addresses connects go to, tried in order: a host name's every address, in
    /// getaddrinfo's order (a refused, unreachable or timed-out one is followed at once by
    /// the next, see ``tryNextAddress(_:now:reason:)``); one for a numeric or Unix address.
    /// A host name is looked up again before every connect round (each one follows a failed
    /// round or a disconnect, so a DNS change is picked up); a numeric or Unix address is
    /// kept. Replaced only while `.disconnected`: a CONNECT in flight reads the storage of
    /// `addresses[addressIndex]`, which the array keeps alive until its completion.
    var addresses: [SocketAddress] = []
    /// The address being (or last) connected to: after a connect succeeds it stays the one
    /// in use (reconnects with the SQ full, or when the next look-up fails, start with it).
    var addressIndex = 0
    var address: SocketAddress? { self.addressIndex < self.addresses.count ? self.addresses[self.addressIndex] : nil }
    /// The endpoint is a TCP host name (not a literal address): it is looked up off the
    /// ring thread before every connect.
    var endpointIsHostName = false
    /// The look-up in progress on a resolver thread, if any (its request number).
    var lookUpInProgress: UInt64? = nil
    var lookUpRequests: UInt64 = 0
    /// The last connect found the SQ full: the next one reuses `address` as it is.
    var openAgain = false
    var lastLookUpWarning: UInt64 = 0
    var state: State = .disconnected
    /// The connection number: advanced by every connect attempt and every disconnect. The cookies of
    /// CONNECT and POLL_ADD carry its low 40 bits (``SocketCookie``), so a completion of an earlier
    /// connection is never taken for one of the current connection.
    var generation: UInt64 = 0
    var reconnectAt: UInt64? = 0
    var backoff: Backoff
    var everConnected = false
    /// When the current connection completed (`nil` while disconnected): a connection that breaks soon after is a
    /// failure like a refused connect, and the backoff keeps growing.
    var connectedAt: UInt64?
    var lastErrorLog: UInt64 = 0

    var queue = RingQueue<Entry>(capacity: 64)
    var nextEntryID: UInt64 = 1
    /// Index in `queue` of the entry being (or next to be) sent.
    var sendIndex = 0
    var sendInFlight = false
    /// The send in flight is a zero copy one (its pages stay referenced until a notification).
    var sendIsZeroCopy = false
    var sentInEntry = 0
    var streamSent: Int64 = 0
    var acked: Int64 = 0
    /// Zero-copy notifications still to come, per entry id.
    var pendingNotifications: [UInt64: Int] = [:]
    /// The number of the last send submitted: every send's cookie carries its own number
    /// (``SocketCookie/send(sink:serial:)``), never reused for 2^40 sends, so a completion tells which
    /// send it ends however many connections ago that send was issued.
    var sendSerial: UInt64 = 0
    /// The number of the send in flight on the current connection; nil when there is none, or once
    /// ``disconnect(_:now:reason:)`` made it a stale one.
    var currentSend: UInt64? = nil
    /// The entry each send in flight (current or stale) started with, by its cookie's sequence, until
    /// its final completion.
    var sendEntries: [UInt64: UInt64] = [:]
    /// The entry of each zero-copy send whose notification is still to come, by its cookie's
    /// sequence, and whether that send moved any bytes (its result was positive).
    var notificationEntries: [UInt64: (entry: UInt64, moved: Bool)] = [:]
    /// Sends still in flight on connections ``disconnect(_:now:reason:)`` closed. Their SQEs
    /// point at the entries' bytes until their final completion, so while any is left no
    /// entry is finished (handed back to the writers).
    var staleSends = 0
    /// For each of those sends (by its user data): how far into its first entry it started,
    /// and whether ``disconnect(_:now:reason:)`` counted that entry as resent already. Its
    /// completion says how many bytes it sent, and the entries those reached were sent again
    /// (``RelaySinkStats/resentSubbuffers``).
    var staleSendStarts: [UInt64: (skip: Int, counted: Bool)] = [:]
    /// Closed descriptors still named by SQEs the kernel has not taken (see
    /// `closeAfterSubmitting`).
    var closeAfterSubmit: [FileDescriptor] = []
    var ackPollAt: UInt64? = nil
    var ackPollDelay: UInt64 = SocketSink.firstAckPollDelay
    /// Since when bytes have been waiting for acknowledgement without any arriving (the last sample that
    /// showed progress, or the send after everything was acknowledged); nil while nothing waits. The
    /// acknowledgement timer backs off in proportion (``nextAckPollDelay(after:stalledFor:)``).
    var ackStalledSince: UInt64? = nil

    /// A poll for the peer closing or resetting the connection is armed. Without it a
    /// connection that dies while we only wait for acknowledgements would go unnoticed:
    /// nothing more is sent (every sub-buffer is held), so no send fails.
    var peerPollsOutstanding = 0
    /// The connection generation the armed poll watches, if any.
    var peerPollGeneration: UInt64? = nil
    /// When a poll that could not be armed (SQ full) or that failed is armed again: the pump
    /// re-arms it, at most once per ``peerPollRetryDelay`` after a failure.
    var peerPollRetryAt: UInt64 = 0
    static let peerPollRetryDelay: UInt64 = 100_000_000
    /// When the pending connect is cancelled for taking too long.
    var connectDeadline: UInt64? = nil
    var connectCancelled = false
    var peerIsLocal = true
    /// The connection is a Unix stream socket: its `SIOCOUTQ` counts the memory of what the
    /// peer has not read yet, which the peer's close frees unread (see ``pollAcknowledged(_:loop:now:)``).
    var peerIsUnix = false
    var zeroCopyRecent: [Bool] = []
    var zeroCopyPausedUntilSend: UInt64 = 0
    var sendsIssued: UInt64 = 0
    var stats: RelaySinkStats
    /// The last entries counted in ``RelaySinkStats/sentSubbuffers`` and
    /// ``RelaySinkStats/reusableSubbuffers``: those are watermarks, so an entry sent again
    /// after a reconnect (or in two parts, each with its notification) counts once.
    var sentMark: UInt64 = 0
    var reusableMark: UInt64 = 0

    /// The message and iovecs of the batched send in flight (there is at most one send in
    /// flight); valid until its completion, as the sink lives as long as the loop that
    /// owns the ring.
    let message: UnsafeMutablePointer<msghdr>
    let iovecs: UnsafeMutablePointer<iovec>

    init(index: Int, position: Int, configuration: RelaySocketSinkConfiguration, label: String) {
        self.index = index
        self.position = position
        self.configuration = configuration
        self.backoff = Backoff(first: configuration.reconnectDelay.lowerBound, longest: configuration.reconnectDelay.upperBound)
        self.stats = RelaySinkStats(label: label)
        self.message = .allocate(capacity: 1)
        self.message.initialize(to: msghdr())
        self.iovecs = .allocate(capacity: SubbufferBatch.maxCount)
        self.iovecs.initialize(repeating: iovec(), count: SubbufferBatch.maxCount)
    }

    deinit {
        self.message.deallocate()
        self.iovecs.deallocate()
    }

    var hasWork: Bool {
        !self.queue.isEmpty || self.sendInFlight || self.staleSends > 0 || !self.pendingNotifications.isEmpty
    }
    var inFlight: Int {
        var n = (self.sendInFlight ? 1 : 0) + self.staleSends + self.pendingNotifications.values.reduce(0, +)
        if case .connecting = self.state { n += 1 }
        n += self.peerPollsOutstanding
        return n
    }

    /// Whether a sub-buffer queued now would wait for a completion already in flight before
    /// anything is submitted for it: connected with the one send in flight, or connecting.
    var awaitsCompletions: Bool {
        switch self.state {
        case .connected: return self.sendInFlight
        case .connecting: return true
        case .disconnected: return false
        }
    }

    func enqueue(_ item: ShipItem) {
        self.queue.append(Entry(id: self.nextEntryID, item: item, bytes: item.content, endOffset: nil))
        self.nextEntryID &+= 1
    }

    /// The cookie of this connection's CONNECT or POLL_ADD.
    private func connectionUserData(_ kind: ShipperLoop.OpKind) -> UInt64 {
        SocketCookie.connection(kind.rawValue, sink: UInt16(self.index), generation: self.generation)
    }

    // MARK: Connection

    func pump(_ loop: ShipperLoop, now: UInt64) {
        if _slowPath(!self.closeAfterSubmit.isEmpty) { self.closeSubmitted(loop) }
        switch self.state {
        case .disconnected:
            if let at = self.reconnectAt, now >= at { self.connect(loop, now: now) }
        case .connecting:
            if let deadline = self.connectDeadline, now >= deadline, !self.connectCancelled {
                // The CONNECT completes with -ECANCELED, which takes the failure path.
                let target = self.connectionUserData(.socketConnect)
                let cancelData = URingUserData(kind: ShipperLoop.OpKind.cancel.rawValue, index: UInt16(self.index), sequence: 0).rawValue
                if (try? loop.ring.cancel(target, userData: cancelData)) != nil {
                    self.connectCancelled = true
                }
            }
        case .connected(let fd):
            if let poll = self.ackPollAt, now >= poll {
                self.ackPollAt = nil
                self.pollAcknowledged(fd, loop: loop, now: now)
            }
            // The liveness poll is armed at connect; if that found the SQ full, or the poll
            // failed, arm it again (else a peer that resets while we only wait for its
            // acknowledgements goes unnoticed until new data fails to send).
            if self.peerPollGeneration != self.generation && now >= self.peerPollRetryAt && !loop.isShuttingDown {
                self.armPeerPoll(fd, loop: loop)
            }
            self.sendNext(fd, loop: loop, now: now)
        }
    }

    private func connect(_ loop: ShipperLoop, now: UInt64) {
        self.reconnectAt = nil
        if self.openAgain, let address = self.address {
            // The last attempt found the SQ full: same address, no new look-up.
            self.openAgain = false
            self.open(address, loop, now: now)
            return
        }
        if self.endpointIsHostName {
            // Looked up again before every attempt: each follows a failed connect or a
            // disconnect, and the name may point elsewhere now.
            self.startLookUp(loop, now: now)
            return
        }
        if self.address == nil {
            switch SocketAddress.resolveWithoutLookUp(self.configuration.endpoint) {
            case .some(.success(let address)):
                self.addresses = [address]
                self.addressIndex = 0
            case .some(.failure(let error)):
                self.stats.connectFailures += 1
                self.fail(loop, now: now, reason: error.message)
                return
            case .none:
                // A host name: looked up on a thread of its own; `lookUpCompleted` connects.
                self.endpointIsHostName = true
                self.startLookUp(loop, now: now)
                return
            }
        }
        guard let address = self.address else { return }
        self.open(address, loop, now: now)
    }

    /// Starts a look-up of the endpoint's host name on a resolver thread: getaddrinfo can
    /// block for seconds (a slow or unreachable DNS server), and the ring thread serves
    /// every other sink meanwhile. The result comes back as a `.resolved` command, which
    /// wakes the loop. One look-up at a time per sink, so at most one resolver thread per
    /// socket sink. The threads are joined (``ResolverThreads``): as their results arrive, and
    /// at shutdown within a bounded wait, after which a look-up still running is abandoned and
    /// posts nothing.
    private func startLookUp(_ loop: ShipperLoop, now: UInt64) {
        guard case .tcp(let host, let port) = self.configuration.endpoint, self.lookUpInProgress == nil else { return }
        self.lookUpRequests += 1
        let request = self.lookUpRequests
        let shared = loop.shared
        let index = self.index
        // No ordering of our own: the result travels inside the command, which
        // `ShipperShared.send` appends under its mutex and the ring thread takes under the
        // same mutex (and `send` rings the doorbell after its releasing flag store).
        let resolvers = shared.resolvers
        let rc = resolvers.spawn(name: "relay-resolve") { id in
            let result = SocketAddress.lookUp(host: host, port: port)
            resolvers.finish(id) { shared.send(.resolved(sink: index, request: request, result: result)) }
        }
        guard rc == 0 else {
            self.stats.connectFailures += 1
            self.fail(loop, now: now, reason: "cannot start a thread to resolve '\(host)': \(Errno(rawValue: rc))")
            return
        }
        self.lookUpInProgress = request
    }

    /// A look-up finished: connect to its first address (the others follow if it fails), or
    /// back off and retry. If the name cannot be resolved now but was before, the last
    /// addresses are tried, the one last used first (a DNS outage alone does not keep the
    /// sink from its peer).
    func lookUpCompleted(request: UInt64, result: Result<[ResolvedSocketAddress], SocketAddressError>, loop: ShipperLoop, now: UInt64) {
        guard self.lookUpInProgress == request else { return }
        self.lookUpInProgress = nil
        guard case .disconnected = self.state, !loop.isShuttingDown else { return }
        switch result {
        case .success(let resolved):
            // Disconnected: no CONNECT reads the addresses replaced here.
            self.addresses = resolved.map(SocketAddress.init)
            self.addressIndex = 0
            self.open(self.addresses[0], loop, now: now)
        case .failure(let error):
            if let previous = self.address {
                self.addresses = [previous] + self.addresses.filter { $0 !== previous }
                self.addressIndex = 0
                self.stats.errors += 1
                if self.lastLookUpWarning == 0 || now - self.lastLookUpWarning > 1_000_000_000 {
                    self.lastLookUpWarning = now
                    loop.logger.warning(
                        "socket sink cannot resolve its host again; connecting to the last address",
                        metadata: ["endpoint": "\(self.configuration.endpoint)", "reason": "\(error.message)"])
                }
                self.open(previous, loop, now: now)
            } else {
                self.stats.connectFailures += 1
                self.fail(loop, now: now, reason: error.message)
            }
        }
    }

    /// Creates a socket and submits its CONNECT to `address` (which must stay valid until
    /// the completion: it is `self.address`, and `addresses` is replaced only while
    /// disconnected).
    private func open(_ address: SocketAddress, _ loop: ShipperLoop, now: UInt64) {
        let fd: FileDescriptor
        switch Sockets.makeStream(family: address.family, sendBufferSize: self.configuration.sendBufferSize) {
        case .success(let s): fd = s
        case .failure(let errno):
            // An address family the host lacks (IPv6 disabled, say): the next address may do.
            self.tryNextAddress(loop, now: now, reason: "cannot create a socket for \(address.numericDescription): \(errno)")
            return
        }
        self.generation &+= 1
        do {
            try loop.ring.connect(fd, address: address.address, addressLength: address.length,
                                  userData: self.connectionUserData(.socketConnect))
        } catch {
            Files.close(fd)
            self.reconnectAt = now  // SQ full: try again next round
            self.openAgain = true
            return
        }
        self.state = .connecting(fd)
        self.connectDeadline = now.saturatingAdding(self.configuration.connectTimeout.nanoseconds)
        self.connectCancelled = false
    }

    func connectCompleted(result: Int32, userData: URingUserData, loop: ShipperLoop, now: UInt64) {
        guard case .connecting(let fd) = self.state, SocketCookie.isCurrent(userData.rawValue, counter: self.generation) else { return }
        self.connectDeadline = nil
        if loop.isShuttingDown {
            Files.close(fd)
            self.state = .disconnected
            return
        }
        if result < 0 {
            Files.close(fd)
            self.state = .disconnected
            let target = self.addresses.count > 1 ? "\(self.configuration.endpoint) (\(self.address?.numericDescription ?? "?"))" : "\(self.configuration.endpoint)"
            let reason = self.connectCancelled
                ? "connect to \(target) timed out after \(self.configuration.connectTimeout)"
                : "connect to \(target) failed: \(Errno(rawValue: -result))"
            self.tryNextAddress(loop, now: now, reason: reason)
            return
        }
        self.state = .connected(fd)
        self.stats.connected = true
        self.armPeerPoll(fd, loop: loop)
        self.peerIsLocal = Sockets.peerIsLocal(fd)
        self.peerIsUnix = self.address?.family == AF_UNIX
        if self.everConnected {
            self.stats.reconnects += 1
            loop.logger.notice("socket sink reconnected", metadata: ["endpoint": "\(self.configuration.endpoint)", "resending": "\(self.queue.count)"])
        }
        self.everConnected = true
        // The backoff is not reset here but when a connection that lasted breaks (`disconnect`): a peer that
        // accepts and closes at once (an aggregator at its session limit, a load balancer without a backend)
        // would otherwise be reconnected to every first delay, forever.
        self.connectedAt = now
        self.stats.failing = false
        self.streamSent = 0
        self.acked = 0
        self.sendIndex = 0
        self.sentInEntry = 0
        for i in 0..<self.queue.count { self.queue[i].endOffset = nil }
        self.sendNext(fd, loop: loop, now: now)
    }

    /// A connect to `addresses[addressIndex]` failed (refused, unreachable, timed out, or no
    /// socket for its family): the next address is tried at once; only when none is left
    /// does the round count as one connect failure and back off (the next round starts over
    /// from the first address, after a new look-up for a host name).
    private func tryNextAddress(_ loop: ShipperLoop, now: UInt64, reason: String) {
        if self.addressIndex + 1 < self.addresses.count {
            self.addressIndex += 1
            loop.logger.debug(
                "socket sink trying the next address",
                metadata: ["endpoint": "\(self.configuration.endpoint)", "reason": "\(reason)",
                           "next": "\(self.addresses[self.addressIndex].numericDescription)"])
            self.open(self.addresses[self.addressIndex], loop, now: now)
            return
        }
        let tried = self.addresses.count
        self.addressIndex = 0
        self.stats.connectFailures += 1
        self.fail(loop, now: now, reason: tried > 1 ? "\(reason); all \(tried) addresses failed" : reason)
    }

    private func fail(_ loop: ShipperLoop, now: UInt64, reason: String) {
        self.stats.errors += 1
        self.stats.failing = true
        let delay = self.backoff.next()
        self.reconnectAt = now.saturatingAdding(delay)
        if self.lastErrorLog == 0 || now - self.lastErrorLog > 1_000_000_000 {
            self.lastErrorLog = now
            loop.logger.warning(
                "socket sink unavailable",
                metadata: ["endpoint": "\(self.configuration.endpoint)", "reason": "\(reason)", "retry_in_ms": "\(delay / 1_000_000)",
                           "held_subbuffers": "\(self.queue.count)"])
        }
    }

    /// The connection broke: everything not acknowledged is sent again on the next one.
    private func disconnect(_ loop: ShipperLoop, now: UInt64, reason: String) {
        self.cancelPeerPoll(loop)
        if case .connected(let fd) = self.state, !self.peerIsUnix,
            case .success(let outstanding) = Sockets.unacknowledged(fd)
        {
            // A last look at what the peer's TCP acknowledged since the timer's last sample, so
            // it is not sent again. A TCP socket's count survives the peer's close or reset (a
            // Unix socket's does not: see below). A send in flight only adds to `outstanding`,
            // never to `streamSent`, so this can under-count, never over-count.
            let acked = self.streamSent - outstanding
            if acked > self.acked { self.acked = acked }
        }
        switch self.state {
        case .connected(let fd), .connecting(let fd):
            if self.sendInFlight {
                // The send goes on reading its entries' bytes until it completes, and a peer
                // that half-closed but still reads would keep taking them: end it now. The
                // entries stay held until its completion (`staleSends`).
                _ = shutdown(fd.rawValue, Int32(SHUT_RDWR))
                self.staleSends += 1
                if self.sendIndex < self.queue.count, let serial = self.currentSend {
                    let key = SocketCookie.send(sink: UInt16(self.index), serial: serial)
                    self.staleSendStarts[key] = (self.sentInEntry, self.sentInEntry > 0)
                }
            }
            // Bytes the peer sent that nobody read would make the close a reset.
            Sockets.discardReceived(fd)
            self.dropQueueIfZeroCopyPending(fd)
            self.closeAfterSubmitting(fd, loop)
        case .disconnected:
            break
        }
        self.state = .disconnected
        self.stats.connected = false
        // What the peer acknowledged before the break is finished: for TCP, as of the sample
        // above; for a Unix socket, as of the timer's last sample (one whose peer closed
        // reports an empty queue, which would look like acks).
        self.finishAcknowledged(loop)
        let resend = (0..<self.queue.count).filter { self.queue[$0].endOffset != nil || ($0 == self.sendIndex && self.sentInEntry > 0) }.count
        self.stats.resentSubbuffers += UInt64(resend)
        for i in 0..<self.queue.count { self.queue[i].endOffset = nil }
        self.streamSent = 0
        self.acked = 0
        self.sendInFlight = false
        self.currentSend = nil
        self.sendIndex = 0
        self.sentInEntry = 0
        self.ackPollAt = nil
        self.ackPollDelay = Self.firstAckPollDelay
        self.ackStalledSince = nil
        self.generation &+= 1
        if let connectedAt = self.connectedAt, now &- connectedAt >= Self.stableConnection(self.backoff) {
            self.backoff.reset()
        }
        self.connectedAt = nil
        self.fail(loop, now: now, reason: reason)
    }

    /// How long a connection must have lasted for its break to start the backoff over: the longest delay, at most
    /// 10 s.
    static func stableConnection(_ backoff: Backoff) -> UInt64 {
        min(backoff.longest, 10_000_000_000)
    }

    // MARK: Peer liveness

    private func armPeerPoll(_ fd: FileDescriptor, loop: ShipperLoop) {
        let userData = self.connectionUserData(.socketPoll)
        var watched = fd
        if loop.failingPeerPolls > 0 {
            loop.failingPeerPolls -= 1
            watched = FileDescriptor(rawValue: -1)  // a test's fault: the kernel answers EBADF
        }
        do {
            try loop.ring.pollAdd(watched, events: CRelayLinux_poll_peer_gone_mask(), userData: userData)
            self.peerPollsOutstanding += 1
            self.peerPollGeneration = self.generation
        } catch {
            // SQ full: a send error will still reveal a dead peer while data flows.
        }
    }

    private func cancelPeerPoll(_ loop: ShipperLoop) {
        guard self.peerPollGeneration == self.generation else { return }
        self.peerPollGeneration = nil
        let target = self.connectionUserData(.socketPoll)
        let cancelData = URingUserData(kind: ShipperLoop.OpKind.cancel.rawValue, index: UInt16(self.index), sequence: 0).rawValue
        _ = try? loop.ring.cancel(target, userData: cancelData)
    }

    /// The peer-liveness poll completed: the peer closed or reset the connection (or the
    /// poll was cancelled because we disconnected first).
    func pollCompleted(result: Int32, userData: URingUserData, loop: ShipperLoop, now: UInt64) {
        self.peerPollsOutstanding -= 1
        let current = SocketCookie.isCurrent(userData.rawValue, counter: self.generation) && self.peerPollGeneration == self.generation
        guard current else { return }
        self.peerPollGeneration = nil
        guard case .connected = self.state, !loop.isShuttingDown else { return }
        guard result > 0 else {
            // The poll itself failed (not cancelled: a cancelled poll is not current): the pump
            // arms a new one, after a pause so that one that keeps failing cannot spin the loop.
            self.peerPollRetryAt = now.saturatingAdding(Self.peerPollRetryDelay)
            return
        }
        self.disconnect(loop, now: now, reason: "the peer closed or reset the connection")
    }

    // MARK: Sending

    private func useZeroCopy(for bytes: Int, loop: ShipperLoop) -> Bool {
        // Unix sockets have no zero-copy send: SEND_ZC fails there with EOPNOTSUPP (every
        // send, so `.always` would only ever disconnect and reconnect).
        guard loop.supportsSendZC, !self.peerIsUnix else { return false }
        switch self.configuration.zeroCopy {
        case .never: return false
        case .always: return true
        case .automatic:
            if self.peerIsLocal || bytes < self.configuration.zeroCopyThreshold { return false }
            return self.sendsIssued >= self.zeroCopyPausedUntilSend
        }
    }

    private func sendNext(_ fd: FileDescriptor, loop: ShipperLoop, now: UInt64) {
        guard !self.sendInFlight, self.sendIndex < self.queue.count else { return }
        let entry = self.queue[self.sendIndex]
        if entry.bytes.count == 0 {
            self.queue[self.sendIndex].endOffset = self.streamSent
            self.sendIndex += 1
            self.finishAcknowledged(loop)
            self.sendNext(fd, loop: loop, now: now)
            return
        }
        let remaining = UnsafeRawBufferPointer(rebasing: entry.bytes[self.sentInEntry...])
        let flags = Int32(MSG_WAITALL) | Int32(MSG_NOSIGNAL)
        let serial = self.sendSerial &+ 1
        let userData = SocketCookie.send(sink: UInt16(self.index), serial: serial)
        var zeroCopy = false
        do {
            if self.useZeroCopy(for: remaining.count, loop: loop) {
                let fixed = loop.buffersRegistered ? entry.item.fixedIndex : nil
                var zcFlags = IOURing.SendZCFlags.reportUsage
                if loop.configuration.faults.refuseZeroCopySends {
                    zcFlags.insert(IOURing.SendZCFlags(rawValue: 1 << 15))  // a test's fault: unknown, so EINVAL
                }
                try loop.ring.sendZC(fd, remaining, messageFlags: flags, zcFlags: zcFlags, fixedBufferIndex: fixed, userData: userData)
                self.stats.zeroCopySends += 1
                zeroCopy = true
            } else {
                // The sub-buffers queued behind this one join the send.
                let first = self.sendIndex
                let (count, _) = SubbufferBatch.plan(
                    first: remaining.count, queued: self.queue.count - first,
                    bytes: { self.queue[first + $0].bytes.count })
                if count == 1 {
                    try loop.ring.send(fd, remaining, messageFlags: flags, userData: userData)
                } else {
                    let vectors = SubbufferBatch.fill(
                        self.iovecs, skipping: self.sentInEntry, (first..<first + count).lazy.map { self.queue[$0].bytes })
                    self.message.pointee = msghdr()
                    self.message.pointee.msg_iov = self.iovecs
                    self.message.pointee.msg_iovlen = vectors
                    try loop.ring.sendmsg(fd, message: self.message, messageFlags: flags, userData: userData)
                    self.stats.batches += 1
                }
            }
        } catch {
            return  // SQ full: next round
        }
        self.sendsIssued += 1
        self.sendSerial = serial
        self.currentSend = serial
        self.sendEntries[URingUserData(rawValue: userData).sequence] = entry.id
        self.sendInFlight = true
        self.sendIsZeroCopy = zeroCopy
    }

    func sendCompleted(_ completion: Completion, loop: ShipperLoop, now: UInt64) {
        let data = URingUserData(rawValue: completion.userData)
        if completion.isNotification {
            let notified = self.notificationEntries.removeValue(forKey: data.sequence)
            if let notified, let n = self.pendingNotifications[notified.entry] {
                if n <= 1 { self.pendingNotifications[notified.entry] = nil } else { self.pendingNotifications[notified.entry] = n - 1 }
            }
            // The kernel reports "copied" also for a send that used no page at all (one that
            // failed, or sent nothing): that says nothing about whether zero-copy pays here, so
            // such a send is left out of the counts and of the adaptation.
            if notified?.moved != false {
                self.stats.zeroCopyNotifications += 1
                if completion.zcCopied { self.stats.zeroCopyCopied += 1 }
                self.noteZeroCopy(copied: completion.zcCopied)
            }
            self.finishAcknowledged(loop)
            return
        }
        // The final completion of a send (its notification, if any, follows).
        guard let entryID = self.sendEntries.removeValue(forKey: data.sequence) else { return }
        if completion.hasMore {
            self.pendingNotifications[entryID, default: 0] += 1
            self.notificationEntries[data.sequence] = (entryID, completion.result > 0)
        }
        let current = self.currentSend.map { SocketCookie.isCurrent(completion.userData, counter: $0) } ?? false
        guard current else {
            // The final completion of a send on a connection `disconnect` closed: the entries
            // it read can be finished again (a zero-copy one still waits for its notification).
            self.staleSends -= 1
            if let start = self.staleSendStarts.removeValue(forKey: completion.userData), completion.result > 0 {
                self.countResent(entry: entryID, start: start, sent: Int(completion.result))
            }
            self.finishAcknowledged(loop)
            return
        }
        guard self.sendInFlight else { return }
        self.currentSend = nil
        if case .disconnected = self.state {
            // `close()` at shutdown, with this send in flight: its final completion, which
            // the loop waits for.
            self.sendInFlight = false
            return
        }
        guard case .connected(let fd) = self.state, self.sendIndex < self.queue.count,
            self.queue[self.sendIndex].id == entryID
        else { return }
        self.sendInFlight = false
        if completion.result == -EINVAL && self.sendIsZeroCopy {
            // The kernel refused the zero-copy send itself before it sent a byte (kernels 6.0
            // to 6.1.1 have SEND_ZC but not the usage report every zero-copy send asks for; no
            // notification follows): the stream is intact. Plain sends from now on, for every
            // socket of this shipper; this one goes again at once.
            if loop.supportsSendZC {
                loop.supportsSendZC = false
                loop.logger.warning(
                    "zero-copy sends refused by the kernel (EINVAL); using plain sends",
                    metadata: ["endpoint": "\(self.configuration.endpoint)", "advice": "a kernel from 6.2 on (or 6.1.2 on) supports them"])
            }
            self.sendNext(fd, loop: loop, now: now)
            return
        }
        if completion.result < 0 {
            self.disconnect(loop, now: now, reason: "send failed: \(Errno(rawValue: -completion.result))")
            return
        }
        if completion.result == 0 && self.queue[self.sendIndex].bytes.count > self.sentInEntry {
            self.disconnect(loop, now: now, reason: "peer closed the connection")
            return
        }
        // The bytes sent cover the entries of the send in order (several for a batch); the
        // last one may be partly sent (resubmitted from `sentInEntry`).
        var sent = Int(completion.result)
        while sent > 0 && self.sendIndex < self.queue.count {
            let rest = self.queue[self.sendIndex].bytes.count - self.sentInEntry
            if sent < rest {
                self.sentInEntry += sent
                self.streamSent += Int64(sent)
                break
            }
            sent -= rest
            self.streamSent += Int64(rest)
            self.queue[self.sendIndex].endOffset = self.streamSent
            self.sendIndex += 1
            self.sentInEntry = 0
        }
        self.pollAcknowledged(fd, loop: loop, now: now)
        self.sendNext(fd, loop: loop, now: now)
    }

    /// A send of a closed connection reached `sent` bytes into the entries from `entry` (its
    /// first, entered at `start.skip`): those entries were sent (in part) on that connection,
    /// and are sent again on the next one. They are still queued: no entry is finished while a
    /// stale send is in flight.
    private func countResent(entry: UInt64, start: (skip: Int, counted: Bool), sent: Int) {
        guard let firstID = self.queue.first?.id, entry >= firstID, entry - firstID < UInt64(self.queue.count) else { return }
        var index = Int(entry - firstID)
        var left = sent
        var skip = start.skip
        var counted = start.counted
        while left > 0 && index < self.queue.count {
            if !counted { self.stats.resentSubbuffers += 1 }
            left -= self.queue[index].bytes.count - skip
            index += 1
            skip = 0
            counted = false
        }
    }

    private func noteZeroCopy(copied: Bool) {
        guard self.configuration.zeroCopy == .automatic else { return }
        self.zeroCopyRecent.append(copied)
        if self.zeroCopyRecent.count > 16 { self.zeroCopyRecent.removeFirst() }
        if self.zeroCopyRecent.count == 16 && self.zeroCopyRecent.filter({ $0 }).count >= 12 {
            // The kernel copies anyway (loopback, or a NIC without scatter-gather): plain
            // sends are cheaper. Try zero-copy again later.
            self.zeroCopyPausedUntilSend = self.sendsIssued + 256
            self.zeroCopyRecent.removeAll()
        }
    }

    /// Reads how much the peer acknowledged and finishes fully acknowledged entries.
    ///
    /// Acknowledgements have no completion of their own, so the sink polls `SIOCOUTQ`
    /// (one cheap ioctl) after every send completion and, while bytes are unacknowledged,
    /// on a timer: 50 µs while acknowledgements keep coming (a loopback round trip), then
    /// doubling up to 2 ms, and once nothing has been acknowledged for longer, a quarter of
    /// the time since the last acknowledgement, up to 100 ms (``nextAckPollDelay(after:stalledFor:)``).
    /// Held sub-buffers are what limits throughput, so noticing acknowledgements late costs
    /// directly; but a peer that stalls (stops reading, a zero window) would otherwise wake
    /// the ring thread 500 times a second for as long as it stalls. Backing off this way, a
    /// stall costs about 30 wake-ups in its first second and 10 a second after that, and the
    /// end of a stall is noticed within a quarter of its length (at least 2 ms, at most
    /// 100 ms) — for round trips below 8 ms, as soon as before.
    ///
    /// On a Unix socket the queue is the memory of what the peer has not read, and a peer that
    /// closes frees it unread: the queue empties as if the peer had read everything. So there a
    /// sample that acknowledges more is taken only if the peer is still there afterwards (it
    /// marks its side shut before it frees what it did not read); otherwise it is ignored and
    /// everything unread is resent on the next connection. (TCP keeps counting what its peer
    /// did not acknowledge after a reset.)
    private func pollAcknowledged(_ fd: FileDescriptor, loop: ShipperLoop, now: UInt64) {
        let before = self.acked
        switch Sockets.unacknowledged(fd) {
        case .success(let outstanding):
            let acked = self.streamSent - outstanding
            if acked > self.acked && !(self.peerIsUnix && Sockets.peerGone(fd)) {
                self.acked = acked
            }
        case .failure:
            break
        }
        self.finishAcknowledged(loop)
        if self.acked < self.streamSent {
            if self.acked > before || self.ackStalledSince == nil {
                self.ackPollDelay = Self.firstAckPollDelay
                self.ackStalledSince = now
            } else {
                self.ackPollDelay = Self.nextAckPollDelay(after: self.ackPollDelay, stalledFor: now &- self.ackStalledSince!)
            }
            self.ackPollAt = now + self.ackPollDelay
        } else {
            self.ackPollAt = nil
            self.ackPollDelay = Self.firstAckPollDelay
            self.ackStalledSince = nil
        }
    }

    /// The first delay of the acknowledgement timer after progress: a loopback round trip.
    static let firstAckPollDelay: UInt64 = 50_000
    /// The delay the timer doubles up to regardless of how long the stall has lasted.
    static let fastAckPollDelay: UInt64 = 2_000_000
    /// The longest delay: how late, at most, the end of a long stall is noticed.
    static let longestAckPollDelay: UInt64 = 100_000_000

    /// The acknowledgement timer's next delay when the last sample, `delay` after the one before,
    /// showed no progress for `stalled` nanoseconds: double `delay` up to 2 ms, or a quarter of the
    /// stall if that is longer (the timer then wakes at most 25 % after the stall ends, and a stall
    /// of length T costs about log₁.₂₅(T / 8 ms) wake-ups), never more than 100 ms.
    static func nextAckPollDelay(after delay: UInt64, stalledFor stalled: UInt64) -> UInt64 {
        min(max(min(delay &* 2, Self.fastAckPollDelay), stalled / 4), Self.longestAckPollDelay)
    }

    private func finishAcknowledged(_ loop: ShipperLoop) {
        self.advanceWatermarks()
        guard self.staleSends == 0 else { return }
        while let first = self.queue.first, let end = first.endOffset, end <= self.acked,
            self.pendingNotifications[first.id] == nil
        {
            self.queue.popFirst()
            self.sendIndex -= 1
            self.stats.bytes += UInt64(first.bytes.count)
            self.stats.subbuffers += 1
            loop.sinkFinished(self.position, item: first.item, bytes: first.bytes.count)
        }
    }

    /// Counts the entries newly sent whole (in queue order) and those whose memory no send
    /// reads any more: no zero-copy notification pending, no send of a closed connection
    /// in flight. Queued entries have consecutive ids, so each walk starts after the mark.
    private func advanceWatermarks() {
        guard let first = self.queue.first?.id else { return }
        var i = Int(clamping: self.sentMark &+ 1 &- min(self.sentMark &+ 1, first))
        while i < self.queue.count, self.queue[i].endOffset != nil {
            self.sentMark = self.queue[i].id
            self.stats.sentSubbuffers += 1
            i += 1
        }
        guard self.staleSends == 0 else { return }
        i = Int(clamping: self.reusableMark &+ 1 &- min(self.reusableMark &+ 1, first))
        while i < self.queue.count, self.queue[i].id <= self.sentMark,
            self.pendingNotifications[self.queue[i].id] == nil
        {
            self.reusableMark = self.queue[i].id
            self.stats.reusableSubbuffers += 1
            i += 1
        }
    }

    /// Closes `fd` once the SQEs already queued are submitted: they name it by number, and
    /// once closed the number can be reused by any thread of the process (relayd's accept
    /// loop, say), whose descriptor an unsubmitted send would then write to. If the kernel
    /// takes none just now (`EBUSY`), the next ``pump(_:now:)`` closes it.
    private func closeAfterSubmitting(_ fd: FileDescriptor, _ loop: ShipperLoop) {
        self.closeAfterSubmit.append(fd)
        self.closeSubmitted(loop)
    }

    private func closeSubmitted(_ loop: ShipperLoop) {
        _ = try? loop.ring.submit()
        guard loop.ring.pendingSubmissions == 0 else { return }
        for fd in self.closeAfterSubmit { Files.close(fd) }
        self.closeAfterSubmit.removeAll()
    }

    /// Before `fd` is closed: if zero-copy notifications are still to come, the connection is
    /// reset when closed (`SO_LINGER` 0) instead of closed gracefully. A notification comes only
    /// once the kernel freed every packet holding the send's pages, and a closed socket keeps
    /// what it could not send: behind a peer that stopped reading, for minutes (while the orphan
    /// probes its zero window). Meanwhile the sub-buffer, and every one behind it, stays held,
    /// and a stop waits out its 2 s for the notification. The reset drops that queue, so the
    /// notifications come at once. Nothing is lost: what the peer did not acknowledge is not
    /// finished, and is resent on the next connection (or stays in the channel at a stop).
    private func dropQueueIfZeroCopyPending(_ fd: FileDescriptor) {
        guard !self.pendingNotifications.isEmpty || (self.sendInFlight && self.sendIsZeroCopy) else { return }
        var reset = Glibc.linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd.rawValue, SOL_SOCKET, SO_LINGER, &reset, socklen_t(MemoryLayout<Glibc.linger>.size))
    }

    /// At shutdown, once nothing is submitted any more: closes the descriptors still waiting
    /// for their SQEs to be taken.
    func closeDeferred() {
        for fd in self.closeAfterSubmit { Files.close(fd) }
        self.closeAfterSubmit.removeAll()
    }

    var nextDeadline: UInt64? {
        switch self.state {
        case .disconnected: return self.reconnectAt
        case .connecting: return self.connectCancelled ? nil : self.connectDeadline
        case .connected:
            guard self.peerPollGeneration != self.generation else { return self.ackPollAt }
            return min(self.ackPollAt ?? self.peerPollRetryAt, self.peerPollRetryAt)
        }
    }

    /// Shuts the connection down. A pending connect is cancelled; its completion (which
    /// the loop still waits for) closes the descriptor.
    ///
    /// After a drain (everything acknowledged, every zero-copy notification in) the peer sees
    /// an orderly end of the stream (FIN): our side is shut down for writing, whatever the peer
    /// sent us is read and dropped (closing with unread bytes would reset the connection), and
    /// the descriptor is closed, without waiting on the ring thread. Only with zero-copy
    /// notifications still to come (a stop whose deadline passed) is it reset, see
    /// ``dropQueueIfZeroCopyPending(_:)``.
    func close(_ loop: ShipperLoop) {
        self.cancelPeerPoll(loop)
        switch self.state {
        case .connected(let fd):
            _ = shutdown(fd.rawValue, Int32(SHUT_WR))
            Sockets.discardReceived(fd)
            self.dropQueueIfZeroCopyPending(fd)
            self.closeAfterSubmitting(fd, loop)
            self.state = .disconnected
            self.stats.connected = false
        case .connecting:
            let target = self.connectionUserData(.socketConnect)
            let cancelData = URingUserData(kind: ShipperLoop.OpKind.cancel.rawValue, index: UInt16(self.index), sequence: 0).rawValue
            _ = try? loop.ring.cancel(target, userData: cancelData)
            self.connectCancelled = true
            self.reconnectAt = nil
        case .disconnected:
            self.reconnectAt = nil
        }
    }
}

/// The `user_data` cookies of a socket sink's operations, and which of their completions are current.
///
/// A completion can arrive long after the connection its operation belonged to is gone: the final
/// completion of a send that a disconnect cut short, a zero-copy notification that waits for the kernel to
/// free the send's pages, a peer poll cancelled at a disconnect. Each must be told from the operations of
/// the current connection, however fast the peer flaps. So each cookie's 40-bit ``URingUserData/sequence``
/// is a counter that only grows:
///
/// - CONNECT and POLL_ADD carry the connection generation (advanced by every connect attempt and every
///   disconnect);
/// - sends carry their own serial number (advanced by every send, on any connection), which also names
///   the send's zero-copy notification.
///
/// A completion is current only if its sequence equals the counter's low 40 bits now. An older cookie
/// would be mistaken for a current one only after exactly a multiple of 2^40 connections or sends (at one
/// per microsecond, 12.7 days) with its operation still in flight all along.
package enum SocketCookie {
    /// The cookie of a CONNECT or POLL_ADD (`kind`) of connection `generation` of sink `sink`.
    @inline(__always)
    package static func connection(_ kind: UInt8, sink: UInt16, generation: UInt64) -> UInt64 {
        URingUserData(kind: kind, index: sink, wrappingSequence: generation).rawValue
    }

    /// The cookie of send number `serial` of sink `sink`.
    @inline(__always)
    package static func send(sink: UInt16, serial: UInt64) -> UInt64 {
        URingUserData(kind: ShipperLoop.OpKind.socketSend.rawValue, index: sink, wrappingSequence: serial).rawValue
    }

    /// Whether the completion with `userData` belongs to the operation of the counter's current value:
    /// `counter` is the sink's connection generation for a CONNECT or POLL_ADD, the serial of the send in
    /// flight for a send. A cookie made at an earlier value (a stale completion) is not current.
    @inline(__always)
    package static func isCurrent(_ userData: UInt64, counter: UInt64) -> Bool {
        URingUserData(rawValue: userData).sequence == counter & URingUserData.maxSequence
    }
}

/// The socket sink's pure policies, for tests.
package enum SocketSinkTesting {
    /// ``SocketSink/nextAckPollDelay(after:stalledFor:)``.
    package static func nextAckPollDelay(after delay: UInt64, stalledFor stalled: UInt64) -> UInt64 {
        SocketSink.nextAckPollDelay(after: delay, stalledFor: stalled)
    }
}
