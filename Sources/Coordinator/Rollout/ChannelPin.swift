import Foundation
import NK3Protocol

/// One nixpkgs release for a whole upgrade. `nixos-rebuild boot --upgrade` runs `nix-channel --update nixos` on
/// each node when its turn comes (nixpkgs pkgs/os-specific/linux/nixos-rebuild), so nodes upgraded hours apart
/// would fetch whatever the channel points at by then. The first node to rebuild fetches the channel; the
/// release it reports (`AgentStatus.channelRelease`) pins every later node of the rollout to that release's
/// fixed URL on releases.nixos.org (`ChannelRelease.pinnedURL`).
struct ChannelPin: Sendable, Hashable {
    /// The channel the plan's bundles name (e.g. `https://channels.nixos.org/nixos-24.05`).
    var channel: String
    /// The release's fixed URL the later nodes get instead.
    var url: String
    /// The release.
    var release: ChannelRelease
    /// The node whose fetch chose it.
    var from: String

    /// The pin `status` of `node` gives for a bundle naming `channel`: nil (with the reason) when the node reports
    /// no release or the channel is not a nixos.org NixOS channel.
    static func from(node: String, status: AgentStatus, channel: String) -> Result<ChannelPin, Unpinnable> {
        guard let release = status.channelRelease else {
            return .failure(Unpinnable(reason: "\(node)'s agent reports no channel release (an agent older than this nk3, or no unpacked channel)"))
        }
        guard let url = release.pinnedURL(forChannel: channel) else {
            return .failure(Unpinnable(reason: "\(channel) is not a NixOS channel on nixos.org, whose releases have fixed URLs"))
        }
        return .success(ChannelPin(channel: channel, url: url, release: release, from: node))
    }

    /// Why the rollout cannot pin.
    struct Unpinnable: Error, Sendable, Hashable { var reason: String }

    /// `bundle` as a later node gets it: the same files and action, the pinned release instead of the channel.
    func apply(to bundle: ApplyBundle) -> ApplyBundle {
        guard bundle.upgrade, bundle.nixChannel == channel else { return bundle }
        var pinned = bundle
        pinned.nixChannel = url
        return pinned
    }

    /// The line people read when the pin is taken.
    var notice: RolloutNotice {
        let rev = release.gitRevision.map { " (nixpkgs \($0.prefix(12)))" } ?? ""
        return RolloutNotice(
            node: from, phase: .rebuild, status: .info,
            message: "\(from) fetched \(release.name)\(rev) from \(channel); the other nodes of this rollout get "
                + "that release (\(url)), not whatever the channel points at when their turn comes")
    }

    /// The warning when no pin is possible.
    static func warning(_ why: Unpinnable) -> RolloutNotice {
        RolloutNotice(
            node: nil, phase: .rebuild, status: .warning,
            message: "cannot pin this upgrade to one nixpkgs release: \(why.reason); each node fetches the channel "
                + "when its turn comes, so nodes may end on different releases (`nk3 status` shows them)")
    }
}

/// One flake lock for a whole flake-mode upgrade: the first node to rebuild runs `nix flake lock --update-input
/// nixpkgs` (NixOSSystem.rebuild); the lock it wrote (`AgentStatus.flakeLock`) goes, byte for byte, to every later
/// node of the rollout, which rebuilds with it and updates nothing. So nodes upgraded hours apart still build the
/// same nixpkgs, and the lock is updated once.
struct FlakeLockPin: Sendable, Hashable {
    /// The lock file.
    var lock: String
    /// The nixpkgs commit it pins, when it pins one.
    var revision: String?
    /// The node whose update wrote it.
    var from: String

    /// The pin `status` of `node` gives: nil (with the reason) when the node reports no lock, or one too large to
    /// report.
    static func from(node: String, status: AgentStatus) -> Result<FlakeLockPin, ChannelPin.Unpinnable> {
        guard let report = status.flakeLock else {
            return .failure(.init(reason: "\(node)'s agent reports no flake.lock (an agent older than this nk3)"))
        }
        guard let lock = report.content else {
            return .failure(.init(reason: "\(node)'s flake.lock is larger than \(FlakeLock.maxReportedBytes) bytes"))
        }
        return .success(FlakeLockPin(lock: lock, revision: report.nixpkgsRevision, from: node))
    }

    /// `bundle` as a later node gets it: the leader's lock, and no update of its own.
    func apply(to bundle: ApplyBundle) -> ApplyBundle {
        guard bundle.upgrade, bundle.flake != nil else { return bundle }
        var pinned = bundle
        pinned.files[FlakeLock.lockFile] = lock
        pinned.upgrade = false
        return pinned
    }

    /// The line people read when the pin is taken.
    var notice: RolloutNotice {
        let rev = revision.map { "nixpkgs \($0.prefix(12))" } ?? "its inputs"
        return RolloutNotice(
            node: from, phase: .rebuild, status: .info,
            message: "\(from) updated flake.lock to \(rev); the other nodes of this rollout get that same lock, not "
                + "whatever nixpkgs points at when their turn comes")
    }

    /// The warning when no pin is possible.
    static func warning(_ why: ChannelPin.Unpinnable) -> RolloutNotice {
        RolloutNotice(
            node: nil, phase: .rebuild, status: .warning,
            message: "cannot ship one flake.lock to every node of this upgrade: \(why.reason); each node updates its "
                + "own lock when its turn comes, so nodes may end on different nixpkgs revisions (`nk3 status` shows them)")
    }
}

/// The pin of an upgrade: a channel release, or a flake lock.
enum UpgradePin: Sendable, Hashable {
    case channel(ChannelPin)
    case flake(FlakeLockPin)

    func apply(to bundle: ApplyBundle) -> ApplyBundle {
        switch self {
        case .channel(let p): return p.apply(to: bundle)
        case .flake(let p): return p.apply(to: bundle)
        }
    }

    var notice: RolloutNotice {
        switch self {
        case .channel(let p): return p.notice
        case .flake(let p): return p.notice
        }
    }
}
