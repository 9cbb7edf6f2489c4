import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// A flake's lock file as nk3 reads it: the nixpkgs revision it pins, and the file itself for the coordinator to
/// ship to the other nodes of an upgrade.
///
/// `flake.lock` is JSON (the Nix manual, `nix flake` "Lock files"): `nodes` maps each node's key to its
/// `locked` source (`type`, `rev`, `narHash`, `lastModified`, …), `root` names the root node, and the root node's
/// `inputs` map each input name to a node key — usually `nixpkgs` to `nixpkgs`, but a second lock of the same
/// name is written as `nixpkgs_2`, so the root's map is followed rather than the key assumed.
public enum FlakeLock {
    /// The flake file in the configuration directory.
    public static let flakeFile = "flake.nix"
    /// Its lock file.
    public static let lockFile = "flake.lock"
    /// The largest lock an agent reports with its content (a one-input lock is about 500 bytes).
    public static let maxReportedBytes = 64 * 1024

    /// What a lock pins for the input `input` (default `nixpkgs`), or nil when the text is not a lock file or
    /// does not lock that input.
    public static func locked(_ text: String, input: String = "nixpkgs") -> Locked? {
        guard let file = try? JSONDecoder().decode(FileShape.self, from: Data(text.utf8)) else { return nil }
        let key = file.nodes[file.root ?? "root"]?.inputs?[input]?.node ?? input
        guard let locked = file.nodes[key]?.locked else { return nil }
        return Locked(revision: locked.rev.flatMap { isRevision($0) ? $0 : nil }, lastModified: locked.lastModified)
    }

    /// The parts of a lock file read here (every other key is ignored).
    private struct FileShape: Decodable {
        var nodes: [String: NodeShape]
        var root: String?
    }
    private struct NodeShape: Decodable {
        var inputs: [String: InputShape]?
        var locked: LockedShape?
    }
    /// An input is a node key, or a `follows` path (a list), which names no node of its own.
    private struct InputShape: Decodable {
        var node: String?
        init(from decoder: Decoder) throws { node = try? decoder.singleValueContainer().decode(String.self) }
    }
    private struct LockedShape: Decodable {
        var rev: String?
        var lastModified: Int64?
    }

    /// One locked input.
    public struct Locked: Sendable, Hashable {
        /// The git commit (40 lowercase hex digits), when the source is a git or GitHub one.
        public var revision: String?
        /// `lastModified`: the commit time, seconds since the epoch.
        public var lastModified: Int64?
    }

    /// Whether `s` is a full git commit hash (40 lowercase hex digits).
    public static func isRevision(_ s: String) -> Bool {
        s.utf8.count == 40 && s.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    /// The report an agent gives for the lock it holds.
    public static func report(_ text: String) -> FlakeLockReport {
        FlakeLockReport(
            sha256: ConfigFiles.hash(content: text), nixpkgsRevision: locked(text)?.revision,
            content: text.utf8.count <= maxReportedBytes ? text : nil)
    }
}

/// The flake lock a node holds (`AgentStatus.flakeLock`).
public struct FlakeLockReport: Codable, Sendable, Hashable {
    /// Hex SHA-256 of the file.
    public var sha256: String
    /// The nixpkgs commit it pins (`nodes.<root's nixpkgs>.locked.rev`), when it pins one.
    public var nixpkgsRevision: String?
    /// The file, when at most `FlakeLock.maxReportedBytes`: an upgrade's first node reports the lock it wrote,
    /// and the coordinator ships exactly that file to the others.
    public var content: String?

    /// Makes a report.
    public init(sha256: String, nixpkgsRevision: String?, content: String?) {
        self.sha256 = sha256
        self.nixpkgsRevision = nixpkgsRevision
        self.content = content
    }
}
