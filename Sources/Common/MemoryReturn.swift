#if canImport(Glibc)
import Glibc
#endif

/// Gives memory back to the system once a burst of connections is over. After a flood the allocator keeps the
/// freed heap of thousands of TLS connections (glibc returns only the top of the main arena by itself); the
/// agent's RSS stayed 12 MiB above its idle size for good (scripts/agent-flood.py). `malloc_trim(0)` releases
/// the free pages of every arena (glibc manual, "Memory Allocation Tunables"; malloc_trim(3)).
enum MemoryReturn {
    /// How many connections (established or refused) make a burst worth a trim.
    static let burst = 1000

    /// glibc's `malloc_trim` (declared in malloc.h, which Swift's Glibc module does not import), looked up once;
    /// nil on another C library.
    static let trim: (@convention(c) (Int) -> Int32)? = {
        #if canImport(Glibc)
        guard let symbol = dlsym(nil, "malloc_trim") else { return nil }
        return unsafeBitCast(symbol, to: (@convention(c) (Int) -> Int32).self)
        #else
        return nil
        #endif
    }()

    /// Checks every `interval`: once `burst` connections have come and gone since the last trim and at most
    /// `quiet` are open, trims. Ends when cancelled.
    static func watch(
        _ admission: ConnectionAdmission, interval: Duration = .seconds(5), quiet: Int = 4
    ) -> Task<Void, Never> {
        Task.detached(priority: .background) {
            func seen() -> Int { admission.establishedTotal + admission.refusals.values.reduce(0, +) }
            var atLastTrim = seen()
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                let now = seen()
                let open = admission.counts
                if now - atLastTrim >= burst, open.handshaking + open.established <= quiet {
                    _ = trim?(0)
                    atLastTrim = now
                }
            }
        }
    }
}
