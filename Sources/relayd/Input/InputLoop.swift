import CRelayLinux
import Logging
import RelayShipper
import Synchronization
import SystemPackage

#if canImport(Glibc)
import Glibc
#endif

/// Heap bytes with a stable address, for the borrowed buffers of ``RecordContext``.
final class StableBytes {
    /// The bytes.
    let buffer: UnsafeRawBufferPointer

    /// Copies `text`'s UTF-8.
    init(_ text: String) {
        let bytes = Array(text.utf8)
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 8)
        memory.copyBytes(from: bytes)
        self.buffer = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(memory)[0..<bytes.count])
        self.memory = memory
    }

    private let memory: UnsafeMutableRawBufferPointer

    deinit {
        self.memory.deallocate()
    }
}

/// The io_uring input loop: one OS thread reads every input (TCP and Unix listeners with all their connections,
/// Unix datagram sockets, stdin) through one ring, frames and routes records into the outputs' channels.
///
/// One operation is in flight per descriptor (an accept per listener, a recv per connection or datagram socket,
/// a read on stdin), plus a read on the control `eventfd`. No thread per connection, no allocation per record;
/// per connection there is one receive buffer and one frame decoder (with its `max_frame` reassembly buffer),
/// allocated at accept, so memory is bounded by `max_connections × (64 KiB + max_frame)`.
///
/// ## Stopping
/// On ``InputControl/requestStop(deadline:)`` the loop cancels its operations (a cancelled receive consumes
/// nothing), then, with plain non-blocking system calls, accepts the connections still in the listen backlog and
/// reads what every connection and stdin holds at that point (or until the deadline passes); what a client sends
/// later is not read. Frames cut short are delivered as incomplete. So everything the kernel accepted before the
/// stop is routed.
final class InputLoop {
    /// Operation kinds in the `user_data` cookie.
    private enum OpKind: UInt8 {
        case wake = 1
        case accept = 2
        case receive = 3
        case datagram = 4
        case stdin = 5
        case cancel = 6
    }

    /// Per configured input.
    private final class InputState {
        let index: Int
        let config: InputConfig
        let router: RecordRouter
        let name: StableBytes
        /// HOSTNAME for records without one from local (Unix, stdin) sources.
        let localHost: StableBytes
        let empty = StableBytes("")
        var connections = 0
        var ended = false
        /// When each kind of warning was last logged (see ``InputLoop/Warning``).
        var lastWarning = [UInt64](repeating: 0, count: Warning.allCases.count)
        var maxConnections: Int {
            switch self.config.kind {
            case .tcp(_, let max), .unixStream(_, _, let max): return max
            case .stdin, .unixDatagram: return 0
            }
        }

        init(index: Int, config: InputConfig, router: RecordRouter, localHost: String) {
            self.index = index
            self.config = config
            self.router = router
            self.name = StableBytes(config.name)
            self.localHost = StableBytes(localHost)
        }
    }

    private final class Listener {
        let fd: Int32
        let input: Int
        let isTCP: Bool
        let unixPath: String?
        let address = UnsafeMutableRawPointer.allocate(
            byteCount: MemoryLayout<sockaddr_storage>.size,
            alignment: MemoryLayout<sockaddr_storage>.alignment
        )
        let addressLength = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        var armed = false
        var retryAt: UInt64?

        init(fd: Int32, input: Int, isTCP: Bool, unixPath: String?) {
            self.fd = fd
            self.input = input
            self.isTCP = isTCP
            self.unixPath = unixPath
        }

        deinit {
            self.address.deallocate()
            self.addressLength.deallocate()
        }
    }

    /// A stream connection (TCP, Unix stream, or stdin).
    private final class Connection {
        let fd: Int32
        let input: Int
        let generation: UInt64
        var decoder: SyslogFrameDecoder
        let buffer: UnsafeMutableRawBufferPointer
        let peer: StableBytes
        let host: StableBytes
        var armed = false

        init(fd: Int32, input: Int, generation: UInt64, config: InputConfig, bufferSize: Int, peer: String, host: String) {
            self.fd = fd
            self.input = input
            self.generation = generation
            self.decoder = SyslogFrameDecoder(
                maxFrame: config.maxFrame,
                mode: config.framing,
                nulDelimiter: config.nulDelimiter
            )
            self.buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 64)
            self.peer = StableBytes(peer)
            self.host = StableBytes(host)
        }

        deinit {
            self.buffer.deallocate()
        }
    }

    /// A Unix datagram socket with its receive message: one `struct msghdr` whose iovec is `buffer` and whose
    /// control buffer takes the sender's SCM_CREDENTIALS (the socket has SO_PASSCRED), all allocated once and
    /// valid until the final completion of the receive that uses them (the object outlives the ring).
    private final class Datagram {
        let fd: Int32
        let input: Int
        let unixPath: String?
        let buffer: UnsafeMutableRawBufferPointer
        private let message: UnsafeMutablePointer<msghdr>
        private let vector: UnsafeMutablePointer<iovec>
        private let control: UnsafeMutableRawBufferPointer
        /// The `peer` tag of the last datagram, `pid=<pid> uid=<uid>`, rendered without allocating.
        private let peerStorage: UnsafeMutableRawBufferPointer
        private(set) var peer: UnsafeRawBufferPointer
        var armed = false

        init(fd: Int32, input: Int, unixPath: String?, maxFrame: Int) {
            self.fd = fd
            self.input = input
            self.unixPath = unixPath
            self.buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: maxFrame, alignment: 64)
            self.vector = .allocate(capacity: 1)
            self.vector.initialize(to: iovec(iov_base: self.buffer.baseAddress, iov_len: self.buffer.count))
            self.control = .allocate(byteCount: Int(CRelayLinux_credentials_control_space()), alignment: 16)
            self.message = .allocate(capacity: 1)
            self.message.initialize(to: msghdr())
            self.peerStorage = .allocate(byteCount: 40, alignment: 8)
            self.peer = UnsafeRawBufferPointer(start: self.peerStorage.baseAddress, count: 0)
        }

        deinit {
            self.buffer.deallocate()
            self.vector.deallocate()
            self.control.deallocate()
            self.message.deallocate()
            self.peerStorage.deallocate()
        }

        /// The message to receive into, reset for the next datagram.
        func prepareMessage() -> UnsafeMutableRawPointer {
            self.message.pointee = msghdr()
            self.message.pointee.msg_iov = self.vector
            self.message.pointee.msg_iovlen = 1
            self.message.pointee.msg_control = self.control.baseAddress
            self.message.pointee.msg_controllen = self.control.count
            return UnsafeMutableRawPointer(self.message)
        }

        /// Reads the sender's credentials from the message just received into ``peer``.
        func takeCredentials() {
            var pid: Int32 = 0
            var uid: UInt32 = 0
            guard CRelayLinux_received_credentials(self.message, &pid, &uid) == 1, pid > 0 else {
                self.peer = UnsafeRawBufferPointer(start: self.peerStorage.baseAddress, count: 0)
                return
            }
            var cursor = 0
            Self.append("pid=", to: self.peerStorage, at: &cursor)
            Self.append(UInt64(pid), to: self.peerStorage, at: &cursor)
            Self.append(" uid=", to: self.peerStorage, at: &cursor)
            Self.append(UInt64(uid), to: self.peerStorage, at: &cursor)
            self.peer = UnsafeRawBufferPointer(start: self.peerStorage.baseAddress, count: cursor)
        }

        private static func append(_ text: StaticString, to storage: UnsafeMutableRawBufferPointer, at cursor: inout Int) {
            text.withUTF8Buffer { bytes in
                UnsafeMutableRawBufferPointer(rebasing: storage[cursor...]).copyMemory(from: UnsafeRawBufferPointer(bytes))
            }
            cursor += text.utf8CodeUnitCount
        }

        private static func append(_ value: UInt64, to storage: UnsafeMutableRawBufferPointer, at cursor: inout Int) {
            var digits = 1
            var rest = value
            while rest >= 10 {
                rest /= 10
                digits += 1
            }
            rest = value
            for index in stride(from: cursor + digits - 1, through: cursor, by: -1) {
                storage[index] = UInt8(ascii: "0") + UInt8(rest % 10)
                rest /= 10
            }
            cursor += digits
        }
    }

    /// Receive buffer per connection.
    static let receiveBufferSize = 64 * 1024

    private var ring: IOURing
    private var completions = CompletionBuffer(capacity: 256)
    private let control: InputControl
    private let logger: Logger
    private let inputs: [InputState]
    private var listeners: [Listener] = []
    private var datagrams: [Datagram] = []
    /// Connection slots; stdin, when configured, uses one too.
    private var connections: [Connection?]
    private var freeSlots: [Int]
    private var nextGeneration: UInt64 = 1
    private var stdinSlot: Int?
    private var inFlight = 0
    private var stopping = false
    private var stopDeadline: ContinuousClock.Instant?
    private let wakeBuffer = UnsafeMutablePointer<UInt64>.allocate(capacity: 1)
    private var wakeArmed = false
    private var retry: [UInt64] = []

    /// Creates the loop on the calling thread, which becomes the ring's owner.
    ///
    /// - Parameters:
    ///   - config: The configuration.
    ///   - bound: The inputs' descriptors (``InputSockets/bind(_:)``).
    ///   - outputs: The outputs.
    ///   - metrics: relayd's metrics.
    ///   - control: The control block.
    ///   - logger: Diagnostics (stderr).
    /// - Throws: `Errno` when the ring cannot be created.
    init(
        config: RelaydConfig,
        bound: [BoundInput],
        outputs: [OutputPipeline],
        metrics: RelaydMetrics,
        control: InputControl,
        logger: Logger
    ) throws(Errno) {
        let localHost = config.daemon.hostname ?? RecordContext.systemHostname()
        var states: [InputState] = []
        for (index, input) in config.inputs.enumerated() {
            let routed = outputs.filter { $0.config.inputs.contains(input.name) }
            let router = RecordRouter(metrics: metrics.inputs[index], outputs: routed)
            states.append(InputState(index: index, config: input, router: router, localHost: localHost))
        }
        self.inputs = states
        var slots = 0
        for state in states {
            slots += state.maxConnections
            if state.config.kind == .stdin { slots += 1 }
        }
        slots = min(slots, Int(UInt16.max))
        self.connections = [Connection?](repeating: nil, count: slots)
        self.freeSlots = Array((0..<slots).reversed())
        let operations = slots + bound.count + 8
        var cq: UInt32 = 512
        while Int(cq) < 2 * operations && cq < 65536 { cq <<= 1 }
        self.ring = try IOURing(entries: 256, cqEntries: cq)
        self.control = control
        self.logger = logger
        for input in bound {
            switch input.kind {
            case .listener:
                let isTCP: Bool
                if case .tcp = config.inputs[input.input].kind { isTCP = true } else { isTCP = false }
                self.listeners.append(Listener(fd: input.fd, input: input.input, isTCP: isTCP, unixPath: input.unixPath))
            case .datagram:
                self.datagrams.append(
                    Datagram(
                        fd: input.fd,
                        input: input.input,
                        unixPath: input.unixPath,
                        maxFrame: config.inputs[input.input].maxFrame
                    )
                )
            case .stdin:
                if let slot = self.freeSlots.popLast() {
                    let state = self.inputs[input.input]
                    self.connections[slot] = Connection(
                        fd: STDIN_FILENO,
                        input: input.input,
                        generation: self.takeGeneration(),
                        config: state.config,
                        bufferSize: Self.receiveBufferSize,
                        peer: "",
                        host: state.localHost.string
                    )
                    self.stdinSlot = slot
                }
            }
        }
    }

    deinit {
        // After a ring failure the wake-up read may still be in the kernel: its 8 bytes stay (see
        // `abandonArmed`).
        if self.ringFailed && self.wakeArmed {
            KernelHeldMemory.keep(allocation: UnsafeMutableRawPointer(self.wakeBuffer))
        } else {
            self.wakeBuffer.deallocate()
        }
    }

    private func takeGeneration() -> UInt64 {
        defer { self.nextGeneration = (self.nextGeneration + 1) & URingUserData.maxSequence }
        return self.nextGeneration
    }

    // MARK: Running

    /// Runs until stopped, then drains and closes every input. Call on the thread that created the loop.
    func run() {
        self.armWake()
        for listener in self.listeners { self.armAccept(listener) }
        for datagram in self.datagrams { self.armDatagram(datagram) }
        if let slot = self.stdinSlot, let connection = self.connections[slot] { self.armReceive(connection, slot: slot) }
        // releasing: pairs with the health endpoint's acquiring load (see `InputControl.running`).
        self.control.running.store(true, ordering: .releasing)
        self.checkAllEnded()

        while !(self.stopping && self.inFlight == 0) {
            self.retryArming()
            let timeout = self.nextTimeout()
            do {
                try self.ring.submitAndWait(minCompletions: 1, timeoutNanoseconds: timeout)
            } catch {
                self.logger.critical("input ring failed; stopping inputs", metadata: ["error": "\(error)"])
                self.ringFailed = true
                break
            }
            self.reapAll()
            self.runTimers()
        }
        self.drainAndClose()
    }

    private func reapAll() {
        while true {
            let count: Int
            do {
                count = try self.ring.reap(into: &self.completions)
            } catch {
                self.logger.error("reaping input completions failed", metadata: ["error": "\(error)"])
                return
            }
            for index in 0..<count {
                self.handle(self.completions[index])
            }
            if count < self.completions.capacity { return }
        }
    }

    private func handle(_ completion: Completion) {
        let cookie = URingUserData(rawValue: completion.userData)
        guard let kind = OpKind(rawValue: cookie.kind) else { return }
        self.inFlight -= 1
        switch kind {
        case .wake:
            self.wakeArmed = false
            if self.control.requestedStop != nil {
                self.beginStop()
            } else if !self.stopping {
                self.armWake()
            }
        case .accept:
            self.accepted(listener: Int(cookie.index), result: completion.result)
        case .receive, .stdin:
            self.received(slot: Int(cookie.index), generation: cookie.sequence, result: completion.result)
        case .datagram:
            self.receivedDatagram(Int(cookie.index), result: completion.result)
        case .cancel:
            break
        }
    }

    // MARK: Arming

    @discardableResult
    private func submit(_ cookie: URingUserData, _ body: (inout IOURing, UInt64) throws(IOURing.SubmitError) -> Void) -> Bool {
        do {
            try body(&self.ring, cookie.rawValue)
            self.inFlight += 1
            return true
        } catch {
            self.retry.append(cookie.rawValue)
            return false
        }
    }

    private func armWake() {
        guard !self.wakeArmed else { return }
        let buffer = UnsafeMutableRawBufferPointer(start: self.wakeBuffer, count: 8)
        let fd = FileDescriptor(rawValue: self.control.eventFD)
        if self.submit(URingUserData(kind: OpKind.wake.rawValue, index: 0, sequence: 0), { ring, data throws(IOURing.SubmitError) in
            try ring.read(fd, into: buffer, at: 0, userData: data)
        }) {
            self.wakeArmed = true
        }
    }

    private func armAccept(_ listener: Listener) {
        guard !listener.armed, !self.stopping, let index = self.listeners.firstIndex(where: { $0 === listener }) else { return }
        listener.addressLength.pointee = UInt32(MemoryLayout<sockaddr_storage>.size)
        let fd = FileDescriptor(rawValue: listener.fd)
        let cookie = URingUserData(kind: OpKind.accept.rawValue, index: UInt16(index), sequence: 0)
        if self.submit(cookie, { ring, data throws(IOURing.SubmitError) in
            try ring.accept(
                fd,
                address: listener.address,
                addressLength: listener.addressLength,
                acceptFlags: Int32(SOCK_CLOEXEC.rawValue),
                userData: data
            )
        }) {
            listener.armed = true
        }
    }

    private func armReceive(_ connection: Connection, slot: Int) {
        guard !connection.armed, !self.stopping else { return }
        let fd = FileDescriptor(rawValue: connection.fd)
        let buffer = connection.buffer
        if slot == self.stdinSlot {
            let cookie = URingUserData(kind: OpKind.stdin.rawValue, index: UInt16(slot), sequence: connection.generation)
            if self.submit(cookie, { ring, data throws(IOURing.SubmitError) in
                // Offset -1: the file position (pipes and terminals ignore it; redirected files advance).
                try ring.read(fd, into: buffer, at: UInt64.max, userData: data)
            }) {
                connection.armed = true
            }
        } else {
            let cookie = URingUserData(kind: OpKind.receive.rawValue, index: UInt16(slot), sequence: connection.generation)
            if self.submit(cookie, { ring, data throws(IOURing.SubmitError) in
                try ring.recv(fd, into: buffer, messageFlags: 0, userData: data)
            }) {
                connection.armed = true
            }
        }
    }

    private func armDatagram(_ datagram: Datagram) {
        guard !datagram.armed, !self.stopping, let index = self.datagrams.firstIndex(where: { $0 === datagram }) else { return }
        let fd = FileDescriptor(rawValue: datagram.fd)
        let cookie = URingUserData(kind: OpKind.datagram.rawValue, index: UInt16(index), sequence: 0)
        let message = datagram.prepareMessage()
        if self.submit(cookie, { ring, data throws(IOURing.SubmitError) in
            // MSG_TRUNC: the result is the datagram's real length, so truncation is detected and counted.
            try ring.recvmsg(fd, message: message, messageFlags: Int32(MSG_TRUNC), userData: data)
        }) {
            datagram.armed = true
        }
    }

    /// Re-arms operations whose submission failed because the SQ was full.
    private func retryArming() {
        guard !self.retry.isEmpty else { return }
        let pending = self.retry
        self.retry.removeAll(keepingCapacity: true)
        for raw in pending {
            let cookie = URingUserData(rawValue: raw)
            switch OpKind(rawValue: cookie.kind) {
            case .wake: self.armWake()
            case .accept: self.armAccept(self.listeners[Int(cookie.index)])
            case .receive, .stdin:
                if let connection = self.connections[Int(cookie.index)], connection.generation == cookie.sequence {
                    self.armReceive(connection, slot: Int(cookie.index))
                }
            case .datagram: self.armDatagram(self.datagrams[Int(cookie.index)])
            case .cancel, nil: break
            }
        }
    }

    private func nextTimeout() -> Int64? {
        if !self.retry.isEmpty { return 1_000_000 }
        var earliest: UInt64?
        for listener in self.listeners {
            if let at = listener.retryAt { earliest = min(earliest ?? at, at) }
        }
        guard let earliest else { return nil }
        let now = CRelayLinux_monotonic_ns()
        return earliest > now ? Int64(earliest - now) : 0
    }

    private func runTimers() {
        let now = CRelayLinux_monotonic_ns()
        for listener in self.listeners {
            if let at = listener.retryAt, at <= now {
                listener.retryAt = nil
                self.armAccept(listener)
            }
        }
    }

    // MARK: Completions

    private func accepted(listener index: Int, result: Int32) {
        let listener = self.listeners[index]
        listener.armed = false
        if result >= 0 {
            self.adopt(fd: result, listener: listener)
            self.armAccept(listener)
            return
        }
        let error = Errno(rawValue: -result)
        switch error {
        case .canceled:
            return
        case .interrupted, .resourceTemporarilyUnavailable, Errno(rawValue: ECONNABORTED):
            self.armAccept(listener)
        default:
            // EMFILE/ENFILE/ENOBUFS: back off instead of spinning; connections wait in the backlog meanwhile.
            self.warn(self.inputs[listener.input], .acceptFailed, "accept failed; retrying in 100ms", ["error": "\(error)"])
            listener.retryAt = CRelayLinux_monotonic_ns() + 100_000_000
        }
    }

    /// Takes ownership of an accepted descriptor: opens a connection slot or refuses it.
    @discardableResult
    private func adopt(fd: Int32, listener: Listener) -> Int? {
        let input = self.inputs[listener.input]
        let metrics = input.router.metrics
        guard input.connections < input.maxConnections, let slot = self.freeSlots.popLast() else {
            _ = close(fd)
            metrics.connectionRejected()
            self.warn(input, .connectionRefused, "connection refused: max_connections reached", ["max_connections": "\(input.maxConnections)"])
            return nil
        }
        let peer: String
        let host: String
        if listener.isTCP, let described = InputSockets.describePeer(listener.address) {
            peer = described.peer
            host = described.host
        } else {
            peer = listener.isTCP ? "" : (InputSockets.peerCredentials(fd) ?? "")
            host = input.localHost.string
        }
        let connection = Connection(
            fd: fd,
            input: input.index,
            generation: self.takeGeneration(),
            config: input.config,
            bufferSize: Self.receiveBufferSize,
            peer: peer,
            host: host
        )
        self.connections[slot] = connection
        input.connections += 1
        metrics.connectionOpened()
        self.armReceive(connection, slot: slot)
        return slot
    }

    private func received(slot: Int, generation: UInt64, result: Int32) {
        guard let connection = self.connections[slot], connection.generation == generation else { return }
        connection.armed = false
        if result > 0 {
            let chunk = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(connection.buffer)[0..<Int(result)])
            if self.process(chunk, connection: connection) {
                self.armReceive(connection, slot: slot)
            } else {
                self.closeConnection(slot: slot, framingError: true)
            }
            return
        }
        if result == 0 {
            self.closeConnection(slot: slot, framingError: false)
            return
        }
        let error = Errno(rawValue: -result)
        switch error {
        case .canceled:
            // Stopping: the drain reads what is left.
            return
        case .interrupted, .resourceTemporarilyUnavailable:
            self.armReceive(connection, slot: slot)
        default:
            if error != .connectionReset {
                self.warn(self.inputs[connection.input], .readFailed, "read failed; closing the connection", ["error": "\(error)"])
            }
            self.closeConnection(slot: slot, framingError: false)
        }
    }

    /// Frames and routes one chunk. Returns false when the decoder asks to close the connection.
    private func process(_ chunk: UnsafeRawBufferPointer, connection: Connection) -> Bool {
        let input = self.inputs[connection.input]
        let router = input.router
        let context = RecordContext(
            inputName: input.name.buffer,
            peer: connection.peer.buffer,
            receivedAt: .now(),
            fallbackHostname: connection.host.buffer,
            tags: input.config.tags
        )
        let outcome = connection.decoder.decode(chunk) { frame in
            router.route(frame.bytes, context: context)
        }
        router.flush()
        let counters = connection.decoder.takeCounters()
        router.metrics.add(counters)
        if counters.truncated > 0 {
            self.warn(
                input,
                .frameTruncated,
                "frame longer than max_frame (\(input.config.maxFrame) bytes) truncated to its first \(input.config.maxFrame) "
                    + "bytes, the rest skipped; raise inputs[\(input.index)].max_frame if such records are expected",
                ["peer": "\(String(decoding: connection.peer.buffer, as: UTF8.self))", "truncated": "\(counters.truncated)"]
            )
        }
        if outcome == .closeConnection {
            let start = min(connection.decoder.closedAt ?? 0, chunk.count)
            self.warn(
                input,
                .framingError,
                "closing connection: frame without a valid RFC 6587 length prefix (framing = \"octet-counting\"); "
                    + "if this sender writes LF-terminated lines, set inputs[\(input.index)].framing = \"auto\" (or \"lf\")",
                [
                    "peer": "\(String(decoding: connection.peer.buffer, as: UTF8.self))",
                    "received": "\(Self.excerpt(UnsafeRawBufferPointer(rebasing: chunk[start...])))",
                ]
            )
            return false
        }
        return true
    }

    /// Delivers a frame cut short by the end of the stream, closes the descriptor and frees the slot.
    private func closeConnection(slot: Int, framingError: Bool) {
        guard let connection = self.connections[slot] else { return }
        let input = self.inputs[connection.input]
        let router = input.router
        if !framingError {
            let context = RecordContext(
                inputName: input.name.buffer,
                peer: connection.peer.buffer,
                receivedAt: .now(),
                fallbackHostname: connection.host.buffer,
                tags: input.config.tags
            )
            connection.decoder.finish { frame in router.route(frame.bytes, context: context) }
            router.flush()
            router.metrics.add(connection.decoder.takeCounters())
        }
        self.connections[slot] = nil
        if slot == self.stdinSlot {
            self.stdinSlot = nil
            input.ended = true
            self.logger.info("stdin reached end of file", metadata: ["input": "\(input.config.name)"])
            self.checkAllEnded()
        } else {
            _ = close(connection.fd)
            input.connections -= 1
            router.metrics.connectionClosed(framingError: framingError)
        }
        self.freeSlots.append(slot)
    }

    private func receivedDatagram(_ index: Int, result: Int32) {
        let datagram = self.datagrams[index]
        datagram.armed = false
        if result >= 0 {
            self.processDatagram(datagram, length: Int(result))
            self.armDatagram(datagram)
            return
        }
        let error = Errno(rawValue: -result)
        if error == .canceled { return }
        if error != .interrupted && error != .resourceTemporarilyUnavailable {
            self.warn(self.inputs[datagram.input], .datagramReceiveFailed, "datagram receive failed", ["error": "\(error)"])
        }
        self.armDatagram(datagram)
    }

    private func processDatagram(_ datagram: Datagram, length: Int) {
        datagram.takeCredentials()
        let input = self.inputs[datagram.input]
        let router = input.router
        let kept = min(length, datagram.buffer.count)
        if length > kept {
            var counters = FrameDecoderCounters()
            counters.truncated = 1
            router.metrics.add(counters)
            self.warn(
                input,
                .datagramTruncated,
                "datagram of \(length) bytes longer than max_frame (\(input.config.maxFrame) bytes) truncated to its first "
                    + "\(kept) bytes; raise inputs[\(input.index)].max_frame if such records are expected",
                ["peer": "\(String(decoding: datagram.peer, as: UTF8.self))"]
            )
        }
        if kept == 0 {
            var counters = FrameDecoderCounters()
            counters.emptySkipped = 1
            router.metrics.add(counters)
            return
        }
        let context = RecordContext(
            inputName: input.name.buffer,
            peer: datagram.peer,
            receivedAt: .now(),
            fallbackHostname: input.localHost.buffer,
            tags: input.config.tags
        )
        router.route(UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(datagram.buffer)[0..<kept]), context: context)
        router.flush()
    }

    // MARK: Stopping

    /// Stops by itself when every input has ended (only stdin can end).
    private func checkAllEnded() {
        guard !self.stopping, !self.inputs.isEmpty, self.inputs.allSatisfy(\.ended) else { return }
        // releasing: pairs with the acquiring load in `DaemonServices` (see `InputControl.endedByItself`).
        self.control.endedByItself.store(true, ordering: .releasing)
        self.beginStop()
    }

    private func beginStop() {
        guard !self.stopping else { return }
        self.stopping = true
        self.stopDeadline = self.control.requestedStop
        for (index, listener) in self.listeners.enumerated() where listener.armed {
            self.cancel(URingUserData(kind: OpKind.accept.rawValue, index: UInt16(index), sequence: 0).rawValue)
        }
        for (index, datagram) in self.datagrams.enumerated() where datagram.armed {
            self.cancel(URingUserData(kind: OpKind.datagram.rawValue, index: UInt16(index), sequence: 0).rawValue)
        }
        for (slot, connection) in self.connections.enumerated() {
            guard let connection, connection.armed else { continue }
            let kind = slot == self.stdinSlot ? OpKind.stdin : OpKind.receive
            self.cancel(URingUserData(kind: kind.rawValue, index: UInt16(slot), sequence: connection.generation).rawValue)
        }
        if self.wakeArmed {
            self.cancel(URingUserData(kind: OpKind.wake.rawValue, index: 0, sequence: 0).rawValue)
        }
    }

    private func cancel(_ target: UInt64) {
        // Cancel completions carry no information the loop needs; they only balance `inFlight`.
        let cookie = URingUserData(kind: OpKind.cancel.rawValue, index: 0, wrappingSequence: target)
        do {
            try self.ring.cancel(target, userData: cookie.rawValue)
            self.inFlight += 1
        } catch {
            // SQ full: submit what is queued and try once more; the loop retries otherwise.
            _ = try? self.ring.submit()
            if (try? self.ring.cancel(target, userData: cookie.rawValue)) != nil {
                self.inFlight += 1
            }
        }
    }

    /// `run` left its loop because the ring failed, not after a stop: operations may still be
    /// in the kernel (see `drainAndClose`).
    private var ringFailed = false

    /// At most this many connections are taken from each listener's backlog at the stop: the
    /// kernel's accept queue holds no more than `SOMAXCONN` + 1, so a client that keeps
    /// reconnecting cannot keep the drain going.
    private static let drainAcceptBudget = Int(SOMAXCONN) + 1

    /// At most this many datagrams are read from each datagram socket at the stop: a Unix datagram
    /// socket queues at most `net.unix.max_dgram_qlen` + 1 (its memory is charged to the senders, so
    /// the receiver's own accounting shows nothing to go by), so this reads everything queued then,
    /// and a client that keeps sending cannot keep the drain going.
    private static let drainDatagramBudget: Int = {
        // Where /proc cannot be read: above the usual default (10 on Debian).
        (Sysctl.integer("/proc/sys/net/unix/max_dgram_qlen").flatMap { $0 > 0 ? $0 : nil } ?? 512) + 1
    }()

    private var pastDeadline: Bool {
        guard let deadline = self.stopDeadline else { return false }
        return ContinuousClock.now >= deadline
    }

    /// After every operation completed: accept the backlog, read what every socket and stdin held at the stop,
    /// deliver incomplete frames, close everything.
    ///
    /// Each drain is bounded by what the kernel held when it started, not by what clients add meanwhile:
    /// otherwise a client that keeps sending (or reconnecting) would keep the drain going until the deadline
    /// and leave the shipper none of `drain_timeout` to ship what the channels hold. Streams and stdin read
    /// what `FIONREAD` reported; a datagram socket, whose `FIONREAD` tells only the next datagram's size, reads at
    /// most as many datagrams as its queue can hold; a listener accepts at most its backlog's capacity.
    ///
    /// After a ring failure (not a stop) nothing was cancelled: a receive or accept may still be in the kernel,
    /// writing into its object's memory and racing a plain read for the same bytes. Those objects are not read
    /// and their memory is never freed (a deliberate leak on a path that ends the inputs); the rest drain as usual.
    private func drainAndClose() {
        if self.ringFailed { self.abandonArmed() }
        for listener in self.listeners where !listener.armed {
            _ = fcntl(listener.fd, F_SETFL, fcntl(listener.fd, F_GETFL) | O_NONBLOCK)
            var budget = Self.drainAcceptBudget
            while budget > 0 && !self.pastDeadline {
                budget -= 1
                listener.addressLength.pointee = UInt32(MemoryLayout<sockaddr_storage>.size)
                let fd = accept(listener.fd, listener.address.assumingMemoryBound(to: sockaddr.self), listener.addressLength)
                guard fd >= 0 else { break }
                _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
                self.adopt(fd: fd, listener: listener)
            }
        }
        // What the kernel holds for each connection (and stdin) and each datagram socket now, before any of
        // them is read.
        let queued = self.connections.map { connection -> Int? in
            guard let connection else { return nil }
            if connection.armed { return 0 }
            let available = CRelayLinux_readable_bytes(connection.fd)
            return available >= 0 ? Int(available) : nil
        }
        let datagramBudgets = self.datagrams.map { $0.armed ? 0 : Self.drainDatagramBudget }
        if let slot = self.stdinSlot {
            let flags = fcntl(STDIN_FILENO, F_GETFL)
            if flags >= 0 { _ = fcntl(STDIN_FILENO, F_SETFL, flags | O_NONBLOCK) }
            self.drain(slot: slot, limit: queued[slot])
            // The flags belong to the open file description, shared with whoever started relayd (a shell's
            // terminal, a supervisor's pipe): put them back as found.
            if flags >= 0 { _ = fcntl(STDIN_FILENO, F_SETFL, flags) }
        }
        for slot in self.connections.indices where self.connections[slot] != nil {
            self.drain(slot: slot, limit: queued[slot])
        }
        for (datagram, budget) in zip(self.datagrams, datagramBudgets) {
            var remaining = budget
            while remaining > 0 && !self.pastDeadline {
                let message = datagram.prepareMessage().assumingMemoryBound(to: msghdr.self)
                let count = Glibc.recvmsg(datagram.fd, message, Int32(MSG_DONTWAIT) | Int32(MSG_TRUNC))
                guard count >= 0 else { break }
                remaining -= 1
                self.processDatagram(datagram, length: count)
            }
        }
        for listener in self.listeners {
            _ = close(listener.fd)
            if let path = listener.unixPath { _ = unlink(path) }
        }
        for datagram in self.datagrams {
            _ = close(datagram.fd)
            if let path = datagram.unixPath { _ = unlink(path) }
        }
        self.logger.debug("inputs drained and closed")
    }

    /// After a ring failure: keeps the memory of every listener, connection and datagram socket with an
    /// operation still in the kernel alive for good (``KernelHeldMemory``), so a late accept or receive never writes into
    /// freed memory, and says how many there were. Their descriptors are closed like the others; what they
    /// held is not read (the kernel's own operation may be taking it).
    private func abandonArmed() {
        var abandoned = 0
        for listener in self.listeners where listener.armed {
            KernelHeldMemory.keep(listener)
            abandoned += 1
        }
        for case let connection? in self.connections where connection.armed {
            KernelHeldMemory.keep(connection)
            abandoned += 1
        }
        for datagram in self.datagrams where datagram.armed {
            KernelHeldMemory.keep(datagram)
            abandoned += 1
        }
        guard abandoned > 0 else { return }
        self.logger.error(
            "input ring failed with operations still in the kernel; those inputs are closed without reading what they held",
            metadata: [
                "inputs": "\(abandoned)",
                "advice": "records their clients had sent but relayd had not read are lost and not counted; the clients see the connection close and should resend",
            ])
    }

    /// Reads what is left on a connection (at most `limit` bytes when given, else until the kernel has nothing more),
    /// then closes it.
    private func drain(slot: Int, limit: Int?) {
        guard let connection = self.connections[slot] else { return }
        let isStdin = slot == self.stdinSlot
        var remaining = limit ?? Int.max
        while remaining > 0, !self.pastDeadline {
            let count: Int
            let size = min(connection.buffer.count, remaining)
            if isStdin {
                count = read(connection.fd, connection.buffer.baseAddress, size)
            } else {
                count = recv(connection.fd, connection.buffer.baseAddress, size, Int32(MSG_DONTWAIT))
            }
            if count > 0 {
                remaining -= count
                let chunk = UnsafeRawBufferPointer(rebasing: UnsafeRawBufferPointer(connection.buffer)[0..<count])
                if !self.process(chunk, connection: connection) {
                    self.closeConnection(slot: slot, framingError: true)
                    return
                }
                continue
            }
            if count < 0 && errno == EINTR { continue }
            break
        }
        if isStdin {
            // Closing stdin's slot must not look like an end of input that starts another stop.
            self.inputs[connection.input].ended = true
        }
        self.closeConnection(slot: slot, framingError: false)
    }

    // MARK: Diagnostics

    /// The first bytes of `bytes` for a log line: printable ASCII as is, anything else as `\xNN`.
    static func excerpt(_ bytes: UnsafeRawBufferPointer, limit: Int = 32) -> String {
        var text = ""
        for byte in bytes.prefix(limit) {
            if byte >= 0x20 && byte < 0x7F && byte != UInt8(ascii: "\\") {
                text.unicodeScalars.append(Unicode.Scalar(byte))
            } else {
                let hex = String(byte, radix: 16)
                text += "\\x" + (hex.count == 1 ? "0" + hex : hex)
            }
        }
        return bytes.count > limit ? text + "…" : text
    }

    /// The kinds of warning an input logs, each limited to one line per second on its own: a burst of one kind
    /// (refused connections, say) must not hide the first of another (a truncated frame), which is then never logged.
    enum Warning: Int, CaseIterable {
        case acceptFailed
        case connectionRefused
        case readFailed
        case frameTruncated
        case framingError
        case datagramReceiveFailed
        case datagramTruncated
    }

    private func warn(_ input: InputState, _ kind: Warning, _ message: String, _ metadata: Logger.Metadata) {
        let now = CRelayLinux_monotonic_ns()
        let last = input.lastWarning[kind.rawValue]
        guard last == 0 || now - last >= 1_000_000_000 else { return }
        input.lastWarning[kind.rawValue] = now
        var all = metadata
        all["input"] = "\(input.config.name)"
        self.logger.warning("\(message)", metadata: all)
    }
}

extension StableBytes {
    /// The bytes as a `String`.
    var string: String { String(decoding: self.buffer, as: UTF8.self) }
}
