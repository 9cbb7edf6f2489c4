import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NIOWebSocket
import Synchronization
import WebSocketKit

// `pods/{name}/exec` over a WebSocket, as kubectl does since Kubernetes 1.30 (client-go
// tools/remotecommand/websocket.go): `GET …/exec?command=…&stdout=true&stderr=true` upgraded with
// `Sec-WebSocket-Protocol: v5.channel.k8s.io, v4.channel.k8s.io`.
//
// The frames (masking, ping/pong, close handshake, fragment aggregation with a size bound) are websocket-kit's
// `WebSocket`. Its `WebSocketClient.connect` is not used: it connects to the URL's host and sends that same host
// as TLS SNI, so it cannot honour a kubeconfig's `tls-server-name` (connect to the address, verify another
// name), and it drops both a refused upgrade's body (the API's Status saying why) and the 101's
// `Sec-WebSocket-Protocol` (which subprotocol the server chose). So nk3 makes the connection itself — same TLS
// configuration (CA, client certificate, full verification, TLS 1.2+), bearer token, endpoint order and rate
// limiter as every other request of `KubeClient` — runs swift-nio's `NIOWebSocketClientUpgrader` on it, and
// hands the upgraded channel to `WebSocket.client(on:)`.
extension KubeClient {
    /// Runs `command` in `pod` (in `container`, or the pod's only container) and returns its output and exit
    /// code. Read-only commands only: a connection that breaks is retried on the next API server. Bounded: at most
    /// `maxOutputBytes` of output, and the whole session within `timeout`.
    public func exec(
        namespace: String, pod: String, container: String?, command: [String],
        timeout: Duration = .seconds(20), maxOutputBytes: Int = 1 << 20
    ) async throws -> KubeExecResult {
        try await exec(
            namespace: namespace, pod: pod, container: container, command: command, timeout: timeout,
            maxOutputBytes: maxOutputBytes, subprotocols: KubeExecProtocol.offered)
    }

    /// `exec` offering `subprotocols` (tests: what the server answers to others).
    func exec(
        namespace: String, pod: String, container: String?, command: [String], timeout: Duration, maxOutputBytes: Int,
        subprotocols: [String]
    ) async throws -> KubeExecResult {
        let path = "/api/v1/namespaces/\(Self.encode(namespace))/pods/\(Self.encode(pod))/exec"
        let target = path + Self.queryString(KubeExecProtocol.query(command: command, container: container))
        try await rateLimiter.acquire()
        var firstError: (any Error)? = nil
        for i in endpoints.order() {
            let endpoint = endpoints.all[i]
            do {
                let result = try await execSession(
                    server: endpoint.server, target: target, path: path, timeout: timeout, maxOutputBytes: maxOutputBytes,
                    subprotocols: subprotocols)
                endpoints.succeeded(i)
                return result
            } catch let error as KubeError {
                throw error
            } catch {
                guard !Self.isTLSFailure(error), !Task.isCancelled else { throw Self.wrapTransport(error, path: path, server: endpoint.server) }
                if firstError == nil { firstError = error }
            }
        }
        throw Self.wrapTransport(firstError ?? KubeError(.transport, "no Kubernetes API server to send \(path) to"), path: path, server: config.server)
    }

    private func execSession(
        server: URL, target: String, path: String, timeout: Duration, maxOutputBytes: Int, subprotocols: [String]
    ) async throws -> KubeExecResult {
        var host = server.host ?? "127.0.0.1"
        if host.hasPrefix("["), host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
        let port = server.port ?? 443
        // SNI and the name verified: tls-server-name, else the server's host name; for an IP address no SNI, and
        // NIOSSL verifies the certificate's IP SANs against the connected address.
        let isIP = (try? SocketAddress(ipAddress: host, port: 0)) != nil
        let verifiedName = config.tlsServerName ?? (isIP ? nil : host)
        let context = try NIOSSLContext(configuration: tlsConfiguration)
        let group = MultiThreadedEventLoopGroup.singleton
        let loop = group.next()
        let done = loop.makePromise(of: KubeExecResult.self)
        let session = ExecSession(promise: done, path: path, maxOutputBytes: maxOutputBytes)

        var headers = HTTPHeaders()
        let authority = config.tlsServerName ?? (host.contains(":") ? "[\(host)]" : host)
        headers.add(name: "Host", value: "\(authority):\(port)")
        headers.add(name: "User-Agent", value: Self.userAgent)
        if let token = config.token { headers.add(name: "Authorization", value: "Bearer \(token)") }
        headers.add(name: "Sec-WebSocket-Protocol", value: subprotocols.joined(separator: ", "))
        let head = HTTPRequestHead(version: .http1_1, method: .GET, uri: target, headers: headers)
        let serverClock = self.serverClock
        let wsConfig: WebSocket.Configuration = {
            var c = WebSocket.Configuration()
            c.maxAccumulatedFrameSize = maxOutputBytes + 64 * 1024
            c.maxAccumulatedFrameCount = 4096
            return c
        }()

        let bootstrap = ClientBootstrap(group: loop)
            .connectTimeout(TimeAmount(options.connectTimeout))
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .channelInitializer { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(NIOSSLClientHandler(context: context, serverHostname: verifiedName))
                    let request = ExecUpgradeRequestHandler(head: head, session: session)
                    let requestBox = NIOLoopBound(request, eventLoop: channel.eventLoop)
                    let upgrader = NIOWebSocketClientUpgrader(
                        maxFrameSize: 1 << 20, automaticErrorHandling: true,
                        upgradePipelineHandler: { channel, response in
                            serverClock.observe(dateHeader: response.headers.first(name: "Date"), receivedAt: Date())
                            // RFC 6455 4.1: a subprotocol the client did not offer fails the connection; none at all
                            // would be the legacy `channel.k8s.io`, whose error channel is not a Status.
                            let chosen = response.headers.first(name: "Sec-WebSocket-Protocol")?
                                .trimmingCharacters(in: .whitespaces)
                            guard let chosen, subprotocols.contains(chosen) else {
                                session.fail(
                                    KubeError(.server, "\(path): the API server chose WebSocket subprotocol '\(chosen ?? "")', not one of \(subprotocols.joined(separator: ", "))"))
                                return channel.close()
                            }
                            session.upgraded(protocol: chosen)
                            return WebSocket.client(on: channel, config: wsConfig) { ws in
                                ws.onBinary { _, buffer in session.consume(buffer) }
                                ws.onClose.whenComplete { _ in session.finish() }
                            }
                        })
                    try sync.addHTTPClientHandlers(
                        leftOverBytesStrategy: .forwardBytes,
                        withClientUpgrade: (upgraders: [upgrader], completionHandler: { _ in
                            channel.pipeline.syncOperations.removeHandler(requestBox.value, promise: nil)
                        }))
                    try sync.addHandler(request)
                }
            }
        let timer = loop.scheduleTask(in: TimeAmount(timeout)) {
            session.fail(KubeError(.timeout, "\(path): the command did not finish within \(timeout)"))
        }
        defer { timer.cancel() }
        let channel: any Channel
        do {
            channel = try await bootstrap.connect(host: host, port: port).get()
        } catch {
            session.fail(error)  // completes the promise: never left pending
            throw error
        }
        session.attach(channel)
        channel.closeFuture.whenComplete { _ in session.finish() }
        return try await withTaskCancellationHandler {
            try await done.futureResult.get()
        } onCancel: {
            session.fail(CancellationError())
        }
    }
}

/// One exec session's state: the decoder, the channel (closed when the session ends) and the answer.
private final class ExecSession: Sendable {
    private struct State {
        var decoder: KubeExecDecoder
        var chosen: String?
        var upgraded = false
        var channel: (any Channel)?
        var finished = false
    }
    private let state: Mutex<State>
    private let promise: EventLoopPromise<KubeExecResult>
    private let path: String

    init(promise: EventLoopPromise<KubeExecResult>, path: String, maxOutputBytes: Int) {
        self.promise = promise
        self.path = path
        self.state = Mutex(State(decoder: KubeExecDecoder(maxOutputBytes: maxOutputBytes)))
    }

    func attach(_ channel: any Channel) {
        let finished = state.withLock { s in
            s.channel = channel
            return s.finished
        }
        if finished { channel.close(promise: nil) }
    }

    func upgraded(protocol chosen: String) {
        state.withLock {
            $0.upgraded = true
            $0.chosen = chosen
        }
    }

    func consume(_ buffer: ByteBuffer) {
        let error: (any Error)? = state.withLock { s in
            guard !s.finished else { return nil }
            do { try s.decoder.consume(buffer.readableBytesView) } catch { return error }
            return nil
        }
        if let error { fail(error) }
    }

    /// The connection closed: the result if the command's Status arrived, else a transport failure (before the
    /// upgrade: the next API server may be tried) or a server error (after it).
    func finish() {
        let (decoder, chosen, upgraded, first) = state.withLock { s in
            let first = !s.finished
            s.finished = true
            return (s.decoder, s.chosen, s.upgraded, first)
        }
        guard first else { return }
        if upgraded {
            promise.completeWith(Result { try decoder.result(negotiatedProtocol: chosen) })
        } else {
            promise.fail(ChannelError.ioOnClosedChannel)
        }
        state.withLock { $0.channel }?.close(promise: nil)
    }

    func fail(_ error: any Error) {
        let (first, channel) = state.withLock { s in
            let first = !s.finished
            s.finished = true
            return (first, s.channel)
        }
        guard first else { return }
        promise.fail(error)
        channel?.close(promise: nil)
    }
}

/// Sends the upgrade request when the connection is up, and turns a refused upgrade (any answer but 101, which
/// `NIOHTTPClientUpgradeHandler` passes on) into the API's error, its Status body read up to 64 KiB.
private final class ExecUpgradeRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPClientResponsePart
    typealias OutboundOut = HTTPClientRequestPart

    private let head: HTTPRequestHead
    private let session: ExecSession
    private var refusal: HTTPResponseHead?
    private var body = ByteBuffer()

    init(head: HTTPRequestHead, session: ExecSession) {
        self.head = head
        self.session = session
    }

    func channelActive(context: ChannelHandlerContext) {
        context.write(Self.wrapOutboundOut(.head(head)), promise: nil)
        context.writeAndFlush(Self.wrapOutboundOut(.end(nil)), promise: nil)
        context.fireChannelActive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch Self.unwrapInboundIn(data) {
        case .head(let h):
            refusal = h
        case .body(var chunk):
            if body.readableBytes < 64 * 1024 { body.writeBuffer(&chunk) }
        case .end:
            guard let refusal else { return }
            let path = String(head.uri.prefix { $0 != "?" })
            session.fail(KubeClient.error(status: Int(refusal.status.code), headers: refusal.headers, body: body, path: path))
            context.close(promise: nil)
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        session.fail(error)
        context.close(promise: nil)
    }
}
