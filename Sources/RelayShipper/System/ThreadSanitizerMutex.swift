// ThreadSanitizer builds only: `Mutex` here means Relay's `SanitizerVisibleMutex`, which
// makes a contended lock's hand-over visible to the sanitizer (its file says why).
#if RELAY_THREAD_SANITIZER
import Relay

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
