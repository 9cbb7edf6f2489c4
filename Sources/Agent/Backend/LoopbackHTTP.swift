#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NK3Common

#if canImport(Glibc)
import Glibc
#endif

/// A minimal HTTP/1.0 GET for loopback health endpoints (kubelet healthz on 127.0.0.1:10248, k3s-io/k3s
/// pkg/daemons/agent/agent_linux.go).
///
/// Refuses any host that is not loopback: the agent never sends traffic off the node from here.
enum LoopbackHTTP {
    struct Response: Sendable {
        var status: Int
        var body: String
    }

    /// GETs `url`; nil if the URL is not loopback http, or nothing answered within `timeout`.
    static func get(_ url: String, timeout: TimeInterval = 2) async -> Response? {
        guard let c = URLComponents(string: url), c.scheme == "http", let host = c.host else { return nil }
        let isV6 = host == "::1" || host == "[::1]"
        guard isV6 || host.hasPrefix("127.") || host == "localhost" else { return nil }
        let port = UInt16(c.port ?? 80)
        let path = c.percentEncodedPath.isEmpty ? "/" : c.percentEncodedPath
        return await withCheckedContinuation { cont in
            DetachedThread.start(name: "nk3-loopback") {
                cont.resume(returning: blockingGet(v6: isV6, host: host, port: port, path: path, timeout: timeout))
            }
        }
    }

    private static func blockingGet(v6: Bool, host: String, port: UInt16, path: String, timeout: TimeInterval)
        -> Response?
    {
        let fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var tv = timeval(tv_sec: Int(timeout), tv_usec: Int((timeout - floor(timeout)) * 1_000_000))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let connected: Int32
        if v6 {
            var addr = sockaddr_in6()
            addr.sin6_family = sa_family_t(AF_INET6)
            addr.sin6_port = port.bigEndian
            addr.sin6_addr = in6addr_loopback
            connected = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in6>.size))
                }
            }
        } else {
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = port.bigEndian
            inet_pton(AF_INET, host == "localhost" ? "127.0.0.1" : host, &addr.sin_addr)
            connected = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
        }
        guard connected == 0 else { return nil }
        let request = Array("GET \(path) HTTP/1.0\r\nHost: \(host)\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count
        else { return nil }
        var data: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 4096)
        while data.count < 64 * 1024 {
            let n = buf.withUnsafeMutableBytes { recv(fd, $0.baseAddress, 4096, 0) }
            if n > 0 {
                data.append(contentsOf: buf[0..<n])
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                break
            }
        }
        let crlfcrlf: [UInt8] = [13, 10, 13, 10]
        guard let headerEnd = data.indices.dropLast(3).first(where: { data[$0..<$0 + 4].elementsEqual(crlfcrlf) })
        else { return nil }
        let head = String(decoding: data[..<headerEnd], as: UTF8.self)
        let statusLine = head.split(separator: "\r\n").first ?? ""
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
        return Response(status: status, body: String(decoding: data[(headerEnd + 4)...], as: UTF8.self))
    }
}
