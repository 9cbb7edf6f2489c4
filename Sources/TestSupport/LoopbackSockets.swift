import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// TCP sockets on 127.0.0.1 with a port the kernel picks, for tests and benchmarks.
public enum LoopbackSockets {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// A TCP socket bound to 127.0.0.1 on `port` (0: a kernel-chosen one), listening with `backlog` if given (a
    /// listener that never accepts: the kernel still completes handshakes into the queue). The caller closes `fd`.
    public static func bind(port: Int = 0, listen backlog: Int32? = nil) throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket() failed: \(String(cString: strerror(errno)))") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = UInt16(port).bigEndian
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &addr) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                Glibc.bind(fd, sa, len) == 0 && getsockname(fd, sa, &len) == 0
            }
        }
        guard ok, backlog.map({ Glibc.listen(fd, $0) == 0 }) ?? true else {
            let why = String(cString: strerror(errno))
            close(fd)
            throw Failure(description: "cannot bind\(backlog == nil ? "" : " and listen on") 127.0.0.1:\(port): \(why)")
        }
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }

    /// The kernel's range for ports of outgoing connections and `bind(port 0)` (`ip_local_port_range`).
    public static func ephemeralPortRange() -> ClosedRange<Int> {
        let text = (try? String(contentsOfFile: "/proc/sys/net/ipv4/ip_local_port_range", encoding: .utf8)) ?? ""
        let bounds = text.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" }).compactMap { Int($0) }
        guard bounds.count == 2, bounds[0] <= bounds[1] else { return 32768...60999 }  // Linux's default
        return bounds[0]...bounds[1]
    }

    /// Up to `count` random ports just below the ephemeral range, for a server that must bind the same port again
    /// after a restart (a simulated agent across a reboot). A port inside the range can be taken meanwhile by any
    /// outgoing connection's local end (e.g. 127.0.0.1:P → another test's server), and then `bind` fails with
    /// EADDRINUSE even with SO_REUSEADDR; ports outside it are only ever taken by explicit binds, as a production
    /// agent's fixed port is. Empty when the range leaves no room below it.
    public static func portsBelowEphemeralRange(count: Int) -> [Int] {
        let low = ephemeralPortRange().lowerBound
        guard low > 2048 else { return [] }
        let pool = max(1024, low - 12_000)..<low
        return (0..<count).map { _ in Int.random(in: pool) }
    }

    /// Runs `bind` with ports below the ephemeral range (`portsBelowEphemeralRange`) until one succeeds, then with 0
    /// (a kernel-chosen port) as the last resort; returns what the first success returned, or throws the last failure.
    /// For servers that must get the same port again after a restart.
    public static func bindingStablePort<T>(_ bind: (Int) async throws -> T) async throws -> T {
        for candidate in portsBelowEphemeralRange(count: 16) {
            if let bound = try? await bind(candidate) { return bound }  // taken: the next one
        }
        return try await bind(0)
    }

    /// A free TCP port on 127.0.0.1 (bound, read, closed: someone else may take it before the caller binds it,
    /// which is unlikely on a quiet host; callers that can should retry).
    public static func freePort() throws -> Int {
        let (fd, port) = try bind()
        close(fd)
        return port
    }
}
