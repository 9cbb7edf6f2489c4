import Foundation
import NK3Agent
import NK3Coordinator
import NK3Protocol
import Testing

/// A reboot waits for its answer to be written out, not for a fixed delay (which every node of a rollout paid).
@Suite("Reboot after the answer is out", .timeLimit(.minutes(2)))
struct RebootAfterAnswerTests {
    @Test("over real mTLS the server reports a reboot's answer as written out, and no other command's")
    func serverReportsTheRebootAnswer() async throws {
        let f = try ChannelFixture()
        let server = try await f.startServer()
        let client = try f.client(server, identity: f.operatorCert)
        _ = try await client.submit(try f.envelope(serial: 5))  // a reboot
        #expect(await EngineKit.eventually("reboot answer reported") { f.engine.sent.withLock { $0 } == [5] })
        let confirm = try f.signer.sign(
            .confirm(ConfirmCommand(applySerial: 5)), node: ChannelFixture.node, serial: 6, now: Date())
        _ = try await client.submit(confirm)
        _ = try await client.submit(try f.envelope(serial: 7))  // reported after the confirm's answer was written
        #expect(await EngineKit.eventually("second reboot answer reported") { f.engine.sent.withLock { $0 } == [5, 7] })
        #expect(f.engine.handledSerials == [5, 6, 7])
        await server.shutdown()
    }

    @Test("the engine reboots once told its answer is out, long before its delay; not before")
    func engineRebootsWhenTheAnswerIsOut() async throws {
        let fake = try EngineFakeRoot()
        let engine = try ApplyEngine(
            system: fake.system(), stateDir: fake.stateDir, k3sUnit: "k3s", clock: ManualAgentClock(),
            rebootDelay: .seconds(3600), logger: EngineKit.logger)
        let receipt = try await engine.handle(EngineKit.payload(.reboot(RebootCommand(reason: "test")), serial: 9))
        #expect(receipt.message.contains("as soon as this answer is out"))
        await engine.responseSent(serial: 8)  // another command's answer: not this reboot's
        #expect(fake.rebootCount == 0, "no reboot before the answer is out (the delay is an hour)")
        await engine.responseSent(serial: 9)
        #expect(await EngineKit.eventually("rebooted") { fake.rebootCount == 1 })
    }
}
