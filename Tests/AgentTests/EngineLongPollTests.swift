import Foundation
import NK3Agent
import NK3Protocol
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// `GET /v1/operations/ID?wait=` at engine level: the answer is held while the apply is being applied. The fake
/// `nixos-rebuild` blocks on a FIFO until the test writes to it, so "still rebuilding" is a fact, not a race.
@Suite("ApplyEngine: long poll of an operation", .serialized, .timeLimit(.minutes(2)))
struct EngineLongPollTests {
    @Test("a long poll made while the build is held answers awaiting_confirm once it is released; a short one answers rebuilding at its limit; a cancelled one at once")
    func longPollHeldUntilRebuildEnds() async throws {
        let fake = try EngineFakeRoot()
        let fifo = "\(fake.root)/control/hold-build"
        #expect(mkfifo(fifo, 0o600) == 0)
        let engine = try EngineKit.engine(fake, clock: ManualAgentClock())
        await engine.start()
        _ = try await engine.handle(EngineKit.apply(EngineKit.newFiles(), serial: 5))

        // The build is now held; wait until the engine says so (each look is itself a short long poll).
        let start = ContinuousClock.now
        while await engine.operation(id: "apply-5", waitingUpTo: .milliseconds(20))?.operation?.phase != .rebuilding {
            try #require(start.duration(to: .now) < .seconds(60), "the apply never reached rebuilding")
        }
        let short = await engine.operation(id: "apply-5", waitingUpTo: .milliseconds(50))
        #expect(short?.operation?.phase == .rebuilding, "answered at its limit, the build still held")

        let cancelled = Task { await engine.operation(id: "apply-5", waitingUpTo: .seconds(3600)) }
        cancelled.cancel()
        #expect(await cancelled.value?.operation?.phase == .rebuilding, "a cancelled long poll answers at once")

        let held = Task { await engine.operation(id: "apply-5", waitingUpTo: .seconds(3600)) }
        // Release the build: opening the FIFO for writing pairs with the script's blocked read.
        let writer = try #require(FileHandle(forWritingAtPath: fifo))
        writer.write(Data("go\n".utf8))
        try writer.close()
        let report = await held.value
        #expect(report?.operation?.phase == .awaitingConfirm, "\(String(describing: report?.operation))")
        // Settled answers are never held.
        let again = await engine.operation(id: "apply-5", waitingUpTo: .seconds(3600))
        #expect(again?.operation?.phase == .awaitingConfirm)
        #expect(await engine.operation(id: "apply-404", waitingUpTo: .seconds(3600)) == nil)
    }
}
