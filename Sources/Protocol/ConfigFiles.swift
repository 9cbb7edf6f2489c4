import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Hashing of configuration file sets, identical on agent and coordinator.
public enum ConfigFiles {
    /// Hex SHA-256 of one file's content.
    public static func hash(content: String) -> String {
        Hex.lowercase(SHA256.hash(data: Data(content.utf8)))
    }

    /// Hex SHA-256 over `name NUL sha256(content) LF` for every file, sorted by name.
    public static func hash(files: [String: String]) -> String {
        var h = SHA256()
        for name in files.keys.sorted() {
            h.update(data: Data("\(name)\u{0}\(hash(content: files[name]!))\n".utf8))
        }
        return Hex.lowercase(h.finalize())
    }

    /// Per-file hashes.
    public static func digests(_ files: [String: String]) -> [String: String] {
        files.mapValues { hash(content: $0) }
    }
}
