import Crypto
import Foundation
import NK3Agent
import NK3Common
import NK3Coordinator
import NK3Protocol
import SwiftASN1
import Testing
import X509

/// Certificates the TLS library accepts but nk3 must not (issue 16 item 4): BoringSSL does not enforce the cluster
/// CA's `pathlen:0`, takes a CA:TRUE leaf, and reads a missing extended key usage as "any purpose". Every case is a
/// real certificate minted by the test's cluster CA and a real mTLS handshake against a real `AgentServer`.
@Suite("Channel: only clientAuth leaves issued directly by the cluster CA get a role", .timeLimit(.minutes(2)))
struct ChannelChainStrictnessTests {
    /// Mints a certificate for `key` with `extensions`, signed by `issuerKey` as `issuer`.
    static func mint(
        subject: DistinguishedName, key: P256.Signing.PrivateKey, issuer: DistinguishedName,
        issuerKey: P256.Signing.PrivateKey, extensions: Certificate.Extensions
    ) throws -> Certificate {
        let now = Date()
        return try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(3600),
            issuer: issuer, subject: subject, signatureAlgorithm: .ecdsaWithSHA256, extensions: extensions,
            issuerPrivateKey: .init(issuerKey))
    }

    static func operatorName(_ cn: String) throws -> DistinguishedName {
        try DistinguishedName {
            OrganizationName("nk3")
            OrganizationalUnitName(ClientRole.operator.organizationalUnit)
            CommonName(cn)
        }
    }

    /// An operator-role leaf with the given basic constraints and EKU, signed directly by the cluster CA.
    static func directLeaf(_ fixture: ChannelFixture, isCA: Bool, eku: [ExtendedKeyUsage.Usage]?) throws -> IssuedCertificate {
        let key = P256.Signing.PrivateKey()
        let cert = try mint(
            subject: try operatorName("mallory"), key: key, issuer: fixture.ca.certificate.subject,
            issuerKey: fixture.ca.privateKey,
            extensions: try Certificate.Extensions {
                if isCA {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                    Critical(KeyUsage(digitalSignature: true, keyCertSign: true))
                } else {
                    Critical(BasicConstraints.notCertificateAuthority)
                    Critical(KeyUsage(digitalSignature: true))
                }
                if let eku { try ExtendedKeyUsage(eku) }
            })
        return IssuedCertificate(certificatePEM: try cert.serializeAsPEM().pemString, privateKeyPEM: key.pemRepresentation)
    }

    /// An intermediate CA signed by the cluster CA (which says pathlen:0), and a proper operator leaf under it; the
    /// PEM chain is leaf then intermediate, as a client presents it.
    static func leafUnderIntermediate(_ fixture: ChannelFixture) throws -> IssuedCertificate {
        let midKey = P256.Signing.PrivateKey()
        let midName = try DistinguishedName {
            OrganizationName("nk3")
            CommonName("rogue intermediate")
        }
        let mid = try mint(
            subject: midName, key: midKey, issuer: fixture.ca.certificate.subject, issuerKey: fixture.ca.privateKey,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
            })
        let key = P256.Signing.PrivateKey()
        let leaf = try mint(
            subject: try operatorName("mallory"), key: key, issuer: midName, issuerKey: midKey,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.clientAuth])
            })
        let chain = try leaf.serializeAsPEM().pemString + "\n" + mid.serializeAsPEM().pemString
        return IssuedCertificate(certificatePEM: chain, privateKeyPEM: key.pemRepresentation)
    }

    /// The status request's outcome with `identity`, and whether an envelope got through.
    private func attempt(_ fixture: ChannelFixture, _ server: AgentServer, _ identity: IssuedCertificate) async throws
        -> (status: AgentClientError?, submit: AgentClientError?)
    {
        let client = try fixture.client(server, identity: identity)
        var statusError: AgentClientError?
        do { _ = try await client.status() } catch { statusError = error }
        var submitError: AgentClientError?
        let envelope = try fixture.envelope(serial: 10)
        do { _ = try await client.submit(envelope) } catch { submitError = error }
        return (statusError, submitError)
    }

    @Test("a CA:TRUE leaf, a leaf under an intermediate, a leaf without EKU, a serverAuth-only leaf: all refused after a real handshake")
    func strictLeafRequired() async throws {
        let fixture = try ChannelFixture()
        let server = try await fixture.startServer()
        defer { Task { await server.shutdown() } }
        let cases: [(String, IssuedCertificate, String)] = [
            ("CA:TRUE leaf", try Self.directLeaf(fixture, isCA: true, eku: [.clientAuth]), "is a CA certificate"),
            ("leaf under an intermediate", try Self.leafUnderIntermediate(fixture), "not issued directly by the cluster CA"),
            ("leaf without EKU", try Self.directLeaf(fixture, isCA: false, eku: nil), "clientAuth"),
        ]
        for (label, identity, why) in cases {
            let (statusError, submitError) = try await attempt(fixture, server, identity)
            for error in [statusError, submitError] {
                #expect(error?.code == .wire, "\(label): \(String(describing: error))")
                #expect(error?.wireError?.code == .forbidden, "\(label)")
                #expect(error?.message.contains(why) == true, "\(label): \(error?.message ?? "accepted")")
            }
        }
        // An EKU that names another purpose is already refused by the TLS library's purpose check (at the handshake).
        let serverOnly = try await attempt(fixture, server, try Self.directLeaf(fixture, isCA: false, eku: [.serverAuth]))
        #expect(serverOnly.status?.code == .tlsRefused && serverOnly.submit?.code == .tlsRefused)
        #expect(fixture.engine.handledSerials == [], "no envelope got through")
        #expect(fixture.serialFileBytes == nil, "no state changed")
        // The proper certificate still works on the same server.
        let good = try fixture.client(server, identity: fixture.operatorCert)
        #expect(try await good.submit(try fixture.envelope(serial: 11)).serial == 11)
    }

    /// An agent certificate for 127.0.0.1 with the given defects, signed by `issuer` (the CA or an intermediate).
    static func agentCertificate(
        _ fixture: ChannelFixture, isCA: Bool = false, eku: [ExtendedKeyUsage.Usage]? = [.serverAuth],
        viaIntermediate: Bool = false
    ) throws -> IssuedCertificate {
        var issuerName = fixture.ca.certificate.subject
        var issuerKey = fixture.ca.privateKey
        var chainTail = ""
        if viaIntermediate {
            let midKey = P256.Signing.PrivateKey()
            let midName = try DistinguishedName { CommonName("rogue intermediate") }
            let mid = try mint(
                subject: midName, key: midKey, issuer: issuerName, issuerKey: issuerKey,
                extensions: try Certificate.Extensions {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                    Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                })
            chainTail = "\n" + (try mid.serializeAsPEM().pemString)
            (issuerName, issuerKey) = (midName, midKey)
        }
        let key = P256.Signing.PrivateKey()
        let leaf = try mint(
            subject: try DistinguishedName { CommonName(ChannelFixture.node) }, key: key, issuer: issuerName,
            issuerKey: issuerKey,
            extensions: try Certificate.Extensions {
                if isCA {
                    Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil))
                } else {
                    Critical(BasicConstraints.notCertificateAuthority)
                }
                Critical(KeyUsage(digitalSignature: true, keyCertSign: isCA))
                if let eku { try ExtendedKeyUsage(eku) }
                SubjectAlternativeNames([.dnsName(ChannelFixture.node), .ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))])
            })
        return IssuedCertificate(
            certificatePEM: try leaf.serializeAsPEM().pemString + chainTail, privateKeyPEM: key.pemRepresentation)
    }

    @Test("the coordinator refuses an agent certificate that is a CA, under an intermediate, or not serverAuth, before sending anything")
    func coordinatorChecksTheAgentLeaf() async throws {
        let cases: [(String, (ChannelFixture) throws -> IssuedCertificate, String)] = [
            ("CA:TRUE agent leaf", { try Self.agentCertificate($0, isCA: true) }, "is a CA certificate"),
            ("agent leaf under an intermediate", { try Self.agentCertificate($0, viaIntermediate: true) }, "not issued directly"),
            ("agent leaf without EKU", { try Self.agentCertificate($0, eku: nil) }, "serverAuth"),
        ]
        for (label, make, why) in cases {
            let fixture = try ChannelFixture()
            var config = try fixture.serverConfig()
            let cert = try make(fixture)
            config.certificate = .pem(cert.certificatePEM)
            config.privateKey = .pem(cert.privateKeyPEM)
            let server = try AgentServer(config: config, engine: fixture.engine, logger: channelQuietLogger())
            try await server.start()
            let client = try fixture.client(server, identity: fixture.operatorCert)
            let error = await #expect(throws: AgentClientError.self, "\(label)") {
                try await client.submit(try fixture.envelope(serial: 3))
            }
            #expect(error?.code == .tlsRefused, "\(label): \(String(describing: error))")
            #expect(error?.message.contains(why) == true, "\(label): \(error?.message ?? "accepted")")
            #expect(fixture.engine.handledSerials == [], "\(label): the envelope never reached the impostor")
            await server.shutdown()
        }
    }

    @Test("policy unit: the minted ClusterCA certificates pass, each defect is named")
    func policyNamesEachDefect() throws {
        let fixture = try ChannelFixture()
        let policy = PeerCertificatePolicy(issuers: [fixture.ca.certificate], usage: .clientAuth)
        let good = try Certificate(pemEncoded: fixture.operatorCert.certificatePEM)
        #expect(policy.problem(with: good) == nil)
        let agent = try Certificate(pemEncoded: fixture.agentCert.certificatePEM)
        #expect(policy.problem(with: agent)?.contains("clientAuth") == true, "an agent's server cert is no client")
        #expect(PeerCertificatePolicy(issuers: [fixture.ca.certificate], usage: .serverAuth).problem(with: agent) == nil)
        let otherCA = try ClusterCA.create(cluster: "other")
        let foreign = try Certificate(pemEncoded: try otherCA.issueClient(name: "x", role: .operator).certificatePEM)
        #expect(policy.problem(with: foreign)?.contains("not issued directly") == true)
    }
}
