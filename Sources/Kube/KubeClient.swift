import AsyncHTTPClient
import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import NK3Common

/// A Kubernetes API client on async-http-client: verified TLS (TLS 1.2+, as API servers speak), client
/// certificate or bearer token, kept-alive connections, retries with backoff for idempotent reads.
public final class KubeClient: KubeAPI {
    /// Tuning knobs.
    public struct Options: Sendable {
        /// Per-request timeout.
        public var requestTimeout: Duration
        /// Attempts for idempotent GETs on 429/500/502/503/504 and transport errors (1 = no retry).
        public var maxAttempts: Int
        /// First retry delay (doubled each time, with jitter, capped at `maxBackoff`).
        public var initialBackoff: Duration
        /// Cap on the retry delay (also caps a server's `Retry-After`).
        public var maxBackoff: Duration
        /// Largest response body read.
        public var maxBodyBytes: Int
        /// Client-side rate limit: requests per second (client-go's default 5; ≤ 0 disables it).
        public var qps: Double
        /// Client-side rate limit: requests allowed at once before `qps` applies (client-go's default 10).
        public var burst: Int
        /// How long a connection to an API server may take before the next server is tried.
        public var connectTimeout: Duration = .seconds(5)
        /// Makes options.
        public init(
            requestTimeout: Duration = .seconds(30), maxAttempts: Int = 5, initialBackoff: Duration = .milliseconds(50),
            maxBackoff: Duration = .seconds(2), maxBodyBytes: Int = 64 * 1024 * 1024, qps: Double = 5, burst: Int = 10
        ) {
            self.qps = qps
            self.burst = burst
            self.requestTimeout = requestTimeout
            self.maxAttempts = maxAttempts
            self.initialBackoff = initialBackoff
            self.maxBackoff = maxBackoff
            self.maxBodyBytes = maxBodyBytes
        }
    }

    /// The configuration in use.
    public let config: KubeConfig
    /// The options in use.
    public let options: Options
    /// The API servers this client can use (the kubeconfig's server and `config.extraServers`).
    let endpoints: KubeEndpoints
    /// Every request (watches included) takes a token first.
    public let rateLimiter: KubeRateLimiter
    /// The API server's clock, from its answers' `Date` headers.
    let serverClock = ServerClock()
    let logger: Logger
    /// The TLS settings every connection uses (exec sessions open their own connections with them).
    let tlsConfiguration: TLSConfiguration

    /// Makes a client (call `shutdown()` when done, or use `withClient`).
    public init(config: KubeConfig, options: Options = Options(), logger: Logger) throws {
        self.config = config
        self.options = options
        self.logger = logger
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .fullVerification  // never anything else (README.md, "How it stays safe")
        tls.minimumTLSVersion = .tlsv12
        do {
            if let ca = config.certificateAuthorityPEM {
                tls.trustRoots = .certificates(try TLSConfigs.trustRoots(pem: ca))
            }
            if let cert = config.clientCertificatePEM, let key = config.clientKeyPEM {
                let identity = try TLSIdentity(certificatePEM: cert, privateKeyPEM: key)
                tls.certificateChain = identity.certificateChain.map { .certificate($0) }
                tls.privateKey = .privateKey(identity.privateKey)
            }
        } catch {
            throw KubeError(.config, "the kubeconfig's certificates cannot be used: \(error)")
        }
        self.tlsConfiguration = tls
        self.rateLimiter = KubeRateLimiter(qps: options.qps, burst: options.burst)
        var list: [KubeEndpoints.Endpoint] = []
        for server in KubeEndpoints.urls(server: config.server, extra: config.extraServers) {
            var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
            configuration.redirectConfiguration = .disallow
            configuration.httpVersion = .http1Only
            // Over HTTP/1.1 every open watch holds a connection for its whole life, and a rollout keeps one per watched
            // collection (the nodes, and the DaemonSets and Deployments of each watched namespace) besides the drain's
            // pod watches. The client's default of 8 connections per host would queue every other request behind them
            // once eight are open, until a watch ends (minutes). client-go sets no limit on connections per host
            // (Go's net/http Transport.MaxConnsPerHost 0 = unlimited; only idle ones are capped, k8s.io/apimachinery
            // pkg/util/net/http.go SetTransportDefaults), so this one is set high enough not to bind.
            configuration.connectionPool.concurrentHTTP1ConnectionsPerHostSoftLimit = 256
            // Fail a request as soon as its connection cannot be made (our own retry loop decides what is worth
            // retrying, on this endpoint or another); the default keeps retrying until the request's deadline, even
            // on a bad certificate. A server that is down but not refusing is given up on after the connect timeout.
            configuration.connectionPool.retryConnectionEstablishment = false
            configuration.timeout.connect = TimeAmount(options.connectTimeout)
            var base = server.absoluteString
            if let name = config.tlsServerName, let host = server.host {
                // kubeconfig tls-server-name: verify (and send SNI for) this name, connect to the server's address.
                configuration.dnsOverride = [name: host]
                base = "https://\(name):\(server.port ?? 443)" + server.path
            }
            while base.hasSuffix("/") { base.removeLast() }
            let http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration, backgroundActivityLogger: logger)
            list.append(KubeEndpoints.Endpoint(server: server, base: base, http: http))
        }
        self.endpoints = KubeEndpoints(list)
    }

    /// Closes connections.
    public func shutdown() async throws {
        for e in endpoints.all { try await e.http.shutdown() }
    }

    /// The API server requests go to now.
    public var currentServer: URL { endpoints.current.server }

    /// Moves off the API server on `host` (e.g. a k3s server nk3 is about to reboot: its API goes down with it) to
    /// the first other endpoint that answers `/readyz`; the avoided one is then used only when no other answers.
    /// `nil` avoids none again. Returns the server in use afterwards.
    @discardableResult
    public func avoid(host: String?) async -> URL {
        guard endpoints.avoid(host) else { return currentServer }
        for i in endpoints.candidates() {
            let e = endpoints.all[i]
            var request = HTTPClientRequest(url: e.base + "/readyz")
            request.headers.add(name: "User-Agent", value: Self.userAgent)
            if let token = config.token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
            // The request timeout, not less: a loaded coordinator's first TLS handshake with a server can take seconds.
            if let response = try? await e.http.execute(request, timeout: TimeAmount(options.requestTimeout), logger: logger),
                response.status == .ok
            {
                endpoints.succeeded(i)
                logger.info("using another Kubernetes API server", metadata: ["kube.server": "\(e.server)", "kube.avoided": "\(host ?? "")"])
                break
            }
        }
        return currentServer
    }

    public func clusterTime(at local: Date) -> Date { serverClock.serverTime(at: local) }

    public func moveOff(apiServer address: String) async -> URL? {
        guard endpoints.all.count > 1,
            let host = KubeEndpoints.urls(server: config.server, extra: [address]).last?.host
        else { return nil }
        let before = currentServer
        let after = await avoid(host: host)
        return after == before ? nil : after
    }

    /// Runs `body` with a client and shuts it down afterwards.
    public static func withClient<R: Sendable>(
        config: KubeConfig, options: Options = Options(), logger: Logger, _ body: (KubeClient) async throws -> R
    ) async throws -> R {
        let client = try KubeClient(config: config, options: options, logger: logger)
        do {
            let r = try await body(client)
            try await client.shutdown()
            return r
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    /// The field manager nk3's writes are recorded under in `metadata.managedFields` (kubernetes/apiserver
    /// pkg/endpoints/handlers/create.go `managerOrUserAgent`: the `fieldManager` parameter, else the User-Agent up to
    /// its first `/`).
    public static let fieldManager = "nk3"
    /// `nk3/kube-client`: its prefix is the field manager, for writes that do not name one.
    public static let userAgent = "\(fieldManager)/kube-client"

    // MARK: - KubeAPI

    public func getNode(_ name: String) async throws -> Node {
        try await get("/api/v1/nodes/\(seg(name))")
    }

    public func listNodes() async throws -> [Node] {
        try await list("/api/v1/nodes")
    }

    public func listNodesForWatch() async throws -> (nodes: [Node], resourceVersion: String?) {
        let (nodes, meta): ([Node], ListMeta?) = try await listWithMeta("/api/v1/nodes")
        return (nodes, meta?.resourceVersion)
    }

    public func watchNodes(from resourceVersion: String) -> AsyncThrowingStream<WatchEvent<Node>, any Error> {
        watch("/api/v1/nodes", as: Node.self, resourceVersion: resourceVersion)
    }

    public func patchNode(_ name: String, patch: JSONValue) async throws -> Node {
        // kubectl pkg/drain/cordon.go: kubectl cordon sends a strategic merge patch. The field manager names nk3 in the
        // node's metadata.managedFields, which is how a cordon's owner is told apart from a person's.
        try await send(
            .PATCH, "/api/v1/nodes/\(seg(name))", query: [("fieldManager", Self.fieldManager)], body: patch,
            contentType: "application/strategic-merge-patch+json")
    }

    public func listPods(onNode node: String) async throws -> [Pod] {
        try await list("/api/v1/pods", query: [("fieldSelector", "spec.nodeName=\(node)")])
    }

    public func listAllPods() async throws -> [Pod] {
        try await list("/api/v1/pods")
    }

    public func listPods(namespace: String, labelSelector: String) async throws -> [Pod] {
        try await list("/api/v1/namespaces/\(seg(namespace))/pods", query: [("labelSelector", labelSelector)])
    }

    public func getPod(namespace: String, name: String) async throws -> Pod {
        try await get("/api/v1/namespaces/\(seg(namespace))/pods/\(seg(name))")
    }

    public func evictPod(namespace: String, name: String, gracePeriodSeconds: Int?, dryRun: Bool) async throws {
        let body = Eviction(namespace: namespace, name: name, gracePeriodSeconds: gracePeriodSeconds)
        // apiserver pkg/endpoints/handlers/create.go: 201 with a Success Status (docs say 200): accept any 2xx.
        // dryRun is a create option of the eviction subresource; "All" is its only value (docs/UPSTREAM.md#eviction).
        let _: JSONValue = try await send(
            .POST, "/api/v1/namespaces/\(seg(namespace))/pods/\(seg(name))/eviction",
            query: dryRun ? [("dryRun", "All")] : [], body: body)
    }

    public func watchPod(namespace: String, name: String, from resourceVersion: String) -> AsyncThrowingStream<WatchEvent<Pod>, any Error> {
        watch(
            "/api/v1/namespaces/\(seg(namespace))/pods", as: Pod.self, resourceVersion: resourceVersion.isEmpty ? nil : resourceVersion,
            fieldSelector: "metadata.name=\(name)")
    }

    public func getDaemonSet(namespace: String, name: String) async throws -> DaemonSet {
        try await get("/apis/apps/v1/namespaces/\(seg(namespace))/daemonsets/\(seg(name))")
    }

    public func listDaemonSets(namespace: String) async throws -> [DaemonSet] {
        try await list("/apis/apps/v1/namespaces/\(seg(namespace))/daemonsets")
    }

    public func listDeployments(namespace: String) async throws -> [Deployment] {
        try await list("/apis/apps/v1/namespaces/\(seg(namespace))/deployments")
    }

    public func listDaemonSetsForWatch(namespace: String) async throws -> (daemonSets: [DaemonSet], resourceVersion: String?) {
        let (items, meta): ([DaemonSet], ListMeta?) = try await listWithMeta("/apis/apps/v1/namespaces/\(seg(namespace))/daemonsets")
        return (items, meta?.resourceVersion)
    }

    public func watchDaemonSets(namespace: String, from resourceVersion: String) -> AsyncThrowingStream<WatchEvent<DaemonSet>, any Error> {
        watch("/apis/apps/v1/namespaces/\(seg(namespace))/daemonsets", as: DaemonSet.self, resourceVersion: resourceVersion)
    }

    public func listDeploymentsForWatch(namespace: String) async throws -> (deployments: [Deployment], resourceVersion: String?) {
        let (items, meta): ([Deployment], ListMeta?) = try await listWithMeta("/apis/apps/v1/namespaces/\(seg(namespace))/deployments")
        return (items, meta?.resourceVersion)
    }

    public func watchDeployments(namespace: String, from resourceVersion: String) -> AsyncThrowingStream<WatchEvent<Deployment>, any Error> {
        watch("/apis/apps/v1/namespaces/\(seg(namespace))/deployments", as: Deployment.self, resourceVersion: resourceVersion)
    }

    public func listPodDisruptionBudgets(namespace: String) async throws -> [PodDisruptionBudget] {
        try await list("/apis/policy/v1/namespaces/\(seg(namespace))/poddisruptionbudgets")
    }

    public func getCephCluster(namespace: String, name: String) async throws -> CephCluster {
        try await get("/apis/ceph.rook.io/v1/namespaces/\(seg(namespace))/cephclusters/\(seg(name))")
    }

    public func getLease(namespace: String, name: String) async throws -> Lease {
        try await get("/apis/coordination.k8s.io/v1/namespaces/\(seg(namespace))/leases/\(seg(name))")
    }

    public func createLease(_ lease: Lease) async throws -> Lease {
        let ns = lease.metadata.namespace ?? "default"
        var lease = lease
        lease.metadata.managedFields = nil  // the server's record, not ours to send
        return try await send(.POST, "/apis/coordination.k8s.io/v1/namespaces/\(seg(ns))/leases", body: lease)
    }

    public func updateLease(_ lease: Lease) async throws -> Lease {
        var lease = lease
        // A PUT carrying managedFields would replace the server's record of who set what
        // (https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management): leave it out.
        lease.metadata.managedFields = nil
        let ns = lease.metadata.namespace ?? "default"
        guard let name = lease.metadata.name else { throw KubeError(.invalid, "a Lease to update needs metadata.name") }
        return try await send(
            .PUT, "/apis/coordination.k8s.io/v1/namespaces/\(seg(ns))/leases/\(seg(name))", body: lease)
    }

    /// `GET` any path and decode it (with retries): e.g. `/version`.
    public func get<T: Decodable>(_ path: String, query: [(String, String)] = []) async throws -> T {
        let (_, body) = try await perform(.GET, path, query: query, body: nil, contentType: nil, idempotent: true)
        return try decode(T.self, body, path: path)
    }

    // MARK: - plumbing

    private func list<T: Codable & Sendable>(_ path: String, query: [(String, String)] = []) async throws -> [T] {
        try await listWithMeta(path, query: query).items
    }

    /// The whole list and the metadata of its first page (whose resourceVersion is the snapshot the pages share).
    private func listWithMeta<T: Codable & Sendable>(_ path: String, query: [(String, String)] = []) async throws
        -> (items: [T], meta: ListMeta?)
    {
        // docs/UPSTREAM.md#drain: chunked lists (limit=500), following metadata.continue.
        var items: [T] = []
        var cont: String? = nil
        var first: ListMeta?? = nil
        repeat {
            var q = query + [("limit", "500")]
            if let cont { q.append(("continue", cont)) }
            let page: KubeList<T> = try await get(path, query: q)
            if first == nil { first = .some(page.metadata) }
            items += page.items
            cont = page.metadata?.continue.flatMap { $0.isEmpty ? nil : $0 }
        } while cont != nil
        return (items, first ?? nil)
    }

    private func send<B: Encodable, T: Decodable>(
        _ method: HTTPMethod, _ path: String, query: [(String, String)] = [], body: B,
        contentType: String = "application/json"
    ) async throws -> T {
        let data: Data
        do { data = try JSONEncoder().encode(body) } catch {
            throw KubeError(.invalid, "cannot encode the request body for \(path): \(error)")
        }
        let (_, response) = try await perform(method, path, query: query, body: data, contentType: contentType, idempotent: false)
        return try decode(T.self, response, path: path)
    }

    private func decode<T: Decodable>(_ type: T.Type, _ body: ByteBuffer, path: String) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(body.readableBytesView))
        } catch {
            throw KubeError(.decode, "cannot decode the answer of \(path) as \(T.self): \(error)")
        }
    }

    private func seg(_ s: String) -> String { Self.encode(s) }

    static func encode(_ s: String) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~")
        return s.addingPercentEncoding(withAllowedCharacters: allowed) ?? s
    }

    static func queryString(_ query: [(String, String)]) -> String {
        query.isEmpty ? "" : "?" + query.map { "\(encode($0.0))=\(encode($0.1))" }.joined(separator: "&")
    }

    /// One request, retried with backoff when idempotent and the failure is transient. Each attempt goes to the
    /// current API server and, when it cannot be reached there (connection refused or reset, connect timeout), to
    /// the other servers in turn — for writes too: every write nk3 makes is idempotent (cordon, uncordon, eviction:
    /// a repeat is a no-op or 404) or guarded by a resourceVersion or a name (Lease update 409, create 409), so one
    /// that reached a server before the connection broke is harmless to repeat.
    private func perform(
        _ method: HTTPMethod, _ path: String, query: [(String, String)], body: Data?, contentType: String?,
        idempotent: Bool
    ) async throws -> (HTTPHeaders, ByteBuffer) {
        let target = path + Self.queryString(query)
        var attempt = 0
        while true {
            attempt += 1
            do {
                try await rateLimiter.acquire()
                return try await onAnyEndpoint(method, target, path: path, body: body, contentType: contentType)
            } catch {
                let kerr = Self.wrapTransport(error, path: path, server: config.server)
                let transient =
                    (kerr.code == .transport && !Self.isTLSFailure(error))
                    || [429, 500, 502, 503, 504].contains(kerr.httpStatus ?? 0)
                guard idempotent, transient, attempt < options.maxAttempts, !Task.isCancelled else { throw kerr }
                let delay = backoff(attempt: attempt, retryAfter: kerr.retryAfterSeconds)
                logger.debug(
                    "kube request failed, retrying",
                    metadata: ["kube.path": "\(path)", "kube.attempt": "\(attempt)", "kube.error": "\(kerr)", "kube.delay": "\(delay)"])
                try await Task.sleep(for: delay)
            }
        }
    }

    /// One attempt: the endpoints in `KubeEndpoints.order()`, moving on only when an endpoint cannot be reached.
    private func onAnyEndpoint(
        _ method: HTTPMethod, _ target: String, path: String, body: Data?, contentType: String?
    ) async throws -> (HTTPHeaders, ByteBuffer) {
        var firstError: (any Error)? = nil
        for i in endpoints.order() {
            let endpoint = endpoints.all[i]
            do {
                var request = HTTPClientRequest(url: endpoint.base + target)
                request.method = method
                request.headers.add(name: "Accept", value: "application/json")
                request.headers.add(name: "User-Agent", value: Self.userAgent)
                if let token = config.token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
                if let body {
                    request.headers.add(name: "Content-Type", value: contentType ?? "application/json")
                    request.body = .bytes(ByteBuffer(bytes: body))
                }
                let response = try await endpoint.http.execute(request, timeout: TimeAmount(options.requestTimeout), logger: logger)
                serverClock.observe(dateHeader: response.headers.first(name: "Date"), receivedAt: Date())
                let bytes = try await response.body.collect(upTo: options.maxBodyBytes)
                endpoints.succeeded(i)
                let code = Int(response.status.code)
                if (200..<300).contains(code) { return (response.headers, bytes) }
                throw Self.error(status: code, headers: response.headers, body: bytes, path: path)
            } catch let error as KubeError {
                throw error
            } catch {
                guard !Self.isTLSFailure(error), !Task.isCancelled, !(error is CancellationError) else { throw error }
                if firstError == nil { firstError = error }
                if endpoints.all.count > 1 {
                    logger.info(
                        "cannot reach a Kubernetes API server, trying the next",
                        metadata: ["kube.server": "\(endpoint.server)", "kube.error": "\(error)"])
                }
            }
        }
        throw firstError ?? KubeError(.transport, "no Kubernetes API server to send \(path) to")
    }

    private func backoff(attempt: Int, retryAfter: Int?) -> Duration {
        if let retryAfter, retryAfter > 0 { return min(.seconds(retryAfter), options.maxBackoff) }
        let exp = options.initialBackoff * (1 << min(attempt - 1, 16))
        let capped = min(exp, options.maxBackoff)
        return capped * Double.random(in: 0.5...1.0)
    }

    /// A TLS failure (certificate not trusted, client certificate refused) does not heal by retrying.
    static func isTLSFailure(_ error: Error) -> Bool {
        error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError
    }

    static func wrapTransport(_ error: Error, path: String, server: URL? = nil) -> KubeError {
        if let k = error as? KubeError { return k }
        if error is CancellationError { return KubeError(.transport, "request to \(path) was cancelled") }
        if isTLSFailure(error) {
            return KubeError(
                .transport,
                "TLS with the Kubernetes API failed for \(path): its certificate does not verify against the kubeconfig's certificate-authority, or it refused the client certificate",
                underlying: "\(error)")
        }
        var hint = "check the kubeconfig's server, CA and credentials"
        if let host = server?.host, ["127.0.0.1", "localhost", "::1", "[::1]"].contains(host) {
            // k3s writes /etc/rancher/k3s/k3s.yaml with server https://127.0.0.1:6443: right on the server itself only.
            hint = "the kubeconfig's server is \(server!.absoluteString), as k3s writes it in /etc/rancher/k3s/k3s.yaml: that address only works on the server itself; copy the file and set server: to https://<a k3s server's address>:6443 (nk3 also tries the inventory's servers)"
        }
        return KubeError(.transport, "cannot reach the Kubernetes API for \(path): \(hint)", underlying: "\(error)")
    }

    /// Turns an error answer into a `KubeError`, reading the API's Status when the body is one and keeping
    /// a plain-text body (API priority-and-fairness 429s are plain text, apiserver
    /// pkg/server/filters/priority-and-fairness.go) as the message.
    static func error(status: Int, headers: HTTPHeaders, body: ByteBuffer, path: String) -> KubeError {
        let retryAfter = headers.first(name: "Retry-After").flatMap { Int($0.trimmingCharacters(in: .whitespaces)) }
        let data = Data(body.readableBytesView)
        var kstatus: KubeStatus? = nil
        if let s = try? JSONDecoder().decode(KubeStatus.self, from: data), s.kind == "Status" || s.message != nil {
            kstatus = s
        }
        let text = kstatus?.message ?? String(decoding: data.prefix(2048), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        var code = KubeError.code(forHTTPStatus: status)
        if status == 410 || kstatus?.reason == "Expired" || kstatus?.reason == "Gone" { code = .expired }
        var message = "\(path): HTTP \(status)"
        if let reason = kstatus?.reason { message += " \(reason)" }
        if !text.isEmpty { message += ": \(text)" }
        if let causes = kstatus?.details?.causes, !causes.isEmpty {
            message += " (" + causes.compactMap { $0.message }.joined(separator: "; ") + ")"
        }
        return KubeError(
            code, message, httpStatus: status, status: kstatus,
            retryAfterSeconds: retryAfter ?? kstatus?.details?.retryAfterSeconds)
    }
}
