import NIOCore
import NIOSSL
import NIOTLS
import NK3Common
import NK3Protocol
import X509

/// What an `AgentClient` trusts and presents: the TLS context (cluster CA as trust roots, our client certificate)
/// and what an agent's certificate must be beyond a chain to that CA (see `PeerCertificatePolicy`): a serverAuth
/// leaf issued directly by the CA. One value serves the clients of every agent.
public struct AgentClientTLS: Sendable {
    /// The NIOSSL client context.
    public let context: NIOSSLContext
    /// The check every new connection's server certificate passes before a request is sent.
    public let serverPolicy: PeerCertificatePolicy

    /// Makes both from the cluster CA and our identity (nil: no client certificate, for tests of refusals).
    public init(trustRoots: [NIOSSLCertificate], identity: TLSIdentity?) throws {
        context = try TLSConfigs.clientContext(trustRoots: trustRoots, identity: identity)
        serverPolicy = PeerCertificatePolicy(
            issuers: try trustRoots.map { try TLSConfigs.certificate(from: $0) }, usage: .serverAuth)
    }
}

/// Why a server certificate that passed the TLS handshake is still refused.
struct ServerCertificateRefused: Error, CustomStringConvertible {
    var reason: String
    var description: String { "the agent's certificate is refused: \(reason)" }
}

/// Completes `verified` once the TLS handshake is done and the server's certificate passes `policy`; fails it (and
/// closes the connection) otherwise, before any request is sent on the connection.
final class ServerCertificateCheck: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer

    private let policy: PeerCertificatePolicy
    private let verified: EventLoopPromise<Void>

    init(policy: PeerCertificatePolicy, verified: EventLoopPromise<Void>) {
        self.policy = policy
        self.verified = verified
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        if case .handshakeCompleted = event as? TLSUserEvent {
            switch check(context) {
            case nil:
                verified.succeed(())
            case let reason?:
                verified.fail(ServerCertificateRefused(reason: reason))
                context.close(promise: nil)
                return
            }
        }
        context.fireUserInboundEventTriggered(event)
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        verified.fail(error)
        context.fireErrorCaught(error)
    }

    func channelInactive(context: ChannelHandlerContext) {
        verified.fail(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }

    private func check(_ context: ChannelHandlerContext) -> String? {
        do {
            guard let nio = try context.pipeline.syncOperations.handler(type: NIOSSLClientHandler.self).peerCertificate else {
                return "the agent presented no certificate"
            }
            return policy.problem(with: try TLSConfigs.certificate(from: nio))
        } catch {
            return "cannot read the agent's certificate: \(error)"
        }
    }
}
