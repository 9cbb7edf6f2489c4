import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL

/// One HTTP request over a fresh (m)TLS connection: connect, handshake, send, read the whole answer,
/// close. Fresh connections keep the agent's side stateless and make every request re-verify both peers.
struct HTTPSOneShot: Sendable {
    struct Response: Sendable {
        var status: HTTPResponseStatus
        var headers: HTTPHeaders
        var body: ByteBuffer
    }

    /// Where the request failed, for mapping to `AgentClientError`.
    enum Failure: Error {
        case connect(any Error)
        case tls(any Error)
        case timeout
        case closedEarly
        case responseTooLarge(Int)
        /// The calling task was cancelled (the connection is closed).
        case cancelled
        case other(any Error)
    }

    let host: String
    let port: Int
    /// SNI and verified name; nil when the expected identity is an IP address (NIOSSL then checks the
    /// connected peer address against the certificate's IP SANs).
    let serverHostname: String?
    let tls: NIOSSLContext
    let timeout: TimeAmount
    let maxResponseBytes: Int
    let group: any EventLoopGroup

    /// Sends the request and waits for the whole answer. Cancelling the calling task abandons the request
    /// at once (connecting or waiting) and closes the connection: a caller's own timeout must not be held
    /// up by a peer that never answers (a host that went down mid-request).
    func request(method: HTTPMethod, path: String, body: ByteBuffer?, contentType: String? = nil) async throws(Failure)
        -> Response
    {
        let eventLoop = group.next()
        let promise = eventLoop.makePromise(of: Response.self)
        let connected = eventLoop.makePromise(of: Channel.self)
        do {
            return try await withTaskCancellationHandler {
                try await exchange(
                    method: method, path: path, body: body, contentType: contentType, eventLoop: eventLoop,
                    promise: promise, connected: connected)
            } onCancel: {
                // A second completion of either promise is ignored by NIO; whichever comes first wins.
                connected.fail(Failure.cancelled)
                promise.fail(Failure.cancelled)
            }
        } catch let failure as Failure {
            throw failure
        } catch {
            throw .other(error)
        }
    }

    private func exchange(
        method: HTTPMethod, path: String, body: ByteBuffer?, contentType: String?, eventLoop: any EventLoop,
        promise: EventLoopPromise<Response>, connected: EventLoopPromise<Channel>
    ) async throws(Failure) -> Response {
        let channel: Channel
        let promiseBox = promise
        do {
            let (tls, serverHostname, maxBytes) = (self.tls, self.serverHostname, self.maxResponseBytes)
            let bootstrap = ClientBootstrap(group: eventLoop)
                .connectTimeout(timeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverHostname))
                        try sync.addHTTPClientHandlers()
                        try sync.addHandler(ResponseCollector(promise: promise, maxBytes: maxBytes))
                    }
                }
            // An IP address (what inventories mostly hold) is connected to directly: `connect(host:)` would ask
            // getaddrinfo on a resolver thread first (7% of `nk3 apply`'s CPU in a profile, one per agent call).
            let connecting: EventLoopFuture<Channel>
            if let address = try? SocketAddress(ipAddress: host, port: port) {
                connecting = bootstrap.connect(to: address)
            } else {
                connecting = bootstrap.connect(host: host, port: port)
            }
            connecting.cascade(to: connected)
            // Cancelled while connecting: a connection that still completes is closed unused.
            connected.futureResult.whenFailure { _ in connecting.whenSuccess { $0.close(promise: nil) } }
            channel = try await connected.futureResult.get()
        } catch Failure.cancelled {
            throw .cancelled
        } catch {
            promise.fail(Failure.connect(error))  // nobody else will complete it (a second completion is ignored)
            throw .connect(error)
        }
        let deadline = channel.eventLoop.scheduleTask(in: timeout) {
            promiseBox.fail(Failure.timeout)
            channel.close(promise: nil)
        }
        defer {
            deadline.cancel()
            channel.close(promise: nil)
        }
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "\(serverHostname ?? host):\(port)")
        headers.add(name: "Connection", value: "close")
        headers.add(name: "Accept", value: "application/json")
        if let body {
            headers.add(name: "Content-Length", value: "\(body.readableBytes)")
            if let contentType { headers.add(name: "Content-Type", value: contentType) }
        }
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)
        channel.write(HTTPClientRequestPart.head(head), promise: nil)
        if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
        // A write failure (e.g. the server refused our certificate and closed) also surfaces through the
        // collector's errorCaught/channelInactive, with the more telling error.
        channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        do {
            return try await promiseBox.futureResult.get()
        } catch let failure as Failure {
            throw failure
        } catch {
            throw .other(error)
        }
    }
}

/// Collects one response; fails the promise on TLS errors, early close, or an oversized body.
private final class ResponseCollector: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let promise: EventLoopPromise<HTTPSOneShot.Response>
    private let maxBytes: Int
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()
    private var done = false

    init(promise: EventLoopPromise<HTTPSOneShot.Response>, maxBytes: Int) {
        self.promise = promise
        self.maxBytes = maxBytes
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !done else { return }
        switch Self.unwrapInboundIn(data) {
        case .head(let h):
            head = h
        case .body(var chunk):
            if body.readableBytes + chunk.readableBytes > maxBytes {
                finish(.failure(HTTPSOneShot.Failure.responseTooLarge(maxBytes)))
                context.close(promise: nil)
                return
            }
            body.writeBuffer(&chunk)
        case .end:
            if let head {
                finish(.success(HTTPSOneShot.Response(status: head.status, headers: head.headers, body: body)))
            } else {
                finish(.failure(HTTPSOneShot.Failure.closedEarly))
            }
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            finish(.failure(HTTPSOneShot.Failure.tls(error)))
        } else {
            finish(.failure(HTTPSOneShot.Failure.other(error)))
        }
        context.close(promise: nil)
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish(.failure(HTTPSOneShot.Failure.closedEarly))
        context.fireChannelInactive()
    }

    private func finish(_ result: Result<HTTPSOneShot.Response, any Error>) {
        guard !done else { return }
        done = true
        promise.completeWith(result)
    }
}
