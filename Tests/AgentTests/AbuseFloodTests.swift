import Foundation
import NIOCore
import NIOPosix
import NK3Agent
import NK3Common
import NK3Coordinator
import NK3Protocol
import Synchronization
import Testing

/// Connection starvation (issue 16 item 2): a flood of plain TCP connections and of TLS handshakes that never finish,
/// from other addresses, while a rollout-style client (status, then a signed command, on fresh mTLS connections)
/// keeps working. Real agent server, real sockets on the loopback network (127.0.0.2 and 127.0.0.3 are the attackers'
/// addresses, 127.0.0.1 the coordinator's: Linux routes all of 127.0.0.0/8 to lo).
///
/// Quick size in the suite; `NK3_FLOOD_FULL=1` runs the size (20,000 plain connections, 2,000 slow
/// handshakes) for the figures in docs/RELIABILITY.md. Measured numbers are printed with an `[abuse]` prefix; RSS is
/// this test process's (agent and attackers together).
@Suite("Abuse: connection floods never lock an operator out", .serialized, .timeLimit(.minutes(5)))
struct AbuseFloodTests {
    static let full = ProcessInfo.processInfo.environment["NK3_FLOOD_FULL"] == "1"

    /// Opens TCP connections from `source` to the agent, at most `concurrent` open at once, `total` in all; each one
    /// sends `preamble` (nothing: a plain connection; a partial ClientHello: a stalled handshake) and then waits for the
    /// agent to close it. Returns when all `total` were made and closed.
    final class Flood: Sendable {
        let opened = Atomic<Int>(0)
        let closedByServer = Atomic<Int>(0)
        let connectFailures = Atomic<Int>(0)

        func run(source: String, port: Int, total: Int, concurrent: Int, preamble: [UInt8]) async {
            await withTaskGroup(of: Void.self) { group in
                var next = 0
                func add() {
                    guard next < total else { return }
                    next += 1
                    group.addTask { await self.one(source: source, port: port, preamble: preamble) }
                }
                for _ in 0..<concurrent { add() }
                while await group.next() != nil { add() }
            }
        }

        private func one(source: String, port: Int, preamble: [UInt8]) async {
            do {
                let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                    .bind(to: try SocketAddress(ipAddress: source, port: 0))
                    .connect(host: "127.0.0.1", port: port) { channel in
                        channel.eventLoop.makeCompletedFuture {
                            try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                        }
                    }
                opened.add(1, ordering: .relaxed)
                try await channel.executeThenClose { inbound, outbound in
                    if !preamble.isEmpty { try? await outbound.write(ByteBuffer(bytes: preamble)) }
                    do {
                        for try await _ in inbound {}
                    } catch {}
                    closedByServer.add(1, ordering: .relaxed)
                }
            } catch {
                connectFailures.add(1, ordering: .relaxed)
            }
        }
    }

    /// The first bytes of a TLS 1.3 ClientHello record (RFC 8446 §5.1: handshake record, 512 bytes announced), then
    /// nothing: the agent waits for the rest of a handshake that never comes.
    static let stalledClientHello: [UInt8] = [0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]

    @Test("plain and stalled-handshake floods from two addresses: every operator request answered, RSS bounded, all closed by the handshake timeout")
    func floodWhileOperatorWorks() async throws {
        let handshakeTimeout = Duration.seconds(Self.full ? 10 : 3)
        let agent = try await AbuseAgent.start(handshakeTimeout: handshakeTimeout)
        defer { Task { await agent.server.shutdown() } }
        // The client's own timeout is a deadline with slack (the check on `worst` below is the bound): a full-suite run
        // beside a build saw single requests over 10 s at quick size, one beside three builds over 30 s.
        let client = agent.client(timeout: .seconds(Self.full ? 10 : 90))
        _ = try await client.status()  // warm up
        let rssBefore = abuseResidentBytes()
        let (plainTotal, plainConcurrent) = Self.full ? (20_000, 4_000) : (1_500, 600)
        let (slowTotal, slowConcurrent) = Self.full ? (2_000, 2_000) : (300, 300)
        let plain = Flood()
        let slow = Flood()
        let clock = ContinuousClock()
        let started = clock.now
        let floods = Task {
            async let a: Void = plain.run(
                source: "127.0.0.2", port: agent.port, total: plainTotal, concurrent: plainConcurrent, preamble: [])
            async let b: Void = slow.run(
                source: "127.0.0.3", port: agent.port, total: slowTotal, concurrent: slowConcurrent,
                preamble: Self.stalledClientHello)
            _ = await (a, b)
        }
        // The rollout-style client: status, then a signed command, each on a fresh mTLS connection, until the
        // floods are over.
        var worst = Duration.zero
        var requests = 0
        var failures: [String] = []
        var peakRSS = rssBefore
        var peakHandshaking = 0
        var serial: UInt64 = 1
        while true {
            let floodsDone = plain.opened.load(ordering: .relaxed) + plain.connectFailures.load(ordering: .relaxed) >= plainTotal
                && slow.opened.load(ordering: .relaxed) + slow.connectFailures.load(ordering: .relaxed) >= slowTotal
            if floodsDone && requests >= 10 { break }
            let t0 = clock.now
            do {
                if requests % 2 == 0 {
                    _ = try await client.status()
                } else {
                    serial += 1
                    _ = try await client.submit(
                        try agent.signer.sign(.confirm(ConfirmCommand(applySerial: 1)), node: AbuseAgent.node, serial: serial, now: Date()))
                }
            } catch {
                failures.append("\(error)")
            }
            let took = clock.now - t0
            worst = max(worst, took)
            requests += 1
            peakRSS = max(peakRSS, abuseResidentBytes())
            peakHandshaking = max(peakHandshaking, handshakingNow(agent))
            try await Task.sleep(for: .milliseconds(50))
        }
        let floodElapsed = clock.now - started
        // Everything the floods hold is closed by the agent: refused at once, or at the handshake timeout.
        try await abuseWait("the floods to be closed by the agent", deadline: handshakeTimeout * 3 + .seconds(20)) {
            plain.closedByServer.load(ordering: .relaxed) + plain.connectFailures.load(ordering: .relaxed) == plainTotal
                && slow.closedByServer.load(ordering: .relaxed) + slow.connectFailures.load(ordering: .relaxed) == slowTotal
        }
        await floods.value
        let closedAt = clock.now - started
        try await abuseWait("the agent to hold no flood connection") { handshakingNow(agent) == 0 }
        let rssAfter = abuseResidentBytes()
        let refusals = agent.server.connectionRefusals ?? [:]
        abuseReport(
            "flood: \(plainTotal) plain (≤\(plainConcurrent) open) from 127.0.0.2 + \(slowTotal) stalled handshakes from "
                + "127.0.0.3 over \(floodElapsed); operator: \(requests) requests, worst \(worst), \(failures.count) failed; "
                + "peak handshaking \(peakHandshaking); refusals \(refusals.sorted { $0.key < $1.key }); all closed after "
                + "\(closedAt); connect failures \(plain.connectFailures.load(ordering: .relaxed))+"
                + "\(slow.connectFailures.load(ordering: .relaxed)); RSS (test process) \(rssBefore >> 20) -> peak "
                + "\(peakRSS >> 20) -> after \(rssAfter >> 20) MiB")
        #expect(failures == [], "every operator request succeeded")
        // The bound is 2 s; measured against the real agent binary with scripts/agent-flood.py. Here agent,
        // attackers and client share one process and two event-loop threads on a loaded 2-core machine, so the
        // bound carries slack (seen: 2.6 s worst with seven builds running; 7.4 s before refusals skipped the
        // accept loop).
        // At quick size this is a deadline with slack, not a speed target (the 2 s figure is for the full-size run
        // and RELIABILITY.md): seen 10.5 s worst while the whole suite ran beside it on 2 cores, 31.9 s beside three
        // builds.
        #expect(worst < (Self.full ? .seconds(2) : .seconds(90)), "each operator request answered in time (worst \(worst))")
        #expect(requests >= 10)
        #expect(peakHandshaking <= 256, "the handshaking pool is capped")
        #expect((refusals["per_address"] ?? 0) > 0, "the per-address limit refused flood connections: \(refusals)")
        #expect((refusals["handshake_timeout"] ?? 0) > 0, "stalled handshakes ended by the handshake timeout: \(refusals)")
        #expect(peakRSS - rssBefore < 150 << 20, "RSS grew by \((peakRSS - rssBefore) >> 20) MiB during the flood")
        #expect(try await client.status().hostname == "node-a")
    }

    private func handshakingNow(_ agent: AbuseAgent) -> Int {
        agent.server.admissionCounts?.handshaking ?? 0
    }
}
