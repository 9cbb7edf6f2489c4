import ArgumentParser
import Foundation
import Logging
import NK3Common
import NK3Coordinator
import NK3Protocol

/// The process entry point (`ProcessMain`: the main thread waits instead of leaving through `dispatch_main()`).
@main
enum NK3Main {
    static func main() { ProcessMain.run { await NK3Command.main() } }
}

struct NK3Command: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nk3",
        abstract: "Declarative, rolling NixOS + k3s cluster management: one inventory, one command, one node at a time.",
        discussion: """
            nk3 renders each node's configuration.nix from the inventory, ships it as a signed bundle over mutual \
            TLS to the node's nk3-agent, and rolls it through the cluster: rebuild → drain → reboot → kubelet \
            Ready → uncordon → health gates → confirm, within a disruption budget, stopping at the first sign of \
            trouble (the failed node's agent rolls itself back).

            Try it without hardware: `nk3 demo` runs a simulated cluster on 127.0.0.1.

            Exit codes:
            \(RolloutFailure.exitCodeTable)
            """,
        version: NK3Wire.softwareVersion,
        subcommands: [
            ApplyCommand.self, UpgradeCommand.self, RollingRebootCommand.self, StatusCommand.self, PlanCommand.self,
            CertsCommand.self,
        ] + extraSubcommands)
}

/// Options every cluster command takes.
struct GlobalOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "Inventory file (YAML).")
    var inventory: String = "inventory.yaml"

    @Option(help: "kubeconfig to use (default: inventory `kubeconfig`, then KUBECONFIG, then ~/.kube/config).")
    var kubeconfig: String?

    @Option(help: "kubeconfig context (default: its current-context).")
    var context: String?

    @Option(help: "PKI directory (default: inventory `pki_dir`, else certs/<cluster_name>).")
    var pkiDir: String?

    @Option(help: "Output: human (the Python tool's lines, coloured on a terminal) or json (one event per line).")
    var output: OutputFormat = .human

    @Flag(name: .shortAndLong, help: "Log more (to stderr).")
    var verbose: Int

    enum OutputFormat: String, ExpressibleByArgument, CaseIterable { case human, json }

    func logger() -> Logger {
        LoggingBootstrap.once(level: verbose >= 2 ? .trace : verbose == 1 ? .info : .warning)
        return Logger(label: "nk3")
    }

    func sink() -> any RolloutEventSink {
        let out = FileDescriptorWriter(fd: 1)
        switch output {
        case .json: return JSONLinesEventSink(out: { out.write($0) })
        case .human:
            let err = FileDescriptorWriter(fd: 2)
            return HumanEventSink(
                useColor: DiffColor.shouldColorStandardOutput(), out: { out.write($0) }, err: { err.write($0) })
        }
    }

    /// The sink of a rollout: on a terminal (human output), the live view above the plain lines; else `sink()`.
    /// `nodes` in start order and `capacity` feed the live view's ETA.
    func rolloutSink(nodes: [String], capacity: RolloutCapacity) -> (sink: any RolloutEventSink, live: LiveProgressSink?) {
        let out = FileDescriptorWriter(fd: 1)
        let env = ProcessInfo.processInfo.environment
        guard output == .human, out.isTerminal, env["TERM"] != "dumb" else { return (sink(), nil) }
        let lines = HumanEventSink(useColor: DiffColor.shouldColorStandardOutput(), out: { _ in }, err: { _ in })
        let live = LiveProgressSink(nodes: nodes, capacity: capacity, line: { lines.render($0) }, write: { out.write($0) })
        return (live, live)
    }

    func session() throws -> ClusterSession {
        do {
            return try ClusterSession.load(
                inventoryPath: inventory,
                overrides: .init(kubeconfig: kubeconfig, kubeContext: context, pkiDirectory: pkiDir), logger: logger())
        } catch let e as CoordinatorError {
            FileDescriptorWriter(fd: 2).write("error: \(e.message)\n")
            throw ExitCode(e.kind.exitCode)
        }
    }
}

/// Options of commands that roll through the cluster.
struct RolloutOptions: ParsableArguments {
    @Option(
        name: [.customShort("d"), .customLong("disruption-budget")],
        help: "Most nodes in flight at once, from sending the bundle to the confirm — so also the most disrupted at once (default: inventory `disruption_budget`, else 1). k3s servers are further limited so etcd keeps quorum.")
    var disruptionBudget: Int?

    @Flag(help: "Do not run the health gates before the first node (they still run after every node).")
    var skipInitialHealth = false

    @Flag(help: "Allow taking down a k3s server of a 1- or 2-server cluster (loses etcd quorum while it reboots).")
    var allowQuorumLoss = false

    @Option(help: "Roll these nodes first, in this order (comma-separated names; default: the inventory's `order`).")
    var order: String?

    @Flag(help: "Also roll nodes someone else cordoned: they are drained and rebooted, and stay cordoned afterwards. Without it they are skipped and named at the end.")
    var includeCordoned = false

    @Flag(help: "Do not check every node's pods against the drain rules and PodDisruptionBudgets, nor ask the API server with dry-run evictions, before the first node (the check refuses, exit 2, naming each pod that would stop a drain).")
    var skipDrainPreflight = false

    @Flag(help: "Outside the inventory's maintenance window, start no further node and stop (exit 9) once the nodes in flight have finished their whole sequence, instead of waiting for the window to open; a rerun inside the window resumes.")
    var noWait = false

    func validate() throws {
        if let d = disruptionBudget, d < 1 { throw ValidationError("--disruption-budget must be at least 1") }
    }

    /// The flags as the library takes them (`RolloutFlags`, the builder `nk3 demo` uses too).
    var flags: RolloutFlags {
        RolloutFlags(
            disruptionBudget: disruptionBudget, skipInitialHealth: skipInitialHealth, allowQuorumLoss: allowQuorumLoss,
            order: order.map { $0.split(separator: ",").map(String.init) }, includeCordoned: includeCordoned,
            skipDrainPreflight: skipDrainPreflight)
    }
}

extension RebuildAction: ExpressibleByArgument {}

/// Runs a rollout and maps its outcome to the exit code.
func runRollout(_ kind: ClusterSession.RolloutKind, global: GlobalOptions, options: RolloutOptions) async throws {
    let session = try global.session()
    // Options that do not parse are reported below, where the rollout is asked for with them.
    let layout: (nodes: [String], capacity: RolloutCapacity) =
        (try? options.flags.planOptions(session.inventory)).map(session.inventory.liveViewLayout) ?? (session.nodeNames, RolloutCapacity())
    let (sink, live) = global.rolloutSink(nodes: layout.nodes, capacity: layout.capacity)
    let ticker = live.map { l in Task { await l.runTicker() } }
    defer {
        ticker?.cancel()
        live?.stop()
    }
    do {
        _ = try await session.rollout(
            kind, options: try options.flags.planOptions(session.inventory), sink: sink, clock: ContinuousClock(),
            noWait: options.noWait)
    } catch let failure as RolloutFailure {
        // The executor already emitted the failure event (node, phase, cause); end with its exit code.
        throw ExitCode(failure.exitCode)
    } catch let e as CoordinatorError {
        sink.emit(RolloutEvent(timestamp: Date(), node: nil, phase: .preflight, status: .failed, message: e.message))
        throw ExitCode(e.kind.exitCode)
    }
}

struct ApplyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "apply",
        abstract: "Roll changed configuration through the cluster, one node (or budget) at a time.",
        discussion: """
            Renders every node's configuration from the inventory's template, prints a diff per node ("No action \
            needed on X" when equal), then for each changed node: sends the signed bundle, waits for \
            nixos-rebuild, and with --action boot (the default) drains, reboots, waits for the agent to come back \
            with a new boot id and for kubelet Ready, uncordons, runs the health gates and confirms. With \
            --action switch the node is rebuilt live, with no drain or reboot. Any failure aborts the rollout; \
            the failed node's agent rolls back by itself when the confirm deadline passes.
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var rollout: RolloutOptions
    @Option(name: .shortAndLong, help: "nixos-rebuild action: boot (drain + reboot) or switch (live, no reboot).")
    var action: RebuildAction = .boot

    func validate() throws {
        if action == .test { throw ValidationError("--action test is not a rollout action; use boot or switch") }
    }

    func run() async throws { try await runRollout(.apply(action), global: global, options: rollout) }
}

struct UpgradeCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "upgrade",
        abstract: "OS upgrade: enforce the inventory's nix_channel and rebuild every node with --upgrade, rolling.",
        discussion: """
            Like the Python tool's -u: the channel named by `nix_channel` is set as `nixos` on each node (restored \
            if the rebuild fails), then `nixos-rebuild boot --upgrade` runs node by node with drain, reboot and \
            health gates. Nodes with nothing to build say "No upgrade needed on X"; kernel changes are reported \
            as "Kernel upgraded from A to B on X".
            """)

    @OptionGroup var global: GlobalOptions
    @OptionGroup var rollout: RolloutOptions
    @Option(name: .shortAndLong, help: "nixos-rebuild action: boot (drain + reboot) or switch.")
    var action: RebuildAction = .boot

    func run() async throws { try await runRollout(.upgrade(action), global: global, options: rollout) }
}

/// `nk3 reboot` (not to be confused with NK3Protocol's `RebootCommand`, the signed command sent to one agent).
struct RollingRebootCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "reboot",
        abstract: "Rolling reboot, no configuration change: drain → reboot → Ready → uncordon → gates per node.")

    @OptionGroup var global: GlobalOptions
    @OptionGroup var rollout: RolloutOptions

    func run() async throws { try await runRollout(.reboot, global: global, options: rollout) }
}

struct PlanCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plan",
        abstract: "Show what `nk3 apply` would change on each node (a unified diff), changing nothing.",
        aliases: ["diff"])

    @OptionGroup var global: GlobalOptions

    func run() async throws {
        let session = try global.session()
        let sink = global.sink()
        do {
            let statuses = try await session.preflight(sink: sink)
            let (_, plans) = try await session.plan(statuses: statuses)
            ClusterSession.emit(plans: plans, sink: sink)
        } catch let failure as RolloutFailure {
            throw ExitCode(failure.exitCode)
        } catch let e as CoordinatorError {
            sink.emit(RolloutEvent(timestamp: Date(), node: nil, phase: .preflight, status: .failed, message: e.message))
            throw ExitCode(e.kind.exitCode)
        }
    }
}

/// Bootstraps swift-log once per process.
enum LoggingBootstrap {
    nonisolated(unsafe) private static var done = false  // set once on the main task before any concurrency
    static func once(level: Logger.Level) {
        guard !done else { return }
        done = true
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
    }
}
