/// A FIFO with amortized O(1) push and pop that reuses its storage (no allocation in
/// steady state).
struct RingQueue<Element> {
    private var storage: [Element?] = []
    private var head = 0
    private(set) var count = 0

    init(capacity: Int = 16) {
        self.storage = [Element?](repeating: nil, count: Swift.max(capacity, 1))
    }

    var isEmpty: Bool { self.count == 0 }

    mutating func append(_ element: Element) {
        if self.count == self.storage.count { self.grow() }
        self.storage[(self.head + self.count) % self.storage.count] = element
        self.count += 1
    }

    var first: Element? { self.count == 0 ? nil : self.storage[self.head] }

    subscript(offset: Int) -> Element {
        get { self.storage[(self.head + offset) % self.storage.count]! }
        set { self.storage[(self.head + offset) % self.storage.count] = newValue }
    }

    @discardableResult
    mutating func popFirst() -> Element? {
        guard self.count > 0 else { return nil }
        let element = self.storage[self.head]
        self.storage[self.head] = nil
        self.head = (self.head + 1) % self.storage.count
        self.count -= 1
        return element
    }

    mutating func removeAll() {
        while self.popFirst() != nil {}
    }

    private mutating func grow() {
        var bigger = [Element?](repeating: nil, count: self.storage.count * 2)
        for i in 0..<self.count {
            bigger[i] = self.storage[(self.head + i) % self.storage.count]
        }
        self.storage = bigger
        self.head = 0
    }
}

/// Exponential backoff between a first and a longest delay.
struct Backoff {
    let first: UInt64
    let longest: UInt64
    private(set) var current: UInt64

    init(first: Duration, longest: Duration) {
        self.first = Swift.max(1, first.nanoseconds)
        self.longest = Swift.max(self.first, longest.nanoseconds)
        self.current = self.first
    }

    /// The next delay (and doubles the one after).
    mutating func next() -> UInt64 {
        let delay = self.current
        self.current = Swift.min(self.longest, self.current.saturatingAdding(self.current))
        return delay
    }

    mutating func reset() { self.current = self.first }
}

extension Duration {
    /// Whole nanoseconds (saturating); 0 for a negative duration (a deadline already past).
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = self.components
        // `components` truncates toward zero, so less than a second below zero comes as 0 seconds
        // and negative attoseconds: both signs must be checked, or the conversion below traps.
        if seconds < 0 || attoseconds < 0 { return 0 }
        let (ns, overflow) = UInt64(seconds).multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return UInt64.max }
        return ns.saturatingAdding(UInt64(attoseconds / 1_000_000_000))
    }
}

extension UInt64 {
    /// `self + other`, or `UInt64.max` where that overflows: a deadline that far away means
    /// "never", not an arithmetic trap on the ring thread.
    func saturatingAdding(_ other: UInt64) -> UInt64 {
        let (sum, overflow) = self.addingReportingOverflow(other)
        return overflow ? UInt64.max : sum
    }
}
