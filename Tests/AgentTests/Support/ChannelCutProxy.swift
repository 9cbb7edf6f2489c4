import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A TCP proxy on 127.0.0.1 in front of one agent that a test can arm to end the connections open now at a chosen
/// moment: when the next bytes of a request arrive (the agent never sees it), or of an answer (the agent carried
/// the request out, the client never hears of it). TLS passes through untouched (end to end between client and
/// agent); connections opened after the arming are forwarded as usual. Plain blocking sockets on threads: test
/// support, not product code.
final class ChannelCutProxy: Sendable {
    enum Cut: Sendable, CustomStringConvertible {
        /// The client's next bytes are dropped and the connection closed (FIN both ways).
        case request
        /// The agent's next bytes are dropped and the connection closed.
        case answer
        /// The agent's next bytes, and all after, are dropped; the connection stays open.
        case answerSilently

        var description: String {
            switch self {
            case .request: "the request"
            case .answer: "the answer"
            case .answerSilently: "the answer, silently"
            }
        }
    }

    private struct Link {
        let client: Int32
        let upstream: Int32
        var cut: Cut?
    }

    private struct State {
        var links: [Int: Link] = [:]
        var connections = 0
        var cutsMade = 0
        var closed = false
    }

    /// The proxy's port on 127.0.0.1.
    let port: Int
    let targetPort: Int
    private let listener: Int32
    private let state = Mutex(State())

    init(targetPort: Int) throws {
        self.targetPort = targetPort
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ChannelCutProxyError("socket: errno \(errno)") }
        var addr = Self.loopback(port: 0)
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw ChannelCutProxyError("bind/listen on 127.0.0.1: errno \(errno)")
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: addr.sin_port))
        Thread { [self] in acceptLoop() }.start()
    }

    /// Connections accepted so far.
    var connections: Int { state.withLock { $0.connections } }
    /// Armed cuts that happened.
    var cutsMade: Int { state.withLock { $0.cutsMade } }

    /// Arms `cut` on every connection open now (each is cut once, at its next bytes in that direction).
    func arm(_ cut: Cut) {
        state.withLock { s in
            for key in s.links.keys { s.links[key]?.cut = cut }
        }
    }

    /// Stops listening and closes every connection.
    func stop() {
        state.withLock { s in
            guard !s.closed else { return }
            s.closed = true
            for link in s.links.values {
                shutdown(link.client, Int32(SHUT_RDWR))
                shutdown(link.upstream, Int32(SHUT_RDWR))
            }
            shutdown(listener, Int32(SHUT_RDWR))
            close(listener)
        }
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
            let upstream = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = Self.loopback(port: UInt16(targetPort))
            let ok = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(upstream, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            let id: Int? = state.withLock { s in
                guard !s.closed, upstream >= 0, ok == 0 else { return nil }
                s.connections += 1
                s.links[s.connections] = Link(client: client, upstream: upstream)
                return s.connections
            }
            guard let id else {
                if upstream >= 0 { close(upstream) }
                close(client)
                continue
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
                        s.links[id] = nil
                        close(client)
                        close(upstream)
                    }
                }
            }
            Thread { [self] in
                pump(id, from: client, to: upstream, cutting: .request)
                finish()
            }.start()
            Thread { [self] in
                pump(id, from: upstream, to: client, cutting: .answer)
                finish()
            }.start()
        }
    }

    /// Forwards until either side closes; `direction` says which armed cut applies to these bytes.
    private func pump(_ id: Int, from: Int32, to: Int32, cutting direction: Cut) {
        var buffer = [UInt8](repeating: 0, count: 16 * 1024)
        var silent = false
        while true {
            let n = buffer.withUnsafeMutableBytes { read(from, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return }
            if silent { continue }
            let cut: Cut? = state.withLock { s in
                guard let armed = s.links[id]?.cut else { return nil }
                switch (armed, direction) {
                case (.request, .request), (.answer, .answer), (.answerSilently, .answer):
                    s.links[id]?.cut = nil
                    s.cutsMade += 1
                    return armed
                default:
                    return nil
                }
            }
            switch cut {
            case .request?, .answer?: return  // dropped; `finish` closes both sides
            case .answerSilently?:
                silent = true
                continue
            case nil: break
            }
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
struct ChannelCutProxyError: Error, CustomStringConvertible {
    var description: String
    init(_ d: String) { description = d }
}
