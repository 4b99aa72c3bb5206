#if RELAY_THREAD_SANITIZER
import Synchronization

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
//
// Each module that uses `Mutex` declares, in its `ThreadSanitizerMutex.swift`, a module-local
// `typealias Mutex` to this type in these builds (this module: the end of this file). A
// module's own declarations shadow imported ones, so the code keeps spelling `Mutex` and
// `withLock`. (Every such module needs it, not only those whose tests run under the sanitizer:
// a test target that `@testable`-imports a module with a shadow sees that module's alias too,
// and only a shadow of its own resolves the name.)

/// `Synchronization.Mutex` with its ordering visible to ThreadSanitizer (sanitizer builds only).
///
/// Its members have names of their own: each module's shadow file adds `init(_:)` and
/// `withLock` in an extension of its own, because with `MemberImportVisibility` a member
/// declared here would be visible only in files that import Relay themselves.
package struct SanitizerVisibleMutex<Value: ~Copyable>: ~Copyable {
    let mutex: Synchronization.Mutex<Value>
    let order = Atomic<UInt>(0)

    /// Creates a mutex holding `initialValue`.
    package init(sanitizing initialValue: consuming sending Value) {
        self.mutex = Synchronization.Mutex(initialValue)
    }

    /// `Mutex.withLock`, with the acquire/release pair the sanitizer can see.
    package borrowing func withSanitizedLock<Result: ~Copyable, E: Error>(
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

// This module's shadow (the other modules' files are the same, with `import Relay`).
typealias Mutex<Value: ~Copyable> = SanitizerVisibleMutex<Value>

extension SanitizerVisibleMutex where Value: ~Copyable {
    init(_ initialValue: consuming sending Value) { self.init(sanitizing: initialValue) }

    borrowing func withLock<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        try self.withSanitizedLock(body)
    }
}
#endif
