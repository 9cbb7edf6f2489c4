import Foundation
import Logging
import NIOCore
import NIOSSL
import NK3Common
import NK3Kube
import NK3Protocol
import Synchronization

/// The fake Kubernetes API server — a SIMULATION: real HTTPS (TLS verified against a cluster CA minted
/// with `ClusterCA`) on 127.0.0.1, serving `FakeKubeRouter` over `FakeKubeState`. Clients authenticate
/// with a client certificate signed by the CA (as k3s's admin kubeconfig does) or a bearer token.
public final class FakeKubeServer: Sendable {
    /// The cluster state; drive it from tests and the simulator.
    public let state: FakeKubeState
    /// The CA that signs the server's certificate and the client certificates it accepts.
    public let ca: ClusterCA
    /// `https://127.0.0.1:<port>`: the first endpoint.
    public let url: URL
    /// Every endpoint (one per simulated k3s server, all serving the same state), by URL; nil while down.
    private let listeners: Mutex<[URL: Listener]>
    private let logger: Logger

    struct Listener: Sendable {
        var host: String
        var port: Int
        var tls: NIOSSLContext
        var server: HTTPSServer?
    }

    private init(state: FakeKubeState, ca: ClusterCA, url: URL, first: Listener, logger: Logger) {
        self.state = state
        self.ca = ca
        self.url = url
        self.listeners = Mutex([url: first])
        self.logger = logger
    }

    /// Starts the simulated API server on `host` (loopback) and an ephemeral port (or `port`).
    public static func start(
        state: FakeKubeState = FakeKubeState(), ca: ClusterCA? = nil, host: String = "127.0.0.1", port: Int = 0,
        logger: Logger
    ) async throws -> FakeKubeServer {
        let ca = try ca ?? ClusterCA.create(cluster: "fake-kube")
        var log = logger
        log[metadataKey: "simulation"] = "fake-kube-apiserver"
        let tls = try Self.tlsContext(ca: ca, names: [host, "localhost", "127.0.0.1"])
        let server = try await Self.listen(state: state, host: host, port: port, tls: tls, logger: log)
        let hostPart = host.contains(":") ? "[\(host)]" : host
        let url = URL(string: "https://\(hostPart):\(server.port)")!
        log.info("SIMULATION: fake Kubernetes API server listening", metadata: ["kube.url": "\(url)"])
        return FakeKubeServer(
            state: state, ca: ca, url: url, first: Listener(host: host, port: server.port, tls: tls, server: server), logger: log)
    }

    /// A server certificate from the CA naming `names` (IP addresses or DNS names; the first is the hostname).
    static func tlsContext(ca: ClusterCA, names: [String]) throws -> NIOSSLContext {
        let leaf = try ca.issueAgent(hostname: names.first { IPAddressBytes.parse($0) == nil } ?? "kube-apiserver", addresses: names)
        let identity = try TLSIdentity(certificatePEM: leaf.certificatePEM, privateKeyPEM: leaf.privateKeyPEM)
        let roots = try TLSConfigs.trustRoots(pem: try ca.certificatePEM)
        // API servers speak TLS 1.2+; kubectl and nk3 both negotiate 1.3 here. Client certificates are
        // optional (bearer tokens are the other way in) but verified when presented.
        var tls = TLSConfigs.server(identity: identity, clientCA: roots, requireClientCertificate: false)
        tls.minimumTLSVersion = .tlsv12
        return try NIOSSLContext(configuration: tls)
    }

    static func listen(state: FakeKubeState, host: String, port: Int, tls: NIOSSLContext, logger: Logger) async throws -> HTTPSServer {
        let router = FakeKubeRouter(state: state)
        return try await HTTPSServer.start(
            host: host, port: port, tls: tls, limits: HTTPServerLimits(idleTimeout: .seconds(600)), logger: logger,
            upgrade: FakeKubeRouter.upgradeHook(router)
        ) { request in
            await router.handle(request)
        }
    }

    // MARK: - endpoints (one per simulated k3s server)

    /// Every endpoint's URL, the first one first.
    public var endpoints: [URL] {
        listeners.withLock { l in [url] + l.keys.filter { $0 != url }.sorted { $0.absoluteString < $1.absoluteString } }
    }

    /// Starts another endpoint of the same simulated cluster on `host` — a loopback address such as 127.0.0.2, as
    /// every k3s server serves the API — with a certificate from the same CA naming `certificateNames` (default: the
    /// host), on `port` (0: an ephemeral one). Returns its URL.
    @discardableResult
    public func addEndpoint(host: String, port: Int = 0, certificateNames: [String]? = nil) async throws -> URL {
        let tls = try Self.tlsContext(ca: ca, names: certificateNames ?? [host])
        let server = try await Self.listen(state: state, host: host, port: port, tls: tls, logger: logger)
        let hostPart = host.contains(":") ? "[\(host)]" : host
        let endpoint = URL(string: "https://\(hostPart):\(server.port)")!
        listeners.withLock { $0[endpoint] = Listener(host: host, port: server.port, tls: tls, server: server) }
        logger.info("SIMULATION: fake Kubernetes API endpoint listening", metadata: ["kube.url": "\(endpoint)"])
        return endpoint
    }

    /// Takes an endpoint down — its listener closes, so connections are refused, as while its k3s server reboots —
    /// or brings it back on the same address and port.
    public func setEndpoint(_ endpoint: URL, down: Bool) async throws {
        guard let listener = listeners.withLock({ $0[endpoint] }) else { return }
        if down {
            guard let server = listener.server else { return }
            listeners.withLock { $0[endpoint]?.server = nil }
            await server.shutdown()
        } else {
            guard listener.server == nil else { return }
            let server = try await Self.listen(state: state, host: listener.host, port: listener.port, tls: listener.tls, logger: logger)
            listeners.withLock { $0[endpoint]?.server = server }
        }
    }

    /// Whether an endpoint is up.
    public func isUp(_ endpoint: URL) -> Bool {
        listeners.withLock { $0[endpoint]?.server != nil }
    }

    /// A client configuration with a fresh client certificate (`CN=name`) signed by the CA.
    public func clientConfig(name: String = "nk3-admin") throws -> KubeConfig {
        let cert = try ca.issueClient(name: name, role: .operator)
        return KubeConfig(
            server: url, certificateAuthorityPEM: try ca.certificatePEM, clientCertificatePEM: cert.certificatePEM,
            clientKeyPEM: cert.privateKeyPEM, contextName: "default")
    }

    /// Writes a k3s-style kubeconfig (inline `*-data`, everything named `default`, mode 0600) for a client
    /// certificate, usable by nk3 and by `kubectl --kubeconfig`.
    @discardableResult
    public func writeKubeconfig(to path: String, name: String = "nk3-admin") throws -> KubeConfig {
        let config = try clientConfig(name: name)
        try SecureFiles.writeAtomically(config.yaml(), to: path, permissions: 0o600)
        return config
    }

    /// Stops every endpoint (open watches end).
    public func shutdown() async {
        let servers = listeners.withLock { l in l.values.compactMap(\.server) }
        listeners.withLock { l in for k in l.keys { l[k]?.server = nil } }
        for s in servers { await s.shutdown() }
    }
}
