import Crypto
import Foundation

/// A node's ssh host key pinned in the inventory, hostvar `ssh_host_key`: the public key as a `.pub` file or a
/// known_hosts line carries it (`ssh-ed25519 AAAA… [comment]`, read on the node from
/// /etc/ssh/ssh_host_ed25519_key.pub), or its SHA-256 fingerprint as `ssh-keygen -l` prints it (`SHA256:…`).
///
/// Bootstrap writes the pinned key into a one-entry known_hosts file and connects with
/// `StrictHostKeyChecking=yes` against that file alone, so the agent's private key is only ever sent to the
/// machine holding that host key. A fingerprint pin first asks the node for its keys (`ssh-keyscan`) and keeps
/// only a key whose fingerprint matches; the connection is then held to that key the same way.
public enum SSHHostKeyPin: Sendable, Hashable {
    /// Key type and base64 key blob.
    case publicKey(type: String, blob: String)
    /// `SHA256:` followed by unpadded base64 of the SHA-256 of the key blob.
    case fingerprint(String)

    /// Parses the hostvar's text; throws `.invalidInput` naming the node for anything else.
    public init(parsing text: String, node: String) throws(BootstrapError) {
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if trimmed.hasPrefix("SHA256:") {
            let b64 = String(trimmed.dropFirst(7))
            guard Data(base64Encoded: Self.padded(b64)).map({ $0.count == 32 }) == true else {
                throw BootstrapError(
                    .invalidInput, node: node, "ssh_host_key '\(trimmed)' is not a SHA256 fingerprint as ssh-keygen -l prints it")
            }
            self = .fingerprint("SHA256:" + b64)
            return
        }
        let parts = trimmed.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard parts.count >= 2, parts[0].hasPrefix("ssh-") || parts[0].hasPrefix("ecdsa-"),
            Data(base64Encoded: parts[1]) != nil
        else {
            throw BootstrapError(
                .invalidInput, node: node,
                "ssh_host_key must be a public key ('ssh-ed25519 AAAA…', from /etc/ssh/ssh_host_ed25519_key.pub on "
                    + "the node) or a fingerprint ('SHA256:…', from ssh-keygen -lf that file)")
        }
        self = .publicKey(type: parts[0], blob: parts[1])
    }

    /// The fingerprint of a base64 key blob, as `ssh-keygen -l` prints it; nil if the blob is not base64.
    public static func fingerprint(ofBlob blob: String) -> String? {
        guard let data = Data(base64Encoded: blob) else { return nil }
        let digest = Data(SHA256.hash(data: data)).base64EncodedString()
        return "SHA256:" + digest.replacingOccurrences(of: "=", with: "")
    }

    /// The known_hosts line for this pin's key under `alias`, given the keys the node offered
    /// (`ssh-keyscan` lines: `host type blob`) for a fingerprint pin. Nil if no offered key matches.
    func knownHostsLine(alias: String, offered: [(type: String, blob: String)]) -> String? {
        switch self {
        case .publicKey(let type, let blob):
            return "\(alias) \(type) \(blob)"
        case .fingerprint(let want):
            return offered.first { Self.fingerprint(ofBlob: $0.blob) == want }.map { "\(alias) \($0.type) \($0.blob)" }
        }
    }

    /// Parses `ssh-keyscan` output (`host type blob` per line; comments start with `#`).
    static func scannedKeys(_ output: String) -> [(type: String, blob: String)] {
        output.split(separator: "\n").compactMap { line in
            if line.hasPrefix("#") { return nil }
            let f = line.split(separator: " ").map(String.init)
            return f.count >= 3 ? (f[1], f[2]) : nil
        }
    }

    private static func padded(_ b64: String) -> String {
        b64 + String(repeating: "=", count: (4 - b64.count % 4) % 4)
    }
}
