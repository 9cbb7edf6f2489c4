// The fuzz harness entry points: one function per decoder of untrusted or operator-written bytes.
//
// Compiled twice: into the libFuzzer binary of the separate fuzz package (Fuzz/Package.swift, see
// docs/RELIABILITY.md), and into the main test suite (Tests/AgentTests/Support/AbuseFuzzHarness.swift is a
// symlink to this file) where AbuseFuzzCorpusTests replays every committed seed and regression input.
// Each function must return normally for every input: a refusal is a thrown error that is caught here; a
// crash, a trap (overflow, force-unwrap, precondition) or a sanitizer report is a bug. Invariants that
// must hold for accepted input are checked with `fuzzCheck`, which traps.
import Crypto
import Foundation
import Logging
import NIOCore
import NIOEmbedded
import NIOHTTP1
import NK3Agent
import NK3Common
import NK3Coordinator
@testable import NK3Kube
import NK3Protocol
import Synchronization
import X509

/// The fuzz targets and their entry points.
public enum NK3Fuzz {
    /// Every target name (the corpus folder under Fuzz/corpus/ has the same name).
    public static let targets: [String] = [
        "envelope", "payload", "agent-http", "inventory", "kubeconfig", "kube-models", "kube-watch",
        "rebuild-output", "agent-config", "agent-responses", "jinja",
    ]

    /// Builds what `target` keeps for the whole process (fixtures parsed once, alive until exit). The fuzz binary
    /// calls this with LeakSanitizer off: Swift stores enum tags in the spare bits of pointers, so LSan's exit-time
    /// scan cannot see that a global still holds these objects and would report them as leaked. Everything a
    /// target allocates per input is still checked.
    public static func prepare(_ target: String) {
        switch target {
        case "jinja": _ = jinjaInventory.nodes.count
        case "agent-http": _ = AgentFixture.shared
        default: break
        }
    }

    /// Runs `target` on `data` from synchronous code (the libFuzzer callback). Unknown target: a trap.
    public static func run(_ target: String, _ data: Data) {
        switch target {
        case "agent-http": blocking { await agentHTTP(data) }
        default: runSync(target, data)
        }
    }

    /// Runs `target` on `data` from async code (tests: no blocking of the cooperative pool).
    public static func runAsync(_ target: String, _ data: Data) async {
        switch target {
        case "agent-http": await agentHTTP(data)
        default: runSync(target, data)
        }
    }

    private static func runSync(_ target: String, _ data: Data) {
        switch target {
        case "envelope": envelope(data)
        case "payload": payload(data)
        case "inventory": inventory(data)
        case "kubeconfig": kubeconfig(data)
        case "kube-models": kubeModels(data)
        case "kube-watch": kubeWatch(data)
        case "rebuild-output": rebuildOutput(data)
        case "agent-config": agentConfig(data)
        case "agent-responses": agentResponses(data)
        case "jinja": jinja(data)
        default: fatalError("unknown fuzz target '\(target)'; known: \(targets.joined(separator: ", "))")
        }
    }

    // MARK: - fixed keys and clock

    /// The fixed signing key of the harness (a test key: 32 bytes of 0x07), pinned by `verifier`.
    public static let signingKey: Curve25519.Signing.PrivateKey = {
        try! Curve25519.Signing.PrivateKey(rawRepresentation: Data(repeating: 7, count: 32))
    }()
    /// The node the harness's verifier belongs to.
    public static let node = "fuzz-node"
    /// The harness's clock: 2023-11-14T22:13:20Z. Seeds are issued around it.
    public static let now = Date(timeIntervalSince1970: 1_700_000_000)
    /// The last accepted serial the verifier is given.
    public static let lastSerial: UInt64 = 10
    static let verifier = EnvelopeVerifier(node: node, trustedKeys: [signingKey.publicKey])
    static let signer = EnvelopeSigner(privateKey: signingKey)

    // MARK: - envelope and payload (Sources/Protocol/EnvelopeSigning.swift)

    /// Envelope JSON as it arrives over the wire, verified by the pinned fixed key.
    public static func envelope(_ data: Data) {
        checkVerified(data, try? verifier.verify(envelopeJSON: data, lastAcceptedSerial: lastSerial, now: now))
    }

    /// The input is the payload (`CommandPayload.wireBytes()`: a JSON header line, then file contents): it is
    /// signed with the fixed key, wrapped in an envelope, and verified, so that payload decoding and every
    /// check after the signature are reached.
    public static func payload(_ data: Data) {
        guard let envelope = try? signer.sign(payloadBytes: data), let json = try? CanonicalJSON.encode(envelope) else {
            fuzzCheck(false, "signing and encoding an envelope never fails")
            return
        }
        let accepted = try? verifier.verify(envelopeJSON: json, lastAcceptedSerial: lastSerial, now: now)
        checkVerified(json, accepted)
        // The same payload bytes through the struct path must give the same answer.
        let direct = try? verifier.verify(envelope, lastAcceptedSerial: lastSerial, now: now)
        fuzzCheck(direct == accepted, "verify(envelopeJSON:) and verify(_:) disagree")
    }

    private static func checkVerified(_ json: Data, _ payload: CommandPayload?) {
        guard let payload else { return }
        fuzzCheck(payload.node == node, "accepted another node's envelope")
        fuzzCheck(payload.serial > lastSerial, "accepted a replayed serial")
        fuzzCheck(payload.expiresAt > now && payload.issuedAt <= now.addingTimeInterval(NK3Wire.defaultClockSkew), "accepted outside its window")
        if case .apply(let bundle) = payload.command { fuzzCheck(bundle.validationProblem() == nil, "accepted an invalid bundle") }
        fuzzCheck(payload.command.contentProblem() == nil, "accepted a command with unsafe field content")
        fuzzCheck(
            payload.serial <= EnvelopeVerifier.serialLimit(now: now, margin: NK3Wire.serialMargin),
            "accepted a serial beyond now + the margin")
        // An accepted payload re-encodes canonically and decodes to itself, in JSON and in its wire form.
        let again = (try? CanonicalJSON.encode(payload)).flatMap { try? CanonicalJSON.decode(CommandPayload.self, from: $0) }
        fuzzCheck(again == payload, "accepted payload does not round-trip through CanonicalJSON")
        let wire = try? CommandPayload(wireBytes: payload.wireBytes())
        fuzzCheck(wire == payload, "accepted payload does not round-trip through its wire form")
    }

    // MARK: - the agent's HTTP front end (Sources/Agent/Server/AgentServer.swift)

    /// First byte: which client certificate the request carries (operator, reader, none, or one without an
    /// nk3 role); the rest: raw HTTP/1.1 bytes, parsed by NIO's `HTTPRequestDecoder` configured like the
    /// agent's server, each complete request answered by `AgentServer.respond(to:)`.
    public static func agentHTTP(_ data: Data) async {
        guard let first = data.first else { return }
        let agent = AgentFixture.shared
        let certificate: Certificate? = {
            switch first % 4 {
            case 0: return agent.operatorCertificate
            case 1: return agent.readerCertificate
            case 2: return nil
            default: return agent.roleless
            }
        }()
        for request in parseRequests(data.dropFirst(), limits: agent.limits, certificate: certificate) {
            let response = await agent.server.respond(to: request)
            let code = Int(response.status.code)
            fuzzCheck((200..<600).contains(code), "status \(code) out of range")
            if certificate == nil || certificate == agent.roleless {
                fuzzCheck(code == 403, "request without an nk3 role answered \(code)")
            }
            if case .bytes(let body) = response.body, code >= 400 {
                fuzzCheck((try? CanonicalJSON.decode(WireError.self, from: Data(body.readableBytesView))) != nil, "refusal without a WireError body")
            }
            if request.path.hasPrefix("/v1/files") && code == 200 {
                fuzzCheck(certificate == agent.operatorCertificate, "a non-operator read file contents")
            }
            if request.method == .POST && code == 200 {
                fuzzCheck(certificate == agent.operatorCertificate, "a non-operator's envelope was accepted")
            }
        }
    }

    /// Parses raw bytes as the agent's server does (same decoder and limits); at most 8 requests.
    static func parseRequests(_ bytes: Data, limits: HTTPServerLimits, certificate: Certificate?) -> [HTTPServerRequest] {
        var l = NIOHTTPDecoderLimitConfiguration()
        l.maxHeaderListSize = limits.maxHeaderBytes
        l.maxHeaderFieldSize = limits.maxHeaderBytes
        l.maxHeaderFieldCount = 256
        let channel = EmbeddedChannel()
        defer { _ = try? channel.finish() }
        do {
            try channel.pipeline.syncOperations.addHandler(
                ByteToMessageHandler(HTTPRequestDecoder(leftOverBytesStrategy: .dropBytes, limitConfiguration: l)))
            try channel.writeInbound(ByteBuffer(bytes: bytes))
        } catch {
            // Invalid HTTP: the server answers 400 and closes; nothing reaches the handler. Requests parsed
            // before the error were answered already; keep what the decoder produced.
        }
        var requests: [HTTPServerRequest] = []
        var head: HTTPRequestHead?
        var body = ByteBuffer()
        while let part = try? channel.readInbound(as: HTTPServerRequestPart.self), requests.count < 8 {
            switch part {
            case .head(let h):
                head = h
                body.clear()
            case .body(var chunk):
                guard body.readableBytes + chunk.readableBytes <= limits.maxBodyBytes else { return requests }  // 413
                body.writeBuffer(&chunk)
            case .end:
                guard let h = head else { return requests }
                requests.append(
                    HTTPServerRequest(method: h.method, uri: h.uri, headers: h.headers, body: body, clientCertificate: certificate))
                head = nil
            }
        }
        return requests
    }

    /// One agent server (never bound to a socket) over a fixed engine, with fresh certificates.
    final class AgentFixture: Sendable {
        static let shared = try! AgentFixture()
        let server: AgentServer
        let operatorCertificate: Certificate
        let readerCertificate: Certificate
        let roleless: Certificate
        let limits: HTTPServerLimits

        init() throws {
            let ca = try ClusterCA.create(cluster: "fuzz")
            let agent = try ca.issueAgent(hostname: NK3Fuzz.node, addresses: ["127.0.0.1"])
            operatorCertificate = try Certificate(pemEncoded: try ca.issueClient(name: "op", role: .operator).certificatePEM)
            readerCertificate = try Certificate(pemEncoded: try ca.issueClient(name: "rd", role: .reader).certificatePEM)
            roleless = ca.certificate  // a valid certificate whose subject carries no nk3 role
            let state = NSTemporaryDirectory() + "nk3-fuzz-agent-state-\(getpid())-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: state, withIntermediateDirectories: true)
            let config = AgentServerConfig(
                host: "127.0.0.1", port: 0, certificate: .pem(agent.certificatePEM), privateKey: .pem(agent.privateKeyPEM),
                clientCA: .pem(try ca.certificatePEM),
                signingPublicKeys: [NK3Fuzz.signingKey.publicKey.rawRepresentation.base64EncodedString()],
                nodeName: NK3Fuzz.node, stateDirectory: state)
            limits = config.limits
            server = try AgentServer(
                config: config, engine: FixedEngine(), logger: Logger(label: "nk3.fuzz", factory: { _ in SwiftLogNoOpLogHandler() }),
                now: { NK3Fuzz.now })
        }
    }

    /// An engine with fixed answers (no apply logic): the fuzz target is the front end.
    final class FixedEngine: AgentEngine {
        func status() async -> AgentStatus {
            AgentStatus(
                hostname: NK3Fuzz.node, kernel: "6.6.0", nixosVersion: "24.05", currentSystem: "/nix/store/x-system",
                bootedSystem: "/nix/store/x-system", currentGeneration: 3, bootedGeneration: 3, profileGeneration: 3,
                bootID: "boot-1", uptimeSeconds: 12, configHash: ConfigFiles.hash(files: ["configuration.nix": "{ }"]),
                files: ConfigFiles.digests(["configuration.nix": "{ }"]), channel: nil, lastAcceptedSerial: nil,
                operation: nil, lastResult: nil, kubelet: KubeletState(unit: "k3s", unitActive: true, healthz: true))
        }
        func landedFiles() async -> [String: String] { ["configuration.nix": "{ }"] }
        func operation(id: String) async -> OperationReport? {
            id == "op-1" ? OperationReport(operation: nil, result: nil, logTail: "built") : nil
        }
        func metricsText() async -> String { "# TYPE nk3_fuzz gauge\nnk3_fuzz 1\n" }
        func handle(_ payload: CommandPayload) async throws(WireError) -> EnvelopeReceipt {
            EnvelopeReceipt(serial: payload.serial, kind: payload.command.kind, operationID: "op-\(payload.serial)", phase: .received, message: "fuzz")
        }
    }

    // MARK: - operator-written files

    /// Inventory YAML (Sources/Coordinator/Inventory), then what the coordinator derives from it.
    public static func inventory(_ data: Data) {
        guard let inventory = try? Inventory.parse(yaml: String(decoding: data, as: UTF8.self), file: "/fuzz/inventory.yaml")
        else { return }
        for node in inventory.nodes {
            fuzzCheck(inventory.node(node.name) != nil, "node \(node.name) is not found by its name")
            _ = IPAddressBytes.parse(node.address)
        }
        fuzzCheck(inventory.nodesInRolloutOrder.count <= inventory.nodes.count * max(1, inventory.rolloutOrder.count), "rollout order")
    }

    /// A configuration template (Sources/Jinja through Sources/Coordinator/Templates), rendered for a node of a
    /// small inventory. A refusal is a `BundleError`; the same text must render the same way twice.
    public static func jinja(_ data: Data) {
        let template = JinjaTemplate(source: String(decoding: data, as: UTF8.self), name: "/fuzz/configuration.nix.j2")
        let renderer = BundleRenderer(inventory: jinjaInventory, template: template, signingPublicKeys: [jinjaKey])
        let first = Result { () throws(BundleError) in try renderer.render(node: jinjaInventory.nodes[0]) }
        let second = Result { () throws(BundleError) in try renderer.render(node: jinjaInventory.nodes[0]) }
        fuzzCheck(first == second, "a template rendered differently twice")
    }

    static let jinjaKey = Data(repeating: 7, count: 32).base64EncodedString()
    static let jinjaInventory = try! Inventory.parse(
        yaml: """
            join_address: 10.0.0.1
            join_token: "t'ok\\"en"
            nix_channel: nixos-24.05
            vars: {ntp: [a, b], n: 3, f: 1.5}
            nodes:
              10.0.0.1: {initiator: true, boot_device: /dev/sda, disks: [/dev/sdb], labels: {zone: a}, note: null}
              10.0.0.2: {hostname: two, boot_device: /dev/vda}
            watch_namespaces: [default]
            """, file: "/fuzz/inventory.yaml")

    /// Kubeconfig YAML (Sources/Kube/KubeConfig.swift); relative file references resolve in a directory
    /// that does not exist.
    public static func kubeconfig(_ data: Data) {
        let text = String(decoding: data, as: UTF8.self)
        if let config = try? KubeConfig.parse(yaml: text, directory: "/nonexistent/nk3-fuzz", context: nil) {
            fuzzCheck(config.server.scheme == "https", "accepted a non-https server \(config.server)")
        }
        _ = try? KubeConfig.parse(yaml: text, directory: "/nonexistent/nk3-fuzz", context: "other")
    }

    /// The agent's own config file (JSON written by the NixOS module; Sources/Agent/Config/AgentConfig.swift).
    public static func agentConfig(_ data: Data) {
        _ = try? AgentConfig.parse(data, path: "/fuzz/agent.json")
    }

    /// `nixos-rebuild` output (Sources/Agent/Backend/RebuildOutputParser.swift).
    public static func rebuildOutput(_ data: Data) {
        let (derivations, paths) = RebuildOutputParser.counts(in: String(decoding: data, as: UTF8.self))
        fuzzCheck((derivations ?? 0) >= 0 && (paths ?? 0) >= 0, "negative counts")
    }

    // MARK: - what the coordinator reads from the network

    /// Kubernetes API objects (first byte picks the model), then the health-gate rules over them.
    public static func kubeModels(_ data: Data) {
        guard let first = data.first else { return }
        let body = Data(data.dropFirst())
        let d = JSONDecoder()
        switch first % 11 {
        case 0: if let v = roundTrip(Node.self, body) { _ = GateLogic.kubeletReady(nodes: [v]) }
        case 1: _ = roundTrip(Pod.self, body)
        case 2: if let v = roundTrip(DaemonSet.self, body) { _ = GateLogic.daemonSets([v], namespace: "ns") }
        case 3: if let v = roundTrip(Deployment.self, body) { _ = GateLogic.deployments([v], namespace: "ns") }
        case 4:
            if let v = roundTrip(CephCluster.self, body) {
                _ = GateLogic.ceph(v, checkedAfter: nil)
                _ = GateLogic.ceph(v, checkedAfter: now)
            }
        case 5: _ = roundTrip(Lease.self, body)
        case 6: _ = roundTrip(KubeStatus.self, body)
        case 7: _ = roundTrip(PodDisruptionBudget.self, body)
        case 8: if let v = try? d.decode(KubeList<Node>.self, from: body) { _ = GateLogic.kubeletReady(nodes: v.items) }
        case 9: if let v = try? d.decode(KubeList<Pod>.self, from: body) { _ = v.items.count }
        default: _ = roundTrip(JSONValue.self, body)
        }
    }

    /// Decodes; if accepted, encoding it again must succeed and decode to an equal value.
    @discardableResult
    static func roundTrip<T: Codable & Hashable>(_ type: T.Type, _ data: Data) -> T? {
        guard let value = try? JSONDecoder().decode(T.self, from: data) else { return nil }
        guard let encoded = try? JSONEncoder().encode(value) else {
            fuzzCheck(false, "\(T.self) decoded but does not encode")
            return value
        }
        let again = try? JSONDecoder().decode(T.self, from: encoded)
        fuzzCheck(again == value, "\(T.self) does not round-trip: \(String(decoding: encoded, as: UTF8.self))")
        return value
    }

    /// One line of a watch stream (docs/UPSTREAM.md#watch), decoded for each object kind nk3 watches.
    public static func kubeWatch(_ data: Data) {
        let line = ByteBuffer(bytes: data)
        _ = try? KubeClient.decodeEvent(Node.self, line)
        _ = try? KubeClient.decodeEvent(Pod.self, line)
        _ = try? KubeClient.decodeEvent(CephCluster.self, line)
    }

    /// What an agent answers the coordinator (decoded by AgentClient with CanonicalJSON).
    public static func agentResponses(_ data: Data) {
        if let status = try? CanonicalJSON.decode(AgentStatus.self, from: data) {
            fuzzCheck((try? CanonicalJSON.encode(status)) != nil, "AgentStatus decoded but does not encode")
        }
        _ = try? CanonicalJSON.decode(EnvelopeReceipt.self, from: data)
        _ = try? CanonicalJSON.decode(OperationReport.self, from: data)
        _ = try? CanonicalJSON.decode(LandedFiles.self, from: data)
        _ = try? CanonicalJSON.decode(WireError.self, from: data)
    }

    // MARK: - plumbing

    /// Traps (a fuzz finding) when an invariant does not hold.
    static func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
        if !condition() { fatalError("fuzz invariant violated: \(message())") }
    }

    /// Waits for async work from synchronous code (the libFuzzer callback runs on its own thread, never
    /// on the cooperative pool).
    static func blocking(_ body: @escaping @Sendable () async -> Void) {
        let done = DispatchSemaphore(value: 0)
        Task {
            await body()
            done.signal()
        }
        done.wait()
    }
}
