import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NK3Protocol
import Synchronization

/// One HTTP request over (m)TLS: on a fresh connection (connect, handshake, send, read the whole answer, close),
/// or — when the client keeps one (`KeptConnection`) — on the connection the previous request left open.
///
/// A connection is reused at most `KeptConnection.maxAge` after its handshake, so both peers' certificates are
/// re-verified at least that often (and the agent checks our certificate against its revocation list on every
/// request). Reads and commands share it: a rollout's bundle, status polls and reboot go over one connection.
///
/// A reused connection can turn out closed when a request is written on it (the agent restarted, or closed it idle,
/// just then: RFC 9112 §9.3.1 "Connections can be closed at any time"). The request is then sent once more on a
/// fresh connection (never after a timeout or a cancellation: an agent that is slow is not asked twice):
/// - a read (GET, idempotent by RFC 9110 §9.2.2) after any failure of the reused connection;
/// - a command (POST of a signed envelope) only when the connection closed or failed before any byte of the
///   answer arrived. POST is not idempotent in general (RFC 9110 §9.3.3), and RFC 9112 §9.3.1 forbids retrying a
///   non-idempotent request automatically "unless it has some means to know that the request semantics are
///   actually idempotent". The agent provides that: it answers a byte-identical re-submission of the envelope it
///   accepted last with the answer it gave, and runs nothing (`SerialStore`), so the command runs at most once
///   whether or not the first attempt reached it. (Go's net/http makes the same call: its transport retries a
///   request on a reused connection that failed before the answer only if the request is replayable, which a POST
///   carrying an `Idempotency-Key` header is: `Request.isReplayable`, `persistConn.shouldRetryRequest`.)
/// A fresh connection that fails is never retried: that failure is the agent's answer (a refused certificate).
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
        /// The connection closed after part of the answer.
        case closedEarly
        /// The connection closed (`cause` nil) or failed below HTTP (`cause`: a reset) before any byte of the
        /// answer arrived, or while it was idle: the agent may not have seen the request at all.
        case closedBeforeAnswer(cause: (any Error)?)
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
    /// What the server's certificate must be beyond the chain the handshake verified; checked before a request is
    /// sent on a new connection.
    let serverPolicy: PeerCertificatePolicy
    let timeout: TimeAmount
    let maxResponseBytes: Int
    let group: any EventLoopGroup
    /// Where requests leave their connection for the next request; nil: every request connects afresh.
    var keptAlive: KeptConnection? = nil

    /// How a request may use the client's kept connection (`keptAlive`).
    enum Reuse: Sendable, Equatable {
        /// A fresh connection, closed after the answer (an agent binary upload).
        case never
        /// A read: takes and leaves the kept connection; retried on a fresh one after any failure of a reused one.
        case read
        /// A command (a signed envelope the agent answers again when re-submitted): takes the kept connection,
        /// leaves it for the next request if `leaveOpen` (false: `Connection: close`, for a command after which the
        /// agent goes down); retried on a fresh one only if a reused one closed before any answer.
        case command(leaveOpen: Bool)
    }

    /// Sends the request and waits for the whole answer. Cancelling the calling task abandons the request
    /// at once (connecting or waiting) and closes the connection: a caller's own timeout must not be held
    /// up by a peer that never answers (a host that went down mid-request).
    func request(
        method: HTTPMethod, path: String, body: ByteBuffer?, contentType: String? = nil, headers extra: HTTPHeaders = [:],
        reuse: Reuse
    ) async throws(Failure) -> Response {
        let keep = reuse == .never ? nil : keptAlive
        let leaveOpen: Bool
        switch reuse {
        case .never: leaveOpen = false
        case .read: leaveOpen = true
        case .command(let open): leaveOpen = open
        }
        if let keep, let connection = keep.take() {
            do throws(Failure) {
                let response = try await exchange(
                    on: connection, method: method, path: path, body: body, contentType: contentType, headers: extra,
                    keepAlive: leaveOpen)
                if leaveOpen { keep.put(connection) }
                return response
            } catch {
                switch (error, reuse) {
                case (.timeout, _), (.cancelled, _): throw error
                case (_, .read): break  // closed under us (the agent restarted or timed it out): a GET may be asked again
                case (.closedBeforeAnswer, .command): break  // the agent answers the identical envelope again, runs it at most once
                default: throw error
                }
            }
        }
        let connection = try await connect()
        let response = try await exchange(
            on: connection, method: method, path: path, body: body, contentType: contentType, headers: extra,
            keepAlive: keep != nil && leaveOpen)
        if let keep, leaveOpen { keep.put(connection) }
        return response
    }

    /// A TLS connection and the handler that routes its answers.
    final class Connection: Sendable {
        let channel: any Channel
        let router: NIOLoopBound<ResponseRouter>
        /// The router's view of whether another request may follow, readable from any thread.
        let reusable: ResponseRouter.Reusable
        let connectedAt = ContinuousClock.now

        init(channel: any Channel, router: NIOLoopBound<ResponseRouter>, reusable: ResponseRouter.Reusable) {
            self.channel = channel
            self.router = router
            self.reusable = reusable
        }
    }

    private func connect() async throws(Failure) -> Connection {
        let eventLoop = group.next()
        let connected = eventLoop.makePromise(of: Channel.self)
        // The channel initializer leaves its router here (a TLS refusal may close the channel, and take the router
        // out of its pipeline, before the connect returns).
        let made = RouterBox()
        let verified = eventLoop.makePromise(of: Void.self)
        let channel: any Channel
        do {
            channel = try await withTaskCancellationHandler {
                try await openChannel(eventLoop: eventLoop, connected: connected, made: made, verified: verified)
            } onCancel: {
                connected.fail(Failure.cancelled)  // a second completion is ignored by NIO
            }
        } catch let failure as Failure {
            verified.fail(failure)
            throw failure
        } catch {
            verified.fail(error)
            throw .connect(error)
        }
        // Nothing is sent before the server's certificate passed `serverPolicy` (a request to an impostor would hand
        // it a signed envelope it could replay to the real agent while valid).
        do {
            let timeout = self.timeout
            let deadline = eventLoop.scheduleTask(in: timeout) { verified.fail(Failure.timeout) }
            defer { deadline.cancel() }
            try await withTaskCancellationHandler {
                try await verified.futureResult.get()
            } onCancel: {
                verified.fail(Failure.cancelled)
            }
        } catch {
            channel.close(promise: nil)
            switch error {
            case let failure as Failure: throw failure
            case is NIOSSLError, is BoringSSLError, is NIOSSLExtraError, is ServerCertificateRefused: throw .tls(error)
            default: throw .closedEarly
            }
        }
        guard let (router, reusable) = made.value.withLock({ $0 }) else {
            channel.close(promise: nil)
            throw .other(ChannelError.inappropriateOperationForState)  // the initializer always makes one
        }
        return Connection(channel: channel, router: router, reusable: reusable)
    }

    /// What a channel initializer made, for the code that connected.
    private final class RouterBox: Sendable {
        let value = Mutex<(NIOLoopBound<ResponseRouter>, ResponseRouter.Reusable)?>(nil)
    }

    private func openChannel(
        eventLoop: any EventLoop, connected: EventLoopPromise<Channel>, made: RouterBox, verified: EventLoopPromise<Void>
    ) async throws(Failure) -> Channel {
        do {
            let (tls, serverHostname, maxBytes) = (self.tls, self.serverHostname, self.maxResponseBytes)
            let policy = serverPolicy
            let bootstrap = ClientBootstrap(group: eventLoop)
                .connectTimeout(timeout)
                .channelOption(.socketOption(.tcp_nodelay), value: 1)
                .channelInitializer { channel in
                    channel.eventLoop.makeCompletedFuture {
                        let sync = channel.pipeline.syncOperations
                        try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: serverHostname))
                        try sync.addHandler(ServerCertificateCheck(policy: policy, verified: verified))
                        try sync.addHTTPClientHandlers()
                        let router = ResponseRouter(maxBytes: maxBytes)
                        try sync.addHandler(router)
                        made.value.withLock { $0 = (NIOLoopBound(router, eventLoop: channel.eventLoop), router.reusable) }
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
            return try await connected.futureResult.get()
        } catch Failure.cancelled {
            throw .cancelled
        } catch {
            throw .connect(error)
        }
    }

    /// One request on `connection`. The connection is closed after the answer unless `keepAlive` (and the server
    /// agreed), and always on a failure.
    private func exchange(
        on connection: Connection, method: HTTPMethod, path: String, body: ByteBuffer?, contentType: String?,
        headers extra: HTTPHeaders, keepAlive: Bool
    ) async throws(Failure) -> Response {
        let channel = connection.channel
        let promise = channel.eventLoop.makePromise(of: Response.self)
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: "\(serverHostname ?? host):\(port)")
        headers.add(name: "Connection", value: keepAlive ? "keep-alive" : "close")
        headers.add(name: "Accept", value: "application/json")
        if let body {
            headers.add(name: "Content-Length", value: "\(body.readableBytes)")
            if let contentType { headers.add(name: "Content-Type", value: contentType) }
        }
        headers.add(contentsOf: extra)
        let head = HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)
        let router = connection.router
        let timeout = self.timeout
        channel.eventLoop.execute {
            router.value.begin(promise, closeAfter: !keepAlive)
            let deadline = channel.eventLoop.scheduleTask(in: timeout) {
                promise.fail(Failure.timeout)
                channel.close(promise: nil)
            }
            promise.futureResult.whenComplete { _ in deadline.cancel() }
            channel.write(HTTPClientRequestPart.head(head), promise: nil)
            if let body { channel.write(HTTPClientRequestPart.body(.byteBuffer(body)), promise: nil) }
            // A write failure (e.g. the server refused our certificate and closed) also surfaces through the
            // router's errorCaught/channelInactive, with the more telling error.
            channel.writeAndFlush(HTTPClientRequestPart.end(nil), promise: nil)
        }
        do {
            return try await withTaskCancellationHandler {
                try await promise.futureResult.get()
            } onCancel: {
                promise.fail(Failure.cancelled)  // a second completion is ignored by NIO
                channel.close(promise: nil)
            }
        } catch let failure as Failure {
            channel.close(promise: nil)
            throw failure
        } catch {
            channel.close(promise: nil)
            throw .other(error)
        }
    }
}

/// Where a client's requests leave their connection for the next request: at most one idle connection, given out
/// while its handshake is younger than `maxAge` and it has been idle less than `maxIdle` (well under the agent's
/// idle timeout, so the agent rarely closes it first). Certificates are thus re-verified at least every `maxAge`.
final class KeptConnection: Sendable {
    let maxAge: Duration
    let maxIdle: Duration
    private let idle = Mutex<(connection: HTTPSOneShot.Connection, since: ContinuousClock.Instant)?>(nil)

    init(maxAge: Duration, maxIdle: Duration) {
        self.maxAge = maxAge
        self.maxIdle = maxIdle
    }

    /// The idle connection if it may still be used (closed otherwise); nil if there is none.
    func take() -> HTTPSOneShot.Connection? {
        guard let entry = idle.withLock({ slot in defer { slot = nil }; return slot }) else { return nil }
        let now = ContinuousClock.now
        guard entry.connection.channel.isActive, entry.since.duration(to: now) < maxIdle,
            entry.connection.connectedAt.duration(to: now) < maxAge
        else {
            entry.connection.channel.close(promise: nil)
            return nil
        }
        return entry.connection
    }

    /// Leaves `connection` for the next request if it stays open (closing the one left before, if any).
    func put(_ connection: HTTPSOneShot.Connection) {
        guard connection.reusable.value, connection.channel.isActive else {
            connection.channel.close(promise: nil)
            return
        }
        let previous = idle.withLock { slot in
            defer { slot = (connection, .now) }
            return slot
        }
        previous?.connection.channel.close(promise: nil)
    }

    deinit {
        idle.withLock { $0 }?.connection.channel.close(promise: nil)
    }
}

/// Routes the answers of one connection to the request waiting for them; fails it on TLS errors, early close,
/// or an oversized body. A connection whose answer said `Connection: close`, or that failed, is not reusable.
final class ResponseRouter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart

    private let maxBytes: Int
    private var promise: EventLoopPromise<HTTPSOneShot.Response>?
    private var head: HTTPResponseHead?
    private var body = ByteBuffer()
    private var closeAfter = true
    /// Why the connection can no longer carry a request (set once it failed or closed).
    private var dead: HTTPSOneShot.Failure?
    /// Whether another request may be sent on this connection: false once an answer said `Connection: close`,
    /// the request asked for that, or the connection failed or closed. Set before the waiting request resumes.
    let reusable = Reusable()

    final class Reusable: Sendable {
        private let flag = Mutex(true)
        var value: Bool { flag.withLock { $0 } }
        func clear() { flag.withLock { $0 = false } }
    }

    init(maxBytes: Int) {
        self.maxBytes = maxBytes
    }

    /// Starts waiting for the answer to the request about to be written.
    func begin(_ promise: EventLoopPromise<HTTPSOneShot.Response>, closeAfter: Bool) {
        if let dead {
            promise.fail(dead)
            return
        }
        self.promise = promise
        self.closeAfter = closeAfter
        head = nil
        body.clear()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard promise != nil else { return }
        switch Self.unwrapInboundIn(data) {
        case .head(let h):
            head = h
        case .body(var chunk):
            if body.readableBytes + chunk.readableBytes > maxBytes {
                fail(.responseTooLarge(maxBytes), context: context)
                return
            }
            body.writeBuffer(&chunk)
        case .end:
            guard let head else {
                fail(.closedEarly, context: context)
                return
            }
            let promise = self.promise
            self.promise = nil
            if closeAfter || !head.isKeepAlive {
                reusable.clear()
                context.close(promise: nil)
            }
            promise?.succeed(HTTPSOneShot.Response(status: head.status, headers: head.headers, body: body))
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if case NIOSSLError.uncleanShutdown? = error as? NIOSSLError, unanswered {
            // The peer's TCP connection ended without a TLS close_notify (a process killed, a connection cut):
            // a close, not a TLS refusal.
            fail(.closedBeforeAnswer(cause: nil), context: context)
        } else if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
            fail(.tls(error), context: context)
        } else {
            fail(unanswered ? .closedBeforeAnswer(cause: error) : .other(error), context: context)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        reusable.clear()
        let failure: HTTPSOneShot.Failure = unanswered ? .closedBeforeAnswer(cause: nil) : .closedEarly
        if dead == nil { dead = failure }
        promise?.fail(failure)
        promise = nil
        context.fireChannelInactive()
    }

    /// Whether no byte of an answer to the request in progress has arrived (true while idle: a request that finds
    /// the connection dead got nothing).
    private var unanswered: Bool { promise == nil || head == nil }

    private func fail(_ failure: HTTPSOneShot.Failure, context: ChannelHandlerContext) {
        reusable.clear()
        if dead == nil { dead = failure }
        promise?.fail(failure)
        promise = nil
        context.close(promise: nil)
    }
}
