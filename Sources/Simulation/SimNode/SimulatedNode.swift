import Foundation
import Logging
import NK3Agent
import NK3Protocol
import Synchronization

/// An in-memory NixOS machine — a SIMULATION, not a NixOS backend. It implements `NodeSystem` with the
/// semantics of the real tools (docs/UPSTREAM.md#nixos-rebuild, #generations, #channels): `/etc/nixos` files,
/// the system profile and its generations (store path and kernel each), `/run/current-system` and
/// `/run/booted-system`, the root channel list and channel profile, a boot id, a kubelet, and reboots that take
/// the machine (and its agent) down for a simulated while.
///
/// - `switch`: the profile is set (generation highest+1, unless the highest already points at the new system),
///   then activated (current = new). `boot`: profile set, current unchanged. `test`: current only.
/// - Same configuration and channel → same store path: "nothing to build", no derivations line, no new
///   generation. Changed configuration → `these N derivations will be built:` and one line per `.drv`.
/// - `--upgrade` runs `nix-channel --update nixos` first: a newer release on the channel makes a new channel
///   generation and a system with that release's kernel; an unknown URL fails with
///   `error: unable to download 'URL': HTTP error 404`, exit 1, channel profile unchanged.
/// - `reboot()` powers the machine down (events tell the cluster to stop its agent); after
///   `timings.rebootDowntime` it boots the profile generation with a new boot id (current = booted = that
///   generation, running kernel = its kernel); the kubelet turns Ready `timings.kubeletReadyAfterBoot` later.
///
/// - The boot loader (SimulatedNode+BootLoader.swift): a default entry (set by `switch`/`boot` and by activating
///   a generation) and, when the node has a trial-boot loader, a one-shot entry that the next boot consumes.
///
/// Faults (`setFault`): a Nix evaluation error on rebuild, a kubelet that never turns Ready, a machine that
/// never comes back from a reboot, a reboot that hangs (nothing happens; the old boot id stays), and new
/// generations whose kernel never boots or that never start the agent (until a `reset()`).
///
/// Thread-safe: one `Mutex` guards the state; simulated durations are slept outside it.
public final class SimulatedNode: NodeSystem, Sendable {
    /// Power state.
    public enum Power: String, Sendable, Hashable {
        /// Running; its agent may serve.
        case up
        /// Rebooting or off; nothing answers.
        case down
    }

    /// Faults injected on demand.
    public struct Faults: Sendable, Hashable {
        /// When set, every rebuild fails evaluation with these stderr lines and exit 1.
        public var rebuildEvaluationError: [String]?
        /// The kubelet never turns Ready after a boot.
        public var kubeletNeverReady = false
        /// The machine never comes back after a reboot (until `powerOn()`).
        public var neverReturnsAfterReboot = false
        /// `reboot()` does nothing: the agent stays up with the old boot id.
        public var rebootHangs = false
        /// Generations built while this is set fail to boot this way (a bad kernel or initrd, or no agent).
        public var newGenerationsDoNotBoot: BootFailure?
        /// A failed boot is followed by a reset after `timings.rebootDowntime` (a watchdog or `panic=N`);
        /// otherwise the machine waits for `reset()`.
        public var resetAfterFailedBoot = false

        /// No faults.
        public init() {}

        /// The default evaluation error (nix's wording for an undefined variable).
        public static let defaultEvaluationError = [
            "error: undefined variable 'foo'",
            "",
            "       at /etc/nixos/configuration.nix:12:3:",
            "",
            "           11|   services.k3s.enable = true;",
            "           12|   foo.bar = true;",
            "             |   ^",
            "           13| }",
        ]
    }

    /// Things a cluster layer reacts to.
    public enum Event: Sendable, Hashable {
        /// The machine went down (reboot started); every agent process of it is gone.
        case poweredDown
        /// The machine booted: new boot id and running kernel.
        case booted(bootID: String, kernel: String)
        /// The machine booted a generation that does not start the agent (injected fault): no agent serves.
        case bootedWithoutAgent(bootID: String)
        /// The kubelet's readiness changed.
        case kubelet(ready: Bool)
        /// A rebuild or activation made a new system current or the boot default (status may have changed).
        case systemChanged
    }

    /// One system profile generation.
    public struct Generation: Sendable, Hashable {
        /// `system-N-link` number.
        public var number: Int
        /// `/nix/store/<hash>-nixos-system-<host>-<version>`.
        public var storePath: String
        /// Kernel release of this generation.
        public var kernel: String
        /// `nixos-version` of this generation.
        public var nixosVersion: String
    }

    /// A point-in-time view for tests and the cluster layer.
    public struct Snapshot: Sendable, Hashable {
        public var hostname: String
        public var power: Power
        public var bootID: String
        /// Running kernel (`uname -r`).
        public var kernel: String
        public var profileGeneration: Int
        public var currentSystem: String
        public var bootedSystem: String
        public var generations: [Int: Generation]
        /// Content of `/root/.nix-channels`.
        public var channelList: String?
        public var channelProfileGeneration: Int?
        /// Every file in /etc/nixos (managed and not).
        public var files: [String: String]
        public var kubeletActive: Bool
        public var kubeletReady: Bool
        public var boots: Int
        public var rebuilds: Int
        public var faults: Faults
        /// The boot loader's default entry (a generation number).
        public var bootDefault: Int
        /// The one-shot entry the next boot consumes, if set.
        public var bootOnce: Int?
        /// Boots that did not come up (a kernel that never boots).
        public var failedBoots: Int
        /// NixOS version of the current system.
        public var nixosVersion: String?
        /// Times `nix flake lock --update-input nixpkgs` changed this node's flake.lock.
        public var flakeLockUpdates: Int = 0
        /// The profile generation's kernel (what the next boot runs).
        public var profileKernel: String? { generations[profileGeneration]?.kernel }
    }

    struct Built: Sendable, Hashable {
        var kernel: String
        var nixosVersion: String
    }

    struct ChannelGeneration: Sendable, Hashable {
        var url: String
        var release: SimulatedChannels.Release
    }

    struct State {
        var files: [String: String]
        var managed: Set<String>
        var generations: [Int: Generation] = [:]
        var profileGeneration = 0
        var currentSystem = ""
        var bootedSystem = ""
        var runningKernel = ""
        var channelList: String?
        var channelGenerations: [Int: ChannelGeneration] = [:]
        var channelProfileGeneration: Int?
        var store: [String: Built] = [:]
        var bootID = UUID().uuidString.lowercased()
        var bootedAt: Date
        var power = Power.up
        var incarnation = 0
        var kubeletActive = true
        var kubeletReady = true
        var faults = Faults()
        var boots = 1
        var rebuilds = 0
        var flakeLockUpdates = 0
        var bootDefault = 1
        var bootOnce: Int?
        var unbootable: [String: BootFailure] = [:]
        var failedBoots = 0
        var listeners: [UUID: @Sendable (Event) -> Void] = [:]
        var tasks: [UUID: Task<Void, Never>] = [:]
        var isShutDown = false
        /// Where the machine's /var/lib/nk3-agent is (the running agent's state directory), when known.
        var agentStateDirectory: String?
        /// SHA-256 digests of agent binaries already copied into the store by `builtins.path`.
        var agentBinariesInStore: Set<String> = []
    }

    /// Mounts `directory` as the machine's /var/lib/nk3-agent (the simulated agent's state directory, which holds
    /// the uploaded agent binaries `nk3-agent.nix` names).
    public func mountAgentState(_ directory: String) {
        state.withLock { $0.agentStateDirectory = directory }
    }

    /// Hostname (the Kubernetes node name).
    public let hostname: String
    /// The shared channel server.
    public let channels: SimulatedChannels
    /// How fast system operations run.
    public let speed: SimulationSpeed
    /// Simulated durations.
    public let timings: SimulatedTimings
    /// Time source (shared with the agent engine).
    public let clock: any AgentClock
    /// The boot loader's one-shot mechanism (nil: none, the agent runs dead-man rollbacks only).
    public let trialBootLoaderKind: TrialBootLoader?
    let logger: Logger
    let state: Mutex<State>

    /// Installs a node: `files` land in /etc/nixos (all nk3-managed) plus `unmanagedFiles` (e.g.
    /// `hardware-configuration.nix`), channel `nixos` = `channelURL` at the channel's first release, and
    /// generation 1 built from them, booted and current, kubelet Ready.
    /// - Throws: `NodeSystemError(.invalidInput)` when the channel server does not know `channelURL`.
    public init(
        hostname: String, files: [String: String], unmanagedFiles: [String: String] = [:],
        channelURL: String = SimulatedChannels.url(of: "nixos-24.05"), channels: SimulatedChannels = SimulatedChannels(),
        speed: SimulationSpeed = .instant, timings: SimulatedTimings = SimulatedTimings(),
        clock: any AgentClock = SystemAgentClock(), bootLoader: TrialBootLoader? = nil, logger: Logger
    ) throws {
        guard let release = channels.first(channelURL) else {
            throw NodeSystemError(
                .invalidInput,
                "[simulation] the simulated channel server does not know \(channelURL); publish a release first")
        }
        self.hostname = hostname
        self.channels = channels
        self.speed = speed
        self.timings = timings
        self.clock = clock
        self.trialBootLoaderKind = bootLoader
        var log = logger
        log[metadataKey: "simulation"] = "node"
        log[metadataKey: "sim.node"] = "\(hostname)"
        self.logger = log
        var s = State(
            files: unmanagedFiles.merging(files) { _, new in new }, managed: Set(files.keys), bootedAt: clock.now())
        s.channelList = "\(channelURL) nixos\n"
        s.channelGenerations[1] = ChannelGeneration(url: channelURL, release: release)
        s.channelProfileGeneration = 1
        let path = Self.storePath(host: hostname, files: s.files, release: release)
        s.store[path] = Built(kernel: release.kernel, nixosVersion: release.nixosVersion)
        s.generations[1] = Generation(number: 1, storePath: path, kernel: release.kernel, nixosVersion: release.nixosVersion)
        s.profileGeneration = 1
        s.currentSystem = path
        s.bootedSystem = path
        s.runningKernel = release.kernel
        state = Mutex(s)
    }

    // MARK: - observation and control (simulation API)

    /// The node's state now.
    public var snapshot: Snapshot {
        state.withLock { s in
            Snapshot(
                hostname: hostname, power: s.power, bootID: s.bootID, kernel: s.runningKernel,
                profileGeneration: s.profileGeneration, currentSystem: s.currentSystem, bootedSystem: s.bootedSystem,
                generations: s.generations, channelList: s.channelList, channelProfileGeneration: s.channelProfileGeneration,
                files: s.files, kubeletActive: s.kubeletActive, kubeletReady: s.kubeletReady, boots: s.boots,
                rebuilds: s.rebuilds, faults: s.faults, bootDefault: s.bootDefault, bootOnce: s.bootOnce,
                failedBoots: s.failedBoots, nixosVersion: s.store[s.currentSystem]?.nixosVersion,
                flakeLockUpdates: s.flakeLockUpdates)
        }
    }

    /// Changes the injected faults.
    public func setFaults(_ body: (inout Faults) -> Void) {
        state.withLock { body(&$0.faults) }
    }

    /// Registers a handler for node events (called outside the lock, on the thread that caused them).
    @discardableResult
    public func onEvent(_ handler: @escaping @Sendable (Event) -> Void) -> UUID {
        let id = UUID()
        state.withLock { $0.listeners[id] = handler }
        return id
    }

    /// A `NodeSystem` for one agent process: it stops working (every call throws) once the machine goes down,
    /// as the real process dies with the reboot; the next boot's agent needs a new view.
    /// `alive` is asked before every call: the cluster layer uses it to kill one process (agent unreachable)
    /// without rebooting the machine.
    public func agentProcess(alive: @escaping @Sendable () -> Bool = { true }) -> any NodeSystem {
        SimulatedAgentProcess(node: self, incarnation: state.withLock { $0.incarnation }, alive: alive)
    }

    /// Powers on a machine that is down (e.g. after `neverReturnsAfterReboot`, once the fault is cleared).
    public func powerOn() {
        guard state.withLock({ $0.power == .down && !$0.isShutDown }) else { return }
        boot()
    }

    /// Sets the kubelet's readiness by hand (e.g. a kubelet that was never Ready recovers).
    public func setKubeletReady(_ ready: Bool) {
        let changed: Bool = state.withLock { s in
            guard s.power == .up, s.kubeletReady != ready else { return false }
            s.kubeletReady = ready
            return true
        }
        if changed { emit(.kubelet(ready: ready)) }
    }

    /// Stops pending simulated work (boots, kubelet start-up); the node stays as it is.
    public func shutdown() {
        let tasks = state.withLock { s -> [Task<Void, Never>] in
            s.isShutDown = true
            defer { s.tasks = [:] }
            return Array(s.tasks.values)
        }
        for t in tasks { t.cancel() }
    }

    // MARK: - NodeSystem

    public func readConfigFiles() async throws -> [String: String] { try readConfigFiles(incarnation: nil) }

    public func replaceConfigFiles(with files: [String: String]) async throws {
        try replaceConfigFiles(with: files, incarnation: nil)
    }

    public func snapshotConfigFiles(touching names: Set<String>) async throws -> ConfigSnapshot {
        try snapshotConfigFiles(touching: names, incarnation: nil)
    }

    public func restoreConfigFiles(_ snapshot: ConfigSnapshot) async throws {
        try restoreConfigFiles(snapshot, incarnation: nil)
    }

    public func rebuild(
        _ action: RebuildAction, upgrade: Bool, flake: String?, output: @escaping @Sendable (String) -> Void
    ) async throws -> RebuildResult {
        try await rebuild(action, upgrade: upgrade, flake: flake, output: output, incarnation: nil)
    }

    public func channelState() async throws -> ChannelState { try channelState(incarnation: nil) }

    public func addChannel(url: String, name: String) async throws { try addChannel(url: url, name: name, incarnation: nil) }

    public func restoreChannel(_ saved: ChannelState) async throws { try restoreChannel(saved, incarnation: nil) }

    public func generations() async throws -> GenerationState { try generations(incarnation: nil) }

    public func activate(generation number: Int, mode: ActivationMode) async throws {
        try await activate(generation: number, mode: mode, incarnation: nil)
    }

    public func trialBootLoader() async -> TrialBootLoader? { trialBootLoaderKind }

    public func setBootDefault(generation number: Int) async throws {
        try await setBootDefault(generation: number, incarnation: nil)
    }

    public func setBootOnce(generation number: Int?) async throws { try setBootOnce(generation: number, incarnation: nil) }

    public func reboot() async throws { try reboot(incarnation: nil) }

    public func facts() async throws -> NodeFacts { try facts(incarnation: nil) }

    public func kubelet(unit: String) async -> KubeletState { kubelet(unit: unit, incarnation: nil) }

    // MARK: - implementation (incarnation: the agent process's boot, nil for direct use)

    func checkAlive(_ s: State, _ incarnation: Int?) throws {
        if s.power == .down {
            throw NodeSystemError(.processFailed, "[simulation] \(hostname) is down (rebooting or off)")
        }
        if let incarnation, incarnation != s.incarnation {
            throw NodeSystemError(
                .processFailed, "[simulation] this agent process of \(hostname) died in a reboot; a new one serves now")
        }
    }

    func readConfigFiles(incarnation: Int?) throws -> [String: String] {
        try state.withLock { s in
            try checkAlive(s, incarnation)
            return s.files.filter { s.managed.contains($0.key) }
        }
    }

    func replaceConfigFiles(with files: [String: String], incarnation: Int?) throws {
        for name in files.keys where !ApplyBundle.isValidFileName(name) {
            throw NodeSystemError(.invalidInput, "refusing file name '\(name)': flat names [A-Za-z0-9._-] only")
        }
        try state.withLock { s in
            try checkAlive(s, incarnation)
            for name in s.managed where files[name] == nil { s.files[name] = nil }
            for (name, content) in files { s.files[name] = content }
            s.managed = Set(files.keys)
        }
    }

    /// The simulated directory holds text files only (mode 0644, no links): a snapshot saves their text.
    func snapshotConfigFiles(touching names: Set<String>, incarnation: Int?) throws -> ConfigSnapshot {
        try state.withLock { s in
            try checkAlive(s, incarnation)
            var entries: [String: ConfigSnapshot.Entry] = [:]
            for name in names.union(s.managed) {
                entries[name] = s.files[name].map { .file(content: Data($0.utf8), mode: 0o644) } ?? .absent
            }
            return ConfigSnapshot(entries: entries, managedNames: s.managed.sorted())
        }
    }

    func restoreConfigFiles(_ snapshot: ConfigSnapshot, incarnation: Int?) throws {
        try state.withLock { s in
            try checkAlive(s, incarnation)
            for (name, entry) in snapshot.entries {
                switch entry {
                case .absent: s.files[name] = nil
                case .file(let content, _): s.files[name] = String(decoding: content, as: UTF8.self)
                case .symlink:
                    throw NodeSystemError(.invalidInput, "[simulation] \(hostname) has no symbolic links to restore")
                }
            }
            s.managed = Set(snapshot.managedNames ?? [])
        }
    }

    func generations(incarnation: Int?) throws -> GenerationState {
        try state.withLock { s in
            try checkAlive(s, incarnation)
            return GenerationState(
                currentSystem: s.currentSystem, bootedSystem: s.bootedSystem, profileGeneration: s.profileGeneration,
                generations: s.generations.mapValues(\.storePath), kernels: s.generations.mapValues(\.kernel))
        }
    }

    func activate(generation number: Int, mode: ActivationMode, incarnation: Int?) async throws {
        let path: String = try state.withLock { s in
            try checkAlive(s, incarnation)
            guard let g = s.generations[number] else {
                throw NodeSystemError(
                    .notFound, "generation \(number) does not exist (system-\(number)-link is missing)")
            }
            // Profile first (nix-env --switch-generation), as NixOSSystem does (docs/UPSTREAM.md#generations).
            if mode != .test {
                s.profileGeneration = number
                s.bootDefault = number  // switch-to-configuration switch|boot installs the boot loader
            }
            return g.storePath
        }
        try await speed.sleep(timings.activation, on: clock)
        try state.withLock { s in
            try checkAlive(s, incarnation)
            if mode != .boot { s.currentSystem = path }
        }
        logger.info("[simulation] switch-to-configuration \(mode.rawValue) of generation \(number)")
        emit(.systemChanged)
    }

    func facts(incarnation: Int?) throws -> NodeFacts {
        let now = clock.now()
        return try state.withLock { s in
            try checkAlive(s, incarnation)
            return NodeFacts(
                hostname: hostname, kernel: s.runningKernel, nixosVersion: s.store[s.currentSystem]?.nixosVersion,
                bootID: s.bootID, uptimeSeconds: max(0, now.timeIntervalSince(s.bootedAt)))
        }
    }

    func kubelet(unit: String, incarnation: Int?) -> KubeletState {
        state.withLock { s in
            if (try? checkAlive(s, incarnation)) == nil { return KubeletState(unit: unit, unitActive: false, healthz: nil) }
            return KubeletState(unit: unit, unitActive: s.kubeletActive, healthz: s.kubeletActive ? s.kubeletReady : nil)
        }
    }

    // MARK: - boot and helpers

    func spawn(_ body: @escaping @Sendable (SimulatedNode) async throws -> Void) {
        let id = UUID()
        state.withLock { s in
            guard !s.isShutDown else { return }
            s.tasks[id] = Task { [self] in
                try? await body(self)
                _ = state.withLock { $0.tasks.removeValue(forKey: id) }
            }
        }
    }

    func emit(_ event: Event) {
        let handlers = state.withLock { Array($0.listeners.values) }
        for h in handlers { h(event) }
    }
}
