import Foundation
import NK3Common
import NK3Coordinator
import NK3Protocol
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A listening socket that never accepts: the kernel completes the TCP handshake, nothing ever answers —
/// what a node that went down mid-request (or a wedged agent) looks like from the coordinator.
private final class SilentListener {
    let fd: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EIO) }
        self.fd = fd
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = 0
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else {
            close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        self.port = Int(UInt16(bigEndian: addr.sin_port))
    }

    deinit { close(fd) }
}

@Suite("AgentClient: cancelling a call abandons it", .timeLimit(.minutes(2)))
struct AgentClientCancellationTests {
    @Test("a status call to a peer that never answers ends as soon as its task is cancelled, not at its own timeout")
    func cancelAbandonsASilentPeer() async throws {
        let listener = try SilentListener()
        let ca = try ClusterCA.create(cluster: "cancel")
        let reader = try ca.issueClient(name: "reader", role: .reader)
        // The client's own timeout is far beyond the test's time limit: only cancellation can end the call in time.
        let client = try AgentClient(
            endpoint: AgentEndpoint(host: "127.0.0.1", port: listener.port, expectedName: "node-a"),
            trustRoots: try TLSConfigs.trustRoots(pem: try ca.certificatePEM),
            identity: try TLSIdentity(certificatePEM: reader.certificatePEM, privateKeyPEM: reader.privateKeyPEM),
            timeout: .seconds(3600))
        let call = Task { () -> AgentClientError? in
            do throws(AgentClientError) {
                _ = try await client.status()
                return nil
            } catch {
                return error
            }
        }
        // Wait until the connection is in the listener's queue (the call is past connect and waiting for TLS).
        var pending = pollfd(fd: listener.fd, events: Int16(POLLIN), revents: 0)
        #expect(poll(&pending, 1, 60_000) == 1, "the client never connected")
        call.cancel()
        let error = await call.value
        #expect(error?.code == .timeout, "\(String(describing: error))")
        #expect(error?.message.contains("abandoned") == true, "\(String(describing: error))")
    }
}
