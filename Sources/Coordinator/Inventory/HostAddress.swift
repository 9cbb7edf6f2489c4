#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Validation of node addresses and names.
public enum HostAddress {
    /// What an address string is.
    public enum Kind: Sendable, Hashable {
        case ipv4
        case ipv6
        case hostname
    }

    /// The kind of `address`, or nil when it is neither an IP address nor a valid hostname.
    public static func classify(_ address: String) -> Kind? {
        if isIPv4(address) { return .ipv4 }
        if isIPv6(address) { return .ipv6 }
        if isHostname(address) { return .hostname }
        return nil
    }

    /// Dotted-quad IPv4, each part 0...255 without leading zeros (as Python's `ipaddress`).
    public static func isIPv4(_ s: String) -> Bool {
        let parts = s.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return false }
        for p in parts {
            guard (1...3).contains(p.count), p.allSatisfy({ $0.isASCII && $0.isNumber }) else { return false }
            if p.count > 1 && p.first == "0" { return false }
            guard let v = Int(p), v <= 255 else { return false }
        }
        return true
    }

    /// IPv6 as `inet_pton` accepts it.
    public static func isIPv6(_ s: String) -> Bool {
        guard s.contains(":") else { return false }
        var buf = in6_addr()
        return s.withCString { inet_pton(AF_INET6, $0, &buf) } == 1
    }

    /// RFC 1123 hostname: labels of letters, digits and `-` (1...63, not starting or ending with `-`), at most
    /// 253 characters, and not all-numeric (an all-numeric dotted name is a mistyped IPv4 address).
    public static func isHostname(_ s: String) -> Bool {
        guard !s.isEmpty, s.utf8.count <= 253 else { return false }
        let labels = s.split(separator: ".", omittingEmptySubsequences: false)
        for l in labels {
            guard (1...63).contains(l.utf8.count), l.first != "-", l.last != "-" else { return false }
            guard l.unicodeScalars.allSatisfy({ $0.isASCII && (isAlnum($0) || $0 == "-") }) else { return false }
        }
        if labels.allSatisfy({ $0.allSatisfy { $0.isASCII && $0.isNumber } }) { return false }
        return true
    }

    /// A valid Kubernetes node name: lowercase RFC 1123 subdomain.
    public static func isNodeName(_ s: String) -> Bool {
        isHostname(s) && s == s.lowercased()
    }

    private static func isAlnum(_ c: Unicode.Scalar) -> Bool {
        ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c)
    }
}
