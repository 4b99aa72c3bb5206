import Relay
import Synchronization

/// Memory that an io_uring operation still in the kernel may read or write after its owner
/// stopped waiting for it (a shipper stop past its deadline, relayd's failed input ring): kept
/// for the rest of the process, on purpose, since the kernel may get to it at any time (a
/// buffered write reads its source only when it runs, a receive writes whenever data comes).
///
/// Every object and allocation kept here stays reachable from this list, instead of being
/// leaked through an unbalanced retain with nothing pointing at it: what is held is countable
/// (``count``), and a leak checker (LeakSanitizer, valgrind) does not report it.
package enum KernelHeldMemory {
    /// The addresses of everything kept (retained objects and allocations), as integers: the
    /// list only has to point at them (leak checkers scan memory for such values).
    private static let addresses = RelayMutex<[UInt]>([])

    /// Keeps `object` alive for the rest of the process.
    package static func keep(_ object: AnyObject) {
        let address = UInt(bitPattern: Unmanaged.passRetained(object).toOpaque())
        Self.addresses.withLock { $0.append(address) }
    }

    /// Keeps `allocation` (never to be deallocated) for the rest of the process.
    package static func keep(allocation: UnsafeMutableRawPointer) {
        let address = UInt(bitPattern: allocation)
        Self.addresses.withLock { $0.append(address) }
    }

    /// How many objects and allocations are kept.
    package static var count: Int {
        Self.addresses.withLock { $0.count }
    }
}
