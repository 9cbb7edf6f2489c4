import Crypto
import NK3Coordinator
import Foundation
import Logging
import NK3Agent
import NK3Protocol
import Synchronization

// `nixos-rebuild` on the simulated node (docs/UPSTREAM.md#nixos-rebuild): channel update, build plan, profile,
// activation. A SIMULATION.
extension SimulatedNode {
    func rebuild(
        _ action: RebuildAction, upgrade: Bool, flake: String? = nil, output: @escaping @Sendable (String) -> Void,
        incarnation: Int?
    ) async throws -> RebuildResult {
        var lines: [String] = []
        func say(_ line: String) {
            lines.append(line)
            output(line)
        }
        func finish(_ code: Int32, derivations: Int? = nil, paths: Int? = nil) -> RebuildResult {
            RebuildResult(
                exitCode: code, output: lines.joined(separator: "\n"), derivationsToBuild: derivations,
                pathsToFetch: paths)
        }
        let faults: Faults = try state.withLock { s in
            try checkAlive(s, incarnation)
            s.rebuilds += 1
            return s.faults
        }
        logger.info("[simulation] nixos-rebuild \(action.rawValue)\(upgrade ? " --upgrade" : "")\(flake.map { " --flake path:/etc/nixos#\($0)" } ?? "")")
        var flakeRelease: SimulatedChannels.Release?
        if let flake {
            switch try await flakeInputs(flake, upgrade: upgrade, say: say, incarnation: incarnation) {
            case .success(let release): flakeRelease = release
            case .failure: return finish(1)
            }
        }
        say("building the system configuration...")

        if upgrade && flake == nil {
            // docs/UPSTREAM.md#nixos-rebuild: --upgrade runs `nix-channel --update nixos` first; bash aborts if it
            // fails.
            let url = try state.withLock { s in
                try checkAlive(s, incarnation)
                return Self.channelEntries(s.channelList)["nixos"]
            }
            if let url {
                try await speed.sleep(timings.channelUpdate, on: clock)
                guard let release = channels.latest(url) else {
                    // docs/UPSTREAM.md#channels: the failure comes at --update, and the channel profile is unchanged.
                    say("error: unable to download '\(url)': HTTP error 404")
                    return finish(1)
                }
                say("unpacking channels...")
                try state.withLock { s in
                    try checkAlive(s, incarnation)
                    let now = s.channelProfileGeneration.flatMap { s.channelGenerations[$0] }
                    if now?.release != release || now?.url != url {
                        let n = (s.channelGenerations.keys.max() ?? 0) + 1
                        s.channelGenerations[n] = ChannelGeneration(url: url, release: release)
                        s.channelProfileGeneration = n
                    }
                }
            }
        }

        if let error = faults.rebuildEvaluationError {
            for l in error { say(l) }
            return finish(1)
        }
        if let error = try state.withLock({ s in try checkAlive(s, incarnation); return Self.agentBinaryEvaluationError(&s) }) {
            for l in error { say(l) }
            return finish(1)
        }

        struct Plan {
            var path: String
            var release: SimulatedChannels.Release
            var isNew: Bool
            var kernelIsNew: Bool
            var changedFiles: [String]
        }
        let plan: Plan? = try state.withLock { s in
            try checkAlive(s, incarnation)
            guard s.files["configuration.nix"] != nil else { return nil }
            let release =
                flakeRelease ?? s.channelProfileGeneration.flatMap { s.channelGenerations[$0]?.release }
                ?? SimulatedChannels.Release(nixosVersion: "24.05.0.0000000", kernel: s.runningKernel)
            let path = Self.storePath(host: hostname, files: s.files, release: release)
            let kernelIsNew = !s.store.values.contains { $0.kernel == release.kernel }
            return Plan(
                path: path, release: release, isNew: s.store[path] == nil, kernelIsNew: kernelIsNew,
                changedFiles: s.files.keys.sorted())
        }
        guard let plan else {
            say("error: file 'nixos-config' was not found in the Nix search path (add it using $NIX_PATH or -I)")
            return finish(1)
        }

        var derivations: Int?
        var fetched: Int?
        if plan.isNew {
            // docs/UPSTREAM.md#nixos-rebuild: nix prints the build plan on stderr before building.
            let hash = String(plan.path.dropFirst("/nix/store/".count).prefix(32))
            var drvs = plan.changedFiles.map { "\(hash.prefix(8))\(Self.nix32(of: $0).prefix(24))-\($0).drv" }
            drvs += [
                "\(Self.nix32(of: hash + "etc").prefix(32))-etc.drv",
                "\(Self.nix32(of: hash + "system-path").prefix(32))-system-path.drv",
                "\(hash)-nixos-system-\(hostname)-\(plan.release.nixosVersion).drv",
            ]
            derivations = drvs.count
            say(drvs.count == 1 ? "this derivation will be built:" : "these \(drvs.count) derivations will be built:")
            for d in drvs { say("  /nix/store/\(d)") }
            if plan.kernelIsNew {
                fetched = 2
                say("these 2 paths will be fetched (131.42 MiB download, 612.08 MiB unpacked):")
                say("  /nix/store/\(Self.nix32(of: plan.release.kernel).prefix(32))-linux-\(plan.release.kernel)")
                say("  /nix/store/\(Self.nix32(of: plan.release.kernel + "m").prefix(32))-linux-\(plan.release.kernel)-modules")
            }
            try await speed.sleep(timings.rebuild, on: clock)
        } else {
            try await speed.sleep(timings.rebuildNothingToBuild, on: clock)
        }

        try state.withLock { s in
            try checkAlive(s, incarnation)
            s.store[plan.path] = Built(kernel: plan.release.kernel, nixosVersion: plan.release.nixosVersion)
            if action != .test {
                // docs/UPSTREAM.md#nixos-rebuild/#generations: `nix-env --set` before activation; highest+1 unless the
                // highest is this path.
                let highest = s.generations.keys.max() ?? 0
                if highest > 0, s.generations[highest]?.storePath == plan.path {
                    s.profileGeneration = highest
                } else {
                    s.generations[highest + 1] = Generation(
                        number: highest + 1, storePath: plan.path, kernel: plan.release.kernel,
                        nixosVersion: plan.release.nixosVersion)
                    s.profileGeneration = highest + 1
                }
                // switch-to-configuration switch|boot installs the boot loader with this generation as default.
                s.bootDefault = s.profileGeneration
                if plan.isNew, let failure = faults.newGenerationsDoNotBoot { s.unbootable[plan.path] = failure }
            }
        }
        try await speed.sleep(timings.activation, on: clock)
        try state.withLock { s in
            try checkAlive(s, incarnation)
            if action != .boot { s.currentSystem = plan.path }
        }
        emit(.systemChanged)
        return finish(0, derivations: derivations, paths: fetched)
    }

    struct FlakeFailed: Error {}

    /// Flake mode (`--flake path:/etc/nixos#ATTR --no-write-lock-file`, and on an upgrade `nix flake lock
    /// --update-input nixpkgs` first): the nixpkgs release the flake builds with, or a failure whose lines are said.
    /// Nix with `--no-write-lock-file` and no lock (or one that does not lock nixpkgs) locks the input afresh in
    /// memory, to whatever the branch points at now, and only warns (NixOS/nix src/libflake/flake.cc, lockFlake:
    /// "not writing modified lock file of flake"); so does this node. [simulation] The nixpkgs input must be
    /// `github:NixOS/nixpkgs/BRANCH`, served by the simulated channel server as channel BRANCH.
    func flakeInputs(
        _ attribute: String, upgrade: Bool, say: (String) -> Void, incarnation: Int?
    ) async throws -> Result<SimulatedChannels.Release, FlakeFailed> {
        let (flakeText, lockText) = try state.withLock { s in
            try checkAlive(s, incarnation)
            return (s.files[FlakeLock.flakeFile], s.files[FlakeLock.lockFile])
        }
        guard let flakeText else {
            // NixOS/nix src/libflake/flake.cc (getFlake): the source tree must hold flake.nix.
            say("error: source tree referenced by 'path:/etc/nixos' does not contain a '/flake.nix' file")
            return .failure(FlakeFailed())
        }
        guard let branch = Self.nixpkgsBranch(ofFlake: flakeText) else {
            say("error: [simulation] this simulated node only knows a nixpkgs input of github:NixOS/nixpkgs/BRANCH")
            return .failure(FlakeFailed())
        }
        let upstream = SimulatedChannels.url(of: branch)
        var lock = lockText
        if upgrade {
            try await speed.sleep(timings.channelUpdate, on: clock)
            guard let latest = channels.latest(upstream) else {
                say("error: unable to download 'https://api.github.com/repos/NixOS/nixpkgs/commits/\(branch)': HTTP error 404")
                return .failure(FlakeFailed())
            }
            let updated = SimulatedChannels.flakeLock(branch: branch, release: latest)
            if updated != lockText {
                say("warning: updating lock file '/etc/nixos/flake.lock':")
                say("• Updated input 'nixpkgs':")
                say("    'github:NixOS/nixpkgs/\(lockText.flatMap { FlakeLock.locked($0)?.revision } ?? "?")'")
                say("  → 'github:NixOS/nixpkgs/\(latest.channelRelease.gitRevision ?? "?")'")
                try state.withLock { s in
                    try checkAlive(s, incarnation)
                    s.files[FlakeLock.lockFile] = updated
                    s.flakeLockUpdates += 1
                }
            }
            lock = updated
        }
        let release: SimulatedChannels.Release
        if let rev = lock.flatMap({ FlakeLock.locked($0)?.revision }) {
            guard let pinned = channels.release(gitRevision: rev) else {
                say("error: unable to download 'https://github.com/NixOS/nixpkgs/archive/\(rev).tar.gz': HTTP error 404")
                return .failure(FlakeFailed())
            }
            release = pinned
        } else {
            guard let latest = channels.latest(upstream) else {
                say("error: unable to download 'https://api.github.com/repos/NixOS/nixpkgs/commits/\(branch)': HTTP error 404")
                return .failure(FlakeFailed())
            }
            say("warning: not writing modified lock file of flake 'path:/etc/nixos':")
            say("• Added input 'nixpkgs':")
            say("    'github:NixOS/nixpkgs/\(latest.channelRelease.gitRevision ?? "?")'")
            release = latest
        }
        // nixos-rebuild builds `nixosConfigurations."ATTR".config.system.build.toplevel`; a flake without it fails
        // evaluation (NixOS/nix src/nix/installable-flake.cc: "does not provide attribute"). [simulation] Looked for
        // as text: `"ATTR"` or `ATTR =`.
        if !flakeText.contains("\"\(attribute)\"") && !flakeText.contains("\(attribute) =") {
            say("error: flake 'path:/etc/nixos' does not provide attribute 'packages.x86_64-linux.nixosConfigurations."
                + "\"\(attribute)\".config.system.build.toplevel', 'legacyPackages.x86_64-linux.nixosConfigurations."
                + "\"\(attribute)\".config.system.build.toplevel' or 'nixosConfigurations.\"\(attribute)\".config.system.build.toplevel'")
            return .failure(FlakeFailed())
        }
        return .success(release)
    }

    /// `BRANCH` of a flake's `nixpkgs.url = "github:NixOS/nixpkgs/BRANCH"` (owner in any case, as GitHub takes it).
    static func nixpkgsBranch(ofFlake text: String) -> String? {
        let pattern = #"nixpkgs\.url\s*=\s*"github:[Nn][Ii][Xx][Oo][Ss]/nixpkgs/([A-Za-z0-9._-]+)""#
        guard let r = text.range(of: pattern, options: .regularExpression) else { return nil }
        let match = text[r]
        guard let slash = match.range(of: "nixpkgs/", options: .backwards) else { return nil }
        return String(match[slash.upperBound...].dropLast())
    }

    /// `URL NAME` lines → name → URL.
    static func channelEntries(_ list: String?) -> [String: String] {
        var out: [String: String] = [:]
        for line in (list ?? "").split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2 { out[String(parts[1])] = String(parts[0]) }
        }
        return out
    }

    /// `/nix/store/<hash>-nixos-system-<host>-<version>`: a pure function of the files and the channel release,
    /// so the same configuration and channel give the same path.
    static func storePath(host: String, files: [String: String], release: SimulatedChannels.Release) -> String {
        var all = files
        all["\u{0}channel"] = release.nixosVersion + " " + release.kernel
        all["\u{0}host"] = host
        let hash = nix32(of: ConfigFiles.hash(files: all)).prefix(32)
        return "/nix/store/\(hash)-nixos-system-\(host)-\(release.nixosVersion)"
    }

    /// A nix-base32-looking digest of `text` (alphabet without e, o, u, t).
    static func nix32(of text: String) -> String {
        let alphabet = Array("0123456789abcdfghijklmnpqrsvwxyz")
        let hex = ConfigFiles.hash(content: text)
        var out = ""
        var bytes: [UInt8] = []
        var i = hex.startIndex
        while i < hex.endIndex, let j = hex.index(i, offsetBy: 2, limitedBy: hex.endIndex) {
            if let b = UInt8(hex[i..<j], radix: 16) { bytes.append(b) }
            i = j
        }
        for b in bytes { out.append(alphabet[Int(b) % 32]) }
        return out
    }
}

extension SimulatedNode {
    /// What evaluating `nk3-agent.nix`'s pinned agent binary does (`builtins.path { path; sha256; }`,
    /// NixOS/nix src/libexpr/primops.cc, `addPath`): a digest already in the store is used without reading the
    /// file; otherwise the file is copied in, and a missing file or other content is an evaluation error. A binary
    /// named without a digest (the one `nk3 bootstrap` placed, which this simulation's install models as present)
    /// is not checked. `agentState` is where the machine's /var/lib/nk3-agent is. Nil when evaluation goes on,
    /// else Nix's error lines.
    public static func agentBinaryEvaluation(
        files: [String: String], agentState: String?, inStore: Set<String> = []
    ) -> [String]? {
        guard let (path, sha) = pinnedAgentBinary(files), !inStore.contains(sha) else { return nil }
        let prefix = "/var/lib/nk3-agent/"
        guard let root = agentState, path.hasPrefix(prefix) else { return nil }
        let local = root + "/" + path.dropFirst(prefix.count)
        guard let data = FileManager.default.contents(atPath: local) else {
            return ["error: getting status of '\(path)': No such file or directory"]
        }
        guard Hex.lowercase(SHA256.hash(data: data)) == sha else {
            return [
                "error: store path mismatch in (possibly filtered) path added from '\(path)'",
                "       … while evaluating the attribute 'services.nk3-agent.package'",
            ]
        }
        return nil
    }

    /// `agentBinaryEvaluation` on the machine's state; a binary it copied in stays in the store.
    static func agentBinaryEvaluationError(_ s: inout State) -> [String]? {
        if let error = agentBinaryEvaluation(files: s.files, agentState: s.agentStateDirectory, inStore: s.agentBinariesInStore) {
            return error
        }
        if let (_, sha) = pinnedAgentBinary(s.files) { s.agentBinariesInStore.insert(sha) }
        return nil
    }

    /// The binary path and digest `nk3-agent.nix` pins, if it pins one.
    private static func pinnedAgentBinary(_ files: [String: String]) -> (path: String, sha256: String)? {
        guard let nix = files[BundleFile.agent],
            let path = firstMatch(#"binary = (/[^;\s]+);"#, in: nix),
            let sha = firstMatch(#"sha256 = "([0-9a-f]{64})";"#, in: nix)
        else { return nil }
        return (path, sha)
    }

    private static func firstMatch(_ pattern: String, in text: String) -> String? {
        guard let re = try? NSRegularExpression(pattern: pattern),
            let m = re.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)), m.numberOfRanges > 1,
            let r = Range(m.range(at: 1), in: text)
        else { return nil }
        return String(text[r])
    }
}
