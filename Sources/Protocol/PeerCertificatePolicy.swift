import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import SwiftASN1
import X509

/// What an nk3 peer certificate must be, beyond the chain check the TLS library makes: a leaf (not a CA),
/// for the expected purpose (clientAuth for operators and readers, serverAuth for agents), issued *directly*
/// by one of the cluster CAs, and not revoked.
///
/// The TLS library (BoringSSL through NIOSSL) accepts a chain through an intermediate CA even though the cluster
/// CA says `pathlen:0`, accepts a leaf that is itself a CA, and accepts a certificate without an extended key
/// usage extension at all (RFC 5280 §4.2.1.12 lets the absence mean "any purpose"). nk3 mints none of these
/// (`ClusterCA`), so each is refused here: a CA key holder who made an intermediate, or a leaked CA:TRUE leaf,
/// gets no role.
public struct PeerCertificatePolicy: Sendable {
    /// The cluster CA certificate(s) a leaf must be signed by (several during a CA rotation).
    public let issuers: [Certificate]
    /// The extended key usage the leaf must list.
    public let usage: ExtendedKeyUsage.Usage
    /// Certificates refused whatever their signature.
    public let revoked: RevocationList

    /// Makes a policy.
    public init(issuers: [Certificate], usage: ExtendedKeyUsage.Usage, revoked: RevocationList = RevocationList()) {
        self.issuers = issuers
        self.usage = usage
        self.revoked = revoked
    }

    /// Parses the issuers from PEM text (one or more certificates, e.g. `ca.crt`).
    public init(issuersPEM: String, usage: ExtendedKeyUsage.Usage, revoked: RevocationList = RevocationList()) throws {
        var certs: [Certificate] = []
        for document in try PEMDocument.parseMultiple(pemString: issuersPEM) {
            certs.append(try Certificate(pemDocument: document))
        }
        guard !certs.isEmpty else { throw WireError(.malformed, "no CA certificate found in the PEM text") }
        self.init(issuers: certs, usage: usage, revoked: revoked)
    }

    /// Why `leaf` is refused, or nil if it is acceptable. The chain and the validity period were verified by the
    /// TLS handshake already; this adds what the handshake does not check. `revoked` replaces the policy's own
    /// deny-list (one reloaded since).
    public func problem(with leaf: Certificate, revoked: RevocationList? = nil) -> String? {
        let name = "certificate '\(leaf.subject)' (serial \(RevocationList.serialHex(leaf)))"
        if let entry = (revoked ?? self.revoked).match(leaf) {
            return "\(name) is revoked (deny-list entry \(entry))"
        }
        do {
            if case .isCertificateAuthority = try leaf.extensions.basicConstraints {
                return "\(name) is a CA certificate (basicConstraints CA:TRUE); only leaf certificates are accepted"
            }
            guard let eku = try leaf.extensions.extendedKeyUsage, eku.contains(usage) else {
                return "\(name) does not carry the \(Self.usageName(usage)) extended key usage"
            }
        } catch {
            return "\(name) has an unreadable extension: \(error)"
        }
        let direct = issuers.contains { ca in
            ca.subject == leaf.issuer && ca.publicKey.isValidSignature(leaf.signature, for: leaf)
        }
        guard direct else {
            return "\(name) is not issued directly by the cluster CA (issuer '\(leaf.issuer)'); intermediate CAs are not accepted"
        }
        return nil
    }

    private static func usageName(_ usage: ExtendedKeyUsage.Usage) -> String {
        switch usage {
        case .clientAuth: "clientAuth"
        case .serverAuth: "serverAuth"
        default: "\(usage)"
        }
    }
}

/// A deny-list of certificates: serial numbers (hex, as `openssl x509 -serial` prints them; colons and case
/// ignored) and SHA-256 fingerprints of the DER encoding (as `openssl x509 -fingerprint -sha256` prints them).
public struct RevocationList: Sendable, Hashable, Codable {
    /// Normalised entries: lowercase hex without separators, prefixed `serial:` or `sha256:`.
    public private(set) var entries: Set<String>

    /// An empty list.
    public init() { entries = [] }

    /// Parses entries: `serial:HEX`, `sha256:HEX` (64 digits), or bare HEX (64 digits: a fingerprint; otherwise a
    /// serial). Throws on anything else, naming the entry.
    public init(_ texts: [String]) throws(WireError) {
        var out: Set<String> = []
        for text in texts {
            out.insert(try Self.normalise(text))
        }
        entries = out
    }

    /// Normalises one entry (see `init(_:)`).
    public static func normalise(_ text: String) throws(WireError) -> String {
        let lower = text.lowercased()
        var kind: String?
        var digits = Substring(lower)
        for prefix in ["serial:", "sha256:"] where lower.hasPrefix(prefix) {
            kind = String(prefix.dropLast())
            digits = lower.dropFirst(prefix.count)
        }
        let hex = digits.filter { $0 != ":" }
        guard !hex.isEmpty, hex.count <= 128, hex.allSatisfy(\.isHexDigit) else {
            throw WireError(
                .malformed,
                "revoked certificate entry '\(text)' is neither serial:HEX nor sha256:HEX (openssl x509 -serial / -fingerprint -sha256)")
        }
        let resolved = kind ?? (hex.count == 64 ? "sha256" : "serial")
        if resolved == "sha256", hex.count != 64 {
            throw WireError(.malformed, "revoked certificate entry '\(text)': a SHA-256 fingerprint has 64 hex digits")
        }
        // Serial numbers: leading zeros are not significant (DER may add one for the sign bit).
        let value = resolved == "serial" ? String(hex.drop { $0 == "0" }) : String(hex)
        return "\(resolved):\(value.isEmpty ? "0" : value)"
    }

    /// The entry that matches `certificate`, if any.
    public func match(_ certificate: Certificate) -> String? {
        guard !entries.isEmpty else { return nil }
        let serial = "serial:\(Self.serialHex(certificate))"
        if entries.contains(serial) { return serial }
        if let fingerprint = Self.fingerprint(certificate).map({ "sha256:\($0)" }), entries.contains(fingerprint) {
            return fingerprint
        }
        return nil
    }

    /// The certificate's serial as lowercase hex without leading zeros.
    public static func serialHex(_ certificate: Certificate) -> String {
        let hex = Hex.lowercase(certificate.serialNumber.bytes).drop { $0 == "0" }
        return hex.isEmpty ? "0" : String(hex)
    }

    /// Lowercase hex SHA-256 of the certificate's DER encoding.
    public static func fingerprint(_ certificate: Certificate) -> String? {
        var serializer = DER.Serializer()
        guard (try? serializer.serialize(certificate)) != nil else { return nil }
        return Hex.lowercase(SHA256.hash(data: serializer.serializedBytes))
    }
}
