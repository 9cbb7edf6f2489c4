import Foundation
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import NK3Common
import NK3Protocol

/// Where one agent listens and who it must prove to be.
public struct AgentEndpoint: Sendable, Hashable, CustomStringConvertible {
    /// Address to connect to (IP or DNS name).
    public var host: String
    /// Agent port.
    public var port: Int
    /// The name the agent's certificate must carry: a hostname (checked as SNI + DNS SAN) or an IP address
    /// (checked against the certificate's IP SANs; it must then be the address connected to).
    public var expectedName: String

    /// Makes an endpoint; `expectedName` defaults to `host`.
    public init(host: String, port: Int, expectedName: String? = nil) {
        self.host = host
        self.port = port
        self.expectedName = expectedName ?? host
    }

    public var description: String {
        expectedName == host ? "\(host):\(port)" : "\(expectedName) (\(host):\(port))"
    }
}

/// Why a request to an agent failed.
public struct AgentClientError: Error, Sendable, CustomStringConvertible {
    /// Stable error codes; match on these, never on the message.
    public enum Code: String, Sendable, Hashable {
        /// No TCP connection (refused, no route, connect timeout).
        case unreachable
        /// The TLS handshake failed or was refused by either side (wrong CA, name mismatch, no or
        /// rejected client certificate, expired certificate).
        case tlsRefused = "tls_refused"
        /// The agent answered with a `WireError` (see `wireError`).
        case wire
        /// The agent answered something that is not a valid nk3 response.
        case badResponse = "bad_response"
        /// No complete answer within the timeout.
        case timeout
        /// The client is configured wrongly (e.g. an expected IP that is not the address connected to).
        case configuration
    }

    /// What went wrong.
    public var code: Code
    /// The agent concerned.
    public var endpoint: AgentEndpoint
    /// Human explanation with a hint at the fix.
    public var message: String
    /// The agent's error, for `.wire`.
    public var wireError: WireError?
    /// HTTP status, when the agent answered.
    public var httpStatus: Int?

    /// Makes an error.
    public init(
        _ code: Code, endpoint: AgentEndpoint, _ message: String, wireError: WireError? = nil, httpStatus: Int? = nil
    ) {
        self.code = code
        self.endpoint = endpoint
        self.message = message
        self.wireError = wireError
        self.httpStatus = httpStatus
    }

    public var description: String { "agent \(endpoint): \(message)" }
}

/// Talks to one node's agent over mutual TLS 1.3: the agent's certificate is verified against the cluster
/// CA and the endpoint's expected name; ours (the client certificate) carries our role.
///
/// Every request opens a fresh connection (one TLS 1.3 handshake, ~1 RTT), unless the client was made with
/// `keepAlive`: then reads (GET) and commands (POST of a signed envelope) reuse the connection the previous request
/// left open, for at most 30 s after its handshake (a rollout sends each agent a bundle, polls it while it rebuilds,
/// and sends the reboot: one connection). A command on a reused connection that closed before any answer is sent
/// once more on a fresh one; the agent answers that re-submission without running it again (see `HTTPSOneShot`).
/// Agent binary uploads (PUT) always get a fresh connection.
public struct AgentClient: Sendable {
    /// The agent this client talks to.
    public let endpoint: AgentEndpoint
    private let tls: AgentClientTLS
    private let timeout: Duration
    private let group: any EventLoopGroup
    private let logger: Logger
    /// The connection requests leave open for the next request (shared by copies of this client); nil: none.
    private let keptAlive: KeptConnection?

    /// How long a kept-alive connection may be reused: at most `maxAge` after its handshake (certificates are
    /// re-verified at least that often) and `maxIdle` after its last request (well under the agent's idle timeout).
    public struct ConnectionReuse: Sendable {
        public var maxAge: Duration
        public var maxIdle: Duration
        public init(maxAge: Duration, maxIdle: Duration) {
            self.maxAge = maxAge
            self.maxIdle = maxIdle
        }
        /// What a rollout uses: 30 s after the handshake, 5 s idle.
        public static let standard = ConnectionReuse(maxAge: .seconds(30), maxIdle: .seconds(5))
    }

    /// Makes a client from prepared TLS settings (see `AgentClientTLS`), which can be shared by the clients of all
    /// agents. With `keepAlive`, requests reuse one kept-alive connection within `reuse`'s limits.
    public init(
        endpoint: AgentEndpoint, tls: AgentClientTLS, timeout: Duration = AgentClient.defaultTimeout,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "nk3.agent-client"), keepAlive: Bool = false,
        reuse: ConnectionReuse = .standard
    ) {
        self.endpoint = endpoint
        self.tls = tls
        self.timeout = timeout
        self.group = eventLoopGroup
        self.logger = logger
        self.keptAlive = keepAlive ? KeptConnection(maxAge: reuse.maxAge, maxIdle: reuse.maxIdle) : nil
    }

    /// How long one request to an agent may take, unless a caller says otherwise (the one definition: the
    /// rollout's `RolloutTimeouts.agentCall` and `nk3`'s sessions use it too).
    public static let defaultTimeout: Duration = .seconds(10)

    /// Makes a client from the cluster CA and a client identity.
    public init(
        endpoint: AgentEndpoint, trustRoots: [NIOSSLCertificate], identity: TLSIdentity, timeout: Duration = AgentClient.defaultTimeout,
        eventLoopGroup: any EventLoopGroup = MultiThreadedEventLoopGroup.singleton,
        logger: Logger = Logger(label: "nk3.agent-client")
    ) throws {
        self.init(
            endpoint: endpoint, tls: try AgentClientTLS(trustRoots: trustRoots, identity: identity),
            timeout: timeout, eventLoopGroup: eventLoopGroup, logger: logger)
    }

    /// `GET /v1/status`.
    public func status() async throws(AgentClientError) -> AgentStatus {
        try await call(.GET, "/v1/status", as: AgentStatus.self)
    }

    /// `GET /v1/files`: the landed configuration files.
    public func files() async throws(AgentClientError) -> LandedFiles {
        try await call(.GET, "/v1/files", as: LandedFiles.self)
    }

    /// `GET /v1/operations/ID`. With `wait` (whole seconds, at least 1), a long poll: while the operation is still
    /// being applied, the agent answers once it is not (awaiting a confirm, finished, rolling back) or after `wait`.
    /// Keep `wait` well under this client's timeout.
    public func operation(id: String, waitUpTo wait: Duration? = nil) async throws(AgentClientError) -> OperationReport {
        let escaped = id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed.subtracting(["/"])) ?? id
        var path = "/v1/operations/\(escaped)"
        // At most half this client's timeout, so that a held answer always arrives in time.
        if let wait, case let seconds = min(wait, timeout / 2).components.seconds, seconds >= 1 {
            path += "?wait=\(min(seconds, 30))"
        }
        return try await call(.GET, path, as: OperationReport.self)
    }

    /// `GET /metrics`: Prometheus text.
    public func metrics() async throws(AgentClientError) -> String {
        let response = try await send(.GET, "/metrics", body: nil, reuse: .read)
        return String(buffer: response.body)
    }

    /// `POST /v1/envelopes`: submits a signed command. `leaveConnectionOpen: false` asks the agent to close the
    /// connection after its answer (`Connection: close`), for a command after which it goes down (a reboot): the
    /// next request then connects afresh instead of finding a connection to a machine that is gone.
    public func submit(_ envelope: SignedEnvelope, leaveConnectionOpen: Bool = true) async throws(AgentClientError)
        -> EnvelopeReceipt
    {
        let data: Data
        do {
            data = try CanonicalJSON.encode(envelope)
        } catch {
            throw AgentClientError(.configuration, endpoint: endpoint, "cannot encode envelope: \(error)")
        }
        return try await call(
            .POST, "/v1/envelopes", body: ByteBuffer(bytes: data), reuse: .command(leaveOpen: leaveConnectionOpen),
            as: EnvelopeReceipt.self)
    }

    /// `GET /v1/agent-binary/SHA256`: whether the agent has that agent binary. An agent from before uploads
    /// existed answers 404 (no such endpoint): `.wire` with `not_found`.
    public func agentBinaryPresence(sha256: String) async throws(AgentClientError) -> AgentBinaryPresence {
        try await call(.GET, "/v1/agent-binary/\(sha256)", as: AgentBinaryPresence.self)
    }

    /// `PUT /v1/agent-binary/SHA256`: uploads `binary`, authorized by `envelope` (a signed `stageAgentBinary` for
    /// it). The timeout grows with the size: a minute, plus a second per MiB.
    public func uploadAgentBinary(_ binary: Data, sha256: String, envelope: SignedEnvelope) async throws(AgentClientError)
        -> AgentBinaryPresence
    {
        let ticket: String
        do {
            ticket = try CanonicalJSON.encode(envelope).base64EncodedString()
        } catch {
            throw AgentClientError(.configuration, endpoint: endpoint, "cannot encode envelope: \(error)")
        }
        var headers = HTTPHeaders()
        headers.add(name: NK3Wire.uploadEnvelopeHeader, value: ticket)
        let response = try await send(
            .PUT, "/v1/agent-binary/\(sha256)", body: ByteBuffer(bytes: binary), contentType: "application/octet-stream",
            headers: headers, timeout: max(timeout, .seconds(60 + binary.count / (1 << 20))), reuse: .never)
        return try decode(response, method: .PUT, path: "/v1/agent-binary/\(sha256)", as: AgentBinaryPresence.self)
    }

    /// Posts raw bytes to `/v1/envelopes` (for tests of the agent's input handling).
    public func submit(rawBody: ByteBuffer) async throws(AgentClientError) -> EnvelopeReceipt {
        try await call(.POST, "/v1/envelopes", body: rawBody, reuse: .command(leaveOpen: true), as: EnvelopeReceipt.self)
    }

    // MARK: - plumbing

    private func call<T: Decodable>(
        _ method: HTTPMethod, _ path: String, body: ByteBuffer? = nil, reuse: HTTPSOneShot.Reuse = .read, as type: T.Type
    ) async throws(AgentClientError) -> T {
        let response = try await send(method, path, body: body, reuse: reuse)
        return try decode(response, method: method, path: path, as: type)
    }

    private func decode<T: Decodable>(_ response: HTTPSOneShot.Response, method: HTTPMethod, path: String, as type: T.Type)
        throws(AgentClientError) -> T
    {
        do {
            return try CanonicalJSON.decode(T.self, from: Data(response.body.readableBytesView))
        } catch {
            throw AgentClientError(
                .badResponse, endpoint: endpoint,
                "\(method) \(path) answered \(response.status.code) with a body that is not a \(T.self): "
                    + StrictJSON.describe(error), httpStatus: Int(response.status.code))
        }
    }

    private func send(
        _ method: HTTPMethod, _ path: String, body: ByteBuffer?, contentType: String = "application/json",
        headers: HTTPHeaders = [:], timeout requestTimeout: Duration? = nil, reuse: HTTPSOneShot.Reuse
    ) async throws(AgentClientError) -> HTTPSOneShot.Response {
        let serverHostname: String?
        if IPAddressBytes.parse(endpoint.expectedName) != nil {
            // NIOSSL checks the connected peer's IP against the certificate's IP SANs; so the expected IP
            // must be the one we connect to, or the check would not be about the expected address.
            guard IPAddressBytes.parse(endpoint.host) == IPAddressBytes.parse(endpoint.expectedName) else {
                throw AgentClientError(
                    .configuration, endpoint: endpoint,
                    "expected IP address \(endpoint.expectedName) differs from the address connected to (\(endpoint.host)); "
                        + "connect to that address, or expect a hostname")
            }
            serverHostname = nil
        } else {
            serverHostname = endpoint.expectedName
        }
        let oneShot = HTTPSOneShot(
            host: endpoint.host, port: endpoint.port, serverHostname: serverHostname, tls: tls.context,
            serverPolicy: tls.serverPolicy, timeout: TimeAmount(requestTimeout ?? timeout),
            maxResponseBytes: 64 * 1024 * 1024, group: group, keptAlive: keptAlive)
        let response: HTTPSOneShot.Response
        do {
            response = try await oneShot.request(
                method: method, path: path, body: body, contentType: body == nil ? nil : contentType, headers: headers,
                reuse: reuse)
        } catch {
            throw map(error, method: method, path: path)
        }
        guard (200..<300).contains(response.status.code) else {
            let status = Int(response.status.code)
            if let wire = try? CanonicalJSON.decode(WireError.self, from: Data(response.body.readableBytesView)) {
                throw AgentClientError(.wire, endpoint: endpoint, wire.description, wireError: wire, httpStatus: status)
            }
            throw AgentClientError(
                .badResponse, endpoint: endpoint,
                "\(method) \(path) answered \(status) without an nk3 error body: "
                    + String(String(buffer: response.body).prefix(200)), httpStatus: status)
        }
        return response
    }

    private func map(_ failure: HTTPSOneShot.Failure, method: HTTPMethod, path: String) -> AgentClientError {
        switch failure {
        case .connect(let error):
            if error is NIOSSLError || error is BoringSSLError || error is NIOSSLExtraError {
                return tlsError(error)
            }
            return AgentClientError(
                .unreachable, endpoint: endpoint,
                "cannot connect: \(error). Is nk3-agent running and its port open in the firewall?")
        case .tls(let error):
            return tlsError(error)
        case .timeout:
            return AgentClientError(.timeout, endpoint: endpoint, "\(method) \(path): no answer within \(timeout)")
        case .closedEarly, .closedBeforeAnswer(cause: nil):
            return AgentClientError(
                .tlsRefused, endpoint: endpoint,
                "the agent closed the connection before answering \(method) \(path); it most likely refused our "
                    + "client certificate (wrong CA, expired, or missing)")
        case .responseTooLarge(let limit):
            return AgentClientError(.badResponse, endpoint: endpoint, "response larger than \(limit) bytes")
        case .cancelled:
            return AgentClientError(.timeout, endpoint: endpoint, "\(method) \(path): abandoned (the caller gave up waiting)")
        case .other(let error), .closedBeforeAnswer(cause: let error?):
            return AgentClientError(.unreachable, endpoint: endpoint, "\(method) \(path) failed: \(error)")
        }
    }

    private func tlsError(_ error: any Error) -> AgentClientError {
        AgentClientError(
            .tlsRefused, endpoint: endpoint,
            "TLS handshake refused: \(error). Check that the agent's certificate is issued by this cluster's CA for "
                + "'\(endpoint.expectedName)' (nk3 certs issue-agent) and that our client certificate is valid")
    }
}
