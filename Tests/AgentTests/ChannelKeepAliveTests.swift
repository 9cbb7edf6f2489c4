import Foundation
import NK3Agent
import NK3Common
import NK3Coordinator
import NK3Protocol
import NK3Simulation
import Testing

/// `AgentClient(keepAlive: true)`, what a rollout uses: reads and commands share one mTLS connection, and a kept
/// connection the agent closed (restart, reboot) is replaced without the caller noticing.
@Suite("Channel: kept-alive connections", .timeLimit(.minutes(2)))
struct ChannelKeepAliveTests {
    @Test("reads and commands on a keep-alive client share one TLS connection; a command sent with Connection: close (a reboot) leaves none kept; a plain client opens one per call")
    func requestsShareOneConnection() async throws {
        let fixture = try ChannelFixture()
        let server = try await fixture.startServer()
        defer { Task { await server.shutdown() } }
        // Reuse limits far beyond this test's length: on a loaded machine a command can take seconds, and the
        // standard 5 s idle limit would make the count below depend on the machine's speed.
        let keep = try fixture.client(
            server, identity: fixture.operatorCert, keepAlive: true, reuse: .init(maxAge: .seconds(600), maxIdle: .seconds(600)))

        for _ in 0..<5 { _ = try await keep.status() }
        _ = try await keep.operation(id: "op-1")
        // `?wait=5` routes like the plain read (this test engine cannot wait, so it answers at once).
        #expect(try await keep.operation(id: "op-1", waitUpTo: .seconds(5)).logTail == "built")
        _ = try await keep.files()
        #expect(server.acceptedConnectionCount == 1, "8 reads, one handshake")

        _ = try await keep.submit(try fixture.envelope(serial: 1))
        _ = try await keep.submit(try fixture.envelope(serial: 2))
        _ = try await keep.status()
        #expect(server.acceptedConnectionCount == 1, "commands go on the kept connection too, and reads after them")
        _ = try await keep.submit(try fixture.envelope(serial: 3), leaveConnectionOpen: false)
        #expect(server.acceptedConnectionCount == 1)
        _ = try await keep.status()
        #expect(server.acceptedConnectionCount == 2, "the connection closed with that answer: a fresh one")
        _ = try await keep.status()
        #expect(server.acceptedConnectionCount == 2, "which is kept in turn")
        #expect(fixture.engine.handledSerials == [1, 2, 3])

        let plain = try fixture.client(server, identity: fixture.operatorCert)
        for _ in 0..<3 { _ = try await plain.status() }
        #expect(server.acceptedConnectionCount == 5)
        let metrics = try await plain.metrics()
        #expect(metrics.contains("nk3_agent_connections_total 6"), "\(metrics)")
    }

    @Test("connections whose handshake fails (no client certificate, one from another CA) are not counted as established")
    func failedHandshakesAreNotCounted() async throws {
        let fixture = try ChannelFixture()
        let server = try await fixture.startServer()
        defer { Task { await server.shutdown() } }
        let anonymous = try fixture.client(server, identity: nil)
        await #expect(throws: AgentClientError.self) { _ = try await anonymous.status() }
        let stranger = try ClusterCA.create(cluster: "other").issueClient(name: "mallory", role: .operator)
        await #expect(throws: AgentClientError.self) {
            _ = try await fixture.client(server, identity: stranger).status()
        }
        #expect(server.acceptedConnectionCount == 0)
        let metrics = try await fixture.client(server, identity: fixture.operatorCert).metrics()
        #expect(metrics.contains("nk3_agent_connections_total 1\n"), "\(metrics)")
    }

    @Test("a kept connection the agent closed by restarting is replaced: the next read succeeds on a fresh connection to the new process")
    func restartedAgentIsReconnected() async throws {
        let fixture = try ChannelFixture()
        // A reserved port outside the ephemeral range, as an agent's is: any outgoing connection of a parallel test
        // could take an ephemeral one between the stop and the restart, and another test's server an unreserved one
        // (see LoopbackSockets.PortReservation).
        let (firstServer, reservation) = try await LoopbackSockets.bindingStablePort { candidate in
            var config = try fixture.serverConfig()
            config.port = candidate
            let server = try AgentServer(config: config, engine: fixture.engine, logger: channelQuietLogger())
            try await server.start()
            return server
        }
        let port = try #require(firstServer.port)
        defer { withExtendedLifetime(reservation) {} }
        let keep = try fixture.client(firstServer, identity: fixture.readerCert, keepAlive: true)
        _ = try await keep.status()
        _ = try await keep.status()
        #expect(firstServer.acceptedConnectionCount == 1)

        await firstServer.shutdown()  // closes the kept connection from the agent's side
        var config = try fixture.serverConfig()
        config.port = port
        let second = try AgentServer(config: config, engine: fixture.engine, logger: channelQuietLogger())
        do {
            // Retried while a child being spawned elsewhere in this process still holds the old listener.
            try await LoopbackSockets.rebinding { try await second.start() }
        } catch {
            Issue.record("rebinding \(port) after shutdown: \(error); sockets on it: \(LoopbackSockets.sockets(onPort: port))")
            throw error
        }
        defer { Task { await second.shutdown() } }

        let status = try await keep.status()
        #expect(status.hostname == "node-a")
        #expect(second.acceptedConnectionCount == 1)
        _ = try await keep.status()
        #expect(second.acceptedConnectionCount == 1, "and is kept again")
    }

    @Test("a keep-alive client the agent refuses (certificate from another CA) gets tls_refused on every read, nothing kept")
    func refusedClientKeepsNothing() async throws {
        let fixture = try ChannelFixture()
        let server = try await fixture.startServer()
        defer { Task { await server.shutdown() } }
        let stranger = try ClusterCA.create(cluster: "other").issueClient(name: "eve", role: .operator)
        let keep = try fixture.client(server, identity: stranger, keepAlive: true)
        for _ in 0..<2 {
            do {
                _ = try await keep.status()
                Issue.record("a client certificate from another CA was served")
            } catch {
                #expect(error.code == .tlsRefused, "\(error)")
            }
        }
        #expect(server.acceptedConnectionCount ?? 0 <= 2, "nothing kept: at most one handshake per read")
    }
}
