import Crypto
import Foundation
import NIOCore
import NK3Agent
import NK3Common
import NK3Coordinator
import NK3Protocol
import Synchronization
import Testing

/// Load and abuse against a real agent server: real mTLS on 127.0.0.1, fresh certificates, real signatures
/// (the reliability target: one agent serves 1,000 concurrent status requests without error and with
/// bounded memory; bad input is refused with a clear error and no state change). Measured numbers are
/// printed with an `[abuse]` prefix and recorded in docs/RELIABILITY.md.
@Suite("Abuse: load and hostile clients against a real agent", .serialized, .timeLimit(.minutes(2)))
struct AbuseLoadTests {
    @Test("1,000 status requests, 100 at a time over fresh mTLS connections: no errors, bounded RSS")
    func thousandConcurrentStatusRequests() async throws {
        let agent = try await AbuseAgent.start()
        defer { Task { await agent.server.shutdown() } }
        let client = agent.client()
        _ = try await client.status()  // warm up (lazy allocations are not growth)
        let rssBefore = abuseResidentBytes()
        let clock = ContinuousClock()
        let started = clock.now
        let total = 1000
        let concurrency = 100
        let failures = AbuseBox<[String]>([])
        let served = AbuseBox(0)
        await withTaskGroup(of: Void.self) { group in
            var next = 0
            func add() {
                guard next < total else { return }
                next += 1
                group.addTask {
                    do {
                        let s = try await client.status()
                        if s.hostname == "node-a" { served.withLock { $0 += 1 } } else { failures.withLock { $0.append("wrong hostname") } }
                    } catch {
                        failures.withLock { $0.append("\(error)") }
                    }
                }
            }
            for _ in 0..<concurrency { add() }
            while await group.next() != nil { add() }
        }
        let elapsed = clock.now - started
        let rssAfter = abuseResidentBytes()
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        abuseReport(
            "status x\(total) (\(concurrency) concurrent, fresh mTLS): \(String(format: "%.2f", seconds)) s, "
                + "\(String(format: "%.0f", Double(total) / seconds)) req/s, RSS \(rssBefore >> 20) MiB -> \(rssAfter >> 20) MiB")
        #expect(failures.withLock { $0 } == [])
        #expect(served.withLock { $0 } == total)
        #expect(rssAfter - rssBefore < 200 << 20, "RSS grew by \((rssAfter - rssBefore) >> 20) MiB")
        // Still serving afterwards.
        #expect(try await client.status().hostname == "node-a")
    }

    @Test("200 idle TLS connections (half with a partial request head) are closed by the idle timeout; the agent serves meanwhile")
    func slowlorisConnectionsAreClosedByIdleTimeout() async throws {
        let idle = Duration.seconds(3)  // longer than 200 concurrent handshakes take on a loaded 2-core machine
        // All 200 handshake at once from one address: above the default per-address handshake limit (128), which
        // AbuseFloodTests covers.
        let agent = try await AbuseAgent.start(idleTimeout: idle, maxHandshakesPerAddress: 256)
        defer { Task { await agent.server.shutdown() } }
        let count = 200
        let ready = AbuseBox(0)
        let closed = AbuseBox(0)
        let clock = ContinuousClock()
        let servedMeanwhile = try await withThrowingTaskGroup(of: Int.self) { group in
            for i in 0..<count {
                group.addTask {
                    let connection = try await agent.rawConnection()
                    return try await connection.channel.executeThenClose { inbound, outbound in
                        if i % 2 == 1 {
                            // Classic slowloris: a request head that never ends.
                            try await outbound.write(ByteBuffer(string: "GET /v1/status HTTP/1.1\r\nHost: node-a\r\nX-Slow: "))
                        }
                        ready.withLock { $0 += 1 }
                        do {
                            for try await _ in inbound {}  // the server must end this by closing
                        } catch {
                            // An unclean TLS shutdown is a close too.
                        }
                        closed.withLock { $0 += 1 }
                        return 0
                    }
                }
            }
            try await abuseWait("\(count) idle connections to be open") { ready.withLock { $0 } == count }
            let openAt = clock.now
            // While they are held, the agent answers others (fresh mTLS connections).
            var served = 0
            let client = agent.client()
            for _ in 0..<10 where try await client.status().hostname == "node-a" { served += 1 }
            let stillOpen = count - closed.withLock { $0 }
            abuseReport("slowloris: \(count) idle connections held; \(served) status requests served meanwhile, \(stillOpen) still open at that point")
            try await abuseWait("the idle connections to be closed", deadline: .seconds(60)) { closed.withLock { $0 } == count }
            abuseReport("slowloris: all \(count) idle connections closed \(clock.now - openAt) after all were open (idle timeout \(idle))")
            try await group.waitForAll()
            return served
        }
        #expect(servedMeanwhile == 10)
        #expect(closed.withLock { $0 } == count)
        #expect(try await agent.client().status().hostname == "node-a")
    }

    /// Sends raw bytes on a fresh mTLS connection and reads until the server closes (or `enough` says done).
    private func exchange(_ agent: AbuseAgent, _ bytes: [ByteBuffer], enough: @escaping @Sendable (String) -> Bool = { _ in false })
        async throws -> (text: String, closed: Bool)
    {
        let connection = try await agent.rawConnection()
        return try await connection.channel.executeThenClose { inbound, outbound in
            for b in bytes {
                do { try await outbound.write(b) } catch { break }  // the server may close while we still write
            }
            var text = ""
            do {
                for try await chunk in inbound {
                    text += String(buffer: chunk)
                    if enough(text) { return (text, false) }
                }
            } catch {
                return (text, true)
            }
            return (text, true)
        }
    }

    private static func statusCode(_ text: String) -> Int? {
        guard text.hasPrefix("HTTP/1.1 ") else { return nil }
        return Int(text.dropFirst(9).prefix(3))
    }

    @Test("oversized headers and bodies are refused (431/400/413 or closed); the agent still serves")
    func oversizedHeadersAndBodiesAreRefused() async throws {
        let agent = try await AbuseAgent.start()
        defer { Task { await agent.server.shutdown() } }
        let client = agent.client()

        // 1. One header over the 16 KiB head limit.
        let bigHeader = "GET /v1/status HTTP/1.1\r\nHost: node-a\r\nX-Big: \(String(repeating: "a", count: 20_000))\r\n\r\n"
        let r1 = try await exchange(agent, [ByteBuffer(string: bigHeader)])
        abuseReport("oversized header (20 KB): \(Self.statusCode(r1.text).map(String.init) ?? "no answer"), closed=\(r1.closed)")
        #expect(r1.closed)
        #expect(Self.statusCode(r1.text) == nil || [400, 431].contains(Self.statusCode(r1.text)!), "\(r1.text.prefix(100))")

        // 2. Many small headers (over 256 fields).
        let manyHeaders = "GET /v1/status HTTP/1.1\r\nHost: node-a\r\n" + (0..<400).map { "X-H\($0): v\r\n" }.joined() + "\r\n"
        let r2 = try await exchange(agent, [ByteBuffer(string: manyHeaders)])
        abuseReport("400 header fields: \(Self.statusCode(r2.text).map(String.init) ?? "no answer"), closed=\(r2.closed)")
        #expect(r2.closed)
        #expect(Self.statusCode(r2.text) == nil || [400, 431].contains(Self.statusCode(r2.text)!), "\(r2.text.prefix(100))")

        // 3. A declared Content-Length over the 4 MiB limit: 413 before any body is read.
        let declared = "POST /v1/envelopes HTTP/1.1\r\nHost: node-a\r\nContent-Length: \(NK3Wire.maxBodyBytes + 1)\r\n\r\n"
        let r3 = try await exchange(agent, [ByteBuffer(string: declared)])
        abuseReport("declared body 4 MiB + 1: \(Self.statusCode(r3.text).map(String.init) ?? "no answer")")
        #expect(Self.statusCode(r3.text) == 413)
        #expect(r3.text.contains("body_too_large"))

        // 4. A chunked body that grows past the limit: 413, never buffered whole.
        var chunks = [ByteBuffer(string: "POST /v1/envelopes HTTP/1.1\r\nHost: node-a\r\nTransfer-Encoding: chunked\r\n\r\n")]
        let piece = String(repeating: "z", count: 256 * 1024)
        for _ in 0..<20 { chunks.append(ByteBuffer(string: String(piece.utf8.count, radix: 16) + "\r\n" + piece + "\r\n")) }
        chunks.append(ByteBuffer(string: "0\r\n\r\n"))
        let r4 = try await exchange(agent, chunks)
        abuseReport("chunked body 5 MiB: \(Self.statusCode(r4.text).map(String.init) ?? "no answer")")
        #expect(Self.statusCode(r4.text) == 413)

        // Nothing reached the engine, and the agent still serves.
        #expect(agent.engine.handledSerials == [])
        #expect(try await client.status().hostname == "node-a")
    }

    @Test("a client that stops reading a large /v1/files answer does not stall the agent; the answer completes when it reads again")
    func slowReaderDoesNotStallTheAgent() async throws {
        let size = 24 << 20  // larger than the loopback socket buffers on both sides
        let agent = try await AbuseAgent.start(landedBytes: size)
        defer { Task { await agent.server.shutdown() } }
        let client = agent.client()
        let connection = try await agent.rawConnection()
        let result: (declared: Int, received: Int) = try await connection.channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "GET /v1/files HTTP/1.1\r\nHost: node-a\r\n\r\n"))
            var iterator = inbound.makeAsyncIterator()
            // Read only the start of the answer, then stop reading (backpressure stops the socket reads).
            var (declared, received) = try await readAnswerHead(&iterator)
            // Meanwhile the agent answers others.
            let clock = ContinuousClock()
            let t0 = clock.now
            for _ in 0..<10 { #expect(try await client.status().hostname == "node-a") }
            abuseReport("slow reader: 10 status requests served in \(clock.now - t0) while a \(size >> 20) MiB /v1/files answer was stalled after \(received) body bytes")
            #expect(received < declared, "the reader was not actually stalled")
            // Read again: the whole answer arrives.
            while received < declared, let chunk = try await iterator.next() { received += chunk.readableBytes }
            return (declared, received)
        }
        #expect(result.declared > size)
        #expect(result.received == result.declared)

        // A reader that stops and then vanishes: the agent goes on serving.
        let vanishing = try await agent.rawConnection()
        try await vanishing.channel.executeThenClose { inbound, outbound in
            try await outbound.write(ByteBuffer(string: "GET /v1/files HTTP/1.1\r\nHost: node-a\r\n\r\n"))
            var it = inbound.makeAsyncIterator()
            _ = try await it.next()
        }
        #expect(try await client.status().hostname == "node-a")
    }

    @Test("a client that stops reading for good is cut off after the write timeout; the agent serves others meanwhile and after")
    func stalledReaderIsCutOff() async throws {
        let size = 24 << 20  // larger than the loopback socket buffers on both sides
        let agent = try await AbuseAgent.start(writeTimeout: .milliseconds(300), landedBytes: size)
        defer { Task { await agent.server.shutdown() } }
        let connection = try await agent.rawConnection()
        let outcome: (declared: Int, received: Int, closed: Bool) = try await connection.channel.executeThenClose {
            inbound, outbound in
            try await outbound.write(ByteBuffer(string: "GET /v1/files HTTP/1.1\r\nHost: node-a\r\n\r\n"))
            var iterator = inbound.makeAsyncIterator()
            var (declared, received) = try await readAnswerHead(&iterator)
            // Stop reading until the agent has let go of this connection (the only one open), then read what is left.
            let clock = ContinuousClock()
            let end = clock.now.advanced(by: .seconds(60))
            while (agent.server.openConnectionCount ?? 0) > 0, clock.now < end {
                try await Task.sleep(for: .milliseconds(20))
            }
            let closed = agent.server.openConnectionCount == 0
            abuseReport("stalled reader: cut off after \(received) of \(declared) body bytes read (write timeout 0.3 s)")
            do {
                while let chunk = try await iterator.next() { received += chunk.readableBytes }
            } catch {
                // The agent closed without close_notify: the stream ends with an error, which is the point.
            }
            return (declared, received, closed)
        }
        #expect(outcome.closed, "the agent still held the stalled connection after 60 s")
        #expect(outcome.declared > size)
        #expect(outcome.received < outcome.declared, "the whole answer arrived: the connection was not cut off")
        #expect(try await agent.client().status().hostname == "node-a")
    }

    @Test("a slow but steady reader of one large answer is not cut off, though that answer's one write completes only at its end")
    func slowSteadyReaderIsServed() async throws {
        let size = 24 << 20
        // Pauses of 100 ms per MiB (2.4 s in all) against a 1 s write timeout: the timeout fires while the answer's one
        // write is still pending, and the reader must still get all of it.
        let agent = try await AbuseAgent.start(writeTimeout: .seconds(1), landedBytes: size)
        defer { Task { await agent.server.shutdown() } }
        let connection = try await agent.rawConnection()
        let (declared, received) = try await connection.channel.executeThenClose { inbound, outbound -> (Int, Int) in
            try await outbound.write(ByteBuffer(string: "GET /v1/files HTTP/1.1\r\nHost: node-a\r\nConnection: close\r\n\r\n"))
            var iterator = inbound.makeAsyncIterator()
            var (declared, received) = try await readAnswerHead(&iterator)
            var sincePause = received
            while let chunk = try await iterator.next() {
                received += chunk.readableBytes
                sincePause += chunk.readableBytes
                if sincePause >= 1 << 20 {
                    sincePause = 0
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
            return (declared, received)
        }
        #expect(declared > size)
        #expect(received == declared)
    }

    @Test("2,000 envelopes with bad signatures: each refused with its code, the state directory unchanged")
    func badSignatureFloodChangesNothing() async throws {
        let agent = try await AbuseAgent.start()
        defer { Task { await agent.server.shutdown() } }
        let client = agent.client()
        // One accepted envelope first, so that the state directory holds a serial file to protect.
        _ = try await client.submit(try agent.signer.sign(.reboot(RebootCommand(reason: "t")), node: AbuseAgent.node, serial: 5, now: Date()))
        let before = try agent.stateSnapshot()
        #expect(before.keys.contains("last-accepted-serial.json"))

        let rogue = EnvelopeSigner(privateKey: Curve25519.Signing.PrivateKey())
        // Three kinds: a flipped signature bit, a rogue key claiming the pinned key's id, a rogue key id.
        func body(_ i: Int) throws -> (ByteBuffer, WireError.Code) {
            let good = try agent.signer.sign(.reboot(RebootCommand(reason: "flood \(i)")), node: AbuseAgent.node, serial: UInt64(100 + i), now: Date())
            var env = good
            let expected: WireError.Code
            switch i % 3 {
            case 0:
                var sig = [UInt8](env.signature)
                sig[i % 64] ^= 0x01
                env.signature = Data(sig)
                expected = .badSignature
            case 1:
                env.signature = try rogue.sign(payloadBytes: good.payload).signature
                expected = .badSignature
            default:
                env = try rogue.sign(payloadBytes: good.payload)
                expected = .unknownKey
            }
            return (ByteBuffer(bytes: try CanonicalJSON.encode(env)), expected)
        }
        let total = 2000
        let mismatches = AbuseBox<[String]>([])
        let clock = ContinuousClock()
        let started = clock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            var next = 0
            func add() throws {
                guard next < total else { return }
                let (b, expected) = try body(next)
                next += 1
                group.addTask {
                    do {
                        _ = try await client.submit(rawBody: b)
                        mismatches.withLock { $0.append("accepted!") }
                    } catch let error as AgentClientError {
                        if error.wireError?.code != expected || error.httpStatus != 403 {
                            mismatches.withLock { $0.append("\(error.code) \(error.wireError?.code.rawValue ?? "-") \(error.httpStatus ?? 0)") }
                        }
                    } catch {
                        mismatches.withLock { $0.append("\(error)") }
                    }
                }
            }
            for _ in 0..<50 { try add() }
            while try await group.next() != nil { try add() }
        }
        let elapsed = clock.now - started
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        abuseReport(
            "bad-signature flood x\(total) (50 concurrent, fresh mTLS): \(String(format: "%.2f", seconds)) s, "
                + "\(String(format: "%.2f", seconds * 1000 / Double(total))) ms per refusal (wall, incl. handshake)")
        #expect(mismatches.withLock { $0 } == [])
        #expect(try agent.stateSnapshot() == before)
        #expect(agent.engine.handledSerials == [5])
        #expect(try SerialStore(stateDirectory: agent.stateDir).current == 5)
        // Verification cost alone, without TLS: each refusal through the server's respond(to:).
        let verifier = try AgentServerConfig(
            host: "127.0.0.1", port: 0, certificate: .pem(""), privateKey: .pem(""), clientCA: .pem(""),
            signingPublicKeys: [agent.signer.privateKey.publicKey.rawRepresentation.base64EncodedString()], nodeName: AbuseAgent.node
        ).makeVerifier()
        let bodies = try (0..<300).map { try body($0).0 }
        let t0 = clock.now
        for b in bodies {
            #expect(throws: EnvelopeError.self) { try verifier.verify(envelopeJSON: Data(b.readableBytesView), lastAcceptedSerial: 5, now: Date()) }
        }
        let perRefusal = (clock.now - t0) / bodies.count
        abuseReport("bad-signature verify alone: \(perRefusal) per refusal")
    }
}
