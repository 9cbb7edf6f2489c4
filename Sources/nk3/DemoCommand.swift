import ArgumentParser
import Foundation
import Logging
import NK3Coordinator
import NK3Simulation
import Synchronization

struct DemoCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo",
        abstract: "Run nk3 against a SIMULATED cluster on 127.0.0.1: an apply of a config change, then an OS upgrade.",
        discussion: """
            Starts N real nk3-agent servers on 127.0.0.1 (real mutual TLS with a fresh PKI, real signed envelopes, \
            real HTTP) whose NixOS machines are in-memory simulations, plus a simulated Kubernetes API (nodes, pods, \
            evictions with PodDisruptionBudgets, DaemonSets, Deployments, a Rook CephCluster). Then runs the same \
            code as `nk3 apply` (a template change: one line added) and `nk3 upgrade` (the channel offers a newer \
            kernel) against it. Everything it prints about the simulation says so.
            """)

    @Option(name: .shortAndLong, help: "Number of simulated nodes.")
    var nodes: Int = 3

    @Option(help: "How many of them are k3s servers (default: min(3, nodes)).")
    var servers: Int?

    @Option(help: "Simulation speed: a factor (60 = a 60 s reboot takes 1 s), `instant`, or `realtime`.")
    var speed: String = "60"

    @Option(
        name: [.customShort("d"), .customLong("disruption-budget")],
        help: "The simulated inventory's disruption_budget: most nodes in flight (so also disrupted) at once.")
    var disruptionBudget: Int = 1

    @Option(help: "Directory for the simulation's files (default: a new temporary directory).")
    var dir: String?

    @Flag(help: "Skip the upgrade step.")
    var noUpgrade = false

    @Flag(help: "Then roll a change whose new kernel never boots on the second node: trial boot brings it back.")
    var trial = false

    @Flag(help: "Run Rook's toolbox (rook-ceph-tools) in the simulated cluster: the Ceph gate then asks simulated Ceph with `ceph status` instead of waiting for the CephCluster status.")
    var cephToolbox = false

    @Flag(help: "Leave the simulated cluster running afterwards (Ctrl-C stops it) to try nk3 commands by hand.")
    var keepRunning = false

    @Option(help: "Output: human or json.")
    var output: GlobalOptions.OutputFormat = .human

    @Flag(name: .shortAndLong, help: "Log more (to stderr).")
    var verbose: Int

    func validate() throws {
        guard (1...500).contains(nodes) else { throw ValidationError("--nodes must be between 1 and 500") }
        guard SimulationSpeed(parsing: speed) != nil else {
            throw ValidationError("--speed must be a positive number, `instant` or `realtime`")
        }
        guard disruptionBudget >= 1 else { throw ValidationError("--disruption-budget must be at least 1") }
    }

    func run() async throws {
        LoggingBootstrap.once(level: verbose >= 2 ? .trace : verbose == 1 ? .info : .warning)
        var options = DemoRunner.Options()
        options.nodes = nodes
        options.servers = servers
        options.speed = SimulationSpeed(parsing: speed)!
        options.disruptionBudget = disruptionBudget
        options.directory = dir.map { URL(fileURLWithPath: $0) }
        options.upgrade = !noUpgrade
        options.trial = trial
        options.cephToolbox = cephToolbox
        options.output = output == .json ? .json : .human
        options.useColor = DiffColor.shouldColorStandardOutput()
        options.live = output == .human && FileDescriptorWriter(fd: 1).isTerminal
            && ProcessInfo.processInfo.environment["TERM"] != "dumb"
        let stdout = FileDescriptorWriter(fd: 1)
        let stderr = FileDescriptorWriter(fd: 2)
        let runner = DemoRunner(
            options: options, out: { stdout.write($0 + "\n") }, err: { stderr.write($0 + "\n") },
            logger: Logger(label: "nk3.demo"))
        do {
            if let cluster = try await runner.run(keepRunning: keepRunning) {
                // Wait for Ctrl-C / SIGTERM, then shut the simulation down.
                await SignalWaiter.waitForInterrupt()
                await cluster.shutdown()
            }
        } catch let failure as RolloutFailure {
            throw ExitCode(failure.exitCode)
        }
    }
}

/// Waits for SIGINT or SIGTERM.
enum SignalWaiter {
    static func waitForInterrupt() async {
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let once = OnceFlag()
            for sig in [SIGINT, SIGTERM] {
                let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
                source.setEventHandler {
                    if once.claim() { c.resume() }
                }
                source.resume()
                SignalSources.keep(source)
            }
        }
    }
}

/// Keeps dispatch sources alive for the life of the process.
enum SignalSources {
    nonisolated(unsafe) private static var sources: [any DispatchSourceSignal] = []  // only touched on setup, before any signal
    static func keep(_ s: any DispatchSourceSignal) { sources.append(s) }
}

/// A flag that can be claimed once, from any thread.
final class OnceFlag: Sendable {
    private let claimed = Mutex(false)
    func claim() -> Bool {
        claimed.withLock { c in
            if c { return false }
            c = true
            return true
        }
    }
}
