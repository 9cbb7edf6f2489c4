import Crypto
import Foundation

/// Name-based UUIDs (RFC 9562 §5.5, SHA-1), as Python's `uuid.uuid5`.
///
/// The Python tool named nodes `uuid.uuid5(uuid.NAMESPACE_OID, ip)`: the sample output's
/// `d752cf78-d889-5bd9-8dd4-2bb7eeb898f4` is the OID-namespace UUID of `172.30.190.198` (the README's
/// inventory shows other, edited addresses; none of the four standard namespaces maps `172.30.190.3` to it).
public enum UUIDv5 {
    /// `6ba7b810-9dad-11d1-80b4-00c04fd430c8` (`uuid.NAMESPACE_DNS`).
    public static let namespaceDNS = UUID(uuidString: "6ba7b810-9dad-11d1-80b4-00c04fd430c8")!
    /// `6ba7b811-9dad-11d1-80b4-00c04fd430c8` (`uuid.NAMESPACE_URL`).
    public static let namespaceURL = UUID(uuidString: "6ba7b811-9dad-11d1-80b4-00c04fd430c8")!
    /// `6ba7b812-9dad-11d1-80b4-00c04fd430c8` (`uuid.NAMESPACE_OID`): the one the Python tool used.
    public static let namespaceOID = UUID(uuidString: "6ba7b812-9dad-11d1-80b4-00c04fd430c8")!
    /// `6ba7b814-9dad-11d1-80b4-00c04fd430c8` (`uuid.NAMESPACE_X500`).
    public static let namespaceX500 = UUID(uuidString: "6ba7b814-9dad-11d1-80b4-00c04fd430c8")!

    /// The version-5 UUID of `name` (UTF-8) in `namespace`.
    public static func make(namespace: UUID, name: String) -> UUID {
        let ns = namespace.uuid
        var bytes: [UInt8] = [
            ns.0, ns.1, ns.2, ns.3, ns.4, ns.5, ns.6, ns.7, ns.8, ns.9, ns.10, ns.11, ns.12, ns.13, ns.14, ns.15,
        ]
        bytes.append(contentsOf: Array(name.utf8))
        // SHA-1 is what RFC 9562 §5.5 specifies for version 5; nothing here relies on its collision resistance.
        var d = Array(Insecure.SHA1.hash(data: bytes))
        d[6] = (d[6] & 0x0F) | 0x50
        d[8] = (d[8] & 0x3F) | 0x80
        return UUID(uuid: (d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15]))
    }

    /// The node name the Python tool derived for `address`: lowercase UUIDv5 in the OID namespace.
    public static func nodeName(forAddress address: String) -> String {
        make(namespace: namespaceOID, name: address).uuidString.lowercased()
    }
}
