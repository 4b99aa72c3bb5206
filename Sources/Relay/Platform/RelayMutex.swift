// The plain build's alias exposes Synchronization's type to the package; the sanitizer
// build's does not.
#if RELAY_THREAD_SANITIZER
import Synchronization
#else
package import Synchronization
#endif

/// The mutex of every module in this package: the standard library's `Mutex`, except in
/// ThreadSanitizer builds, where it is ``SanitizerVisibleMutex`` (below: why).
///
/// Use it as `Mutex`: `RelayMutex(value)`, `withLock { … }`. It has a name of its own so that
/// one declaration serves every module: a `package typealias Mutex` here would be ambiguous
/// with Synchronization's in every file that imports both. A file that uses it imports Relay
/// (for the name) and Synchronization (for the standard library type's members).
#if RELAY_THREAD_SANITIZER
package typealias RelayMutex<Value: ~Copyable> = SanitizerVisibleMutex<Value>
#else
package typealias RelayMutex<Value: ~Copyable> = Synchronization.Mutex<Value>
#endif

#if RELAY_THREAD_SANITIZER
// Only in ThreadSanitizer builds (`scripts/sanitize thread` passes
// `-Xswiftc -DRELAY_THREAD_SANITIZER`); other builds use the standard library's `Mutex` as is.
//
// Why: on Linux, `Synchronization.Mutex` hands a contended lock over inside the kernel
// (`FUTEX_LOCK_PI` / `FUTEX_UNLOCK_PI`): neither the releasing nor the acquiring thread makes
// an atomic access the sanitizer sees, so two `withLock` bodies that met contention look
// unordered and are reported as a race. This wrapper adds the ordering the sanitizer can see:
// every body starts with an acquiring load of `order` and ends with a releasing store to it.
// The mutex already orders the bodies, so the load always reads the previous body's store,
// which is the happens-before edge the kernel hand-over hid. It adds only ordering the mutex
// really provides, so it hides no real race.

/// `Synchronization.Mutex` with its ordering visible to ThreadSanitizer (sanitizer builds only).
package struct SanitizerVisibleMutex<Value: ~Copyable>: ~Copyable {
    let mutex: Synchronization.Mutex<Value>
    let order = Atomic<UInt>(0)

    /// Creates a mutex holding `initialValue`.
    package init(_ initialValue: consuming sending Value) {
        self.mutex = Synchronization.Mutex(initialValue)
    }

    /// `Mutex.withLock`, with the acquire/release pair the sanitizer can see.
    package borrowing func withLock<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        try self.mutex.withLock { (value: inout sending Value) throws(E) -> sending Result in
            // acquiring: pairs with the releasing store at the end of the previous body.
            _ = self.order.load(ordering: .acquiring)
            // releasing: pairs with the acquiring load at the start of the next body.
            defer { self.order.store(0, ordering: .releasing) }
            return try body(&value)
        }
    }
}

extension SanitizerVisibleMutex: @unchecked Sendable where Value: ~Copyable {}
#endif
