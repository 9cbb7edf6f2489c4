#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NK3Protocol

/// Everything the apply engine needs from a NixOS machine, and nothing more.
///
/// Two implementations: `NixOSSystem` (real processes and files, every path and command configurable so
/// tests run it against a temp root with fake scripts) and the simulated in-memory node in NK3Simulation.
/// The engine keeps all decisions; a `NodeSystem` only reads and does what it is told. Every method must be
/// idempotent where the engine may repeat it after a crash (`replaceConfigFiles`, `restoreConfigFiles`,
/// `restoreChannel`, `activate`).
public protocol NodeSystem: Sendable {
    /// The nk3-managed files currently in the configuration directory (name → content).
    func readConfigFiles() async throws -> [String: String]
    /// Makes `files` the whole managed set: writes each file atomically (temp + fsync + rename), then removes
    /// managed files not in `files`. The engine persists a `snapshotConfigFiles` of every name this may touch
    /// before calling it, and restores with `restoreConfigFiles`.
    func replaceConfigFiles(with files: [String: String]) async throws
    /// Saves, for every name in `names` and every managed file, what the configuration directory holds now: a
    /// regular file's bytes and permission bits, a symbolic link's target, or that nothing is there; and the
    /// managed-file record. Reads only. Throws for a name that is a directory or a special file.
    func snapshotConfigFiles(touching names: Set<String>) async throws -> ConfigSnapshot
    /// Puts back exactly what `snapshot` saved: names saved absent are removed, files come back byte- and
    /// mode-exact, links with the same target, and the managed-file record as it was. Names the snapshot does
    /// not list are left alone. Idempotent (the engine repeats it after a crash).
    func restoreConfigFiles(_ snapshot: ConfigSnapshot) async throws

    /// Runs `nixos-rebuild <action> [--upgrade]`, streaming combined output lines to `output`; with `flake` (an
    /// attribute of the configuration directory's flake), `nixos-rebuild <action> --flake path:DIR#ATTR
    /// --no-write-lock-file`, after updating the lock's nixpkgs input when `upgrade`.
    /// Returns the outcome whatever the exit code; throws only if the tool could not run (or timed out).
    func rebuild(
        _ action: RebuildAction, upgrade: Bool, flake: String?, output: @escaping @Sendable (String) -> Void
    ) async throws -> RebuildResult

    /// The channel list file and channel profile generation, saved before an apply changes them.
    func channelState() async throws -> ChannelState
    /// `nix-channel --add URL NAME` (succeeds even for a bogus URL; the failure comes at `--update`,
    /// docs/UPSTREAM.md#channels).
    func addChannel(url: String, name: String) async throws
    /// Puts the channel list file back as saved and, if the channel profile moved, switches it back
    /// (`nix-channel --rollback N`, docs/UPSTREAM.md#channels).
    func restoreChannel(_ saved: ChannelState) async throws

    /// Current, booted and profile generations (docs/UPSTREAM.md#generations).
    func generations() async throws -> GenerationState
    /// Re-activates generation `number` (docs/UPSTREAM.md#generations): for `.switch`/`.boot` first moves the system
    /// profile back to it (`nix-env -p PROFILE --switch-generation N`), then runs its
    /// `bin/switch-to-configuration switch|boot|test`.
    func activate(generation number: Int, mode: ActivationMode) async throws
    /// The one-shot mechanism this machine's boot loader offers for a trial boot, or nil: then a boot-mode apply
    /// runs the dead-man rollback only (the new generation is the boot default from the rebuild on).
    func trialBootLoader() async -> TrialBootLoader?
    /// Makes generation `number` the boot loader's default entry WITHOUT moving the system profile: runs its
    /// `bin/switch-to-configuration boot`; the loader installer makes the toplevel it is given the default and
    /// lists every profile generation (docs/RELIABILITY.md#trial-boot). Idempotent.
    func setBootDefault(generation number: Int) async throws
    /// Boots generation `number` at the next boot only, then the default again (`grub-reboot ENTRY`,
    /// `bootctl set-oneshot nixos-generation-N.conf`); nil clears a pending one-shot. Idempotent.
    func setBootOnce(generation number: Int?) async throws
    /// Reboots the machine. On a real node the agent process goes away; a simulator brings it back with a
    /// new boot id.
    func reboot() async throws

    /// Hostname, kernel release, NixOS version, boot id, uptime.
    func facts() async throws -> NodeFacts
    /// `systemctl is-active UNIT` and the kubelet healthz on loopback (docs/UPSTREAM.md#k3s-on-nixos).
    func kubelet(unit: String) async -> KubeletState
}

extension NodeSystem {
    /// A channel rebuild (`configuration.nix` through `<nixos-config>`).
    public func rebuild(
        _ action: RebuildAction, upgrade: Bool, output: @escaping @Sendable (String) -> Void
    ) async throws -> RebuildResult {
        try await rebuild(action, upgrade: upgrade, flake: nil, output: output)
    }
}

/// A boot loader with a "boot this entry once" mechanism (docs/RELIABILITY.md#trial-boot).
public enum TrialBootLoader: String, Codable, Sendable, Hashable, CaseIterable {
    /// `grub-reboot` (sets `next_entry` in grubenv; nixpkgs nixos/modules/system/boot/loader/grub/install-grub.pl
    /// boots it once and clears it), with `boot.loader.grub.default = "saved"`.
    case grub
    /// `bootctl set-oneshot` (the `LoaderEntryOneShot` EFI variable; systemd's bootctl(1)).
    case systemdBoot = "systemd-boot"
}

/// How `switch-to-configuration` is run for a generation.
public enum ActivationMode: String, Codable, Sendable, Hashable {
    /// Live now and boot default.
    case `switch`
    /// Boot default only.
    case boot
    /// Live now only (profile and boot default untouched).
    case test
}

/// Result of one `nixos-rebuild` run.
public struct RebuildResult: Codable, Sendable, Hashable {
    /// Exit status of the tool (128+signal if it died of a signal).
    public var exitCode: Int32
    /// Combined stdout+stderr, bounded (head and tail kept when longer).
    public var output: String
    /// "these N derivations will be built" / "this derivation will be built" (NixOS/nix src/libmain/shared.cc
    /// `printMissing`); nil if absent.
    public var derivationsToBuild: Int?
    /// "these N paths will be fetched" / "this path will be fetched"; nil if absent.
    public var pathsToFetch: Int?

    public init(exitCode: Int32, output: String, derivationsToBuild: Int? = nil, pathsToFetch: Int? = nil) {
        self.exitCode = exitCode
        self.output = output
        self.derivationsToBuild = derivationsToBuild
        self.pathsToFetch = pathsToFetch
    }
}

/// Saved channel state: what `/root/.nix-channels` held and where the channel profile pointed.
public struct ChannelState: Codable, Sendable, Hashable {
    /// Content of the channel list file; nil if it did not exist.
    public var listFile: String?
    /// Channel profile generation (`channels-N-link`), nil if there is no channel profile.
    public var profileGeneration: Int?
    /// The release the unpacked `nixos` channel holds (its `.version`, `.version-suffix`, `.git-revision`), nil if
    /// there is none or the files are missing or malformed. For reports only: a restore never uses it.
    public var release: ChannelRelease?

    public init(listFile: String?, profileGeneration: Int?, release: ChannelRelease? = nil) {
        self.listFile = listFile
        self.profileGeneration = profileGeneration
        self.release = release
    }

    /// URL of the channel named `name` in the list file (`URL NAME` per line), if any.
    public func url(named name: String = "nixos") -> String? {
        for line in (listFile ?? "").split(separator: "\n") {
            let parts = line.split(separator: " ", omittingEmptySubsequences: true)
            if parts.count >= 2, parts[1] == Substring(name) { return String(parts[0]) }
        }
        return nil
    }
}

/// Generations as the machine sees them (docs/UPSTREAM.md#generations).
public struct GenerationState: Codable, Sendable, Hashable {
    /// Store path of `/run/current-system`.
    public var currentSystem: String?
    /// Store path of `/run/booted-system`.
    public var bootedSystem: String?
    /// Generation the system profile points at (`system-N-link`).
    public var profileGeneration: Int?
    /// Every `system-N-link` → its store path.
    public var generations: [Int: String]
    /// Kernel release per generation, where known (`<gen>/kernel-modules/lib/modules/<release>`).
    public var kernels: [Int: String]

    public init(
        currentSystem: String?, bootedSystem: String?, profileGeneration: Int?, generations: [Int: String],
        kernels: [Int: String] = [:]
    ) {
        self.currentSystem = currentSystem
        self.bootedSystem = bootedSystem
        self.profileGeneration = profileGeneration
        self.generations = generations
        self.kernels = kernels
    }

    /// Store path of the profile's generation.
    public var profileSystem: String? { profileGeneration.flatMap { generations[$0] } }

    /// Highest-numbered generation whose store path is `path` (several generations can share one).
    public func generation(of path: String?) -> Int? {
        guard let path else { return nil }
        if let p = profileGeneration, generations[p] == path { return p }
        return generations.filter { $0.value == path }.keys.max()
    }
}

/// Identity and uptime facts.
public struct NodeFacts: Codable, Sendable, Hashable {
    public var hostname: String
    /// Running kernel release (`/proc/sys/kernel/osrelease`).
    public var kernel: String
    /// `/run/current-system/nixos-version`.
    public var nixosVersion: String?
    /// `/proc/sys/kernel/random/boot_id`.
    public var bootID: String
    public var uptimeSeconds: Double

    public init(hostname: String, kernel: String, nixosVersion: String?, bootID: String, uptimeSeconds: Double) {
        self.hostname = hostname
        self.kernel = kernel
        self.nixosVersion = nixosVersion
        self.bootID = bootID
        self.uptimeSeconds = uptimeSeconds
    }
}

/// A system operation failed. `code` is stable; `message` says what failed and how to fix it.
public struct NodeSystemError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Stable error codes.
    public enum Code: String, Sendable, Hashable {
        case fileIO = "file_io"
        case processFailed = "process_failed"
        case processSpawn = "process_spawn"
        case timedOut = "timed_out"
        case notFound = "not_found"
        case invalidInput = "invalid_input"
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}
