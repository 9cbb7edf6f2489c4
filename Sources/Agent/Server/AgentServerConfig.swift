import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOSSL
import NK3Common
import NK3Protocol

/// How the agent's HTTPS front end is set up (from the NixOS module's options or a test).
public struct AgentServerConfig: Sendable {
    /// A PEM document, inline or in a file.
    public enum PEMSource: Sendable, Hashable {
        /// Read from this file (a private key file must be 0600).
        case file(String)
        /// Given inline (tests, the simulator).
        case pem(String)
    }

    /// Address to listen on (e.g. `0.0.0.0`, `::`, or `127.0.0.1` in tests).
    public var host: String
    /// Port; 0 picks a free one (see `AgentServer.port`).
    public var port: Int
    /// The agent's server certificate (SANs: node hostname and address).
    public var certificate: PEMSource
    /// Its private key.
    public var privateKey: PEMSource
    /// The cluster CA that client certificates must chain to.
    public var clientCA: PEMSource
    /// Pinned Ed25519 signing public keys, base64 of 32 raw bytes each (several allowed, for rotation).
    public var signingPublicKeys: [String]
    /// This node's name, as envelopes address it.
    public var nodeName: String
    /// State directory (holds the last accepted serial).
    public var stateDirectory: String
    /// Request limits; the body limit defaults to `NK3Wire.maxBodyBytes`.
    public var limits: HTTPServerLimits
    /// Tolerated clock skew for `issuedAt`.
    public var clockSkew: TimeInterval
    /// Client certificates refused even though the CA signed them: `serial:HEX` or `sha256:HEX` entries
    /// (see `RevocationList`), pushed with the agent's configuration (`nk3 certs revoke NAME`).
    public var revokedCertificates: [String]
    /// The agent's configuration file: its `revokedCertificates` are re-read whenever it changes (see
    /// `RevocationWatch`); nil: `revokedCertificates` as given.
    public var revocationFile: String?

    /// Makes a configuration.
    public init(
        host: String = "0.0.0.0", port: Int = 7443, certificate: PEMSource, privateKey: PEMSource, clientCA: PEMSource,
        signingPublicKeys: [String], nodeName: String, stateDirectory: String = "/var/lib/nk3-agent",
        limits: HTTPServerLimits = HTTPServerLimits(maxBodyBytes: NK3Wire.maxBodyBytes),
        clockSkew: TimeInterval = NK3Wire.defaultClockSkew, revokedCertificates: [String] = [],
        revocationFile: String? = nil
    ) {
        self.host = host
        self.port = port
        self.certificate = certificate
        self.privateKey = privateKey
        self.clientCA = clientCA
        self.signingPublicKeys = signingPublicKeys
        self.nodeName = nodeName
        self.stateDirectory = stateDirectory
        self.limits = limits
        self.clockSkew = clockSkew
        self.revokedCertificates = revokedCertificates
        self.revocationFile = revocationFile
    }

    /// What a client certificate must be beyond a chain to `clientCA` (see `PeerCertificatePolicy`): a
    /// clientAuth leaf issued directly by the CA, not on the deny-list.
    public func makeClientPolicy() throws -> PeerCertificatePolicy {
        let revoked: RevocationList
        do throws(WireError) {
            revoked = try RevocationList(revokedCertificates)
        } catch {
            throw WireError(.malformed, "revokedCertificates: \(error.message)")
        }
        return try PeerCertificatePolicy(issuersPEM: try Self.text(clientCA), usage: .clientAuth, revoked: revoked)
    }

    /// Builds the TLS server context: TLS 1.3, client certificate required and verified against `clientCA`.
    public func makeTLSContext() throws -> NIOSSLContext {
        let certPEM = try Self.text(certificate)
        let keyPEM: String
        switch privateKey {
        case .file(let path): keyPEM = try SecureFiles.readPrivateKey(path)
        case .pem(let pem): keyPEM = pem
        }
        let identity = try TLSIdentity(certificatePEM: certPEM, privateKeyPEM: keyPEM)
        let ca = try TLSConfigs.trustRoots(pem: try Self.text(clientCA))
        var tls = TLSConfigs.server(identity: identity, clientCA: ca)
        // When the agent closes a connection (a malformed request, the idle timeout, shutdown), NIOSSL waits this
        // long for the client's close_notify, and keeps the connection's TLS state and buffers (~30 KiB) that long
        // even when the client has closed the socket without one (its timer is not cancelled then). 5 s by
        // default: 3,000 malformed requests at 16 in flight left 60 MiB of heap. A client that answers does
        // so within milliseconds on a cluster network. (After a `Connection: close` answer the agent does not
        // wait at all: see HTTPSServer.)
        tls.shutdownTimeout = .seconds(1)
        return try NIOSSLContext(configuration: tls)
    }

    /// Parses the pinned signing keys; at least one is required.
    public func makeVerifier() throws -> EnvelopeVerifier {
        guard !signingPublicKeys.isEmpty else {
            throw WireError(.malformed, "no signing public keys configured: set signingPublicKeys (contents of signing.pub)")
        }
        var keys: [Curve25519.Signing.PublicKey] = []
        for (i, text) in signingPublicKeys.enumerated() {
            do {
                keys.append(try Curve25519.Signing.PublicKey(base64: text))
            } catch {
                throw WireError(.malformed, "signing public key #\(i + 1) is not base64 of 32 raw bytes (see signing.pub)")
            }
        }
        return EnvelopeVerifier(node: nodeName, trustedKeys: keys, clockSkew: clockSkew)
    }

    private static func text(_ source: PEMSource) throws -> String {
        switch source {
        case .file(let path): return try SecureFiles.readText(path)
        case .pem(let pem): return pem
        }
    }
}
