#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// The exact nixpkgs release a node's `nixos` channel holds, as the channel tarball records it: NixOS channel
/// tarballs carry `.version` (e.g. `24.05`), `.version-suffix` (e.g. `.4100.f6e5d4c3b2a1`) and `.git-revision`
/// at their top (nixpkgs nixos/lib/make-channel.nix), and `nix-channel --update` unpacks them into
/// `/nix/var/nix/profiles/per-user/root/channels/nixos/` (NixOS/nix src/nix-channel/nix-channel.cc).
///
/// A channel URL such as `https://channels.nixos.org/nixos-24.05` moves with every release; the release itself
/// has a fixed URL, `https://releases.nixos.org/nixos/24.05/nixos-24.05.4100.f6e5d4c3b2a1`, which `nix-channel`
/// accepts like any channel URL (it fetches `<url>/nixexprs.tar.xz`). nk3 pins an upgrade's nodes to that URL.
public struct ChannelRelease: Codable, Sendable, Hashable {
    /// `.version`: the NixOS release series, e.g. `24.05`.
    public var version: String
    /// `.version-suffix`: e.g. `.4100.f6e5d4c3b2a1` (revision count and short git revision).
    public var versionSuffix: String
    /// `.git-revision`: the full nixpkgs commit, when the tarball has it.
    public var gitRevision: String?

    /// Makes a release record.
    public init(version: String, versionSuffix: String, gitRevision: String?) {
        self.version = version
        self.versionSuffix = versionSuffix
        self.gitRevision = gitRevision
    }

    /// The release's name as nixpkgs' make-channel.nix builds it: `nixos-<version><suffix>`.
    public var name: String { "nixos-\(version)\(versionSuffix)" }

    /// What `nixos-version` prints for a system built from this release: `<version><suffix>`.
    public var nixosVersion: String { "\(version)\(versionSuffix)" }

    /// Whether every field holds only what these files hold (letters, digits, `.`, `_`, `-`; bounded): the name ends
    /// up in a URL and a `nix-channel --add` argument.
    public var isWellFormed: Bool {
        SignedText.isPortableName(version, maxBytes: 32)
            && (versionSuffix.isEmpty || SignedText.isPortableName(versionSuffix, maxBytes: 64))
            && (gitRevision.map { SignedText.isPortableName($0, maxBytes: 64) } ?? true)
    }

    /// The fixed URL of this release for a node subscribed to `channelURL`, or nil when `channelURL` is not a
    /// NixOS channel on nixos.org (`https://channels.nixos.org/nixos-X` or `https://nixos.org/channels/nixos-X`),
    /// whose releases live under `https://releases.nixos.org/nixos/X/` (X: `24.05`, `unstable`, `24.05-small`, …).
    public func pinnedURL(forChannel channelURL: String) -> String? {
        guard isWellFormed, let series = Self.nixosChannelSeries(channelURL) else { return nil }
        return "https://releases.nixos.org/nixos/\(series)/\(name)"
    }

    /// `24.05` for `https://channels.nixos.org/nixos-24.05` (or `https://nixos.org/channels/nixos-24.05`), nil for
    /// any other URL.
    public static func nixosChannelSeries(_ channelURL: String) -> String? {
        var url = channelURL
        while url.hasSuffix("/") { url.removeLast() }
        let prefixes = ["https://channels.nixos.org/nixos-", "https://nixos.org/channels/nixos-"]
        guard let prefix = prefixes.first(where: { url.hasPrefix($0) }) else { return nil }
        let series = String(url.dropFirst(prefix.count))
        guard !series.isEmpty, !series.contains("/"),
            series.unicodeScalars.allSatisfy({ c in
                (c >= "a" && c <= "z") || (c >= "0" && c <= "9") || c == "." || c == "-"
            })
        else { return nil }
        return series
    }
}
