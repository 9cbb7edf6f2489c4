import Foundation
import NK3Common
import NK3Coordinator
import NK3Protocol
import NK3Simulation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("AgentClient: cancelling a call abandons it", .timeLimit(.minutes(2)))
struct AgentClientCancellationTests {
    @Test("a status call to a peer that never answers ends as soon as its task is cancelled, not at its own timeout")
    func cancelAbandonsASilentPeer() async throws {
        // A listener that never accepts: the kernel completes the TCP handshake, nothing ever answers — what a
        // node that went down mid-request (or a wedged agent) looks like from the coordinator.
        let listener = try LoopbackSockets.bind(listen: 16)
        defer { close(listener.fd) }
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
