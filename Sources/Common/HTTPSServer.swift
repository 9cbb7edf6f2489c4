#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import Synchronization
import X509

/// A small HTTP/1.1 server on swift-nio with optional TLS (NIOSSL): keep-alive, body and header limits,
/// idle timeout, chunked streaming responses, and the verified client certificate for each request.
///
/// Shared by the agent and by the simulated Kubernetes API server.
public final class HTTPSServer: Sendable {
    typealias Connection = NIOAsyncChannel<HTTPServerRequestPart, HTTPServerResponsePart>

    private let serverChannel: NIOAsyncChannel<Connection, Never>
    private let runTask: Task<Void, Never>
    private let connections: Connections
    private let admission: ConnectionAdmission
    private let isTLS: Bool
    /// Trims the allocator after connection bursts (TLS servers: the agent).
    private let memoryReturn: Task<Void, Never>?
    /// The bound port (useful with port 0).
    public let port: Int
    /// The bound host.
    public let host: String

    private init(
        serverChannel: NIOAsyncChannel<Connection, Never>, runTask: Task<Void, Never>, connections: Connections,
        admission: ConnectionAdmission, isTLS: Bool, host: String, port: Int
    ) {
        self.isTLS = isTLS
        self.memoryReturn = isTLS ? MemoryReturn.watch(admission) : nil
        self.serverChannel = serverChannel
        self.runTask = runTask
        self.connections = connections
        self.admission = admission
        self.host = host
        self.port = port
    }

    /// The open connections, so that `shutdown()` can close them instead of cancelling the accept loop.
    /// Cancelling it drops connections NIO has accepted but the loop has not taken yet; their
    /// `NIOAsyncChannel` is then deinited without `executeThenClose` and NIO traps ("Deinited NIOAsyncWriter
    /// without calling finish()", apple/swift-nio#2637, #3481) — the whole process dies. It did, in the
    /// simulation, when an agent stopped for a reboot while the coordinator was connecting.
    final class Connections: Sendable {
        private let state = Mutex<(stopping: Bool, open: [ObjectIdentifier: any Channel], total: Int)>((false, [:], 0))

        /// Registers an accepted connection; false (and it is closed) if the server is stopping.
        func add(_ channel: any Channel) -> Bool {
            let accepted = state.withLock { s -> Bool in
                guard !s.stopping else { return false }
                s.open[ObjectIdentifier(channel)] = channel
                s.total += 1
                return true
            }
            if !accepted { channel.close(promise: nil) }
            return accepted
        }

        /// How many connections are open (accepted and not yet finished).
        var count: Int { state.withLock { $0.open.count } }

        /// How many connections were served since the start.
        var total: Int { state.withLock { $0.total } }

        /// The open connections' channels.
        var channels: [any Channel] { state.withLock { Array($0.open.values) } }

        func remove(_ channel: any Channel) {
            _ = state.withLock { $0.open.removeValue(forKey: ObjectIdentifier(channel)) }
        }

        /// Marks the server stopping and closes every open connection.
        func stop() {
            let open = state.withLock { s -> [any Channel] in
                s.stopping = true
                return Array(s.open.values)
            }
            for c in open { c.close(promise: nil) }
        }
    }

    /// Connections made by the child initializer but not yet taken by the accept loop.
    ///
    /// Works around swift-nio's "Deinited NIOAsyncWriter without calling finish()" trap (apple/swift-nio#2637):
    /// a child accepted while the listener closes is wrapped in a `NIOAsyncChannel`, then dropped by the
    /// finished server stream before it becomes active; at `channelActive` the handler lets go of its writer and
    /// the last reference dies unfinished — the whole process traps (seen with agents restarting for a reboot
    /// while a coordinator connects). Holding every new connection here until the accept loop takes it, and
    /// finishing the ones it never takes (through `executeThenClose`) when their channel closes, keeps a
    /// reference alive across `channelActive` and always finishes the writer.
    final class Pending: Sendable {
        private let state = Mutex<[ObjectIdentifier: Connection]>([:])

        /// Holds `connection` and arranges for it to be finished if it closes before the accept loop takes it.
        func hold(_ connection: Connection) {
            let id = ObjectIdentifier(connection.channel)
            state.withLock { $0[id] = connection }
            connection.channel.closeFuture.whenComplete { _ in
                guard let orphan = self.take(id) else { return }
                Task { try? await orphan.executeThenClose { _, _ in } }
            }
        }

        /// Takes ownership: returns the connection if nobody took it before.
        func take(_ id: ObjectIdentifier) -> Connection? {
            state.withLock { $0.removeValue(forKey: id) }
        }
    }

    /// Binds `host:port` (port 0: an ephemeral port, see `port`) and serves requests with `handler` until
    /// `shutdown()`. With `tls`, every connection is TLS (see `TLSConfigs.server`).
    public static func start(
        host: String, port: Int, tls: NIOSSLContext?, limits: HTTPServerLimits = HTTPServerLimits(),
        logger: Logger, eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        upload: (@Sendable (HTTPServerRequest) async -> HTTPUploadDecision)? = nil,
        upgrade: HTTPUpgradeHook? = nil,
        handler: @escaping @Sendable (HTTPServerRequest) async -> HTTPServerResponse
    ) async throws -> HTTPSServer {
        let (idle, stalled) = (TimeAmount(limits.idleTimeout), TimeAmount(limits.writeTimeout))
        let headerLimits: NIOHTTPDecoderLimitConfiguration = {
            var l = NIOHTTPDecoderLimitConfiguration()
            l.maxHeaderListSize = limits.maxHeaderBytes
            l.maxHeaderFieldSize = limits.maxHeaderBytes
            l.maxHeaderFieldCount = 256
            return l
        }()
        let pending = Pending()
        let admission = ConnectionAdmission(limits: limits)
        let handshakeTimeout = TimeAmount(limits.handshakeTimeout)
        let channel = try await ServerBootstrap(group: eventLoopGroup)
            .serverChannelOption(.backlog, value: Int32(clamping: limits.backlog))
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelInitializer { server in
                // TLS connections only: the plain-HTTP users (the simulated Kubernetes API) keep no limits.
                guard tls != nil else { return server.eventLoop.makeSucceededVoidFuture() }
                return server.eventLoop.makeCompletedFuture {
                    try server.pipeline.syncOperations.addHandler(AdmissionFilter(admission: admission))
                }
            }
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
            .bind(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    if let tls {
                        // Admitted by `AdmissionFilter` on the listening channel.
                        try sync.addHandler(NIOSSLServerHandler(context: tls))
                        try sync.addHandler(HandshakeGate(admission: admission, timeout: handshakeTimeout))
                    }
                    let decoder = ByteToMessageHandler(
                        HTTPRequestDecoder(leftOverBytesStrategy: upgrade == nil ? .dropBytes : .forwardBytes, limitConfiguration: headerLimits))
                    let encoder = HTTPResponseEncoder()
                    let protocolErrors = HTTPServerProtocolErrorHandler()
                    let idleState = IdleStateHandler(readTimeout: idle, writeTimeout: stalled)
                    let idleClose = IdleCloseHandler()
                    try sync.addHandler(decoder)
                    try sync.addHandler(encoder)
                    try sync.addHandler(protocolErrors)
                    if let upgrade {
                        // Only servers given a hook (the simulated Kubernetes API's exec): swift-nio's upgrade handler,
                        // which passes every request it does not upgrade on unchanged. On an upgrade it removes the
                        // HTTP handlers; the upgraded protocol's handlers go right after `idleState`, ahead of the
                        // async channel's handler, which then sees nothing more until the connection closes.
                        try sync.addHandler(
                            HTTPServerUpgradeHandler(
                                upgraders: upgrade.upgraders(channel, idleState), httpEncoder: encoder,
                                extraHTTPHandlers: [decoder, protocolErrors, idleClose], upgradeCompletionHandler: { _ in }))
                        try sync.addHandler(RefusedUpgradeFilter(isRefusal: upgrade.isRefusal))
                    }
                    try sync.addHandler(idleState)
                    try sync.addHandler(idleClose)
                    let connection = try Connection(wrappingChannelSynchronously: channel)
                    pending.hold(connection)
                    return connection
                }
            }
        let boundPort = channel.channel.localAddress?.port ?? port
        var log = logger
        log[metadataKey: "http.port"] = "\(boundPort)"
        let serverLogger = log
        let isTLS = tls != nil
        let connections = Connections()
        let task = Task {
            do {
                try await channel.executeThenClose { inbound in
                    try await withThrowingDiscardingTaskGroup { group in
                        // Ends once the server channel is closed and every connection it accepted was taken.
                        for try await connection in inbound {
                            // Already closed and finished by `Pending` if it is no longer held there.
                            guard pending.take(ObjectIdentifier(connection.channel)) != nil else { continue }
                            group.addTask {
                                guard connections.add(connection.channel) else {
                                    // Accepted while stopping: still through executeThenClose (see Connections).
                                    try? await connection.executeThenClose { _, _ in }
                                    return
                                }
                                await serve(
                                    connection, tls: isTLS, limits: limits, logger: serverLogger, upload: upload, handler: handler)
                                connections.remove(connection.channel)
                            }
                        }
                    }
                }
            } catch {
                if !Task.isCancelled { serverLogger.debug("http server stopped: \(error)") }
            }
        }
        logger.debug("http server listening", metadata: ["http.host": "\(host)", "http.port": "\(boundPort)"])
        return HTTPSServer(
            serverChannel: channel, runTask: task, connections: connections, admission: admission, isTLS: isTLS,
            host: host, port: boundPort)
    }

    /// How many connections are being served (tests: 0 once every client has gone away).
    public var openConnectionCount: Int { connections.count }

    /// Connections served since the start. With TLS, only those whose handshake completed (client certificate
    /// verified) and that were admitted: each one a full mTLS handshake. A connection refused by the limits or
    /// failing its handshake is counted in `admissionRefusals` or nowhere, never here.
    public var acceptedConnectionCount: Int { isTLS ? admission.establishedTotal : connections.total }

    /// TLS connections refused or closed by the admission limits since the start, by reason (`per_address`,
    /// `handshake_pool`, `evicted`, `handshake_timeout`, `established_pool`).
    public var admissionRefusals: [String: Int] { admission.refusals }

    /// TLS connections in their handshake, and with a completed handshake, now.
    public var admissionCounts: (handshaking: Int, established: Int) { admission.counts }

    /// The channels of the connections being served (tests).
    var openChannels: [any Channel] { connections.channels }

    /// Stops accepting, closes every connection (ending handlers' connections and streams in progress) and
    /// waits until all of them are done. Never cancels the accept loop (see `Connections`).
    public func shutdown() async {
        memoryReturn?.cancel()
        connections.stop()
        try? await serverChannel.channel.close()
        connections.stop()  // any accepted between the first stop and the close
        // A handler still busy after its connection closed: cancel it once the listener is long closed (nothing
        // can be buffered any more), so a stuck handler cannot hold shutdown forever.
        let run = runTask
        let watchdog = Task {
            try await Task.sleep(for: .seconds(2))
            run.cancel()
        }
        await runTask.value
        watchdog.cancel()
    }

    // MARK: - one connection

    private static func serve(
        _ connection: Connection, tls: Bool, limits: HTTPServerLimits, logger: Logger,
        upload: (@Sendable (HTTPServerRequest) async -> HTTPUploadDecision)?,
        handler: @Sendable (HTTPServerRequest) async -> HTTPServerResponse
    ) async {
        let channel = connection.channel
        do {
            try await connection.executeThenClose { inbound, outbound in
                var iterator = inbound.makeAsyncIterator()
                var peer: Certificate?? = nil
                while let part = try await iterator.next() {
                    guard case .head(let head) = part else { return }  // body without head: protocol error
                    let keepAlive = head.isKeepAlive
                    if let upload {
                        // A handler may take this request's body as a stream (a large upload) once it has seen
                        // the head and the verified client certificate.
                        if peer == nil {
                            peer = .some(tls ? try await peerCertificate(channel, logger: logger) : nil)
                        }
                        let request = HTTPServerRequest(
                            method: head.method, uri: head.uri, headers: head.headers, clientCertificate: peer ?? nil)
                        switch await upload(request) {
                        case .buffer:
                            break
                        case .refuse(let response):
                            try await refuseAndClose(response, head: head, discardUpTo: limits.maxBodyBytes, outbound: outbound, channel: channel, iterator: &iterator)
                            return
                        case .stream(let maxBytes, let consumer):
                            let goOn = try await streamBody(
                                head: head, keepAlive: keepAlive, maxBytes: maxBytes, consumer: consumer, outbound: outbound,
                                channel: channel, iterator: &iterator)
                            if goOn { continue } else { return }
                        }
                    }
                    if let length = head.headers.first(name: "content-length").flatMap(Int.init), length > limits.maxBodyBytes {
                        try await refuseTooLarge(head: head, limit: limits.maxBodyBytes, outbound: outbound, channel: channel, iterator: &iterator)
                        return
                    }
                    if head.headers.first(name: "expect")?.lowercased() == "100-continue" {
                        // The client waits for this before sending a large body (curl does above 1 MiB).
                        try await outbound.write(.head(HTTPResponseHead(version: head.version, status: .continue)))
                    }
                    var body = channel.allocator.buffer(capacity: 0)
                    var complete = false
                    var tooLarge = false
                    reading: while let p = try await iterator.next() {
                        switch p {
                        case .body(var chunk):
                            if body.readableBytes + chunk.readableBytes > limits.maxBodyBytes {
                                tooLarge = true
                                break reading
                            }
                            body.writeBuffer(&chunk)
                        case .end:
                            complete = true
                            break reading
                        case .head:
                            return
                        }
                    }
                    if tooLarge {
                        try await refuseTooLarge(head: head, limit: limits.maxBodyBytes, outbound: outbound, channel: channel, iterator: &iterator)
                        return
                    }
                    guard complete else { return }  // client went away mid-request

                    if peer == nil {
                        peer = .some(tls ? try await peerCertificate(channel, logger: logger) : nil)
                    }
                    let request = HTTPServerRequest(
                        method: head.method, uri: head.uri, headers: head.headers, body: body,
                        clientCertificate: peer ?? nil)
                    let response = await handler(request)
                    var notified = false
                    defer { if !notified { response.afterSent?() } }  // the write failed: the client is gone
                    try await write(response, for: head, keepAlive: keepAlive, outbound: outbound, channel: channel)
                    if !keepAlive {
                        try await closeOutputThenWaitForClient(channel: channel, iterator: &iterator) {
                            notified = true
                            response.afterSent?()
                        }
                        return
                    }
                    notified = true
                    response.afterSent?()
                }
            }
        } catch {
            logger.trace("http connection ended: \(error)")
        }
    }

    /// Ends a connection after a `Connection: close` answer by closing only the sending side (TLS close_notify,
    /// then a TCP FIN) and letting the client close the connection: the answer reaches it whole (no reset from
    /// closing with unread input), and the TLS handler never waits for the client's close_notify.
    ///
    /// Closing both sides here instead made NIOSSL send close_notify and schedule a close for later
    /// (`TLSConfiguration.shutdownTimeout`, 5 s by default) in case the client never answers with its own. A client that reads
    /// to EOF and closes the socket without one (Python's `ssl`) ends the connection at once, but NIOSSL
    /// does not cancel that timer when the channel goes inactive, and the timer holds the handler, its
    /// BoringSSL connection and its buffers: about 30 KiB per connection for 5 s, so under a steady stream of
    /// such requests the heap grew to (request rate × 5 s) connections' worth and glibc kept it.
    ///
    /// A client that sends anything more (it should not after `Connection: close`) is cut off; one that stays
    /// silent without closing is closed by the idle timeout.
    static func closeOutputThenWaitForClient(
        channel: Channel, iterator: inout NIOAsyncChannelInboundStream<HTTPServerRequestPart>.AsyncIterator,
        whenSent: () -> Void
    ) async throws {
        try? await channel.close(mode: .output).get()
        whenSent()
        _ = try await iterator.next()
    }

    private static func peerCertificate(_ channel: Channel, logger: Logger) async throws -> Certificate? {
        guard let nio = try await channel.nioSSL_peerCertificate().get() else { return nil }
        do {
            return try TLSConfigs.certificate(from: nio)
        } catch {
            // NIOSSL verified it, swift-certificates cannot parse it: treat as no certificate (→ no role).
            logger.info("cannot parse client certificate: \(error)")
            return nil
        }
    }

    /// Answers 413, stops sending, and discards (never buffers) what the client still sends for a while so
    /// that it reads the answer instead of a connection reset.
    static func refuseTooLarge(
        head: HTTPRequestHead, limit: Int, outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>,
        channel: Channel, iterator: inout NIOAsyncChannelInboundStream<HTTPServerRequestPart>.AsyncIterator
    ) async throws {
        let response = HTTPServerResponse.json(
            .payloadTooLarge, ["code": "body_too_large", "message": "request body exceeds the limit of \(limit) bytes"])
        try await refuseAndClose(response, head: head, discardUpTo: limit, outbound: outbound, channel: channel, iterator: &iterator)
    }

    /// Answers `response` with `Connection: close`, stops sending, and discards what the client still sends (up
    /// to a bound derived from `discardUpTo`) so that it reads the answer instead of a connection reset.
    static func refuseAndClose(
        _ response: HTTPServerResponse, head: HTTPRequestHead, discardUpTo limit: Int,
        outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>, channel: Channel,
        iterator: inout NIOAsyncChannelInboundStream<HTTPServerRequestPart>.AsyncIterator
    ) async throws {
        var response = response
        response.headers.replaceOrAdd(name: "Connection", value: "close")
        try await write(response, for: head, keepAlive: false, outbound: outbound, channel: channel)
        try? await channel.close(mode: .output).get()
        var discarded = 0
        while discarded < max(limit, 1 << 20) * 4, let p = try await iterator.next() {
            if case .body(let chunk) = p { discarded += chunk.readableBytes }
        }
    }

    static func write(
        _ response: HTTPServerResponse, for request: HTTPRequestHead, keepAlive: Bool,
        outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>, channel: Channel
    ) async throws {
        var headers = response.headers
        headers.remove(name: "content-length")
        headers.remove(name: "transfer-encoding")
        if !keepAlive { headers.replaceOrAdd(name: "Connection", value: "close") }
        switch response.body {
        case .bytes(let bytes):
            headers.add(name: "Content-Length", value: "\(bytes.readableBytes)")
            let head = HTTPResponseHead(version: request.version, status: response.status, headers: headers)
            if request.method == .HEAD {
                try await outbound.write(contentsOf: [.head(head), .end(nil)])  // HEAD: length, but no body
            } else {
                try await outbound.write(contentsOf: [.head(head), .body(.byteBuffer(bytes)), .end(nil)])
            }
        case .stream(let stream):
            headers.add(name: "Transfer-Encoding", value: "chunked")
            let head = HTTPResponseHead(version: request.version, status: response.status, headers: headers)
            try await outbound.write(.head(head))
            // The stream may stay silent for long (a watch): stop it when the connection closes.
            let writer = Task {
                for await chunk in stream {
                    try await outbound.write(.body(.byteBuffer(chunk)))
                }
                try Task.checkCancellation()
                try await outbound.write(.end(nil))
            }
            channel.closeFuture.whenComplete { _ in writer.cancel() }
            try await withTaskCancellationHandler {
                try await writer.value
            } onCancel: {
                writer.cancel()
            }
        }
    }
}

/// Protocol upgrades an `HTTPSServer` offers (swift-nio `HTTPServerProtocolUpgrader`s, e.g. NIOWebSocket's server
/// upgrader): without one, a server's pipeline has no upgrade handler at all.
public struct HTTPUpgradeHook: Sendable {
    /// The upgraders for one new connection. An upgraded protocol adds its handlers to `channel` right after
    /// `insertAfter` (not at the end: the HTTP server's async channel handler stays last and must see no frames).
    public var upgraders: @Sendable (_ channel: any Channel, _ insertAfter: any ChannelHandler) -> [any HTTPServerProtocolUpgrader]
    /// Whether an error is an upgrader declining a request (swift-nio fires it down the pipeline before it passes
    /// the request on as plain HTTP); such errors are dropped so the request is answered normally.
    public var isRefusal: @Sendable (any Error) -> Bool

    /// Makes a hook.
    public init(
        upgraders: @escaping @Sendable (_ channel: any Channel, _ insertAfter: any ChannelHandler) -> [any HTTPServerProtocolUpgrader],
        isRefusal: @escaping @Sendable (any Error) -> Bool
    ) {
        self.upgraders = upgraders
        self.isRefusal = isRefusal
    }
}

/// Drops the errors of declined upgrades (`HTTPUpgradeHook.isRefusal`), passing everything else on.
private final class RefusedUpgradeFilter: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = NIOAny
    private let isRefusal: @Sendable (any Error) -> Bool
    init(isRefusal: @escaping @Sendable (any Error) -> Bool) { self.isRefusal = isRefusal }
    func channelRead(context: ChannelHandlerContext, data: NIOAny) { context.fireChannelRead(data) }
    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        if !isRefusal(error) { context.fireErrorCaught(error) }
    }
}

/// Closes a connection that has been idle (no read) for the idle timeout, unless a request is being
/// handled (the handler or a streaming response may legitimately take longer).
private final class IdleCloseHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias InboundOut = HTTPServerRequestPart
    typealias OutboundIn = HTTPServerResponsePart
    typealias OutboundOut = HTTPServerResponsePart

    private var requestsInProgress = 0
    /// Writes handed down that have not completed (the socket has not taken them).
    private var writesPending = 0
    /// Bytes waiting in the socket's buffer at the last write timeout with writes pending.
    private var bufferedAtLastTimeout: Int?

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .end = Self.unwrapInboundIn(data) { requestsInProgress += 1 }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        if case .end = Self.unwrapOutboundIn(data) { requestsInProgress = max(0, requestsInProgress - 1) }
        // Our own promise, on this channel's loop (a caller's could belong to another loop), passed on to theirs.
        let done = context.eventLoop.makePromise(of: Void.self)
        if let promise { done.futureResult.cascade(to: promise) }
        writesPending += 1
        let me = NIOLoopBound(self, eventLoop: context.eventLoop)
        done.futureResult.whenComplete { _ in me.value.writesPending -= 1 }
        context.write(data, promise: done)
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        switch event as? IdleStateHandler.IdleStateEvent {
        case .read?:
            if requestsInProgress == 0 { context.close(promise: nil) }
        case .write?:
            // No write completed for the write timeout while some wait. One large answer to a slow reader completes
            // only at its end, so the stall is proven only when nothing left the socket's buffer since the last
            // such timeout either: the client stopped reading (closed after one to two write timeouts).
            guard writesPending > 0 else {
                bufferedAtLastTimeout = nil
                return
            }
            let buffered = try? context.channel.syncOptions?.getOption(.bufferedWritableBytes)
            if let buffered, buffered == bufferedAtLastTimeout {
                context.close(promise: nil)
            } else {
                bufferedAtLastTimeout = buffered
            }
        case .all?, nil:
            context.fireUserInboundEventTriggered(event)
        }
    }
}
