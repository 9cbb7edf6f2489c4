#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Crypto
import Logging
import NIOCore
import NIOHTTP1
import NIOSSL
import NK3Common
import NK3Protocol
import ServiceLifecycle
import Synchronization

/// The agent's HTTPS front end: mutual TLS 1.3, roles from the client certificate, signed-envelope
/// verification and serial persistence; everything else is delegated to an `AgentEngine`.
///
/// Routes: `GET /v1/status`, `GET /v1/operations/{id}`, `GET /metrics` (role `reader` or `operator`),
/// `GET /v1/files` and `POST /v1/envelopes` (role `operator`). Every refusal is a `WireError` JSON body with
/// `WireError.httpStatus`, and a refused envelope changes nothing on disk. The envelope accepted last, sent again
/// byte for byte, is answered as it was the first time and not run again (`SerialStore`: a coordinator whose
/// kept connection closed before the answer sends it once more).
///
/// As a swift-service-lifecycle `Service`, `run()` serves until graceful shutdown.
public final class AgentServer: Service, Sendable {
    /// The configuration it was made with.
    public let config: AgentServerConfig
    /// The persisted last accepted serial.
    public let serials: SerialStore
    private let engine: any AgentEngine
    private let verifier: EnvelopeVerifier
    /// The uploaded agent binaries (`<stateDirectory>/bin`).
    let binaries: AgentBinaryStore
    private let clientPolicy: PeerCertificatePolicy
    private let revocations: RevocationWatch
    private let tls: NIOSSLContext
    private let logger: Logger
    private let now: @Sendable () -> Date
    private let server = Mutex<HTTPSServer?>(nil)
    private let counters = Mutex<[String: Int]>([:])

    /// Prepares the server: loads the TLS identity and CA (refusing a group/world-readable key file), the
    /// pinned keys and the serial store. Does not bind yet (`start()` or `run()` does).
    public init(
        config: AgentServerConfig, engine: any AgentEngine, logger: Logger,
        now: @escaping @Sendable () -> Date = { Date() }
    ) throws {
        self.config = config
        self.engine = engine
        self.logger = logger
        self.now = now
        self.tls = try config.makeTLSContext()
        self.verifier = try config.makeVerifier()
        self.binaries = AgentBinaryStore(directory: config.stateDirectory + "/bin")
        self.clientPolicy = try config.makeClientPolicy()
        self.revocations = RevocationWatch(path: config.revocationFile, initial: clientPolicy.revoked, logger: logger)
        self.serials = try SerialStore(stateDirectory: config.stateDirectory)
    }

    /// The bound port once started (nil before).
    public var port: Int? { server.withLock { $0?.port } }
    /// The longest `GET /v1/operations/ID?wait=` holds an answer (well under the connection idle and write timeouts).
    public static let maxOperationWaitSeconds = 30
    /// TLS connections accepted since `start()` (nil before it); also the metric `nk3_agent_connections_total`.
    public var acceptedConnectionCount: Int? { server.withLock { $0?.acceptedConnectionCount } }
    /// Connections open now (nil before `start()`).
    public var openConnectionCount: Int? { server.withLock { $0?.openConnectionCount } }
    /// Connections refused or closed by the connection limits, by reason (nil before `start()`).
    public var connectionRefusals: [String: Int]? { server.withLock { $0?.admissionRefusals } }
    /// TLS connections in their handshake, and with a completed handshake, now (nil before `start()`).
    public var admissionCounts: (handshaking: Int, established: Int)? { server.withLock { $0?.admissionCounts } }

    /// Binds and starts serving; returns the bound port. Calling it again returns the same port.
    @discardableResult
    public func start() async throws -> Int {
        if let port { return port }
        let http = try await HTTPSServer.start(
            host: config.host, port: config.port, tls: tls, limits: config.limits, logger: logger,
            upload: { [self] request in await self.uploadDecision(for: request) }
        ) { [self] request in
            await self.respond(to: request)
        }
        let winner: HTTPSServer? = server.withLock { current in
            if current == nil {
                current = http
                return nil
            }
            return current
        }
        if let winner {
            await http.shutdown()
            return winner.port
        }
        logger.info(
            "nk3-agent listening",
            metadata: ["agent.node": "\(config.nodeName)", "agent.port": "\(http.port)", "agent.host": "\(config.host)"])
        return http.port
    }

    /// Stops serving (in-flight requests are cancelled).
    public func shutdown() async {
        let http = server.withLock { current -> HTTPSServer? in
            defer { current = nil }
            return current
        }
        await http?.shutdown()
    }

    /// Serves until graceful shutdown (or cancellation), then stops.
    public func run() async throws {
        try await start()
        try? await gracefulShutdown()
        await shutdown()
    }

    // MARK: - routing

    /// Answers one request (exposed for tests that bypass sockets; `clientCertificate` must be the verified one).
    public func respond(to request: HTTPServerRequest) async -> HTTPServerResponse {
        let role: ClientRole
        switch authorize(request) {
        case .success(let r): role = r
        case .failure(let refusal): return refuse(refusal)
        }
        let segments = request.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        switch (request.method, segments) {
        case (.GET, let s) where s.count == 3 && s[0] == "v1" && s[1] == "agent-binary":
            if let problem = StageAgentBinaryCommand(sha256: s[2], size: 1).validationProblem {
                return refuse(WireError(.malformed, "GET /v1/agent-binary/SHA256: \(problem)"))
            }
            let present = binaries.has(sha256: s[2])
            return ok(AgentBinaryPresence(sha256: s[2], present: present, path: present ? binaries.path(sha256: s[2]) : nil))
        case (.GET, ["v1", "status"]):
            var status = await engine.status()
            status.lastAcceptedSerial = serials.current
            return ok(status)
        case (.GET, ["v1", "files"]):
            // File contents can hold secrets (a k3s token in configuration.nix): operators only; readers see the
            // files' digests in the status.
            guard role == .operator else {
                return refuse(
                    WireError(
                        .forbidden,
                        "role '\(role.rawValue)' may not read file contents (GET /v1/files needs an operator certificate); "
                            + "the files' SHA-256 digests are in GET /v1/status"))
            }
            return ok(LandedFiles(files: await engine.landedFiles()))
        case (.GET, let s) where s.count == 3 && s[0] == "v1" && s[1] == "operations":
            let id = HTTPServerRequest.percentDecoded(s[2]) ?? s[2]
            // `?wait=SECONDS` (0…maxOperationWaitSeconds): a long poll while the operation is still being applied.
            var wait: Duration = .zero
            if let text = request.query["wait"] {
                guard let seconds = Int(text), (0...Self.maxOperationWaitSeconds).contains(seconds) else {
                    return refuse(
                        WireError(.malformed, "wait must be whole seconds from 0 to \(Self.maxOperationWaitSeconds), not '\(text)'"))
                }
                wait = .seconds(seconds)
            }
            let found = wait > .zero ? await engine.operation(id: id, waitingUpTo: wait) : await engine.operation(id: id)
            guard let report = found else {
                return refuse(WireError(.notFound, "no operation with id '\(id)'"))
            }
            return ok(report)
        case (.GET, ["metrics"]):
            return .text(.ok, await engine.metricsText() + serverMetrics(), contentType: "text/plain; version=0.0.4")
        case (.POST, ["v1", "envelopes"]):
            guard role == .operator else {
                return refuse(
                    WireError(
                        .forbidden,
                        "role '\(role.rawValue)' may only read; submitting envelopes needs an operator certificate"))
            }
            return await submit(request.body)
        case (_, ["v1", "status"]), (_, ["v1", "files"]), (_, ["metrics"]), (_, ["v1", "envelopes"]):
            return refuse(WireError(.methodNotAllowed, "\(request.method) is not allowed on \(request.path)"))
        case (_, let s) where s.count == 3 && s[0] == "v1" && (s[1] == "operations" || s[1] == "agent-binary"):
            return refuse(WireError(.methodNotAllowed, "\(request.method) is not allowed on \(request.path)"))
        default:
            return refuse(WireError(.notFound, "no such endpoint: \(request.method) \(request.path)"))
        }
    }

    /// The client certificate's role, or why it is refused (no certificate, revoked or not as issued, no role).
    private func authorize(_ request: HTTPServerRequest) -> Result<ClientRole, WireError> {
        guard let certificate = request.clientCertificate else {
            return .failure(WireError(.forbidden, "no client certificate"))
        }
        if let problem = clientPolicy.problem(with: certificate, revoked: revocations.current) {
            logger.info("client certificate refused", metadata: ["agent.reason": "\(problem)"])
            return .failure(WireError(.forbidden, problem))
        }
        guard let role = ClientRole.from(certificate: certificate) else {
            return .failure(
                WireError(
                    .forbidden,
                    "client certificate '\(certificate.subject)' carries no nk3 role (OU nk3-reader or nk3-operator); "
                        + "issue one with `nk3 certs issue-client NAME --role reader|operator`"))
        }
        return .success(role)
    }

    /// `PUT /v1/agent-binary/SHA256` streams the body to disk once its head is authorized: an operator certificate
    /// and, in the `X-NK3-Envelope` header (base64 of the envelope's JSON), a signed `stageAgentBinary` envelope for
    /// this node naming the same digest and the request's exact length. Its serial is taken like any command's, so
    /// a captured request cannot be replayed. Every other request is read whole as usual.
    public func uploadDecision(for request: HTTPServerRequest) async -> HTTPUploadDecision {
        let segments = request.path.split(separator: "/", omittingEmptySubsequences: true).map(String.init)
        guard request.method == .PUT, segments.count == 3, segments[0] == "v1", segments[1] == "agent-binary" else {
            return .buffer
        }
        switch authorize(request) {
        case .success(.operator): break
        case .success(let role):
            return .refuse(refuse(WireError(.forbidden, "role '\(role.rawValue)' may not upload an agent binary (operators only)")))
        case .failure(let refusal): return .refuse(refuse(refusal))
        }
        guard let header = request.headers.first(name: Self.envelopeHeader), let data = Data(base64Encoded: header) else {
            return .refuse(countRefusal(WireError(.malformed, "an upload needs its signed envelope, base64, in \(Self.envelopeHeader)")))
        }
        let (verifier, now) = (self.verifier, self.now())
        let length = request.headers.first(name: "content-length").flatMap(Int.init)
        let command: StageAgentBinaryCommand
        do {
            command = try serials.accept { (last: UInt64?) throws(EnvelopeError) -> (StageAgentBinaryCommand, serial: UInt64) in
                let p = try verifier.verify(envelopeJSON: data, lastAcceptedSerial: last, now: now)
                guard case .stageAgentBinary(let c) = p.command else {
                    throw .malformed("the envelope of an upload must be a stageAgentBinary command, not \(p.command.kind)")
                }
                guard c.sha256 == segments[2], c.size == length else {
                    throw .malformed(
                        "the envelope names \(c.sha256) (\(c.size) bytes); the request is for \(segments[2]) "
                            + "(\(length.map(String.init) ?? "no") Content-Length)")
                }
                return (c, p.serial)
            }
        } catch {
            logger.info("upload refused", metadata: ["agent.error": "\(error.code.rawValue)"])
            return .refuse(countRefusal(error))
        }
        bump("accepted")
        do throws(WireError) {
            let upload = try binaries.begin(command)
            logger.info("receiving an agent binary", metadata: ["agent.sha256": "\(command.sha256)", "agent.size": "\(command.size)"])
            return .stream(maxBytes: command.size, consumer: upload)
        } catch {
            return .refuse(refuse(error))
        }
    }

    /// The request header that carries an upload's signed envelope.
    public static let envelopeHeader = NK3Wire.uploadEnvelopeHeader

    private func submit(_ body: ByteBuffer) async -> HTTPServerResponse {
        guard body.readableBytes <= NK3Wire.maxBodyBytes else {
            return countRefusal(WireError(.bodyTooLarge, "envelope exceeds \(NK3Wire.maxBodyBytes) bytes"))
        }
        // Unknown, duplicate or missing fields are refused by the verifier's strict parser (malformed, 400).
        let data = Data(body.readableBytesView)
        // The digest that recognises this very envelope when it is sent again (SerialStore: re-submission).
        let digest = Hex.lowercase(SHA256.hash(data: data))
        let payload: CommandPayload
        let verifier = self.verifier
        let now = self.now()
        do {
            let admission = try serials.admit(envelopeSHA256: digest) {
                (last: UInt64?) throws(EnvelopeError) -> (CommandPayload, serial: UInt64) in
                let p = try verifier.verify(envelopeJSON: data, lastAcceptedSerial: last, now: now)
                if case .stageAgentBinary = p.command {
                    // Refused before its serial is taken: it authorizes one upload and travels with it.
                    throw .malformed("a stageAgentBinary envelope goes with PUT /v1/agent-binary/SHA256, not here")
                }
                return (p, p.serial)
            }
            switch admission {
            case .accepted(let p):
                payload = p
            case .answeredBefore(let answer):
                logger.info("envelope re-submitted: answered as before, not run again", metadata: ["agent.serial": "\(serials.current ?? 0)"])
                bump("resubmitted")
                if let receipt = answer.receipt { return ok(receipt) }
                return refuse(answer.refusal ?? WireError(.internalError, "no answer on record"))
            }
        } catch {
            logger.info(
                "envelope refused",
                metadata: ["agent.node": "\(config.nodeName)", "agent.error": "\(error.code.rawValue)"])
            return countRefusal(error)
        }
        logger.info(
            "envelope accepted",
            metadata: ["agent.serial": "\(payload.serial)", "agent.command": "\(payload.command.kind)"])
        bump("accepted")
        let answer: SerialStore.Answer
        do {
            answer = SerialStore.Answer(receipt: try await engine.handle(payload))
        } catch {
            logger.info("command refused by engine", metadata: ["agent.error": "\(error.code.rawValue)"])
            answer = SerialStore.Answer(refusal: error)
        }
        let accepted = payload.serial
        serials.recordAnswer(answer, serial: accepted, envelopeSHA256: digest)
        let (serials, logger) = (self.serials, self.logger)
        let persist: @Sendable () -> Void = {
            do {
                try serials.persistAnswer(serial: accepted, envelopeSHA256: digest)
            } catch {
                // Only a re-submission of this envelope after a restart is affected: it is refused, not answered.
                logger.warning("cannot record the answer to an envelope", metadata: ["agent.error": "\(error)"])
            }
        }
        guard let receipt = answer.receipt else {
            persist()
            return refuse(answer.refusal ?? WireError(.internalError, "no answer"))
        }
        var response = ok(receipt)
        if case .reboot = payload.command {
            // The reboot waits for this answer to be out (not for a fixed delay): see ApplyEngine. Its answer stays in
            // memory only: the engine reboots once it is out or after its reboot delay, whichever comes first, and a
            // durable write before it could take longer than that; after the boot the coordinator goes by the new
            // boot id, not by this receipt.
            let engine = self.engine
            response.afterSent = { Task { await engine.responseSent(serial: accepted) } }
        } else {
            persist()
        }
        return response
    }

    // MARK: - responses and counters

    private func ok<T: Encodable>(_ value: T) -> HTTPServerResponse {
        .json(.ok, value, encoder: CanonicalJSON.encoder())
    }

    private func refuse(_ error: WireError) -> HTTPServerResponse {
        .json(HTTPResponseStatus(statusCode: error.httpStatus), error, encoder: CanonicalJSON.encoder())
    }

    private func countRefusal(_ error: WireError) -> HTTPServerResponse {
        bump(error.code.rawValue)
        return refuse(error)
    }

    private func bump(_ result: String) {
        counters.withLock { $0[result, default: 0] += 1 }
    }

    private func serverMetrics() -> String {
        let snapshot = counters.withLock { $0 }
        var out = "# HELP nk3_agent_envelopes_total Envelopes received, by result (accepted or the error code).\n"
        out += "# TYPE nk3_agent_envelopes_total counter\n"
        for (result, n) in snapshot.sorted(by: { $0.key < $1.key }) {
            out += "nk3_agent_envelopes_total{result=\"\(result)\"} \(n)\n"
        }
        if let accepted = server.withLock({ $0?.acceptedConnectionCount }) {
            out += "# HELP nk3_agent_connections_total TLS connections established since the agent started (handshake completed with a verified client certificate; refusals are in nk3_agent_connections_refused_total).\n"
            out += "# TYPE nk3_agent_connections_total counter\nnk3_agent_connections_total \(accepted)\n"
        }
        if let refusals = server.withLock({ $0?.admissionRefusals }) {
            out += "# HELP nk3_agent_connections_refused_total TLS connections refused or closed by the connection limits, by reason.\n"
            out += "# TYPE nk3_agent_connections_refused_total counter\n"
            for (reason, n) in refusals.sorted(by: { $0.key < $1.key }) {
                out += "nk3_agent_connections_refused_total{reason=\"\(reason)\"} \(n)\n"
            }
        }
        if let last = serials.current {
            out += "# HELP nk3_agent_last_accepted_serial Serial of the last accepted envelope.\n"
            out += "# TYPE nk3_agent_last_accepted_serial gauge\nnk3_agent_last_accepted_serial \(last)\n"
        }
        return out
    }
}
