#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import X509

/// What a client certificate allows. Carried in the certificate subject's OU (`OU=nk3-operator`).
public enum ClientRole: String, Codable, Sendable, Hashable, CaseIterable {
    /// May read status (with the landed files' digests), operations and metrics; not file contents.
    case reader
    /// May also read file contents (`GET /v1/files`) and submit signed envelopes.
    case `operator`

    /// The OU value written into client certificates.
    public var organizationalUnit: String { "nk3-\(rawValue)" }

    /// Reads the role from a verified client certificate. A certificate without a (single, known) nk3 role
    /// OU has no role and is refused by the agent.
    public static func from(certificate: Certificate) -> ClientRole? {
        var found: Set<ClientRole> = []
        for rdn in certificate.subject {
            for attr in rdn where attr.type == .RDNAttributeType.organizationalUnitName {
                let text = String(describing: attr.value)
                for role in ClientRole.allCases where text == role.organizationalUnit { found.insert(role) }
            }
        }
        // Two different role OUs is ambiguous: refuse rather than guess.
        return found.count == 1 ? found.first : nil
    }
}
