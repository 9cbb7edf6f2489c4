import Foundation
import Logging
import NK3Coordinator
import NK3Kube
import NK3Protocol

/// `nk3 demo`: a SIMULATED cluster on 127.0.0.1 (real agents over mTLS with signed envelopes, simulated NixOS
/// machines and a simulated Kubernetes API), then the real coordinator code of `nk3 apply` (a template change)
/// and `nk3 upgrade` (a channel with a newer kernel) against it — exactly what those commands run.
public struct DemoRunner: Sendable {
    /// What to run.
    public struct Options: Sendable {
        public var nodes: Int = 3
        public var servers: Int?
        public var speed: SimulationSpeed = .factor(60)
        public var disruptionBudget: Int = 1
        /// Where the simulation writes its files (nil: a new temporary directory).
        public var directory: URL?
        /// Run the upgrade step after the apply step.
        public var upgrade = true
        /// Then roll a change whose kernel never boots on the second node (trial boot; DemoRunner+Trial.swift).
        public var trial = false
        /// Run Rook's toolbox in the simulated cluster, so the Ceph gate asks (simulated) Ceph directly.
        public var cephToolbox = false
        public var output: RolloutOutputFormat = .human
        public var useColor = false
        /// Show the live progress view (`LiveProgressSink`): only when the output is a terminal.
        public var live = false
        public init() {}
    }

    public var options: Options
    /// Where human lines go (stdout in the CLI).
    public var out: @Sendable (String) -> Void
    /// Where errors go (stderr in the CLI).
    public var err: @Sendable (String) -> Void
    public var logger: Logger

    public init(
        options: Options, out: @escaping @Sendable (String) -> Void, err: @escaping @Sendable (String) -> Void,
        logger: Logger
    ) {
        self.options = options
        self.out = out
        self.err = err
        self.logger = logger
    }

    /// The line added to the template by the demo's configuration change (the example in the Python nk3's README,
    /// github.com/nihr43/nk3).
    public static let changedLine = "  hardware.cpu.amd.updateMicrocode = true;"

    /// Runs the demo. Returns the started cluster if `keepRunning` (the caller shuts it down), else nil.
    /// Throws `RolloutFailure` if a rollout fails (the demo's own cluster never should).
    @discardableResult
    public func run(keepRunning: Bool = false) async throws -> SimulatedCluster? {
        let dir = options.directory
            ?? FileManager.default.temporaryDirectory.appendingPathComponent("nk3-demo-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        note("nk3 demo — a SIMULATION: \(options.nodes) NixOS nodes and a Kubernetes API simulated on 127.0.0.1.")
        note("Real: the nk3 coordinator, the nk3-agent servers, mutual TLS 1.3, Ed25519-signed envelopes, HTTP, the")
        note("apply/rollback state machines. Simulated: the machines (nixos-rebuild, generations, reboots), k3s, Rook\(options.cephToolbox ? " and its toolbox (ceph status)" : "").")
        note("Files (inventory, kubeconfig, PKI): \(dir.path)")
        note("")

        let started = ContinuousClock.now
        var simLogger = logger
        simLogger.logLevel = min(logger.logLevel, .warning)
        var simOptions = SimulatedCluster.Options()
        simOptions.announce = false
        simOptions.disruptionBudget = options.disruptionBudget
        simOptions.bootLoader = .grub  // the module's default: trial boots with GRUB's one-shot (grub-reboot)
        simOptions.cephToolbox = options.cephToolbox
        let cluster = try await SimulatedCluster.start(
            nodes: options.nodes, servers: options.servers, speed: options.speed, in: dir, options: simOptions,
            logger: simLogger)
        do {
            for line in cluster.summary() { note(line) }
            try await step(cluster: cluster)
            note("")
            note("demo finished in \(Self.seconds(started.duration(to: .now))) (simulated time runs \(options.speed) faster)")
            if keepRunning {
                note("")
                note("The simulated cluster keeps running. Try, in another terminal:")
                note("  nk3 status -i \(cluster.inventoryPath)")
                note("  nk3 plan   -i \(cluster.inventoryPath)")
                note("  nk3 apply  -i \(cluster.inventoryPath)     (after editing \(dir.path)/template.nix.j2)")
                note("  nk3 reboot -i \(cluster.inventoryPath)")
                note("Stop it with Ctrl-C.")
                return cluster
            }
        } catch {
            await cluster.shutdown()
            throw error
        }
        await cluster.shutdown()
        return nil
    }

    private func step(cluster: SimulatedCluster) async throws {
        let inventory = cluster.inventoryPath
        let inv = try Inventory.load(path: inventory)
        let layout = inv.liveViewLayout(options: try RolloutFlags().planOptions(inv))
        let sink = makeSink(nodes: layout.nodes, capacity: layout.capacity)

        banner("$ nk3 status -i \(inventory)")
        try await printStatus(inventory: inventory)

        // A configuration change, as in the Python nk3's README: one line added to the template.
        let dir = URL(fileURLWithPath: inventory).deletingLastPathComponent()
        let templatePath = dir.appendingPathComponent("template.nix.j2").path
        let changed = DefaultTemplate.source.replacingOccurrences(
            of: "  boot.kernelModules = [ \"rbd\" ];\n", with: "  boot.kernelModules = [ \"rbd\" ];\n\(Self.changedLine)\n")
        precondition(changed != DefaultTemplate.source, "demo: the default template changed shape")
        try changed.write(toFile: templatePath, atomically: true, encoding: .utf8)
        var yaml = try String(contentsOfFile: inventory, encoding: .utf8)
        if !yaml.contains("\ntemplate:") {
            yaml += (yaml.hasSuffix("\n") ? "" : "\n") + "template: template.nix.j2\n"
            try yaml.write(toFile: inventory, atomically: true, encoding: .utf8)
        }
        note("")
        note("edited \(templatePath): added `\(Self.changedLine.trimmingCharacters(in: .whitespaces))`")
        banner("$ nk3 apply -i \(inventory)")
        let applied = try await rollout(.apply(.boot), inventory: inventory, overrides: cluster.sessionOverrides, sink: sink)
        note("apply: \(applied.updated.count) node(s) updated, \(applied.unchanged.count) unchanged")
        try writeReport(inventory: inventory, what: "apply")

        if options.upgrade {
            banner("$ nk3 upgrade -i \(inventory)")
            let upgraded = try await rollout(.upgrade(.boot), inventory: inventory, overrides: cluster.sessionOverrides, sink: sink)
            note("upgrade: \(upgraded.updated.count) node(s) upgraded, \(upgraded.kernelChanges.count) kernel change(s)")
            try writeReport(inventory: inventory, what: "upgrade")
        }
        if options.trial { try await trialStep(cluster: cluster, sink: sink) }

        banner("$ nk3 status -i \(inventory)")
        try await printStatus(inventory: inventory)
    }

    /// What `nk3 apply|upgrade -i inventory` runs, flags and all: the session, the plan options from the same
    /// builder (`RolloutFlags`, so the inventory's `disruption_budget` and `order` count), the rollout.
    /// (`overrides`: the simulation's, so that the client's rate limit and the drain's retry delay hold in
    /// simulated time.)
    func rollout(
        _ kind: ClusterSession.RolloutKind, inventory: String, overrides: ClusterSession.Overrides,
        sink: any RolloutEventSink
    ) async throws -> RolloutSummary {
        let session = try ClusterSession.load(inventoryPath: inventory, overrides: overrides, logger: logger)
        return try await session.rollout(
            kind, options: try RolloutFlags().planOptions(session.inventory), sink: sink, clock: ContinuousClock(),
            pollInterval: .milliseconds(50))
    }

    /// `nk3 report` on the rollout just run (the newest log next to the simulated inventory).
    private func writeReport(inventory: String, what: String) throws {
        let inv = try Inventory.load(path: inventory)
        guard let log = RolloutLog.newest(in: inv.operate.rolloutLogDirectory) else { return }
        let page = RolloutReport.html(events: try RolloutLog.read(path: log), title: "\((log as NSString).lastPathComponent) (simulated cluster)")
        let html = (log as NSString).deletingPathExtension + ".html"
        try Data(page.utf8).write(to: URL(fileURLWithPath: html), options: .atomic)
        note("report of the simulated \(what) (nk3 report \(log)): \(html)")
    }

    func printStatus(inventory: String) async throws {
        let session = try ClusterSession.load(inventoryPath: inventory, logger: logger)
        let probes = await session.probeAll()
        let rendered = try? session.render()
        let cordoned = await session.cordonStates()  // from the simulated Kubernetes API, as `nk3 status` asks it
        let rows = probes.map { NodeStatusRow(probe: $0, rendered: rendered?[$0.node], cordoned: cordoned[$0.node]) }
        for line in StatusTable.render(rows).split(separator: "\n") { out(String(line)) }
    }

    private func makeSink(nodes: [String], capacity: RolloutCapacity) -> any RolloutEventSink {
        // The sinks end every line with a newline; `out`/`err` take lines without one.
        let out = self.out
        let err = self.err
        let strip: @Sendable (String) -> String = { $0.hasSuffix("\n") ? String($0.dropLast()) : $0 }
        switch options.output {
        case .json: return JSONLinesEventSink(out: { out(strip($0)) })
        case .human:
            let human = HumanEventSink(useColor: options.useColor, out: { out(strip($0)) }, err: { err(strip($0)) })
            guard options.live else { return human }
            // On a terminal: the live view (LiveProgress) redrawn below the lines.
            return LiveProgressSink(nodes: nodes, capacity: capacity, line: { human.render($0) }, write: { out(strip($0)) })
        }
    }

    func banner(_ text: String) {
        note("")
        note(text)
    }

    func note(_ text: String) {
        if options.output == .human {
            out(text.isEmpty || text.hasPrefix("$ ") || text.hasPrefix("[simulation]") ? text : "[simulation] \(text)")
        } else {
            // In JSON mode, demo narration is itself an event line.
            out(#"{"phase":"demo","status":"info","message":\#(Self.jsonString(text))}"#)
        }
    }

    static func jsonString(_ s: String) -> String {
        String(decoding: (try? JSONEncoder().encode(s)) ?? Data("\"\"".utf8), as: UTF8.self)
    }

    static func seconds(_ d: Duration) -> String {
        let ms = d.components.seconds * 1000 + d.components.attoseconds / 1_000_000_000_000_000
        return String(format: "%.1f s", Double(ms) / 1000)
    }
}
