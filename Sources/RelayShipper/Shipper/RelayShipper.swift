internal import CRelayLinux
internal import Glibc
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
        case configuring([ShipperRegistration])
        case running
        case stopped
    }

    private let phase = Mutex<Phase>(.configuring([]))
    private let exited = ShipperEvent()
    private let exitWaiters = Mutex<[CheckedContinuation<Void, Never>]>([])

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
            guard case .configuring(var registrations) = phase else {
                throw RelayShipperError(message: "add channels before start(); the ring thread's set of channels is fixed once it runs")
            }
            if registrations.contains(where: { $0.channel === channel }) {
                throw RelayShipperError(message: "channel '\(channel.configuration.name)' is already shipped by this shipper")
            }
            registrations.append(ShipperRegistration(channel: channel, sinks: sinks))
            phase = .configuring(registrations)
        }
    }

    /// Starts the ring thread: probes io_uring, creates the ring, registers the relay
    /// regions and opens every sink. Returns once all of that succeeded.
    ///
    /// - Throws: ``RelayShipperError`` (io_uring unavailable, a file cannot be opened, a
    ///   channel already has a consumer such as another running shipper, …) with a message
    ///   that says how to fix it. Nothing is left running on failure.
    public func start() throws(RelayShipperError) {
        let registrations: [ShipperRegistration] = try self.phase.withLock { phase throws(RelayShipperError) in
            guard case .configuring(let registrations) = phase else {
                throw RelayShipperError(message: "the shipper was already started")
            }
            phase = .running
            return registrations
        }
        let setup = ShipperSetupResult()
        let configuration = self.configuration
        let shared = self.shared
        let logger = self.logger
        let exited = self.exited
        let onExit: @Sendable () -> Void = { [weak self] in self?.resumeExitWaiters() }
        ShipperThread.spawn(name: "relay-shipper") {
            Self.runRing(setup: setup, configuration: configuration, registrations: registrations, shared: shared, logger: logger)
            // Only now, with the ring torn down: a caller of stop() that starts another shipper
            // at once must find the descriptor closed and the locked-memory budget free.
            exited.signal()
            onExit()
        }
        if let error = setup.wait() {
            self.phase.withLock { $0 = .stopped }
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
        guard self.requestStop(timeout: timeout) else { return true }
        self.exited.wait()
        return self.drained
    }

    /// Whether the ring thread exited after shipping everything (see ``stop(timeout:)``):
    /// `false` while it runs, and after a stop whose deadline passed or a cancellation.
    public var drained: Bool {
        // acquiring: pairs with the ring thread's releasing store before it exits.
        self.exited.isSignalled && self.shared.drained.load(ordering: .acquiring)
    }

    /// Asks the ring thread to drain and stop; does not wait. Returns false if the
    /// shipper is not running. Of several requests, the earliest deadline applies.
    @discardableResult
    public func requestStop(timeout: Duration = .seconds(10)) -> Bool {
        let running = self.phase.withLock { phase -> Bool in
            if case .running = phase { return true }
            return false
        }
        guard running else { return false }
        self.shared.send(.stop(timeout: timeout))
        return true
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

    /// Whether the ring thread has exited.
    public var hasExited: Bool { self.exited.isSignalled }

    /// Waits (without blocking a thread) until the ring thread exits.
    public func waitUntilExited() async {
        if self.exited.isSignalled { return }
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let resumeNow = self.exitWaiters.withLock { waiters -> Bool in
                if self.exited.isSignalled { return true }
                waiters.append(continuation)
                return false
            }
            if resumeNow { continuation.resume() }
        }
    }

    private func resumeExitWaiters() {
        let waiters = self.exitWaiters.withLock { waiters in
            defer { waiters.removeAll() }
            return waiters
        }
        for waiter in waiters { waiter.resume() }
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
    private let result = Mutex<Result<Void, RelayShipperError>?>(nil)
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

/// A one-shot event threads can block on (a futex word).
final class ShipperEvent: @unchecked Sendable {
    private let word = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    private let state = Atomic<UInt32>(0)

    init() { self.word.initialize(to: 0) }
    deinit { self.word.deallocate() }

    var isSignalled: Bool { self.state.load(ordering: .acquiring) != 0 }

    func signal() {
        // releasing: pairs with the acquiring load in `wait`.
        self.state.store(1, ordering: .releasing)
        let atomicWord = UnsafeMutableRawPointer(self.word).assumingMemoryBound(to: Atomic<UInt32>.self)
        atomicWord.pointee.store(1, ordering: .releasing)
        _ = CRelayLinux_futex_wake(self.word, Int32.max, 0)
    }

    func wait() {
        while self.state.load(ordering: .acquiring) == 0 {
            _ = CRelayLinux_futex_wait(self.word, 0, -1, 0)
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

    static func spawn(name: String, _ body: @escaping @Sendable () -> Void) {
        let rc = self.trySpawn(name: name, body)
        precondition(rc == 0, "pthread_create failed: \(rc)")
    }

    /// Like ``spawn(name:_:)``, but returns pthread_create's error (0 on success) instead of
    /// trapping: for threads started while the shipper runs.
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
