import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NK3Common
import Synchronization
import Testing

/// `HTTPSServer` at the byte level (plain HTTP on loopback, a raw TCP client): keep-alive, limits, idle
/// timeout, streaming. TLS behaviour is covered by ChannelTests.
@Suite("Channel: HTTP server protocol behaviour", .timeLimit(.minutes(1)))
struct ChannelHTTPServerTests {
    /// A raw TCP client that collects everything the server sends until a condition holds or EOF.
    struct RawClient {
        let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>

        static func connect(port: Int) async throws -> RawClient {
            let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .connect(host: "127.0.0.1", port: port) { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    }
                }
            return RawClient(channel: channel)
        }

        /// Sends `text`, then reads until `until` says the text received so far is complete, or EOF.
        /// Returns what was read and whether the server closed the connection.
        func exchange(_ text: String, until: @escaping @Sendable (String) -> Bool = { _ in false }) async throws
            -> (text: String, closed: Bool)
        {
            try await channel.executeThenClose { inbound, outbound in
                if !text.isEmpty { try await outbound.write(ByteBuffer(string: text)) }
                var received = ""
                for try await chunk in inbound {
                    received += String(buffer: chunk)
                    if until(received) { return (received, false) }
                }
                return (received, true)
            }
        }
    }

    private func start(
        limits: HTTPServerLimits = HTTPServerLimits(),
        handler: @escaping @Sendable (HTTPServerRequest) async -> HTTPServerResponse
    ) async throws -> HTTPSServer {
        try await HTTPSServer.start(host: "127.0.0.1", port: 0, tls: nil, limits: limits, logger: channelQuietLogger(), handler: handler)
    }

    private static func count(_ needle: String, in text: String) -> Int { text.components(separatedBy: needle).count - 1 }

    @Test func keepAliveServesPipelinedRequestsInOrder() async throws {
        let server = try await start { req in .text(.ok, "path=\(req.path) q=\(req.query["a"] ?? "-")") }
        let client = try await RawClient.connect(port: server.port)
        let two = "GET /one?a=x%20y HTTP/1.1\r\nHost: t\r\n\r\nGET /two HTTP/1.1\r\nHost: t\r\n\r\n"
        let (text, closed) = try await client.exchange(two) { Self.count("HTTP/1.1 200 OK", in: $0) == 2 && $0.hasSuffix("q=-") }
        #expect(!closed)
        let first = try #require(text.range(of: "path=/one q=x y"))
        let second = try #require(text.range(of: "path=/two q=-"))
        #expect(first.lowerBound < second.lowerBound)
        await server.shutdown()
    }

    @Test func connectionCloseIsHonoured() async throws {
        let server = try await start { _ in .text(.ok, "bye") }
        let client = try await RawClient.connect(port: server.port)
        let (text, closed) = try await client.exchange("GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        #expect(closed)
        #expect(text.hasSuffix("bye"))
        #expect(text.lowercased().contains("connection: close"))
        await server.shutdown()
    }

    @Test func chunkedBodyOverTheLimitIsRefusedWithoutReachingTheHandler() async throws {
        let calls = Mutex(0)
        let server = try await start(limits: HTTPServerLimits(maxBodyBytes: 100)) { _ in
            calls.withLock { $0 += 1 }
            return .text(.ok, "handled")
        }
        let client = try await RawClient.connect(port: server.port)
        let chunk = String(repeating: "x", count: 200)
        let request = "POST /v1/envelopes HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nc8\r\n\(chunk)\r\n0\r\n\r\n"
        let (text, closed) = try await client.exchange(request)
        #expect(text.hasPrefix("HTTP/1.1 413"))
        #expect(text.contains("body_too_large"))
        #expect(closed)
        #expect(calls.withLock { $0 } == 0)
        await server.shutdown()
    }

    @Test func declaredLengthOverTheLimitIsRefusedBeforeTheBody() async throws {
        let server = try await start(limits: HTTPServerLimits(maxBodyBytes: 100)) { _ in .text(.ok, "handled") }
        let client = try await RawClient.connect(port: server.port)
        // The body is never sent: the answer must not wait for it.
        let (text, closed) = try await client.exchange("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n")
        #expect(text.hasPrefix("HTTP/1.1 413"))
        #expect(closed)
        await server.shutdown()
    }

    @Test func bodyWithinTheLimitArrivesWhole() async throws {
        let server = try await start(limits: HTTPServerLimits(maxBodyBytes: 100)) { req in
            .text(.ok, "got \(req.body.readableBytes) \(req.method)")
        }
        let client = try await RawClient.connect(port: server.port)
        let body = String(repeating: "y", count: 100)
        let (text, _) = try await client.exchange(
            "POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 100\r\n\r\n\(body)") { $0.hasSuffix("got 100 POST") }
        #expect(text.hasSuffix("got 100 POST"))
        await server.shutdown()
    }

    @Test func oversizedHeadersAreRefused() async throws {
        let server = try await start(limits: HTTPServerLimits(maxHeaderBytes: 1024)) { _ in .text(.ok, "handled") }
        let client = try await RawClient.connect(port: server.port)
        let big = String(repeating: "h", count: 4096)
        let (text, closed) = try await client.exchange("GET / HTTP/1.1\r\nHost: t\r\nX-Big: \(big)\r\n\r\n")
        #expect(text.hasPrefix("HTTP/1.1 400"))
        #expect(closed)
        await server.shutdown()
    }

    @Test func idleConnectionIsClosedAfterTheTimeout() async throws {
        let server = try await start(limits: HTTPServerLimits(idleTimeout: .milliseconds(200))) { _ in .text(.ok, "ok") }
        let client = try await RawClient.connect(port: server.port)
        // Connect and stay silent: the server hangs up by itself (the read ends instead of hanging).
        let (text, closed) = try await client.exchange("")
        #expect(text.isEmpty)
        #expect(closed)
        await server.shutdown()
    }

    @Test func slowHandlerIsNotCutByTheIdleTimeout() async throws {
        // Handler 3× longer than the idle timeout. The request itself must arrive within the timeout, which a loaded
        // machine cannot promise (CI, stop 11 loop: "I/O on closed channel" once in 8 parallel runs): a try whose
        // request never reached the handler proves nothing about handlers and is made again. Once the handler has
        // started, the connection must last until its answer.
        let started = Mutex(0)
        let server = try await start(limits: HTTPServerLimits(idleTimeout: .seconds(1))) { _ in
            started.withLock { $0 += 1 }
            try? await Task.sleep(for: .seconds(3))
            return .text(.ok, "slow but fine")
        }
        for attempt in 1...5 {
            let before = started.withLock { $0 }
            let client = try await RawClient.connect(port: server.port)
            var text = ""
            var failure: (any Error)?
            do {
                text = try await client.exchange("GET / HTTP/1.1\r\nHost: t\r\n\r\n") { $0.hasSuffix("slow but fine") }.text
            } catch {
                failure = error
            }
            if started.withLock({ $0 }) == before && attempt < 5 {
                continue  // closed as idle before the request arrived (an error or an empty read): not the case under test
            }
            #expect(failure == nil && text.hasSuffix("slow but fine"), "\(failure.map { "\($0)" } ?? text)")
            break
        }
        #expect(started.withLock { $0 } >= 1)
        await server.shutdown()
    }

    @Test func streamedResponseIsChunkedAndEndsWithTheStream() async throws {
        let server = try await start { _ in
            let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
            continuation.yield(ByteBuffer(string: "{\"type\":\"ADDED\"}\n"))
            continuation.yield(ByteBuffer(string: "{\"type\":\"MODIFIED\"}\n"))
            continuation.finish()
            return HTTPServerResponse(status: .ok, headers: ["Content-Type": "application/json"], body: .stream(stream))
        }
        let client = try await RawClient.connect(port: server.port)
        let (text, _) = try await client.exchange("GET /api/v1/nodes?watch=true HTTP/1.1\r\nHost: t\r\n\r\n") {
            $0.hasSuffix("0\r\n\r\n")
        }
        #expect(text.lowercased().contains("transfer-encoding: chunked"))
        #expect(text.contains("ADDED"))
        #expect(text.contains("MODIFIED"))
        await server.shutdown()
    }

    @Test func streamIsCancelledWhenTheClientGoesAway() async throws {
        let (terminated, terminatedContinuation) = AsyncStream<Void>.makeStream()
        let server = try await start { _ in
            let (stream, continuation) = AsyncStream<ByteBuffer>.makeStream()
            continuation.onTermination = { _ in terminatedContinuation.yield() }
            continuation.yield(ByteBuffer(string: "first\n"))
            return HTTPServerResponse(status: .ok, body: .stream(stream))  // never finishes by itself
        }
        let client = try await RawClient.connect(port: server.port)
        // Read the first event, then hang up.
        let (text, _) = try await client.exchange("GET /watch HTTP/1.1\r\nHost: t\r\n\r\n") { $0.contains("first") }
        #expect(text.contains("first"))
        var iterator = terminated.makeAsyncIterator()
        #expect(await iterator.next() != nil)  // bounded by the suite's time limit
        await server.shutdown()
    }

    @Test func queryAndPathAreSplitAndDecoded() {
        let (path, query) = HTTPServerRequest.split(uri: "/api/v1/pods?fieldSelector=spec.nodeName%3Dn1&labelSelector=a+b&flag")
        #expect(path == "/api/v1/pods")
        #expect(query == ["fieldSelector": "spec.nodeName=n1", "labelSelector": "a b", "flag": ""])
        #expect(HTTPServerRequest.split(uri: "/plain").query.isEmpty)
    }
}
