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
/// Faults (`setFault`): a Nix evaluation error on rebuild, a kubelet that never turns Ready, a machine that
/// never comes back from a reboot, and a reboot that hangs (nothing happens; the old boot id stays).
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
        /// NixOS version of the current system.
        public var nixosVersion: String?
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
        var listeners: [UUID: @Sendable (Event) -> Void] = [:]
        var tasks: [UUID: Task<Void, Never>] = [:]
        var isShutDown = false
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
    private let logger: Logger
    let state: Mutex<State>

    /// Installs a node: `files` land in /etc/nixos (all nk3-managed) plus `unmanagedFiles` (e.g.
    /// `hardware-configuration.nix`), channel `nixos` = `channelURL` at the channel's first release, and
    /// generation 1 built from them, booted and current, kubelet Ready.
    /// - Throws: `NodeSystemError(.invalidInput)` when the channel server does not know `channelURL`.
    public init(
        hostname: String, files: [String: String], unmanagedFiles: [String: String] = [:],
        channelURL: String = SimulatedChannels.url(of: "nixos-24.05"), channels: SimulatedChannels = SimulatedChannels(),
        speed: SimulationSpeed = .instant, timings: SimulatedTimings = SimulatedTimings(),
        clock: any AgentClock = SystemAgentClock(), logger: Logger
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
                rebuilds: s.rebuilds, faults: s.faults, nixosVersion: s.store[s.currentSystem]?.nixosVersion)
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
        _ action: RebuildAction, upgrade: Bool, output: @escaping @Sendable (String) -> Void
    ) async throws -> RebuildResult {
        try await rebuild(action, upgrade: upgrade, output: output, incarnation: nil)
    }

    public func channelState() async throws -> ChannelState { try channelState(incarnation: nil) }

    public func addChannel(url: String, name: String) async throws { try addChannel(url: url, name: name, incarnation: nil) }

    public func restoreChannel(_ saved: ChannelState) async throws { try restoreChannel(saved, incarnation: nil) }

    public func generations() async throws -> GenerationState { try generations(incarnation: nil) }

    public func activate(generation number: Int, mode: ActivationMode) async throws {
        try await activate(generation: number, mode: mode, incarnation: nil)
    }

    public func reboot() async throws { try reboot(incarnation: nil) }

    public func facts() async throws -> NodeFacts { try facts(incarnation: nil) }

    public func kubelet(unit: String) async -> KubeletState { kubelet(unit: unit, incarnation: nil) }

    // MARK: - implementation (incarnation: the agent process's boot, nil for direct use)

    private func checkAlive(_ s: State, _ incarnation: Int?) throws {
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

    func channelState(incarnation: Int?) throws -> ChannelState {
        try state.withLock { s in
            try checkAlive(s, incarnation)
            return ChannelState(
                listFile: s.channelList, profileGeneration: s.channelProfileGeneration,
                release: s.channelProfileGeneration.flatMap { s.channelGenerations[$0]?.release.channelRelease })
        }
    }

    func addChannel(url: String, name: String, incarnation: Int?) throws {
        // docs/UPSTREAM.md#channels: scheme and name are checked; nothing is downloaded; the list is keyed by name.
        guard url.hasPrefix("https://") || url.hasPrefix("http://") || url.hasPrefix("file://") else {
            throw NodeSystemError(.processFailed, "nix-channel --add \(url) \(name) exited 1: error: invalid channel URL '\(url)'")
        }
        guard name.range(of: #"^[a-zA-Z0-9_][a-zA-Z0-9_.-]*$"#, options: .regularExpression) != nil else {
            throw NodeSystemError(.processFailed, "nix-channel --add \(url) \(name) exited 1: error: invalid channel identifier '\(name)'")
        }
        try state.withLock { s in
            try checkAlive(s, incarnation)
            var entries = Self.channelEntries(s.channelList)
            entries[name] = url
            s.channelList = entries.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)\n" }.joined()
        }
        logger.info("[simulation] nix-channel --add \(url) \(name)")
    }

    func restoreChannel(_ saved: ChannelState, incarnation: Int?) throws {
        try state.withLock { s in
            try checkAlive(s, incarnation)
            s.channelList = saved.listFile
            if let g = saved.profileGeneration, s.channelProfileGeneration != g {
                guard s.channelGenerations[g] != nil else {
                    throw NodeSystemError(
                        .processFailed, "nix-channel --rollback \(g) exited 1: error: profile version \(g) does not exist")
                }
                s.channelProfileGeneration = g
            }
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
            if mode != .test { s.profileGeneration = number }
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

    func rebuild(
        _ action: RebuildAction, upgrade: Bool, output: @escaping @Sendable (String) -> Void, incarnation: Int?
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
        logger.info("[simulation] nixos-rebuild \(action.rawValue)\(upgrade ? " --upgrade" : "")")
        say("building the system configuration...")

        if upgrade {
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
                s.channelProfileGeneration.flatMap { s.channelGenerations[$0]?.release }
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

    func reboot(incarnation: Int?) throws {
        enum Outcome { case hang, down }
        let outcome: Outcome = try state.withLock { s in
            try checkAlive(s, incarnation)
            if s.faults.rebootHangs { return .hang }
            s.power = .down
            s.incarnation += 1
            s.kubeletActive = false
            s.kubeletReady = false
            return .down
        }
        if outcome == .hang {
            logger.warning("[simulation] reboot of \(hostname) hangs (injected fault): the old boot stays up")
            return
        }
        logger.info("[simulation] \(hostname) is rebooting (down for \(timings.rebootDowntime) simulated s)")
        emit(.poweredDown)
        emit(.kubelet(ready: false))
        spawn { node in
            try await node.speed.sleep(node.timings.rebootDowntime, on: node.clock)
            if node.state.withLock({ $0.faults.neverReturnsAfterReboot }) {
                node.logger.warning("[simulation] \(node.hostname) does not come back after the reboot (injected fault)")
                return
            }
            node.boot()
        }
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

    private func boot() {
        let now = clock.now()
        let (bootID, kernel): (String, String) = state.withLock { s in
            let g = s.generations[s.profileGeneration]
            let path = g?.storePath ?? s.currentSystem
            s.bootID = UUID().uuidString.lowercased()
            s.bootedAt = now
            s.bootedSystem = path
            s.currentSystem = path
            s.runningKernel = s.store[path]?.kernel ?? g?.kernel ?? s.runningKernel
            s.power = .up
            s.kubeletActive = true
            s.kubeletReady = false
            s.boots += 1
            return (s.bootID, s.runningKernel)
        }
        logger.info("[simulation] \(hostname) booted kernel \(kernel), boot id \(bootID)")
        emit(.booted(bootID: bootID, kernel: kernel))
        spawn { node in
            try await node.speed.sleep(node.timings.kubeletReadyAfterBoot, on: node.clock)
            let ready: Bool = node.state.withLock { s in
                guard s.bootID == bootID, s.power == .up, !s.faults.kubeletNeverReady else { return false }
                s.kubeletReady = true
                return true
            }
            if ready {
                node.logger.info("[simulation] kubelet is Ready on \(node.hostname)")
                node.emit(.kubelet(ready: true))
            } else if node.state.withLock({ $0.faults.kubeletNeverReady }) {
                node.logger.warning("[simulation] kubelet on \(node.hostname) never turns Ready (injected fault)")
            }
        }
    }

    private func spawn(_ body: @escaping @Sendable (SimulatedNode) async throws -> Void) {
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

/// One agent process's view of a simulated node: the `NodeSystem` an `ApplyEngine` gets in the simulated
/// cluster. Every call fails once the machine has gone down, as the process would have died.
struct SimulatedAgentProcess: NodeSystem {
    let node: SimulatedNode
    let incarnation: Int
    let alive: @Sendable () -> Bool

    private func live() throws {
        guard alive() else {
            throw NodeSystemError(.processFailed, "[simulation] this agent process of \(node.hostname) was stopped")
        }
    }

    func readConfigFiles() async throws -> [String: String] {
        try live()
        return try node.readConfigFiles(incarnation: incarnation)
    }
    func replaceConfigFiles(with files: [String: String]) async throws {
        try live()
        try node.replaceConfigFiles(with: files, incarnation: incarnation)
    }
    func snapshotConfigFiles(touching names: Set<String>) async throws -> ConfigSnapshot {
        try live()
        return try node.snapshotConfigFiles(touching: names, incarnation: incarnation)
    }
    func restoreConfigFiles(_ snapshot: ConfigSnapshot) async throws {
        try live()
        try node.restoreConfigFiles(snapshot, incarnation: incarnation)
    }
    func rebuild(
        _ action: RebuildAction, upgrade: Bool, output: @escaping @Sendable (String) -> Void
    ) async throws -> RebuildResult {
        try live()
        return try await node.rebuild(action, upgrade: upgrade, output: output, incarnation: incarnation)
    }
    func channelState() async throws -> ChannelState {
        try live()
        return try node.channelState(incarnation: incarnation)
    }
    func addChannel(url: String, name: String) async throws {
        try live()
        try node.addChannel(url: url, name: name, incarnation: incarnation)
    }
    func restoreChannel(_ saved: ChannelState) async throws {
        try live()
        try node.restoreChannel(saved, incarnation: incarnation)
    }
    func generations() async throws -> GenerationState {
        try live()
        return try node.generations(incarnation: incarnation)
    }
    func activate(generation number: Int, mode: ActivationMode) async throws {
        try live()
        try await node.activate(generation: number, mode: mode, incarnation: incarnation)
    }
    func reboot() async throws {
        try live()
        try node.reboot(incarnation: incarnation)
    }
    func facts() async throws -> NodeFacts {
        try live()
        return try node.facts(incarnation: incarnation)
    }
    func kubelet(unit: String) async -> KubeletState {
        guard alive() else { return KubeletState(unit: unit, unitActive: false, healthz: nil) }
        return node.kubelet(unit: unit, incarnation: incarnation)
    }
}
