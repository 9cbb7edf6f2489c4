import Foundation
import NK3Common
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// TCP sockets on 127.0.0.1 for tests and benchmarks: kernel-picked ports, and reserved stable ones.
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

    /// A port just below the ephemeral range that no other caller in this process is handed while this lives, for a
    /// server that must bind the same port again after a restart (a simulated agent across a reboot). A port inside
    /// the range can be taken meanwhile by any outgoing connection's local end (e.g. 127.0.0.1:P → another test's
    /// server), and then `bind` fails with EADDRINUSE even with SO_REUSEADDR; ports outside it are only taken by
    /// explicit binds, as a production agent's fixed port is. The reservation keeps the other explicit binders of
    /// this process (parallel tests, other simulated agents) off the port while its server is down: without it, a
    /// test restarting its server could find its port taken by another test's first start. (CI stop 11's failed
    /// rebind had another cause, a spawning child holding the old listener: see `rebinding`.)
    public final class PortReservation: Sendable {
        public let port: Int
        fileprivate init(_ port: Int) { self.port = port }
        deinit { _ = LoopbackSockets.reserved.withLock { $0.remove(port) } }
    }

    fileprivate static let reserved = Mutex<Set<Int>>([])

    /// Up to `count` reservations of random, so far unreserved ports below the ephemeral range, tried in order by
    /// the callers below (a reservation not kept is released when dropped). Empty when the range leaves no room.
    static func candidatePorts(count: Int) -> [PortReservation] {
        let low = ephemeralPortRange().lowerBound
        guard low > 2048 else { return [] }
        let pool = max(1024, low - 12_000)..<low
        let ports = reserved.withLock { taken -> [Int] in
            var picked: [Int] = []
            for _ in 0..<count * 4 where picked.count < count {
                let port = Int.random(in: pool)
                if taken.insert(port).inserted { picked.append(port) }
            }
            return picked
        }
        return ports.map(PortReservation.init)
    }

    /// Runs `bind` with reserved ports below the ephemeral range (see `PortReservation`) until one succeeds, then
    /// with 0 (a kernel-chosen port) as the last resort; returns what the first success returned with the
    /// reservation to keep for as long as the port must stay the caller's (nil after the last resort), or throws
    /// the last failure. For servers that must get the same port again after a restart.
    public static func bindingStablePort<T>(_ bind: (Int) async throws -> T) async throws -> (T, PortReservation?) {
        for candidate in candidatePorts(count: 16) {
            if let bound = try? await bind(candidate.port) { return (bound, candidate) }  // taken: the next one
        }
        return (try await bind(0), nil)
    }

    /// A reserved port below the ephemeral range that was free a moment ago (bound, closed), for a server in
    /// another process (an `nk3-agent` child): no outgoing connection can take it, and no other caller in this
    /// process is handed it while the reservation lives.
    public static func reserveStablePort() throws -> PortReservation {
        for candidate in candidatePorts(count: 16) {
            if let (fd, _) = try? bind(port: candidate.port) {
                close(fd)
                return candidate
            }
        }
        throw Failure(description: "no free port below the ephemeral range \(ephemeralPortRange())")
    }

    /// Runs `bind` until it succeeds or fails other than with EADDRINUSE, for up to `within` (every 20 ms), for a
    /// test server that binds the port its predecessor in this process just closed. That port can still be held for
    /// a moment by a child that another thread of this process is spawning: the child starts with a copy of every
    /// descriptor (NIO's sockets are not CLOEXEC, and even CLOEXEC ones live until the child's exec or its
    /// close-from action), so `bind` fails although a moment later no socket is on the port (seen in the full
    /// suite: EADDRINUSE, and /proc/net/tcp empty for the port right after). A production agent restarts as a new
    /// process, after the old one's sockets are gone; the simulated one retries like systemd (`startRetrying`).
    @discardableResult
    public static func rebinding<T>(within: Duration = .seconds(10), _ bind: () async throws -> T) async throws -> T {
        let start = ContinuousClock.now
        var retries = 0
        while true {
            do {
                let bound = try await bind()
                if retries > 0 {  // visible in CI logs: how often, and for how long, this happens
                    FileHandle.standardError.write(Data(
                        "[test support] rebind succeeded after \(retries) EADDRINUSE retries, \(ContinuousClock.now - start)\n".utf8))
                }
                return bound
            } catch where "\(error)".contains("Address already in use") && ContinuousClock.now - start < within {
                retries += 1
                try await Task.sleep(for: .milliseconds(20))
            }
        }
    }

    /// The TCP sockets of this host whose local port is `port` ("LISTEN 127.0.0.1:P <- 0.0.0.0:0 inode 123", from
    /// /proc/net/tcp and tcp6), for failure messages: who holds a port a bind found in use.
    public static func sockets(onPort port: Int) -> [String] {
        let states = [
            "01": "ESTABLISHED", "02": "SYN_SENT", "03": "SYN_RECV", "04": "FIN_WAIT1", "05": "FIN_WAIT2",
            "06": "TIME_WAIT", "07": "CLOSE", "08": "CLOSE_WAIT", "09": "LAST_ACK", "0A": "LISTEN", "0B": "CLOSING",
        ]
        func endpoint(_ hex: Substring) -> (String, Int)? {
            let parts = hex.split(separator: ":")
            guard parts.count == 2, let p = Int(parts[1], radix: 16) else { return nil }
            let a = parts[0]
            if a.count == 8, let v = UInt32(a, radix: 16) {  // little-endian IPv4
                return ("\(v & 0xff).\((v >> 8) & 0xff).\((v >> 16) & 0xff).\(v >> 24)", p)
            }
            return (String(a), p)
        }
        var found: [String] = []
        for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
            // Read with the EINTR-retrying loop: Foundation's file reading gives up on an interrupted read, and a
            // process running children sees interrupted reads (a full-suite run under load found nothing here).
            let fd = open(file, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            guard let data = try? SecureFiles.readAll(fd, path: file) else { continue }
            let text = String(decoding: data, as: UTF8.self)
            for line in text.split(separator: "\n").dropFirst() {
                let f = line.split(separator: " ", omittingEmptySubsequences: true)
                guard f.count > 9, let local = endpoint(f[1]), local.1 == port, let remote = endpoint(f[2]) else { continue }
                found.append("\(states[String(f[3])] ?? String(f[3])) \(local.0):\(local.1) <- \(remote.0):\(remote.1) inode \(f[9])")
            }
        }
        return found
    }

    /// A free TCP port on 127.0.0.1 (bound, read, closed: someone else may take it before the caller binds it,
    /// which is unlikely on a quiet host; callers that can should retry).
    public static func freePort() throws -> Int {
        let (fd, port) = try bind()
        close(fd)
        return port
    }
}
