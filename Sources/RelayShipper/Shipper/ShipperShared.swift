import Relay
import Synchronization

/// A channel and the sinks it feeds.
struct ShipperRegistration: @unchecked Sendable {
    let channel: RelayChannel
    let sinks: [RelaySink]
}

/// State shared between the ring thread and the rest of the process: a command queue
/// (the ring is never touched from outside its thread), the latest stats snapshot and
/// the doorbell writers ring.
final class ShipperShared: Sendable {
    enum Command: Sendable {
        case reopen
        case flush
        case stop(timeout: Duration)
        case abort
        case publishStats
        /// A socket sink's host name look-up finished on its resolver thread (see
        /// `SocketSink.startLookUp`): sink index, request number, result (every address, in
        /// getaddrinfo's order).
        case resolved(sink: Int, request: UInt64, result: Result<[ResolvedSocketAddress], SocketAddressError>)
    }

    let wakeup = RelayConsumerWakeup()
    /// The socket sinks' resolver threads (joined at shutdown, see ``ResolverThreads``).
    let resolvers = ResolverThreads()
    private let commands = RelayMutex<[Command]>([])
    private let commandFlag = Atomic<Bool>(false)
    private let latest = RelayMutex<RelayShipperStats?>(nil)
    /// Set by the ring thread when it exits because everything was shipped (not at a
    /// deadline, not at an abort).
    let drained = Atomic<Bool>(false)

    func send(_ command: Command) {
        self.commands.withLock { $0.append(command) }
        // releasing: pairs with the ring thread's acquiring check in `hasCommands`.
        self.commandFlag.store(true, ordering: .releasing)
        self.wakeup.ring()
    }

    var hasCommands: Bool { self.commandFlag.load(ordering: .acquiring) }

    func takeCommands() -> [Command] {
        // acquiring: pairs with the releasing store in `send`.
        guard self.commandFlag.load(ordering: .acquiring) else { return [] }
        // relaxed: only this (ring) thread clears the flag, and before it takes the commands
        // under the lock; a `send` after that appends first and sets the flag again, so no
        // command waits unseen.
        self.commandFlag.store(false, ordering: .relaxed)
        return self.commands.withLock { commands in
            defer { commands.removeAll(keepingCapacity: true) }
            return commands
        }
    }

    func publish(_ stats: RelayShipperStats) {
        self.latest.withLock { $0 = stats }
    }

    var stats: RelayShipperStats? { self.latest.withLock { $0 } }
}
