import Crypto
import Foundation
import Logging
import NIOCore
import NIOPosix
import NIOSSL
import NIOTLS
import NK3Agent
import NK3Common
import NK3Coordinator
import NK3Protocol
import Synchronization

/// A real agent server on 127.0.0.1 with fresh PKI (ClusterCA), a short idle timeout, and clients.
struct AbuseAgent {
    static let node = "node-a"
    let ca: ClusterCA
    let operatorCert: IssuedCertificate
    let signer: EnvelopeSigner
    let stateDir: String
    let engine: ChannelRecordingEngine
    let server: AgentServer
    let clientTLS: NIOSSLContext
    let agentClientTLS: AgentClientTLS

    static func start(
        idleTimeout: Duration = .seconds(60), writeTimeout: Duration = .seconds(60), landedBytes: Int = 0,
        handshakeTimeout: Duration = .seconds(10), maxHandshakesPerAddress: Int = 128
    ) async throws -> AbuseAgent {
        let ca = try ClusterCA.create(cluster: "abuse")
        let agentCert = try ca.issueAgent(hostname: node, addresses: ["127.0.0.1"])
        let operatorCert = try ca.issueClient(name: "alice", role: .operator)
        let signer = EnvelopeSigner(privateKey: Curve25519.Signing.PrivateKey())
        let stateDir = try channelTempDir("abuse-state")
        let engine = ChannelRecordingEngine(landedBytes: landedBytes)
        let config = AgentServerConfig(
            host: "127.0.0.1", port: 0, certificate: .pem(agentCert.certificatePEM),
            privateKey: .pem(agentCert.privateKeyPEM), clientCA: .pem(try ca.certificatePEM),
            signingPublicKeys: [signer.privateKey.publicKey.rawRepresentation.base64EncodedString()], nodeName: node,
            stateDirectory: stateDir,
            limits: HTTPServerLimits(
                maxBodyBytes: NK3Wire.maxBodyBytes, idleTimeout: idleTimeout, writeTimeout: writeTimeout,
                handshakeTimeout: handshakeTimeout, maxHandshakesPerAddress: maxHandshakesPerAddress))
        let server = try AgentServer(config: config, engine: engine, logger: channelQuietLogger())
        try await server.start()
        let identity = try TLSIdentity(certificatePEM: operatorCert.certificatePEM, privateKeyPEM: operatorCert.privateKeyPEM)
        let agentClientTLS = try AgentClientTLS(trustRoots: try TLSConfigs.trustRoots(pem: try ca.certificatePEM), identity: identity)
        let clientTLS = agentClientTLS.context
        return AbuseAgent(
            ca: ca, operatorCert: operatorCert, signer: signer, stateDir: stateDir, engine: engine, server: server,
            clientTLS: clientTLS, agentClientTLS: agentClientTLS)
    }

    var port: Int { server.port! }

    /// An nk3 client (fresh mTLS connection per call) with the operator certificate.
    func client(timeout: Duration = .seconds(20)) -> AgentClient {
        AgentClient(
            endpoint: AgentEndpoint(host: "127.0.0.1", port: port, expectedName: "127.0.0.1"), tls: agentClientTLS,
            timeout: timeout, logger: channelQuietLogger())
    }

    /// Opens a raw mTLS connection (operator certificate) and waits for the handshake to complete.
    func rawConnection() async throws -> AbuseTLSConnection {
        try await AbuseTLSConnection.connect(port: port, tls: clientTLS)
    }

    /// Every entry of the state directory with its size, mtime and content digest (to prove nothing changed).
    func stateSnapshot() throws -> [String: String] {
        var out: [String: String] = [:]
        let fm = FileManager.default
        for name in try fm.contentsOfDirectory(atPath: stateDir) {
            let path = stateDir + "/" + name
            let attrs = try fm.attributesOfItem(atPath: path)
            var st = stat()
            stat(path, &st)
            let digest = SHA256.hash(data: fm.contents(atPath: path) ?? Data()).map { String(format: "%02x", $0) }.joined()
            out[name] = "size=\(attrs[.size] ?? "?") mtime=\(st.st_mtim.tv_sec).\(st.st_mtim.tv_nsec) ino=\(st.st_ino) sha256=\(digest)"
        }
        return out
    }
}

/// A raw TLS client connection (bytes in, bytes out) for abusive request shapes.
struct AbuseTLSConnection {
    let channel: NIOAsyncChannel<ByteBuffer, ByteBuffer>

    static func connect(port: Int, tls: NIOSSLContext) async throws -> AbuseTLSConnection {
        let handshake = MultiThreadedEventLoopGroup.singleton.next().makePromise(of: Void.self)
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: "127.0.0.1", port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let sync = channel.pipeline.syncOperations
                    try sync.addHandler(NIOSSLClientHandler(context: tls, serverHostname: nil))
                    try sync.addHandler(HandshakeWaiter(promise: handshake))
                    return try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                }
            }
        try await handshake.futureResult.get()
        return AbuseTLSConnection(channel: channel)
    }

    /// Completes the promise when the TLS handshake completes (fails it if the channel goes first).
    final class HandshakeWaiter: ChannelInboundHandler, @unchecked Sendable {
        typealias InboundIn = ByteBuffer
        let promise: EventLoopPromise<Void>
        init(promise: EventLoopPromise<Void>) { self.promise = promise }
        func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
            if case .handshakeCompleted = event as? TLSUserEvent { promise.succeed(()) }
            context.fireUserInboundEventTriggered(event)
        }
        func channelInactive(context: ChannelHandlerContext) {
            promise.fail(ChannelError.ioOnClosedChannel)
            context.fireChannelInactive()
        }
        func errorCaught(context: ChannelHandlerContext, error: Error) {
            promise.fail(error)
            context.fireErrorCaught(error)
        }
    }
}

/// Resident set size of this process (VmRSS of /proc/self/status), in bytes.
func abuseResidentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return 0 }
    for line in text.split(separator: "\n") where line.hasPrefix("VmRSS:") {
        let kb = line.split(separator: " ").compactMap { Int($0) }.first ?? 0
        return kb * 1024
    }
    return 0
}

/// Polls `condition` until it holds or `deadline` passes (no fixed sleeps: short yields between polls).
func abuseWait(
    _ what: String, deadline: Duration = .seconds(30), condition: @Sendable () async -> Bool
) async throws {
    let clock = ContinuousClock()
    let end = clock.now + deadline
    while !(await condition()) {
        guard clock.now < end else { throw AbuseTimeout(what: what) }
        try await Task.sleep(for: .milliseconds(10))
    }
}

/// A wait that did not finish before its deadline.
struct AbuseTimeout: Error, CustomStringConvertible {
    var what: String
    var description: String { "timed out waiting for \(what)" }
}

/// Appends a measured line to the shared measurement log, so the numbers can be copied into docs.
func abuseReport(_ line: String) {
    print("[abuse] \(line)")
}

/// A lock-protected value that tasks share (a `Mutex` cannot be captured by escaping closures).
final class AbuseBox<Value: Sendable>: Sendable {
    private let storage: Mutex<Value>
    init(_ value: Value) { storage = Mutex(value) }
    func withLock<R>(_ body: (inout Value) -> R) -> R { storage.withLock { body(&$0) } }
}

/// Reads an HTTP answer's head from a raw connection: its `Content-Length` (-1 without one) and how many body bytes
/// arrived with the head.
func readAnswerHead(_ iterator: inout NIOAsyncChannelInboundStream<ByteBuffer>.AsyncIterator) async throws
    -> (declared: Int, bodyBytes: Int)
{
    var head = ""
    while !head.contains("\r\n\r\n"), let chunk = try await iterator.next() { head += String(buffer: chunk) }
    let declared = head.split(separator: "\r\n").first { $0.lowercased().hasPrefix("content-length:") }
        .flatMap { Int($0.split(separator: ":")[1].trimmingCharacters(in: .whitespaces)) } ?? -1
    let bodyBytes = head.range(of: "\r\n\r\n").map { head.utf8.distance(from: $0.upperBound, to: head.endIndex) } ?? 0
    return (declared, bodyBytes)
}
