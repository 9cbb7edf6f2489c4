import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A TCP proxy on 127.0.0.1 between the coordinator and one agent, that a test can cut: every open
/// connection is reset and new ones are closed at once (the coordinator sees "connection reset / closed",
/// as when a switch port or a firewall rule drops the node). TLS passes through untouched (end to end
/// between coordinator and agent). Plain blocking sockets on threads: test support, not product code.
final class E2EProxy: Sendable {
    private struct State {
        var cut = false
        var closed = false
        var open: Set<Int32> = []
        var connections = 0
    }

    /// The proxy's port on 127.0.0.1.
    let port: Int
    let targetPort: Int
    private let listener: Int32
    private let state = Mutex(State())

    /// Listens on an ephemeral port of 127.0.0.1 and forwards to 127.0.0.1:`targetPort`.
    init(targetPort: Int) throws {
        self.targetPort = targetPort
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw E2EProxyError("socket: errno \(errno)") }
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var addr = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 64) == 0 else {
            close(fd)
            throw E2EProxyError("bind/listen on 127.0.0.1: errno \(errno)")
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: addr.sin_port))
        let t = Thread { [self] in acceptLoop() }
        t.start()
    }

    /// Connections accepted so far (cut or not).
    var connections: Int { state.withLock { $0.connections } }

    /// Cuts the link: resets every open connection, closes new ones at once.
    func cut() {
        // Under the lock: a pump thread closes its descriptors under it too, so none is reused meanwhile.
        state.withLock { s in
            s.cut = true
            for fd in s.open { shutdown(fd, Int32(SHUT_RDWR)) }
        }
    }

    /// Heals the link: new connections are forwarded again.
    func heal() { state.withLock { $0.cut = false } }

    /// Stops listening and resets everything.
    func stop() {
        let first = state.withLock { s -> Bool in
            defer { s.closed = true }
            return !s.closed
        }
        guard first else { return }
        cut()
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    private static func loopback(port: UInt16) -> sockaddr_in {
        var a = sockaddr_in()
        a.sin_family = sa_family_t(AF_INET)
        a.sin_port = port.bigEndian
        a.sin_addr.s_addr = inet_addr("127.0.0.1")
        return a
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 {
                if errno == EINTR { continue }
                return  // listener closed
            }
            let (cut, closed) = state.withLock { s -> (Bool, Bool) in
                s.connections += 1
                return (s.cut, s.closed)
            }
            if closed {
                close(client)
                return
            }
            if cut {
                Self.reset(client)
                continue
            }
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = Self.loopback(port: UInt16(targetPort))
            let ok = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            if upstream < 0 || ok != 0 {
                if upstream >= 0 { close(upstream) }
                Self.reset(client)  // the agent is down: as if the node refused
                continue
            }
            state.withLock { s in
                s.open.insert(client)
                s.open.insert(upstream)
            }
            let done = Mutex(0)
            let finish: @Sendable () -> Void = { [self] in
                let last = done.withLock { n -> Bool in
                    n += 1
                    return n == 2
                }
                state.withLock { s in
                    shutdown(client, Int32(SHUT_RDWR))
                    shutdown(upstream, Int32(SHUT_RDWR))
                    if last {
                        s.open.remove(client)
                        s.open.remove(upstream)
                        close(client)
                        close(upstream)
                    }
                }
            }
            Thread {
                Self.pump(from: client, to: upstream)
                finish()
            }.start()
            Thread {
                Self.pump(from: upstream, to: client)
                finish()
            }.start()
        }
    }

    /// Closes with RST (SO_LINGER 0), like a dropped connection.
    private static func reset(_ fd: Int32) {
        var l = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, socklen_t(MemoryLayout<linger>.size))
        close(fd)
    }

    private static func pump(from: Int32, to: Int32) {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { read(from, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            var sent = 0
            while sent < n {
                let m = buffer.withUnsafeBytes { send(to, $0.baseAddress! + sent, n - sent, Int32(MSG_NOSIGNAL)) }
                if m < 0 && errno == EINTR { continue }
                if m <= 0 { return }
                sent += m
            }
        }
    }
}

/// The proxy could not start.
struct E2EProxyError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
