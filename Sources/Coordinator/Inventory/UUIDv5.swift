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
        var d = SHA1.digest(bytes)
        d[6] = (d[6] & 0x0F) | 0x50
        d[8] = (d[8] & 0x3F) | 0x80
        return UUID(uuid: (d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], d[9], d[10], d[11], d[12], d[13], d[14], d[15]))
    }

    /// The node name the Python tool derived for `address`: lowercase UUIDv5 in the OID namespace.
    public static func nodeName(forAddress address: String) -> String {
        make(namespace: namespaceOID, name: address).uuidString.lowercased()
    }
}

/// SHA-1, only for RFC 9562 name-based UUIDs (not for anything that needs collision resistance).
/// Kept local so the coordinator's inventory code does not import a crypto library for one digest.
enum SHA1 {
    static func digest(_ message: [UInt8]) -> [UInt8] {
        var h: (UInt32, UInt32, UInt32, UInt32, UInt32) = (0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0)
        var data = message
        let bitLength = UInt64(message.count) &* 8
        data.append(0x80)
        while data.count % 64 != 56 { data.append(0) }
        for i in (0..<8).reversed() { data.append(UInt8(truncatingIfNeeded: bitLength >> (UInt64(i) * 8))) }
        var w = [UInt32](repeating: 0, count: 80)
        for chunk in stride(from: 0, to: data.count, by: 64) {
            for i in 0..<16 {
                let j = chunk + i * 4
                w[i] = UInt32(data[j]) << 24 | UInt32(data[j + 1]) << 16 | UInt32(data[j + 2]) << 8 | UInt32(data[j + 3])
            }
            for i in 16..<80 {
                let x = w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]
                w[i] = (x << 1) | (x >> 31)
            }
            var (a, b, c, d, e) = h
            for i in 0..<80 {
                let f: UInt32
                let k: UInt32
                switch i {
                case 0..<20: (f, k) = ((b & c) | (~b & d), 0x5A82_7999)
                case 20..<40: (f, k) = (b ^ c ^ d, 0x6ED9_EBA1)
                case 40..<60: (f, k) = ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC)
                default: (f, k) = (b ^ c ^ d, 0xCA62_C1D6)
                }
                let t = ((a << 5) | (a >> 27)) &+ f &+ e &+ k &+ w[i]
                e = d
                d = c
                c = (b << 30) | (b >> 2)
                b = a
                a = t
            }
            h = (h.0 &+ a, h.1 &+ b, h.2 &+ c, h.3 &+ d, h.4 &+ e)
        }
        var out: [UInt8] = []
        for v in [h.0, h.1, h.2, h.3, h.4] {
            out.append(contentsOf: [UInt8(v >> 24), UInt8((v >> 16) & 0xFF), UInt8((v >> 8) & 0xFF), UInt8(v & 0xFF)])
        }
        return out
    }
}
