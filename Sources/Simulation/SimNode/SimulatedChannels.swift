import Crypto
import Foundation
import NK3Protocol
import Synchronization

/// The simulated channel server (https://nixos.org/channels/…) shared by every simulated node — a SIMULATION.
/// Each channel URL has a list of published releases; `nix-channel --update` fetches the newest one, and an
/// unknown URL fails as nix does: `error: unable to download 'URL': HTTP error 404` (NixOS/nix
/// src/libstore/filetransfer.cc).
public final class SimulatedChannels: Sendable {
    /// One published channel release: the NixOS version it builds and its kernel.
    public struct Release: Sendable, Hashable, Codable {
        /// e.g. `24.05.4000.a1b2c3d4e5f6`.
        public var nixosVersion: String
        /// e.g. `6.6.45`.
        public var kernel: String

        /// Makes a release.
        public init(nixosVersion: String, kernel: String) {
            self.nixosVersion = nixosVersion
            self.kernel = kernel
        }

        /// The short version nixos-version prints first (`24.05`).
        public var series: String { nixosVersion.split(separator: ".").prefix(2).joined(separator: ".") }

        /// What the unpacked channel's `.version`, `.version-suffix` and `.git-revision` hold (nixpkgs
        /// nixos/lib/make-channel.nix). [simulation] The full git revision is the short one padded with zeros.
        public var channelRelease: ChannelRelease {
            let suffix = String(nixosVersion.dropFirst(series.count))
            let short = nixosVersion.split(separator: ".").last.map(String.init) ?? ""
            return ChannelRelease(
                version: series, versionSuffix: suffix,
                gitRevision: short + String(repeating: "0", count: max(0, 40 - short.count)))
        }
    }

    private let releases = Mutex<[String: [Release]]>([:])

    /// A channel server with `nixos-24.05` (24.05.4000 with kernel 6.6.45, then 24.05.4100 with 6.6.46, the
    /// Python nk3 README's sample upgrade) and `nixos-24.11` (24.11.710 with 6.6.63), each reachable under both
    /// `https://nixos.org/channels/NAME` and `https://channels.nixos.org/NAME`.
    public init() {
        publish("nixos-24.05", Release(nixosVersion: "24.05.4000.a1b2c3d4e5f6", kernel: "6.6.45"))
        publish("nixos-24.05", Release(nixosVersion: "24.05.4100.f6e5d4c3b2a1", kernel: "6.6.46"))
        publish("nixos-24.11", Release(nixosVersion: "24.11.710.0a1b2c3d4e5f", kernel: "6.6.63"))
    }

    /// Canonical URLs of a channel name (`nixos-24.05` → both nixos.org spellings).
    public static func urls(of name: String) -> [String] {
        ["https://nixos.org/channels/\(name)", "https://channels.nixos.org/\(name)"]
    }

    /// The URL nodes are installed with for channel `name` (`https://nixos.org/channels/NAME`).
    public static func url(of name: String) -> String { urls(of: name)[0] }

    /// Publishes a newer release of channel `nameOrURL` (a bare name publishes under both nixos.org URLs). A
    /// release of a nixos.org channel is also served, for good, at its own fixed URL on releases.nixos.org (what a
    /// channel URL redirects to; `ChannelRelease.pinnedURL`).
    public func publish(_ nameOrURL: String, _ release: Release) {
        let keys = nameOrURL.contains("://") ? [nameOrURL] : Self.urls(of: nameOrURL)
        let pinned = keys.compactMap { release.channelRelease.pinnedURL(forChannel: $0) }
        releases.withLock { r in
            for k in keys { r[k, default: []].append(release) }
            for k in Set(pinned) { r[k] = [release] }
        }
    }

    /// The newest release of `url`, or nil if the server does not know it (HTTP 404).
    public func latest(_ url: String) -> Release? {
        releases.withLock { $0[Self.normalize(url)]?.last }
    }

    /// The release whose nixpkgs commit is `gitRevision` (what a flake lock pins), or nil: fetching a commit that
    /// does not exist fails with HTTP 404, as GitHub's tarball endpoint answers.
    public func release(gitRevision: String) -> Release? {
        releases.withLock { r in r.values.lazy.flatMap { $0 }.first { $0.channelRelease.gitRevision == gitRevision } }
    }

    /// A `flake.lock` (version 7, as Nix writes it: the Nix manual, `nix flake`, "Lock files") whose `nixpkgs`
    /// input is `github:NixOS/nixpkgs/BRANCH` locked to `release`. [simulation] `narHash` and `lastModified` are
    /// made up from the revision.
    public static func flakeLock(branch: String, release: Release) -> String {
        let rev = release.channelRelease.gitRevision ?? String(repeating: "0", count: 40)
        let count = Int64(release.nixosVersion.split(separator: ".").dropFirst(2).first ?? "") ?? 0
        let nar = Data(SHA256.hash(data: Data(rev.utf8))).base64EncodedString()
        return """
            {
              "nodes": {
                "nixpkgs": {
                  "locked": {
                    "lastModified": \(1_700_000_000 + count * 3600),
                    "narHash": "sha256-\(nar)",
                    "owner": "NixOS",
                    "repo": "nixpkgs",
                    "rev": "\(rev)",
                    "type": "github"
                  },
                  "original": {
                    "owner": "NixOS",
                    "ref": "\(branch)",
                    "repo": "nixpkgs",
                    "type": "github"
                  }
                },
                "root": {
                  "inputs": {
                    "nixpkgs": "nixpkgs"
                  }
                }
              },
              "root": "root",
              "version": 7
            }

            """
    }

    /// The oldest release of `url` (what a freshly installed node has), or nil.
    public func first(_ url: String) -> Release? {
        releases.withLock { $0[Self.normalize(url)]?.first }
    }

    static func normalize(_ url: String) -> String {
        url.hasSuffix("/") ? String(url.dropLast()) : url
    }
}
