import Foundation
import NK3Agent
import NK3Common
import NK3Coordinator
import NK3Protocol
import Synchronization
import Testing

/// Commands on a kept connection (`AgentClient(keepAlive: true)`, what a rollout uses), and what makes retrying one
/// safe: the agent answers the envelope it accepted last, sent again byte for byte, with its first answer and runs
/// nothing (`SerialStore`); the client sends a command again only when a reused connection closed before any answer.
@Suite("Channel: re-submitted envelopes", .timeLimit(.minutes(2)))
struct ChannelResubmissionTests {
    static func refusal(_ body: () async throws -> EnvelopeReceipt) async -> WireError.Code? {
        do {
            let receipt = try await body()
            Issue.record("accepted: \(receipt)")
            return nil
        } catch let error as AgentClientError {
            return error.wireError?.code
        } catch {
            Issue.record("\(error)")
            return nil
        }
    }

    @Test("the envelope accepted last, sent again byte for byte, gets its first receipt and runs once, also after an agent restart; any other envelope with that serial or an older one is refused")
    func identicalResubmissionIsAnsweredNotRun() async throws {
        let f = try ChannelFixture()
        let first = try await f.startServer()
        let client = try f.client(first, identity: f.operatorCert)
        // A confirm: its answer is on disk before it is sent (a reboot's only just after, see SerialStore).
        func confirm(serial: UInt64, validity: TimeInterval = 300) throws -> SignedEnvelope {
            try f.signer.sign(
                .confirm(ConfirmCommand(applySerial: 1)), node: ChannelFixture.node, serial: serial, now: Date(), validity: validity)
        }
        let envelope = try confirm(serial: 7)
        let receipt = try await client.submit(envelope)
        #expect(receipt.serial == 7)
        #expect(try await client.submit(envelope) == receipt)
        #expect(f.engine.handledSerials == [7])
        // Another envelope with the same serial (a different validity: other bytes, validly signed), an older one.
        let sameSerial = try confirm(serial: 7, validity: 299)
        #expect(await Self.refusal { try await client.submit(sameSerial) } == .replayedSerial)
        #expect(await Self.refusal { try await client.submit(try f.envelope(serial: 6)) } == .replayedSerial)
        #expect(f.engine.handledSerials == [7])
        await first.shutdown()

        // A new agent process on the same state directory: the answer survived with the serial.
        let second = try AgentServer(config: try f.serverConfig(), engine: f.engine, logger: channelQuietLogger())
        try await second.start()
        let c2 = try f.client(second, identity: f.operatorCert)
        #expect(try await c2.submit(envelope) == receipt)
        #expect(await Self.refusal { try await c2.submit(sameSerial) } == .replayedSerial)
        #expect(f.engine.handledSerials == [7])
        #expect(try await c2.metrics().contains("nk3_agent_envelopes_total{result=\"resubmitted\"} 1\n"))

        // Once a newer envelope is accepted, the old one is a replay like any other.
        _ = try await c2.submit(try f.envelope(serial: 8))
        #expect(await Self.refusal { try await c2.submit(envelope) } == .replayedSerial)
        #expect(f.engine.handledSerials == [7, 8])
        #expect(try f.persistedSerial() == 8)
        await second.shutdown()
    }

    @Test("a re-submission is verified again: once the envelope has expired it is refused as expired")
    func expiredResubmissionIsRefused() async throws {
        let f = try ChannelFixture()
        let clock = Mutex(Date())
        let server = try AgentServer(
            config: try f.serverConfig(), engine: f.engine, logger: channelQuietLogger(), now: { clock.withLock { $0 } })
        try await server.start()
        defer { Task { await server.shutdown() } }
        let client = try f.client(server, identity: f.operatorCert)
        let envelope = try f.envelope(serial: 3, now: clock.withLock { $0 }, validity: 60)
        let receipt = try await client.submit(envelope)
        #expect(try await client.submit(envelope) == receipt)
        clock.withLock { $0 = $0.addingTimeInterval(61) }
        #expect(await Self.refusal { try await client.submit(envelope) } == .expired)
        #expect(f.engine.handledSerials == [3])
    }

    @Test(
        "a command on a kept connection that closes before any answer is sent once more on a fresh connection and runs once",
        arguments: [ChannelCutProxy.Cut.request, .answer])
    func commandRetriedOnceOnFreshConnection(cut: ChannelCutProxy.Cut) async throws {
        let f = try ChannelFixture()
        let server = try await f.startServer()
        defer { Task { await server.shutdown() } }
        let proxy = try ChannelCutProxy(targetPort: try #require(server.port))
        defer { proxy.stop() }
        let client = try f.client(
            server, identity: f.operatorCert, port: proxy.port, keepAlive: true,
            reuse: .init(maxAge: .seconds(600), maxIdle: .seconds(600)))
        _ = try await client.status()
        #expect(proxy.connections == 1)

        // `.request`: the agent never sees the command (as when it closed the idle connection just then);
        // `.answer`: it carried the command out and the answer is lost (as when it went down right after).
        proxy.arm(cut)
        let receipt = try await client.submit(try f.envelope(serial: 5))
        #expect(receipt.serial == 5)
        #expect(proxy.cutsMade == 1, "the command went on the kept connection")
        #expect(proxy.connections == 2, "and once more on a fresh one")
        #expect(f.engine.handledSerials == [5], "run once")
        let metrics = try await client.metrics()
        #expect(metrics.contains("nk3_agent_envelopes_total{result=\"accepted\"} 1\n"), "\(metrics)")
        if case .answer = cut {
            #expect(metrics.contains("nk3_agent_envelopes_total{result=\"resubmitted\"} 1\n"), "\(metrics)")
        } else {
            #expect(!metrics.contains("resubmitted"), "\(metrics)")
        }
        #expect(proxy.connections == 2, "the fresh connection is kept in turn")
        #expect(server.acceptedConnectionCount == 2)
    }

    @Test("a command on a kept connection that the caller abandons (its timeout) while the answer is held back is not sent again")
    func commandNotRetriedAfterTimeout() async throws {
        let f = try ChannelFixture()
        let server = try await f.startServer()
        defer { Task { await server.shutdown() } }
        let proxy = try ChannelCutProxy(targetPort: try #require(server.port))
        defer { proxy.stop() }
        let client = try f.client(
            server, identity: f.operatorCert, port: proxy.port, keepAlive: true,
            reuse: .init(maxAge: .seconds(600), maxIdle: .seconds(600)))
        _ = try await client.status()
        let envelope = try f.envelope(serial: 5)
        proxy.arm(.answerSilently)
        // What the rollout's per-call timeout does (`withTimeout`: it cancels the call), here once the agent has
        // answered and the proxy has held the answer back, so that the moment does not depend on the machine's speed.
        let call = Task { try await client.submit(envelope) }
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(60)
        while proxy.cutsMade == 0, clock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
        #expect(proxy.cutsMade == 1, "the command went on the kept connection and the agent answered it")
        call.cancel()
        switch await call.result {
        case .success(let receipt): Issue.record("answered: \(receipt)")
        case .failure(let error): #expect((error as? AgentClientError)?.code == .timeout, "\(error)")
        }
        #expect(proxy.connections == 1, "and was not sent again")
        #expect(f.engine.handledSerials == [5])
    }
}
