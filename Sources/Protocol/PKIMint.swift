import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SwiftASN1
import X509

/// A certificate and its private key as PEM text.
public struct IssuedCertificate: Sendable, Hashable {
    public var certificatePEM: String
    public var privateKeyPEM: String
    public init(certificatePEM: String, privateKeyPEM: String) {
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
    }
}

/// Pure minting of the cluster PKI (no file I/O): a P-256 CA, agent server certificates, client
/// certificates with a role. Used by `nk3 certs`, by the simulator and by tests (fresh per run).
public struct ClusterCA: Sendable {
    public let certificate: Certificate
    public let privateKey: P256.Signing.PrivateKey

    public init(certificate: Certificate, privateKey: P256.Signing.PrivateKey) {
        self.certificate = certificate
        self.privateKey = privateKey
    }

    /// Loads a CA from PEM text.
    public init(certificatePEM: String, privateKeyPEM: String) throws {
        self.certificate = try Certificate(pemEncoded: certificatePEM)
        self.privateKey = try P256.Signing.PrivateKey(pemRepresentation: privateKeyPEM)
        guard Certificate.PublicKey(privateKey.publicKey) == certificate.publicKey else {
            throw WireError(.malformed, "CA private key does not match the CA certificate")
        }
    }

    /// Makes a new self-signed CA valid from `now - 1h` for `validity`.
    public static func create(cluster: String, now: Date = Date(), validity: TimeInterval = 10 * 365 * 86400) throws -> ClusterCA {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName {
            OrganizationName("nk3")
            CommonName("nk3 cluster CA \(cluster)")
        }
        let cert = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(validity),
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: .init(key.publicKey))
            },
            issuerPrivateKey: .init(key))
        return ClusterCA(certificate: cert, privateKey: key)
    }

    public var certificatePEM: String { get throws { try certificate.serializeAsPEM().pemString } }
    public var privateKeyPEM: String { privateKey.pemRepresentation }

    /// Issues an agent's server certificate: SANs are the node's hostname and its address (IP or DNS name).
    public func issueAgent(
        hostname: String, addresses: [String], now: Date = Date(), validity: TimeInterval = 2 * 365 * 86400
    ) throws -> IssuedCertificate {
        var sans: [GeneralName] = [.dnsName(hostname)]
        for a in addresses where a != hostname {
            if let ip = IPAddressBytes.parse(a) {
                sans.append(.ipAddress(ASN1OctetString(contentBytes: ArraySlice(ip))))
            } else {
                sans.append(.dnsName(a))
            }
        }
        return try issue(
            subject: try DistinguishedName {
                OrganizationName("nk3")
                OrganizationalUnitName("nk3-agent")
                CommonName(hostname)
            }, sans: sans, usage: .serverAuth, now: now, validity: validity)
    }

    /// Default lifetime of a client certificate, in days. Short, because a leaked client certificate works until it
    /// expires or the agents' deny-list names it (`nk3 certs revoke`), and the deny-list only reaches agents with the
    /// next rollout; renewing is one local command (`nk3 certs issue-client NAME --role ROLE --force`).
    public static let defaultClientValidityDays = 90

    /// Issues a client certificate with a role the agent reads from the subject's OU.
    public func issueClient(
        name: String, role: ClientRole, now: Date = Date(),
        validity: TimeInterval = TimeInterval(ClusterCA.defaultClientValidityDays) * 86400,
        notBefore: Date? = nil
    ) throws -> IssuedCertificate {
        try issue(
            subject: try DistinguishedName {
                OrganizationName("nk3")
                OrganizationalUnitName(role.organizationalUnit)
                CommonName(name)
            }, sans: [], usage: .clientAuth, now: now, validity: validity, notBefore: notBefore)
    }

    private func issue(
        subject: DistinguishedName, sans: [GeneralName], usage: ExtendedKeyUsage.Usage, now: Date,
        validity: TimeInterval, notBefore: Date? = nil
    ) throws -> IssuedCertificate {
        let key = P256.Signing.PrivateKey()
        let extensions = try Certificate.Extensions {
            Critical(BasicConstraints.notCertificateAuthority)
            Critical(KeyUsage(digitalSignature: true))
            try ExtendedKeyUsage([usage])
            AuthorityKeyIdentifier(keyIdentifier: try certificate.extensions.subjectKeyIdentifier?.keyIdentifier)
            if !sans.isEmpty { SubjectAlternativeNames(sans) }
        }
        let cert = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: notBefore ?? now.addingTimeInterval(-3600), notValidAfter: now.addingTimeInterval(validity),
            issuer: certificate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions, issuerPrivateKey: .init(privateKey))
        return IssuedCertificate(certificatePEM: try cert.serializeAsPEM().pemString, privateKeyPEM: key.pemRepresentation)
    }
}

/// Parsing of textual IPv4/IPv6 addresses into network-order bytes, without sockets.
public enum IPAddressBytes {
    public static func parse(_ text: String) -> [UInt8]? {
        if let v4 = parseV4(text) { return v4 }
        return parseV6(text)
    }

    public static func parseV4(_ text: String) -> [UInt8]? {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var out: [UInt8] = []
        for p in parts {
            guard !p.isEmpty, p.count <= 3, p.allSatisfy({ $0.isASCII && $0.isNumber }), let v = UInt8(p) else { return nil }
            if p.count > 1 && p.first == "0" { return nil }  // no ambiguous octal-looking octets
            out.append(v)
        }
        return out
    }

    public static func parseV6(_ text: String) -> [UInt8]? {
        guard text.contains(":"), text.count <= 45 else { return nil }
        let halves = text.split(separator: "::", omittingEmptySubsequences: false).map(String.init)
        guard halves.count <= 2 else { return nil }
        func groups(_ s: String) -> [UInt16]? {
            if s.isEmpty { return [] }
            var out: [UInt16] = []
            for g in s.split(separator: ":", omittingEmptySubsequences: false) {
                guard !g.isEmpty, g.count <= 4, let v = UInt16(g, radix: 16) else { return nil }
                out.append(v)
            }
            return out
        }
        guard let head = groups(halves[0]) else { return nil }
        var all: [UInt16]
        if halves.count == 2 {
            guard let tail = groups(halves[1]), head.count + tail.count < 8 else { return nil }
            all = head + Array(repeating: 0, count: 8 - head.count - tail.count) + tail
        } else {
            guard head.count == 8 else { return nil }
            all = head
        }
        return all.flatMap { [UInt8($0 >> 8), UInt8($0 & 0xff)] }
    }
}
