import NIOCore
import NIOPosix
import NIOSSL
import NK3Protocol
@testable import NK3Common
import Testing

/// Every way a mutual-TLS client can leave an `HTTPSServer` connection: the server's count of open connections
/// returns to zero, and nothing keeps the connection's TLS handler (its BoringSSL connection and buffers) alive
/// after that.
///
/// The case that failed: an answer with `Connection: close`, after which the client reads to EOF and closes the
/// socket without a close_notify of its own (Python's `ssl`, curl). The server used to close both sides, and
/// NIOSSL's 5 s timer for the missing close_notify kept each such connection's handler alive after the
/// connection had ended: under load the agent's heap grew with the request rate and glibc kept it.
@Suite("Channel: HTTPS server lets go of connections", .timeLimit(.minutes(1)))
struct HTTPSServerConnectionReleaseTests {
    /// How the test client leaves.
    enum Leave: CaseIterable, Sendable {
        /// `Connection: close`; the client answers the server's close_notify with its own.
        case connectionCloseWithCloseNotify
        /// `Connection: close`; the client closes the socket without a close_notify (Python's `ssl`).
        case connectionCloseWithoutCloseNotify
        /// Keep-alive; after the answer the client closes with a close_notify.
        case keepAliveThenCloseNotify
        /// Keep-alive; after the answer the client closes the socket without a close_notify.
        case keepAliveThenSocketClose
        /// The client closes the socket right after sending the request, without reading the answer.
        case closeBeforeTheAnswer
    }

    /// Next to the socket, below the TLS handler: drops what TLS would send once told to, and closes the socket
    /// without going through TLS — a client that leaves without a close_notify.
    final class SocketSide: ChannelOutboundHandler, @unchecked Sendable {
        typealias OutboundIn = ByteBuffer
        var dropWrites = false
        private var context: ChannelHandlerContext?

        func handlerAdded(context: ChannelHandlerContext) { self.context = context }
        func handlerRemoved(context: ChannelHandlerContext) { self.context = nil }

        func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
            if dropWrites { promise?.succeed(()) } else { context.write(data, promise: promise) }
        }

        /// Closes the socket, bypassing TLS (on the event loop).
        func closeSocket() {
            dropWrites = true
            context?.close(promise: nil)
        }
    }

    /// Above the TLS handler: the plaintext received, and when the answer arrived.
    final class Collector: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let answered: EventLoopPromise<String>
        private var text = ""

        init(eventLoop: EventLoop) {
            answered = eventLoop.makePromise()
        }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            text += String(buffer: Self.unwrapInboundIn(data))
            if text.hasSuffix(HTTPSServerConnectionReleaseTests.body) { answered.succeed(text) }
        }

        func channelInactive(context: ChannelHandlerContext) {
            answered.fail(ChannelError.ioOnClosedChannel)
            context.fireChannelInactive()
        }
    }

    /// Holds a handler weakly; only touched on its channel's event loop.
    final class WeakBox: @unchecked Sendable {
        weak var value: AnyObject?
    }

    static let body = "fine, thanks"

    /// Polls (no deadline but the suite's time limit) until `condition` holds.
    private func eventually(_ condition: () -> Bool) async throws {
        while !condition() { try await Task.sleep(for: .milliseconds(5)) }
    }

    @Test(arguments: Leave.allCases)
    func connectionAndItsTLSHandlerAreReleasedAfterTheClientLeaves(_ leave: Leave) async throws {
        let ca = try ClusterCA.create(cluster: "release")
        let agent = try ca.issueAgent(hostname: "node-a", addresses: ["127.0.0.1"])
        let reader = try ca.issueClient(name: "bob", role: .reader)
        let roots = try TLSConfigs.trustRoots(pem: try ca.certificatePEM)
        let serverTLS = try TLSConfigs.serverContext(
            identity: try TLSIdentity(certificatePEM: agent.certificatePEM, privateKeyPEM: agent.privateKeyPEM),
            clientCA: roots)
        let clientTLS = try TLSConfigs.clientContext(
            trustRoots: roots,
            identity: try TLSIdentity(certificatePEM: reader.certificatePEM, privateKeyPEM: reader.privateKeyPEM))
        let server = try await HTTPSServer.start(host: "127.0.0.1", port: 0, tls: serverTLS, logger: channelQuietLogger()) {
            _ in .text(.ok, Self.body)
        }

        let socketSide = SocketSide()
        let group = MultiThreadedEventLoopGroup.singleton
        let clientLoop = group.next()
        let collector = Collector(eventLoop: clientLoop)
        let client = try await ClientBootstrap(group: clientLoop).channelInitializer { channel in
            channel.eventLoop.makeCompletedFuture {
                let sync = channel.pipeline.syncOperations
                try sync.addHandler(socketSide)
                try sync.addHandler(NIOSSLClientHandler(context: clientTLS, serverHostname: nil))
                try sync.addHandler(collector)
            }
        }.connect(host: "127.0.0.1", port: server.port).get()

        // The server's side of this connection, and its TLS handler, held weakly. (The client's TLS handler
        // holds the request until the handshake is done, and completes a write once it is on the socket.)
        try await eventually { server.openConnectionCount == 1 }
        let serverChannel = try #require(server.openChannels.first)
        let serverLoop = serverChannel.eventLoop
        let tlsHandler = WeakBox()
        try await serverLoop.submit {
            tlsHandler.value = try serverChannel.pipeline.syncOperations.handler(type: NIOSSLServerHandler.self)
        }.get()

        let close = leave == .connectionCloseWithCloseNotify || leave == .connectionCloseWithoutCloseNotify
        let request = ByteBuffer(string: "GET /v1/status HTTP/1.1\r\nHost: node-a\r\n\(close ? "Connection: close\r\n" : "")\r\n")
        switch leave {
        case .connectionCloseWithCloseNotify:
            try await client.writeAndFlush(request).get()
            // The client answers the server's close_notify and closes by itself.
            #expect(try await collector.answered.futureResult.get().hasPrefix("HTTP/1.1 200"))
            try await client.closeFuture.get()
        case .connectionCloseWithoutCloseNotify:
            // Nothing more leaves the client once the request is out (set on the event loop as the write
            // completes, before any answer is read): its reply to the server's close_notify is lost, and it
            // closes the socket as the exchange ends.
            try await clientLoop.flatSubmit {
                client.writeAndFlush(request).map { socketSide.dropWrites = true }
            }.get()
            #expect(try await collector.answered.futureResult.get().hasPrefix("HTTP/1.1 200"))
            try await client.closeFuture.get()
        case .keepAliveThenCloseNotify:
            try await client.writeAndFlush(request).get()
            #expect(try await collector.answered.futureResult.get().hasPrefix("HTTP/1.1 200"))
            try await client.close()
        case .keepAliveThenSocketClose:
            try await client.writeAndFlush(request).get()
            #expect(try await collector.answered.futureResult.get().hasPrefix("HTTP/1.1 200"))
            try await clientLoop.submit { socketSide.closeSocket() }.get()
            try await client.closeFuture.get()
        case .closeBeforeTheAnswer:
            try await clientLoop.flatSubmit {
                client.writeAndFlush(request).map { socketSide.closeSocket() }
            }.get()
            try await client.closeFuture.get()
        }

        try await eventually { server.openConnectionCount == 0 }
        // The closed channel's handlers are removed in a task its event loop already has queued.
        let released = try await serverLoop.submit { tlsHandler.value == nil }.get()
        #expect(released, "the server's TLS handler outlived the connection (\(leave))")
        await server.shutdown()
    }
}
