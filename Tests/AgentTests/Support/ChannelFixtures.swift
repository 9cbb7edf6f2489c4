import Crypto
import Foundation
import Logging
import NIOCore
import NIOSSL
import NK3Agent
import NK3Common
import NK3Coordinator
import NK3Protocol
import Synchronization
import X509

/// An `AgentEngine` that records the commands it is handed, and whose landed files can be made large (slow-reader
/// tests). Test support only: no apply logic.
final class ChannelRecordingEngine: AgentEngine {
    let handled = Mutex<[CommandPayload]>([])
    let files: [String: String]

    /// `landedBytes`: total size of extra landed files it reports (split over 1 MiB files).
    init(landedBytes: Int = 0) {
        var files = ["configuration.nix": "{ }"]
        var left = landedBytes
        var i = 0
        while left > 0 {
            let n = min(left, 1 << 20)
            files["big-\(i).nix"] = String(repeating: "x", count: n)
            left -= n
            i += 1
        }
        self.files = files
    }

    var handledSerials: [UInt64] { handled.withLock { $0.map(\.serial) } }
    /// Serials whose answers the server reported as written out (`responseSent`).
    let sent = Mutex<[UInt64]>([])

    func responseSent(serial: UInt64) async { sent.withLock { $0.append(serial) } }

    func status() async -> AgentStatus {
        AgentStatus(
            hostname: "node-a", kernel: "6.6.0", nixosVersion: "24.05", currentSystem: "/nix/store/x-system",
            bootedSystem: "/nix/store/x-system", currentGeneration: 3, bootedGeneration: 3, profileGeneration: 3,
            bootID: "boot-1", uptimeSeconds: 12, configHash: ConfigFiles.hash(files: ["configuration.nix": "{ }"]),
            files: ConfigFiles.digests(["configuration.nix": "{ }"]), channel: nil, lastAcceptedSerial: 999_999,
            operation: nil, lastResult: nil, kubelet: KubeletState(unit: "k3s", unitActive: true, healthz: true))
    }

    func landedFiles() async -> [String: String] { files }

    func operation(id: String) async -> OperationReport? {
        id == "op-1" ? OperationReport(operation: nil, result: nil, logTail: "built") : nil
    }

    func metricsText() async -> String { "# TYPE nk3_test gauge\nnk3_test 1\n" }

    func handle(_ payload: CommandPayload) async throws(WireError) -> EnvelopeReceipt {
        handled.withLock { $0.append(payload) }
        return EnvelopeReceipt(
            serial: payload.serial, kind: payload.command.kind, operationID: "op-\(payload.serial)", phase: .received,
            message: "recorded")
    }
}

/// A cluster PKI minted fresh for each test (never committed PEMs), a signing key, and a temp state dir.
struct ChannelFixture {
    static let node = "node-a"

    let ca: ClusterCA
    let agentCert: IssuedCertificate
    let operatorCert: IssuedCertificate
    let readerCert: IssuedCertificate
    let signer: EnvelopeSigner
    let stateDir: String
    let engine = ChannelRecordingEngine()

    init(agentAddresses: [String] = ["127.0.0.1"]) throws {
        ca = try ClusterCA.create(cluster: "test")
        agentCert = try ca.issueAgent(hostname: Self.node, addresses: agentAddresses)
        operatorCert = try ca.issueClient(name: "alice", role: .operator)
        readerCert = try ca.issueClient(name: "bob", role: .reader)
        signer = EnvelopeSigner(privateKey: Curve25519.Signing.PrivateKey())
        stateDir = try channelTempDir("agent-state")
    }

    /// A client certificate signed by the cluster CA with an arbitrary OU (ClusterCA only mints valid roles).
    func clientCertificate(organizationalUnit: String) throws -> IssuedCertificate {
        let key = P256.Signing.PrivateKey()
        let now = Date()
        let cert = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(3600),
            issuer: ca.certificate.subject,
            subject: try DistinguishedName {
                OrganizationName("nk3")
                OrganizationalUnitName(organizationalUnit)
                CommonName("nobody")
            }, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.clientAuth])
            }, issuerPrivateKey: .init(ca.privateKey))
        return IssuedCertificate(certificatePEM: try cert.serializeAsPEM().pemString, privateKeyPEM: key.pemRepresentation)
    }

    var signingPublicKeyBase64: String { signer.privateKey.publicKey.rawRepresentation.base64EncodedString() }

    func serverConfig() throws -> AgentServerConfig {
        AgentServerConfig(
            host: "127.0.0.1", port: 0, certificate: .pem(agentCert.certificatePEM),
            privateKey: .pem(agentCert.privateKeyPEM), clientCA: .pem(try ca.certificatePEM),
            signingPublicKeys: [signingPublicKeyBase64], nodeName: Self.node, stateDirectory: stateDir)
    }

    func startServer() async throws -> AgentServer {
        let server = try AgentServer(config: try serverConfig(), engine: engine, logger: channelQuietLogger())
        try await server.start()
        return server
    }

    func client(
        _ server: AgentServer, identity: IssuedCertificate?, expectedName: String = "127.0.0.1",
        trustRoots: [NIOSSLCertificate]? = nil, port: Int? = nil, timeout: Duration = .seconds(20), keepAlive: Bool = false,
        reuse: AgentClient.ConnectionReuse = .standard
    ) throws -> AgentClient {
        let roots = try trustRoots ?? TLSConfigs.trustRoots(pem: try ca.certificatePEM)
        let id = try identity.map { try TLSIdentity(certificatePEM: $0.certificatePEM, privateKeyPEM: $0.privateKeyPEM) }
        let tls = try AgentClientTLS(trustRoots: roots, identity: id)
        return AgentClient(
            endpoint: AgentEndpoint(host: "127.0.0.1", port: port ?? server.port!, expectedName: expectedName), tls: tls,
            timeout: timeout, logger: channelQuietLogger(), keepAlive: keepAlive, reuse: reuse)
    }

    func envelope(serial: UInt64, node: String = ChannelFixture.node, now: Date = Date(), validity: TimeInterval = 300)
        throws -> SignedEnvelope
    {
        try signer.sign(.reboot(RebootCommand(reason: "test")), node: node, serial: serial, now: now, validity: validity)
    }

    /// What is on disk for the serial, as bytes (nil: no file), to prove refusals change nothing.
    var serialFileBytes: Data? { FileManager.default.contents(atPath: stateDir + "/last-accepted-serial.json") }

    /// The persisted serial as a fresh store reads it.
    func persistedSerial() throws -> UInt64? { try SerialStore(stateDirectory: stateDir).current }
}

func channelTempDir(_ prefix: String) throws -> String {
    let path = NSTemporaryDirectory() + "nk3-\(prefix)-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    return path
}

func channelQuietLogger() -> Logger {
    var logger = Logger(label: "nk3.test", factory: { _ in SwiftLogNoOpLogHandler() })
    logger.logLevel = .critical
    return logger
}
