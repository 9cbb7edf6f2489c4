import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// TCP sockets on 127.0.0.1 with a port the kernel picks, for tests and benchmarks.
public enum LoopbackSockets {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    /// A TCP socket bound to 127.0.0.1 on a kernel-chosen port, listening with `backlog` if given (a listener
    /// that never accepts: the kernel still completes handshakes into the queue). The caller closes `fd`.
    public static func bind(listen backlog: Int32? = nil) throws -> (fd: Int32, port: Int) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket() failed: \(String(cString: strerror(errno)))") }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = 0
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
            throw Failure(description: "cannot bind\(backlog == nil ? "" : " and listen on") 127.0.0.1: \(why)")
        }
        return (fd, Int(UInt16(bigEndian: addr.sin_port)))
    }

    /// A free TCP port on 127.0.0.1 (bound, read, closed: someone else may take it before the caller binds it,
    /// which is unlikely on a quiet host; callers that can should retry).
    public static func freePort() throws -> Int {
        let (fd, port) = try bind()
        close(fd)
        return port
    }
}
