#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import NK3Common
import NK3Protocol

#if canImport(Glibc)
import Glibc
#endif

/// The real system backend: runs `nixos-rebuild`, `nix-channel`, `nix-env`, `systemctl` and reads links and
/// files. Every command and path is configurable, and `root` prefixes every machine path, so tests run this
/// exact code against a temp root with fake scripts.
public struct NixOSSystem: NodeSystem {
    /// Commands and paths.
    public struct Options: Sendable {
        /// Prefix for every machine path below (empty on a real node; a temp dir in tests).
        public var root: String = ""
        /// NixOS configuration directory (the managed files land here).
        public var configDir: String = "/etc/nixos"
        /// Where the names of the nk3-managed files are recorded (in the agent's state dir; not rooted).
        public var managedFilesRecord: String = "/var/lib/nk3-agent/managed-files.json"
        public var nixosRebuild: String = "nixos-rebuild"
        public var nixChannel: String = "nix-channel"
        /// `nix` (flake mode: `nix flake lock` on an upgrade).
        public var nix: String = "nix"
        public var nixEnv: String = "nix-env"
        public var systemctl: String = "systemctl"
        public var currentSystem: String = "/run/current-system"
        public var bootedSystem: String = "/run/booted-system"
        public var systemProfile: String = "/nix/var/nix/profiles/system"
        public var channelsFile: String = "/root/.nix-channels"
        public var channelsProfile: String = "/nix/var/nix/profiles/per-user/root/channels"
        public var osrelease: String = "/proc/sys/kernel/osrelease"
        public var bootID: String = "/proc/sys/kernel/random/boot_id"
        public var uptime: String = "/proc/uptime"
        public var hostname: String = "/proc/sys/kernel/hostname"
        public var kubeletHealthzURL: String = "http://127.0.0.1:10248/healthz"
        /// The boot loader's one-shot mechanism for trial boots; nil: dead-man rollback only.
        public var trialBoot: TrialBootLoader?
        public var grubReboot: String = "grub-reboot"
        public var grubEditenv: String = "grub-editenv"
        public var bootctl: String = "bootctl"
        /// GRUB's environment block (`next_entry` lives here; install-grub.pl loads `$prefix/grubenv`).
        public var grubEnv: String = "/boot/grub/grubenv"
        /// Longest a rebuild may run before its process group is torn down.
        public var rebuildTimeout: Duration = .seconds(4 * 3600)
        /// Longest an activation (`switch-to-configuration`) may run.
        public var activationTimeout: Duration = .seconds(1800)
        /// Longest any other command may run.
        public var commandTimeout: Duration = .seconds(120)

        /// Default options (a real NixOS node).
        public init() {}
    }

    public let options: Options
    let runner: ProcessRunner
    let logger: Logger

    /// Creates the backend.
    public init(options: Options, runner: ProcessRunner = ProcessRunner(), logger: Logger) {
        self.options = options
        self.runner = runner
        self.logger = logger
    }

    func rooted(_ path: String) -> String { options.root.isEmpty ? path : options.root + path }

    /// Drops the test root prefix from a resolved path, so status shows `/nix/store/…` on both.
    func unrooted(_ path: String) -> String {
        if !options.root.isEmpty, path.hasPrefix(options.root) { return String(path.dropFirst(options.root.count)) }
        return path
    }

    var configDir: String { rooted(options.configDir) }

    /// A configuration file was written, restored or removed (a kill point of test builds only).
    func fileReplaced(_ name: String) { TestKillPoints.reached("file-replaced:\(name)") }

    // MARK: rebuild

    public func rebuild(
        _ action: RebuildAction, upgrade: Bool, flake: String?, output: @escaping @Sendable (String) -> Void
    ) async throws -> RebuildResult {
        var args = [action.rawValue]
        if let flake {
            // A `path:` reference copies the whole directory: a bare `/etc/nixos` that is a git checkout is read
            // as `git+file:`, which sees only files git tracks (the Nix manual, `nix flake`, "Flake references":
            // path-like syntax, the `path` and `git` types), so an untracked file the bundle landed (or the
            // machine's hardware-configuration.nix) would be missing from the build.
            let reference = "path:\(configDir)"
            if upgrade {
                // `nix flake lock --update-input nixpkgs FLAKE` rewrites the nixpkgs entry of flake.lock only. It
                // works on every Nix NixOS has shipped with flakes (2.4 on): `nix flake update INPUT` only came in
                // Nix 2.19, and an older `nix flake update` takes the flake, not inputs (the Nix manual, `nix flake
                // lock` and the 2.19 release notes).
                let lock = try await runChecked(
                    options.nix,
                    ["--extra-experimental-features", "nix-command flakes", "flake", "lock", "--update-input",
                     "nixpkgs", reference],
                    timeout: options.rebuildTimeout, allowFailure: true, onLine: output)
                if lock.exitCode != 0 || lock.timedOut {
                    var text = lock.output
                    if lock.timedOut { text += "\nnk3-agent: nix flake lock timed out and was stopped" }
                    return RebuildResult(exitCode: lock.exitCode == 0 ? 1 : lock.exitCode, output: text)
                }
            }
            // --no-write-lock-file: the node never changes the lock behind nk3's back; nixos-rebuild passes it on
            // to nix with the other lock flags (nixpkgs pkgs/os-specific/linux/nixos-rebuild: `lockFlags`). The
            // agent only builds bundles that carry a lock (ApplyBundle.validationProblem). --impure (passed on the
            // same way): nk3-agent.nix packages the agent binary the node holds outside the flake
            // (/var/lib/nk3-agent/bin), which pure evaluation may not read; that file is pinned by its SHA-256.
            args += ["--flake", "\(reference)#\(flake)", "--no-write-lock-file", "--impure"]
        } else if upgrade {
            args.append("--upgrade")
        }
        if flake == nil, options.configDir != "/etc/nixos" || !options.root.isEmpty {
            // nixos-rebuild builds <nixos-config> (docs/UPSTREAM.md#nixos-rebuild); point it at our directory.
            args += ["-I", "nixos-config=\(configDir)/configuration.nix"]
        }
        logger.info("running nixos-rebuild", metadata: ["agent.args": "\(args.joined(separator: " "))"])
        let result = try await runChecked(
            options.nixosRebuild, args, timeout: options.rebuildTimeout, allowFailure: true, onLine: output)
        let counts = RebuildOutputParser.counts(in: result.output)
        var text = result.output
        if result.timedOut { text += "\nnk3-agent: nixos-rebuild timed out and was stopped" }
        return RebuildResult(
            exitCode: result.exitCode, output: text, derivationsToBuild: counts.derivations,
            pathsToFetch: counts.paths)
    }

    // MARK: channels (docs/UPSTREAM.md#channels)

    public func channelState() async throws -> ChannelState {
        let file = rooted(options.channelsFile)
        var list: String?
        if SecureFiles.exists(file) {
            do { list = try SecureFiles.readText(file) } catch {
                throw NodeSystemError(.fileIO, "cannot read \(file): \(error)")
            }
        }
        return ChannelState(
            listFile: list, profileGeneration: linkGeneration(rooted(options.channelsProfile)),
            release: channelRelease(in: rooted(options.channelsProfile) + "/nixos"))
    }

    /// The release recorded in an unpacked NixOS channel (nixpkgs nixos/lib/make-channel.nix writes `.version-suffix`
    /// and `.git-revision`; `.version` is nixpkgs' own), nil unless `.version` and `.version-suffix` are readable,
    /// short and well-formed.
    func channelRelease(in directory: String) -> ChannelRelease? {
        func read(_ name: String) -> String? {
            let path = directory + "/" + name
            guard let data = FileManager.default.contents(atPath: path), data.count <= 256,
                let text = String(data: data, encoding: .utf8)
            else { return nil }
            // make-channel.nix writes them with `echo -n`; tolerate a trailing newline from a hand-made channel.
            var trimmed = Substring(text)
            while let last = trimmed.last, last == "\n" || last == "\r" || last == " " { trimmed.removeLast() }
            return String(trimmed)
        }
        guard let version = read(".version"), let suffix = read(".version-suffix") else { return nil }
        let release = ChannelRelease(version: version, versionSuffix: suffix, gitRevision: read(".git-revision"))
        return release.isWellFormed ? release : nil
    }

    public func addChannel(url: String, name: String) async throws {
        _ = try await runChecked(options.nixChannel, ["--add", url, name], timeout: options.commandTimeout)
    }

    public func restoreChannel(_ saved: ChannelState) async throws {
        let file = rooted(options.channelsFile)
        do {
            if let list = saved.listFile {
                if (try? SecureFiles.readText(file)) != list {
                    try SecureFiles.writeAtomically(list, to: file, permissions: 0o644)
                }
            } else if unlink(file) != 0 && errno != ENOENT {
                throw NodeSystemError(.fileIO, "cannot remove \(file): \(errnoText())")
            }
        } catch let e as NodeSystemError {
            throw e
        } catch {
            throw NodeSystemError(.fileIO, "cannot restore \(file): \(error)")
        }
        // `nix-channel --rollback` does not restore the list file, only the channel profile (NixOS/nix
        // src/nix-channel/nix-channel.cc).
        if let before = saved.profileGeneration, linkGeneration(rooted(options.channelsProfile)) != before {
            _ = try await runChecked(options.nixChannel, ["--rollback", "\(before)"], timeout: options.commandTimeout)
        }
    }

    // MARK: generations (docs/UPSTREAM.md#generations)

    public func generations() async throws -> GenerationState {
        let profile = rooted(options.systemProfile)
        let dir = PathName.deletingLastComponent(profile)
        let base = PathName.lastComponent(profile)
        var gens: [Int: String] = [:]
        var kernels: [Int: String] = [:]
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        for entry in entries {
            guard let n = Self.generationNumber(linkName: entry, profileBase: base) else { continue }
            guard let target = realPath("\(dir)/\(entry)") else { continue }
            gens[n] = unrooted(target)
            if let k = kernelRelease(ofSystem: target) { kernels[n] = k }
        }
        return GenerationState(
            currentSystem: realPath(rooted(options.currentSystem)).map(unrooted),
            bootedSystem: realPath(rooted(options.bootedSystem)).map(unrooted),
            profileGeneration: linkGeneration(profile), generations: gens, kernels: kernels)
    }

    public func activate(generation number: Int, mode: ActivationMode) async throws {
        let profile = rooted(options.systemProfile)
        let dir = PathName.deletingLastComponent(profile)
        let base = PathName.lastComponent(profile)
        let link = "\(dir)/\(base)-\(number)-link"
        guard realPath(link) != nil else {
            throw NodeSystemError(
                .notFound, "generation \(number) does not exist (\(link) is missing); it may have been garbage-collected")
        }
        if mode != .test {
            // Move the profile first: the bootloader installer lists the profile's generations
            // (docs/UPSTREAM.md#generations).
            _ = try await runChecked(
                options.nixEnv, ["-p", profile, "--switch-generation", "\(number)"], timeout: options.commandTimeout)
        }
        let result = try await runChecked(
            "\(link)/bin/switch-to-configuration", [mode.rawValue], timeout: options.activationTimeout,
            allowFailure: true)
        // 100: activated as far as possible, the rest takes effect after a reboot (docs/UPSTREAM.md#nixos-rebuild).
        if result.exitCode != 0 && result.exitCode != 100 {
            throw NodeSystemError(
                .processFailed,
                "switch-to-configuration \(mode.rawValue) of generation \(number) exited \(result.exitCode): "
                    + Self.tail(result.output))
        }
    }

    public func reboot() async throws {
        _ = try await runChecked(options.systemctl, ["reboot"], timeout: options.commandTimeout)
    }

    // MARK: facts

    public func facts() async throws -> NodeFacts {
        func read(_ p: String) -> String? {
            (try? SecureFiles.readText(rooted(p)))?.trimmingWhitespaceAndNewlines()
        }
        let hostname = read(options.hostname) ?? ProcessInfo.processInfo.hostName
        let uptime = read(options.uptime)?.split(separator: " ").first.flatMap { Double($0) } ?? 0
        let version = (try? SecureFiles.readText(rooted(options.currentSystem) + "/nixos-version"))?
            .trimmingWhitespaceAndNewlines()
        return NodeFacts(
            hostname: hostname, kernel: read(options.osrelease) ?? "unknown", nixosVersion: version,
            bootID: read(options.bootID) ?? "unknown", uptimeSeconds: uptime)
    }

    public func kubelet(unit: String) async -> KubeletState {
        let active: Bool
        do {
            let r = try await runner.run(options.systemctl, ["is-active", unit], timeout: .seconds(10))
            active = r.exitCode == 0 && r.output.trimmingWhitespaceAndNewlines() == "active"
        } catch {
            active = false
        }
        var healthz: Bool?
        if let r = await LoopbackHTTP.get(options.kubeletHealthzURL) {
            healthz = r.status == 200 && r.body.trimmingWhitespaceAndNewlines() == "ok"
        }
        return KubeletState(unit: unit, unitActive: active, healthz: healthz)
    }

    // MARK: helpers

    @discardableResult
    func runChecked(
        _ command: String, _ args: [String], timeout: Duration, allowFailure: Bool = false,
        onLine: (@Sendable (String) -> Void)? = nil
    ) async throws -> ProcessResult {
        let result = try await runner.run(command, args, timeout: timeout, onLine: onLine)
        if result.timedOut && !allowFailure {
            throw NodeSystemError(.timedOut, "\(command) \(args.joined(separator: " ")) timed out after \(timeout)")
        }
        if result.exitCode != 0 && !allowFailure {
            throw NodeSystemError(
                .processFailed,
                "\(command) \(args.joined(separator: " ")) exited \(result.exitCode): \(Self.tail(result.output))")
        }
        return result
    }

    static func tail(_ s: String, lines: Int = 20) -> String {
        s.split(separator: "\n").suffix(lines).joined(separator: "\n")
    }

    /// `system-42-link` → 42 for profile base `system`.
    static func generationNumber(linkName: String, profileBase: String) -> Int? {
        guard linkName.hasPrefix(profileBase + "-"), linkName.hasSuffix("-link") else { return nil }
        let middle = linkName.dropFirst(profileBase.count + 1).dropLast(5)
        return Int(middle)
    }

    /// Generation number a profile link points at (`system` → `system-42-link`).
    func linkGeneration(_ profile: String) -> Int? {
        guard let target = try? FileManager.default.destinationOfSymbolicLink(atPath: profile) else { return nil }
        return Self.generationNumber(
            linkName: PathName.lastComponent(target),
            profileBase: PathName.lastComponent(profile))
    }

    func realPath(_ path: String) -> String? {
        guard let p = realpath(path, nil) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }

    /// The single directory under `<system>/kernel-modules/lib/modules/` (how nixos-rebuild-ng finds it,
    /// docs/UPSTREAM.md#generations).
    func kernelRelease(ofSystem system: String) -> String? {
        let dir = "\(system)/kernel-modules/lib/modules"
        let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
        return names.count == 1 ? names[0] : names.sorted().last
    }
}
