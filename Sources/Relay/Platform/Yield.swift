internal import Glibc

/// sched_yield(2), for the rare spin loops (exclusive-writer handshakes).
@inline(never)
func sched_yield_() {
    _ = sched_yield()
}
