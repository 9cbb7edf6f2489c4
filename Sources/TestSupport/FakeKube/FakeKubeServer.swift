import Foundation
import Logging
import NIOCore
import NIOSSL
import NK3Common
import NK3Kube
import NK3Protocol

/// The fake Kubernetes API server — a SIMULATION: real HTTPS (TLS verified against a cluster CA minted
/// with `ClusterCA`) on 127.0.0.1, serving `FakeKubeRouter` over `FakeKubeState`. Clients authenticate
/// with a client certificate signed by the CA (as k3s's admin kubeconfig does) or a bearer token.
public final class FakeKubeServer: Sendable {
    /// The cluster state; drive it from tests and the simulator.
    public let state: FakeKubeState
    /// The CA that signs the server's certificate and the client certificates it accepts.
    public let ca: ClusterCA
    /// `https://127.0.0.1:<port>`.
    public let url: URL
    private let server: HTTPSServer

    private init(state: FakeKubeState, ca: ClusterCA, url: URL, server: HTTPSServer) {
        self.state = state
        self.ca = ca
        self.url = url
        self.server = server
    }

    /// Starts the simulated API server on `host` (loopback) and an ephemeral port (or `port`).
    public static func start(
        state: FakeKubeState = FakeKubeState(), ca: ClusterCA? = nil, host: String = "127.0.0.1", port: Int = 0,
        logger: Logger
    ) async throws -> FakeKubeServer {
        let ca = try ca ?? ClusterCA.create(cluster: "fake-kube")
        let leaf = try ca.issueAgent(hostname: "kube-apiserver", addresses: [host, "localhost", "127.0.0.1"])
        let identity = try TLSIdentity(certificatePEM: leaf.certificatePEM, privateKeyPEM: leaf.privateKeyPEM)
        let roots = try TLSConfigs.trustRoots(pem: try ca.certificatePEM)
        // API servers speak TLS 1.2+; kubectl and nk3 both negotiate 1.3 here. Client certificates are
        // optional (bearer tokens are the other way in) but verified when presented.
        var tls = TLSConfigs.server(identity: identity, clientCA: roots, requireClientCertificate: false)
        tls.minimumTLSVersion = .tlsv12
        let context = try NIOSSLContext(configuration: tls)
        let router = FakeKubeRouter(state: state)
        var log = logger
        log[metadataKey: "simulation"] = "fake-kube-apiserver"
        let server = try await HTTPSServer.start(
            host: host, port: port, tls: context, limits: HTTPServerLimits(idleTimeout: .seconds(600)), logger: log
        ) { request in
            await router.handle(request)
        }
        let hostPart = host.contains(":") ? "[\(host)]" : host
        let url = URL(string: "https://\(hostPart):\(server.port)")!
        log.info("SIMULATION: fake Kubernetes API server listening", metadata: ["kube.url": "\(url)"])
        return FakeKubeServer(state: state, ca: ca, url: url, server: server)
    }

    /// A client configuration with a fresh client certificate (`CN=name`) signed by the CA.
    public func clientConfig(name: String = "nk3-admin") throws -> KubeConfig {
        let cert = try ca.issueClient(name: name, role: .operator)
        return KubeConfig(
            server: url, certificateAuthorityPEM: try ca.certificatePEM, clientCertificatePEM: cert.certificatePEM,
            clientKeyPEM: cert.privateKeyPEM, contextName: "default")
    }

    /// A client configuration that authenticates with a bearer token (registered with the state).
    public func tokenConfig(token: String = UUID().uuidString) throws -> KubeConfig {
        state.addToken(token)
        return KubeConfig(server: url, certificateAuthorityPEM: try ca.certificatePEM, token: token, contextName: "default")
    }

    /// Writes a k3s-style kubeconfig (inline `*-data`, everything named `default`, mode 0600) for a client
    /// certificate, usable by nk3 and by `kubectl --kubeconfig`.
    @discardableResult
    public func writeKubeconfig(to path: String, name: String = "nk3-admin") throws -> KubeConfig {
        let config = try clientConfig(name: name)
        try SecureFiles.writeAtomically(config.yaml(), to: path, permissions: 0o600)
        return config
    }

    /// Stops the server (open watches end).
    public func shutdown() async {
        await server.shutdown()
    }
}
