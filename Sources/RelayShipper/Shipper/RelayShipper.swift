internal import CRelayLinux
internal import Glibc
internal import SystemPackage
public import Logging
public import Relay
public import ServiceLifecycle
import Synchronization

/// Ships the sub-buffers of relay channels to files and sockets with io_uring.
///
/// One dedicated OS thread owns the ring (`SINGLE_ISSUER | DEFER_TASKRUN`); Swift tasks
/// never touch it. Delivered sub-buffers are written and sent straight from relay
/// memory (registered fixed buffers, no user-space copy); completions advance each
/// buffer's consumed count in order, which is what frees space for writers in
/// no-overwrite channels. A switch timer seals partly filled sub-buffers so low-rate
/// logs arrive within ``RelayShipperConfiguration/switchInterval``.
///
/// ```swift
/// let shipper = RelayShipper(logger: logger)
/// try shipper.add(channel, sinks: [.file(.init(path: "/var/log/app.log"))])
/// try shipper.start()
/// …
/// channel.close()
/// shipper.stop()          // flush, drain, fsync, close
/// ```
///
/// It is also a swift-service-lifecycle `Service`: `run()` starts it and drains it on
/// graceful shutdown.
public final class RelayShipper: Sendable, Service {
    /// The shipper's configuration.
    public let configuration: RelayShipperConfiguration
    /// How long a graceful shutdown (``run()``) may take to drain.
    public let drainTimeout: Duration
    let logger: Logger
    let shared = ShipperShared()

    private enum Phase: Sendable {
        /// Not started, or the last ``start()`` failed: channels can be added and `start()`
        /// called (again). `exited` is the event the next start's ring thread signals.
        case configuring([ShipperRegistration], exited: ShipperEvent)
        /// Started: the ring thread is being set up, runs, or has exited (it signals `exited`).
        case started(exited: ShipperEvent)

        var exited: ShipperEvent {
            switch self {
            case .configuring(_, let exited), .started(let exited): exited
            }
        }
    }

    private let phase = RelayMutex<Phase>(.configuring([], exited: ShipperEvent()))

    /// The exit event of the current (or next) start's ring thread.
    private var exited: ShipperEvent { self.phase.withLock { $0.exited } }

    /// Creates a shipper.
    ///
    /// - Parameters:
    ///   - configuration: the ring's settings (switch interval, ring size, buffer
    ///     registration, file queue depth).
    ///   - drainTimeout: the deadline for draining on graceful shutdown (``run()``).
    ///   - logger: where the shipper's own diagnostics go (never into a relay channel it ships).
    public init(
        configuration: RelayShipperConfiguration = RelayShipperConfiguration(),
        drainTimeout: Duration = .seconds(10),
        logger: Logger = Logger(label: "relay.shipper")
    ) {
        self.configuration = configuration
        self.drainTimeout = drainTimeout
        self.logger = logger
    }

    /// Adds a channel and the sinks its sub-buffers go to (fan-out: a sub-buffer is
    /// released only when every sink is done with it). Call before ``start()``.
    ///
    /// - Throws: ``RelayShipperError`` if the shipper already started, the channel is
    ///   already shipped by this shipper, or `sinks` is empty or has more than 64 entries.
    ///   (A channel that another running shipper consumes is refused by ``start()``.)
    public func add(_ channel: RelayChannel, sinks: [RelaySink]) throws(RelayShipperError) {
        guard !sinks.isEmpty, sinks.count <= 64 else {
            throw RelayShipperError(message: "a channel needs 1 to 64 sinks (got \(sinks.count)); use .discard to consume without I/O")
        }
        try self.phase.withLock { phase throws(RelayShipperError) in
            guard case .configuring(var registrations, let exited) = phase else {
                throw RelayShipperError(message: "add channels before start(); the ring thread's set of channels is fixed once it runs")
            }
            if registrations.contains(where: { $0.channel === channel }) {
                throw RelayShipperError(message: "channel '\(channel.configuration.name)' is already shipped by this shipper")
            }
            registrations.append(ShipperRegistration(channel: channel, sinks: sinks))
            phase = .configuring(registrations, exited: exited)
        }
    }

    /// Starts the ring thread: probes io_uring, creates the ring, registers the relay
    /// regions and opens every sink. Returns once all of that succeeded.
    ///
    /// - Throws: ``RelayShipperError`` (io_uring unavailable, a file cannot be opened, a
    ///   channel already has a consumer such as another running shipper, …) with a message
    ///   that says how to fix it. Nothing is left running on failure, and the shipper is as
    ///   before the call: fix the cause and call `start()` again (or add channels first).
    public func start() throws(RelayShipperError) {
        let (registrations, exited) = try self.phase.withLock { phase throws(RelayShipperError) in
            guard case .configuring(let registrations, let exited) = phase else {
                throw RelayShipperError(message: "the shipper was already started; stop() it and create a new one to start again")
            }
            phase = .started(exited: exited)
            return (registrations, exited)
        }
        let setup = ShipperSetupResult()
        let configuration = self.configuration
        let shared = self.shared
        let logger = self.logger
        let spawned = ShipperThread.trySpawn(name: "relay-shipper") {
            Self.runRing(setup: setup, configuration: configuration, registrations: registrations, shared: shared, logger: logger)
            // Only now, with the ring torn down: a caller of stop() that starts another shipper
            // at once must find the descriptor closed and the locked-memory budget free.
            exited.signal()
        }
        let failure: RelayShipperError?
        if spawned != 0 {
            // No thread, so nothing ran: as for a failed setup, the shipper goes back to configuring.
            exited.signal()
            failure = RelayShipperError(
                message: "cannot start the shipper thread (pthread_create: \(Errno(rawValue: spawned))); raise the "
                    + "thread limit (ulimit -u, systemd TasksMax) or free memory, then start() again",
                errno: Errno(rawValue: spawned))
        } else {
            failure = setup.wait()
        }
        if let error = failure {
            self.phase.withLock { phase in
                // Stops, flushes and reopens requested while this start was under way were for a
                // ring thread that never ran: the retry's must not find them. (`requestStop` sends
                // under this lock, so none can arrive between this and the phase change.) A stop()
                // waiting on this attempt's `exited` returns when the failed thread signals it;
                // the next start gets an event of its own.
                _ = self.shared.takeCommands()
                phase = .configuring(registrations, exited: ShipperEvent())
            }
            throw error
        }
    }

    /// The ring thread's body: creates the loop (ring, registration, sinks), reports the
    /// outcome to `setup`, runs the loop until it stops, and tears the ring down, all before it
    /// returns. The loop owns the ring (its `deinit` unmaps it and closes the descriptor), and
    /// nothing but this function holds the loop, so its scope ending releases it.
    private static func runRing(
        setup: ShipperSetupResult, configuration: RelayShipperConfiguration, registrations: [ShipperRegistration],
        shared: ShipperShared, logger: Logger
    ) {
        weak var released: ShipperLoop?
        do {
            let loop: ShipperLoop
            do throws(RelayShipperError) {
                loop = try ShipperLoop(configuration: configuration, registrations: registrations, shared: shared, logger: logger)
            } catch {
                setup.fail(error)
                return
            }
            released = loop
            setup.succeed()
            loop.run()
        }
        assert(released == nil, "something still holds the shipper loop, so its ring outlives stop()")
    }

    /// Stops gracefully: seals partly filled sub-buffers, ships everything delivered,
    /// waits for every completion (and acknowledgement on sockets), fsyncs files that
    /// have an fsync policy, and closes. Blocks until done or `timeout` passes, and then
    /// until the ring thread has torn the ring down: its buffers unregistered (their pages
    /// back in the RLIMIT_MEMLOCK budget) and its descriptor closed, so a shipper started
    /// right after this returns can register the same amount of memory. (The ring's own few
    /// pages of that budget come back when the kernel's worker frees the ring, a little later.)
    ///
    /// Close the channels first (or stop their writers) so there is an end to drain.
    ///
    /// If a stop was already requested with a later deadline, this one's earlier deadline
    /// applies; an earlier deadline already requested is kept.
    ///
    /// - Returns: `true` if everything was shipped before the deadline: every sub-buffer
    ///   sealed, delivered (no writer still inside a record), and released by every sink
    ///   (``drained``). A shipper that is not running (never started, or its start failed)
    ///   ships nothing and returns `true` at once.
    @discardableResult
    public func stop(timeout: Duration = .seconds(10)) -> Bool {
        guard let exited = self.sendStop(timeout: timeout) else { return true }
        exited.wait()
        return self.drained(exited)
    }

    /// Whether the ring thread exited after shipping everything (see ``stop(timeout:)``):
    /// `false` while it runs, and after a stop whose deadline passed or a cancellation.
    public var drained: Bool { self.drained(self.exited) }

    private func drained(_ exited: ShipperEvent) -> Bool {
        // acquiring: pairs with the ring thread's releasing store before it exits.
        exited.isSignalled && self.shared.drained.load(ordering: .acquiring)
    }

    /// Asks the ring thread to drain and stop; does not wait. Returns false if the
    /// shipper is not running. Of several requests, the earliest deadline applies.
    @discardableResult
    public func requestStop(timeout: Duration = .seconds(10)) -> Bool {
        self.sendStop(timeout: timeout) != nil
    }

    /// Sends the stop command if the shipper was started; returns the exit event of the ring
    /// thread it is for, `nil` if not started.
    private func sendStop(timeout: Duration) -> ShipperEvent? {
        self.phase.withLock { phase -> ShipperEvent? in
            guard case .started(let exited) = phase else { return nil }
            // Under the lock: a failing start() drops the commands sent for it under the lock
            // too, so this one either is dropped with them or finds the phase back at
            // `.configuring`; it never reaches the thread of a later retry.
            self.shared.send(.stop(timeout: timeout))
            return exited
        }
    }

    /// Reopens every output file at its path: for logrotate-style external rotation
    /// (`postrotate: kill -HUP`).
    public func reopen() {
        self.shared.send(.reopen)
    }

    /// Seals and ships partly filled sub-buffers now, without waiting for the switch timer.
    public func flush() {
        self.shared.send(.flush)
    }

    /// The latest counters (refreshed every 50 ms by the ring thread, and when it stops).
    public func stats() -> RelayShipperStats? {
        self.shared.stats
    }

    /// Whether the ring thread has exited (`false` before ``start()`` and after a failed one,
    /// which leaves the shipper ready to start again).
    public var hasExited: Bool { self.exited.isSignalled }

    /// Waits (without blocking a thread) until the ring thread exits: the one running, or
    /// the next ``start()``'s if none runs. A start that fails also ends this wait.
    public func waitUntilExited() async {
        await self.exited.wait()
    }

    /// `Service`: starts the shipper (if needed) and runs until graceful shutdown, then
    /// drains within ``drainTimeout``. Task cancellation stops without draining.
    public func run() async throws {
        let needsStart = self.phase.withLock { phase -> Bool in
            if case .configuring = phase { return true }
            return false
        }
        if needsStart { try self.start() }
        await withTaskCancellationHandler {
            await withGracefulShutdownHandler {
                await self.waitUntilExited()
            } onGracefulShutdown: {
                self.requestStop(timeout: self.drainTimeout)
            }
        } onCancel: {
            self.shared.send(.abort)
        }
        try Task.checkCancellation()
    }
}

/// Reports whether the ring thread's setup worked, once.
final class ShipperSetupResult: Sendable {
    private let result = RelayMutex<Result<Void, RelayShipperError>?>(nil)
    private let event = ShipperEvent()

    func succeed() {
        self.result.withLock { $0 = .success(()) }
        self.event.signal()
    }

    func fail(_ error: RelayShipperError) {
        self.result.withLock { $0 = .failure(error) }
        self.event.signal()
    }

    func wait() -> RelayShipperError? {
        self.event.wait()
        if case .failure(let error) = self.result.withLock({ $0 }) { return error }
        return nil
    }
}

/// A one-shot event threads can block on (a futex word), and tasks can await.
final class ShipperEvent: @unchecked Sendable {
    private let word = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    private let state = Atomic<UInt32>(0)
    private let waiters = RelayMutex<[CheckedContinuation<Void, Never>]>([])

    init() { self.word.initialize(to: 0) }
    deinit { self.word.deallocate() }

    var isSignalled: Bool {
        // acquiring: pairs with the releasing store in `signal()` (what the signalling thread
        // did before, such as storing `drained`, is visible once this sees the event).
        self.state.load(ordering: .acquiring) != 0
    }

    func signal() {
        // releasing: pairs with the acquiring load in `wait`.
        self.state.store(1, ordering: .releasing)
        let atomicWord = UnsafeMutableRawPointer(self.word).assumingMemoryBound(to: Atomic<UInt32>.self)
        atomicWord.pointee.store(1, ordering: .releasing)
        _ = CRelayLinux_futex_wake(self.word, Int32.max, 0)
        // After the store: a task that takes the lock after this finds `state` set (the lock
        // orders it), one that took it before is in the list.
        let waiters = self.waiters.withLock { waiters in
            defer { waiters.removeAll() }
            return waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    func wait() {
        // acquiring: pairs with the releasing store in `signal()`, like `isSignalled`.
        while self.state.load(ordering: .acquiring) == 0 {
            _ = CRelayLinux_futex_wait(self.word, 0, -1, 0)
        }
    }

    /// Waits without blocking a thread.
    func wait() async {
        if self.isSignalled { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = self.waiters.withLock { waiters -> Bool in
                if self.isSignalled { return true }
                waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }
}

/// Starts detached OS threads (the ring needs a thread of its own, not a Task).
enum ShipperThread {
    private final class Box {
        let body: () -> Void
        let name: String
        init(name: String, _ body: @escaping () -> Void) {
            self.name = name
            self.body = body
        }
    }

    /// Starts a detached thread. Returns pthread_create's error (0 on success).
    static func trySpawn(name: String, _ body: @escaping @Sendable () -> Void) -> Int32 {
        var thread = pthread_t()
        let rc = self.trySpawnJoinable(name: name, thread: &thread, body)
        if rc == 0 { pthread_detach(thread) }
        return rc
    }

    /// Starts a joinable thread (stored in `thread`): the caller must join or detach it.
    /// Returns pthread_create's error (0 on success).
    static func trySpawnJoinable(name: String, thread: inout pthread_t, _ body: @escaping @Sendable () -> Void) -> Int32 {
        let retained = Unmanaged.passRetained(Box(name: name, body))
        let rc = pthread_create(&thread, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            CRelayLinux_set_thread_name(String(box.name.prefix(15)))
            box.body()
            return nil
        }, retained.toOpaque())
        guard rc == 0 else {
            retained.release()
            return rc
        }
        return 0
    }
}

extension RelayShipper {
    /// Checks io_uring support: `nil` when usable, else a message saying what is wrong
    /// and how to fix it (tests use it to skip with a reason).
    public static func probeIOURing() -> String? {
        switch IOURingProbe.result {
        case .success: return nil
        case .failure(let error): return error.message
        }
    }
}
