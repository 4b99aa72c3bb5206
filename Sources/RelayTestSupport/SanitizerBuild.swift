/// What kind of sanitizer build the tests run in.
public enum SanitizerBuild {
    /// Whether this is a ThreadSanitizer build (`scripts/sanitize thread`, which passes
    /// `-DRELAY_THREAD_SANITIZER`). Code runs several times slower there, so a test whose
    /// assertions need a plain debug build's speed (a rate kept up, an interval not yet over)
    /// is disabled in it with ``isThread``; the plain and AddressSanitizer passes still run it.
    public static var isThread: Bool {
        #if RELAY_THREAD_SANITIZER
        return true
        #else
        return false
        #endif
    }
}
