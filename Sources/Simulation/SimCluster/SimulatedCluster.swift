import Foundation
import Logging
import NK3Agent
import NK3Common
import NK3Coordinator
import NK3Kube
import NK3Protocol
import NIOSSL
import Synchronization

/// A whole cluster on loopback — a SIMULATION for `nk3 demo`, end-to-end tests and benchmarks:
///
/// - REAL: the PKI (`PKIStore` layout: CA, per-node agent certificates with SANs hostname + 127.0.0.1, an
///   operator and a reader client certificate, the Ed25519 signing key), one real `AgentServer` +
///   `ApplyEngine` per node on 127.0.0.1 (distinct ports below the ephemeral range, mutual TLS 1.3, signed envelopes, HTTP),
///   the Kubernetes API over HTTPS (`FakeKubeServer`), the inventory and kubeconfig files.
/// - SIMULATED: each machine (`SimulatedNode`: /etc/nixos, generations, channel, reboots, kubelet) and what
///   the Kubernetes controllers and the Rook operator write (`SimulatedWorkloads`).
///
/// On a node's reboot its agent process stops (port closed); once the node has booted a new process serves on
/// the same port over the persisted state directory, so a boot-mode apply resumes and re-arms its deadline.
///
/// Files under `directory`: `inventory.yaml`, `kubeconfig.yaml`, `pki/` (the PKI), `agents/<node>/state-<k>/`
/// (each agent process's state directory).
public final class SimulatedCluster: Sendable {
    /// One simulated node and where its agent listens.
    public struct Member: Sendable {
        /// Node name (hostname, Kubernetes node name, inventory key).
        public let name: String
        /// Whether it runs a k3s server.
        public let isServer: Bool
        /// The simulated machine.
        public let node: SimulatedNode
        let slot: SimulatedAgentSlot

        /// The agent's port on 127.0.0.1.
        public var port: Int { slot.port }
        /// Where the agent listens; its certificate carries `name` (DNS SAN) and 127.0.0.1 (IP SAN).
        public var endpoint: AgentEndpoint { AgentEndpoint(host: "127.0.0.1", port: port, expectedName: name) }
        /// Whether an agent process serves now.
        public var agentIsRunning: Bool { slot.isRunning }
        /// The running agent process's engine (nil while the node is down).
        public var engine: ApplyEngine? { slot.engine }
        /// Agent processes that started so far (1 + restarts; failed starts not counted).
        public var agentProcesses: Int { slot.processes }
        /// Agent starts that failed and were retried (e.g. the port held by another socket for a moment).
        public var agentStartFailures: Int { slot.startFailures }
        /// TLS connections this node's agent processes accepted so far (each one a handshake on both sides).
        public var agentConnections: Int { slot.connectionsAccepted }
    }

    /// Tunables beyond node count and speed.
    public struct Options: Sendable {
        /// `cluster_name` of the inventory.
        public var clusterName = "sim"
        /// Channel name the inventory and the nodes use (`nix_channel`).
        public var channel = "nixos-24.05"
        /// Simulated durations.
        public var timings = SimulatedTimings()
        /// Simulated seconds between Rook CephCluster status checks (Rook's default, 60: rook
        /// pkg/operator/ceph/cluster/cephstatus.go).
        public var cephCheckInterval: TimeInterval = 60
        /// Whether Rook's toolbox runs (the `rook-ceph-tools` Deployment, rook deploy/examples/toolbox.yaml): one pod
        /// labelled `app=rook-ceph-tools` in `rook-ceph` whose `ceph status -f json` answers with the simulated Ceph
        /// state of that moment. Off by default, as Rook installs it only on request.
        public var cephToolbox = false
        /// Simulated seconds the node controller waits without a kubelet heartbeat before it marks a node's
        /// Ready condition Unknown (kube-controller-manager `--node-monitor-grace-period`, 40 s; 50 s from
        /// Kubernetes 1.32). Until then a node that went down still shows Ready=True with its old boot id.
        /// 0 marks it Unknown the moment it goes down (kinder than a real cluster).
        public var nodeMonitorGracePeriod: TimeInterval = 40
        /// How long an agent waits after answering a reboot command before the machine goes down.
        public var agentRebootDelay: Duration = .milliseconds(50)
        /// Inventory `timeouts:` in seconds (nil: chosen from the speed — short for fast simulations).
        public var inventoryTimeouts: [String: Int]?
        /// `disruption_budget` of the inventory.
        public var disruptionBudget = 1
        /// The nodes' boot loader one-shot (trial boots); nil: none, dead-man rollbacks only.
        public var bootLoader: TrialBootLoader?
        /// Also write the simulation's summary lines to the logger at start.
        public var announce = true

        /// Defaults.
        public init() {}
    }

    /// Directory holding everything the simulation wrote.
    public let directory: URL
    /// The members, in inventory order.
    public let members: [Member]
    /// The fake Kubernetes API server.
    public let kube: FakeKubeServer
    /// The PKI (`pki/` under `directory`).
    public let pki: PKIStore
    /// `inventory.yaml` path.
    public let inventoryPath: String
    /// `kubeconfig.yaml` path (client certificate for the fake API server).
    public let kubeconfigPath: String
    /// The shared channel server (publish newer releases to offer upgrades).
    public let channels: SimulatedChannels
    /// How fast system operations run.
    public let speed: SimulationSpeed

    /// The coordinator's Kubernetes client options for this simulation: client-go's client-side rate limit
    /// (5 requests a second, burst 10: kubernetes/client-go rest/config.go) held in the SIMULATION's time, which
    /// runs `speed` times faster than the wall clock the limiter measures.
    public var kubeClientOptions: KubeClient.Options {
        var options = KubeClient.Options()
        switch speed {
        case .instant: options.qps = 0  // no time passes in an instant simulation: no limit to hold
        case .factor(let f): options.qps *= max(1, f)
        }
        return options
    }

    /// What the coordinator's session overrides for this simulation: the rate limit above, and the drain's wait
    /// after a refused eviction (kubectl's 5 s) in the simulation's time.
    public var sessionOverrides: ClusterSession.Overrides {
        // kubectl's 5 s at the simulation's speed, never below 5 ms (an instant simulation still yields).
        let retry = Duration.milliseconds(max(5, Int((speed.realSeconds(5) * 1000).rounded())))
        return ClusterSession.Overrides(kubeOptions: kubeClientOptions, evictRetryDelay: retry)
    }
    /// The clock the nodes and agents use.
    public let clock: any AgentClock
    let workloads: SimulatedWorkloads
    let logger: Logger
    /// Each k3s server's API endpoint (the first server's is `kube.url`, the kubeconfig's server; the others on
    /// 127.0.0.2, 127.0.0.3, …): it goes down with its server for the whole reboot (k3s runs the API server in the
    /// same process as the kubelet) and is back once the node's kubelet is ready again.
    public let apiEndpoints: [String: URL]
    private let outages = Mutex(0)

    /// How many times a server's API endpoint went down with its node so far.
    public var apiOutages: Int { outages.withLock { $0 } }

    private init(
        directory: URL, members: [Member], kube: FakeKubeServer, pki: PKIStore, inventoryPath: String,
        kubeconfigPath: String, channels: SimulatedChannels, speed: SimulationSpeed, clock: any AgentClock,
        workloads: SimulatedWorkloads, apiEndpoints: [String: URL], logger: Logger
    ) {
        self.apiEndpoints = apiEndpoints
        self.directory = directory
        self.members = members
        self.kube = kube
        self.pki = pki
        self.inventoryPath = inventoryPath
        self.kubeconfigPath = kubeconfigPath
        self.channels = channels
        self.speed = speed
        self.clock = clock
        self.workloads = workloads
        self.logger = logger
    }

    /// Starts a simulated cluster of `nodes` nodes (`sim-node-1` …), the first `servers` of them k3s servers
    /// (default: min(3, nodes)), writing its PKI, inventory and kubeconfig into `directory` (created; must not
    /// already hold a PKI).
    ///
    /// Every log line goes through `logger` prefixed `[simulation]`.
    public static func start(
        nodes count: Int, servers: Int? = nil, speed: SimulationSpeed = .factor(60), in directory: URL,
        options: Options = Options(), clock: any AgentClock = SystemAgentClock(),
        logger: Logger = Logger(label: "nk3.simulation")
    ) async throws -> SimulatedCluster {
        guard count >= 1, count <= 5000 else {
            throw SimulationError(.invalidArgument, "node count \(count) out of range 1…5000")
        }
        let serverCount = servers ?? min(3, count)
        guard serverCount >= 1, serverCount <= count else {
            throw SimulationError(.invalidArgument, "server count \(serverCount) must be between 1 and the node count \(count)")
        }
        let log = SimulationLogHandler.labelled(logger)
        let fm = FileManager.default
        try fm.createDirectory(at: directory, withIntermediateDirectories: true)
        let dir = directory.standardizedFileURL.path
        let names = (1...count).map { "sim-node-\($0)" }
        let serverNames = Set(names.prefix(serverCount))

        // PKI, by the same code `nk3 certs` uses.
        let pki = PKIStore(directory: "\(dir)/pki")
        do {
            try pki.initialize(cluster: options.clusterName, operatorName: "operator")
            try pki.issueClient(name: "reader", role: .reader)
            for name in names { try pki.issueAgent(node: name, addresses: ["127.0.0.1"]) }
        } catch {
            throw SimulationError(.setup, "cannot create the simulated cluster's PKI in \(dir)/pki: \(error)")
        }
        let signingKey = try pki.signingPublicKey()

        // Fake Kubernetes API and kubeconfig.
        let kube = try await FakeKubeServer.start(logger: log)
        let kubeconfigPath = "\(dir)/kubeconfig.yaml"
        try kube.writeKubeconfig(to: kubeconfigPath)
        // One API endpoint per k3s server, all serving the same state, as every k3s server serves the API.
        var apiEndpoints: [String: URL] = [:]
        do {
            for (i, name) in names.prefix(serverCount).enumerated() {
                if i == 0 {
                    apiEndpoints[name] = kube.url
                    continue
                }
                let host = "127.0.0.\(i % 250 + 1)"
                // The same port as the first where it is free (a bare address in the inventory would do), else any.
                let url: URL
                do { url = try await kube.addEndpoint(host: host, port: kube.url.port ?? 0) } catch {
                    url = try await kube.addEndpoint(host: host)
                }
                apiEndpoints[name] = url
            }
        } catch {
            await kube.shutdown()
            throw SimulationError(.setup, "cannot start the simulated servers' Kubernetes API endpoints: \(error)")
        }
        let servedAPIs = apiEndpoints
        let apiAddresses = apiEndpoints.mapValues { "\($0.host!):\($0.port!)" }

        // Agent slots: bind every port first so the inventory can name them.
        let channels = SimulatedChannels()
        let channelURL = SimulatedChannels.url(of: options.channel)
        guard channels.first(channelURL) != nil else {
            await kube.shutdown()
            throw SimulationError(.invalidArgument, "the simulated channel server has no channel '\(options.channel)'")
        }
        // The agents' ports are known only once they have bound (below the ephemeral range): install the nodes
        // from an inventory with placeholder ports, start the agents, then write the final inventory and complete
        // each node's install from it (its nk3-agent.nix names the node's own port, as bootstrap would write it).
        let inventoryPath = "\(dir)/inventory.yaml"
        func writeInventory(_ ports: [String: Int]) throws -> Inventory {
            let text = Self.inventoryYAML(
                names: names, servers: serverNames, apiAddresses: apiAddresses, ports: ports, options: options, speed: speed,
                pkiDir: pki.directory, kubeconfig: kubeconfigPath)
            try SecureFiles.writeAtomically(text, to: inventoryPath, permissions: 0o644)
            do {
                return try Inventory.load(path: inventoryPath)
            } catch {
                throw SimulationError(.setup, "the generated inventory does not parse: \(error)")
            }
        }
        let inventory: Inventory
        do {
            inventory = try writeInventory(Dictionary(uniqueKeysWithValues: names.map { ($0, 1) }))
        } catch {
            await kube.shutdown()
            throw error
        }
        let renderer = BundleRenderer(inventory: inventory, template: nil, signingPublicKeys: [signingKey])

        var members: [Member] = []
        var simNodes: [SimulatedNode] = []
        let caPath = pki.caCertificatePath
        for name in names {
            guard let invNode = inventory.node(name) else {
                throw SimulationError(.setup, "node \(name) is missing from the generated inventory")
            }
            // Installed as `nk3 bootstrap` leaves a node: the rendered bundle landed, generation 1 built from it.
            let files = try renderer.render(node: invNode)
            let node = try SimulatedNode(
                hostname: name, files: files, unmanagedFiles: ["hardware-configuration.nix": Self.hardwareConfiguration],
                channelURL: channelURL, channels: channels, speed: speed, timings: options.timings, clock: clock,
                bootLoader: options.bootLoader, logger: log)
            let agentFiles = pki.agentFiles(node: name)
            let slot = SimulatedAgentSlot(
                name: name, node: node, baseDirectory: "\(dir)/agents/\(name)", clock: clock,
                rebootDelay: options.agentRebootDelay, logger: log
            ) { port, stateDir in
                AgentServerConfig(
                    host: "127.0.0.1", port: port, certificate: .file(agentFiles.certificatePath),
                    privateKey: .file(agentFiles.privateKeyPath), clientCA: .file(caPath),
                    signingPublicKeys: [signingKey], nodeName: name, stateDirectory: stateDir)
            }
            members.append(Member(name: name, isServer: serverNames.contains(name), node: node, slot: slot))
            simNodes.append(node)
        }

        let workloads = SimulatedWorkloads(
            kube: kube.state, nodes: simNodes, speed: speed, timings: options.timings,
            cephCheckInterval: options.cephCheckInterval, nodeMonitorGracePeriod: options.nodeMonitorGracePeriod,
            cephToolbox: options.cephToolbox, clock: clock, logger: log)
        workloads.install(servers: serverNames)

        let cluster = SimulatedCluster(
            directory: URL(fileURLWithPath: dir), members: members, kube: kube, pki: pki, inventoryPath: inventoryPath,
            kubeconfigPath: kubeconfigPath, channels: channels, speed: speed, clock: clock, workloads: workloads,
            apiEndpoints: servedAPIs, logger: log)
        for m in members {
            // The agent follows its machine: gone when it goes down, a new process once it has booted.
            m.node.onEvent { [slot = m.slot] event in
                switch event {
                case .poweredDown:
                    slot.enqueue { await slot.stop(reason: "the machine went down") }
                    if let api = servedAPIs[m.name] {
                        slot.enqueue { await cluster.setAPI(api, of: m.name, down: true) }
                    }
                case .kubelet(ready: true):
                    if let api = servedAPIs[m.name] {
                        slot.enqueue { await cluster.setAPI(api, of: m.name, down: false) }
                    }
                case .booted:
                    slot.enqueue {
                        do { try await slot.startRetrying() } catch {
                            slot.logger.error("[simulation] agent of \(slot.name) did not start after boot: \(error)")
                        }
                    }
                default: break
                }
            }
        }
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for m in members { group.addTask { try await m.slot.start() } }
                try await group.waitForAll()
            }
        } catch {
            await cluster.shutdown()
            throw SimulationError(.setup, "cannot start the simulated agents: \(error)")
        }
        do {
            let final = try writeInventory(Dictionary(uniqueKeysWithValues: members.map { ($0.name, $0.port) }))
            let renderer = BundleRenderer(inventory: final, template: nil, signingPublicKeys: [signingKey])
            for m in members {
                guard let n = final.node(m.name) else {
                    throw SimulationError(.setup, "node \(m.name) is missing from the final inventory")
                }
                try m.node.completeInstall(files: try renderer.render(node: n))
            }
        } catch {
            await cluster.shutdown()
            throw error
        }
        if options.announce {
            for line in cluster.summary() { log.info("\(line)") }
        }
        return cluster
    }

    /// Stops every agent, the node simulations, the workload controllers and the fake API server.
    public func shutdown() async {
        workloads.stop()
        for m in members { m.node.shutdown() }
        await withTaskGroup(of: Void.self) { group in
            for m in members {
                group.addTask {
                    m.slot.enqueue { await m.slot.stop(reason: "simulation shut down") }
                    await m.slot.settle()
                }
            }
        }
        await kube.shutdown()
    }

    /// Takes a server's API endpoint down with its node, or brings it back.
    func setAPI(_ endpoint: URL, of name: String, down: Bool) async {
        guard kube.isUp(endpoint) == down else { return }
        do {
            try await kube.setEndpoint(endpoint, down: down)
            if down { outages.withLock { $0 += 1 } }
            logger.info("[simulation] Kubernetes API endpoint \(endpoint.absoluteString) of \(name) is \(down ? "down" : "up")")
        } catch {
            logger.error("[simulation] cannot bring the API endpoint \(endpoint.absoluteString) of \(name) back: \(error)")
        }
    }

    // MARK: - lookup and clients

    /// The member named `name`.
    public func member(_ name: String) throws -> Member {
        guard let m = members.first(where: { $0.name == name }) else {
            throw SimulationError(
                .unknownNode, "no simulated node '\(name)'; nodes are \(members.map(\.name).joined(separator: ", "))")
        }
        return m
    }

    /// The simulated machine named `name`.
    public func node(_ name: String) throws -> SimulatedNode { try member(name).node }

    /// An agent client for `name` with the operator (or reader) client certificate.
    public func agentClient(
        for name: String, role: ClientRole = .operator, timeout: Duration = .seconds(10)
    ) throws -> AgentClient {
        let m = try member(name)
        return try AgentClient(
            endpoint: m.endpoint, trustRoots: try pki.trustRoots(),
            identity: try pki.clientIdentity(name: role == .operator ? "operator" : "reader"), timeout: timeout)
    }

    /// The cluster's envelope signer (from `pki/signing.key`).
    public func signer() throws -> EnvelopeSigner { try pki.loadSigner() }

    /// Waits for every agent process start/stop requested so far (e.g. after a boot, before asserting).
    public func settleAgents() async {
        for m in members { await m.slot.settle() }
    }

    /// Number of Rook status checks so far.
    public var cephChecks: Int { workloads.cephChecks }

    /// Runs one Rook status check now (tests; the periodic check runs anyway).
    public func checkCephNow() { workloads.checkCeph() }

    /// Human summary lines, every one starting with `[simulation]`.
    public func summary() -> [String] {
        var lines = [
            "[simulation] \(members.count) simulated NixOS nodes (in memory) with REAL nk3 agents on 127.0.0.1, "
                + "speed \(speed)",
            "[simulation] inventory:  \(inventoryPath)",
            "[simulation] kubeconfig: \(kubeconfigPath) (simulated Kubernetes API at \(kube.url.absoluteString))",
            "[simulation] PKI:        \(pki.directory)",
        ]
        for m in members.prefix(10) {
            lines.append(
                "[simulation]   \(m.name) agent 127.0.0.1:\(m.port)\(m.isServer ? " (k3s server)" : "") kernel \(m.node.snapshot.kernel)")
        }
        if members.count > 10 { lines.append("[simulation]   … and \(members.count - 10) more") }
        return lines
    }

    // MARK: - faults

    /// Injects `fault` into node `name` (see `SimulatedFault`).
    public func inject(_ fault: SimulatedFault, on name: String) async throws {
        let m = try member(name)
        logger.info("[simulation] injecting fault \(fault.rawValue) on \(name)")
        switch fault {
        case .rebuildEvaluationError:
            m.node.setFaults { $0.rebuildEvaluationError = SimulatedNode.Faults.defaultEvaluationError }
        case .kubeletNeverReady:
            m.node.setFaults { $0.kubeletNeverReady = true }
        case .neverReturnsAfterReboot:
            m.node.setFaults { $0.neverReturnsAfterReboot = true }
        case .rebootHangs:
            m.node.setFaults { $0.rebootHangs = true }
        case .agentUnreachable:
            await m.slot.enqueue { await m.slot.stop(reason: "fault: agent unreachable") }.value
        case .pdbBlocksEviction:
            workloads.blockEvictions(on: name)
        case .pdbHoldsEviction:
            workloads.holdEvictions(on: name)
        case .kernelDoesNotBoot:
            m.node.setFaults { $0.newGenerationsDoNotBoot = .kernelPanics }
        }
    }

    /// Clears `fault` on node `name`: a machine that never returned is powered on, a stopped agent restarted,
    /// the blocking PDB removed.
    public func clear(_ fault: SimulatedFault, on name: String) async throws {
        let m = try member(name)
        logger.info("[simulation] clearing fault \(fault.rawValue) on \(name)")
        switch fault {
        case .rebuildEvaluationError:
            m.node.setFaults { $0.rebuildEvaluationError = nil }
        case .kubeletNeverReady:
            m.node.setFaults { $0.kubeletNeverReady = false }
            if m.node.snapshot.power == .up { m.node.setKubeletReady(true) }
        case .neverReturnsAfterReboot:
            m.node.setFaults { $0.neverReturnsAfterReboot = false }
            m.node.powerOn()
        case .rebootHangs:
            m.node.setFaults { $0.rebootHangs = false }
        case .agentUnreachable:
            let failure = Mutex<String?>(nil)
            await m.slot.enqueue {
                guard m.node.snapshot.power == .up else { return }
                do { try await m.slot.startRetrying() } catch { failure.withLock { $0 = "\(error)" } }
            }.value
            if let f = failure.withLock({ $0 }) {
                throw SimulationError(.setup, "cannot restart the agent of \(name): \(f)")
            }
        case .pdbBlocksEviction:
            workloads.unblockEvictions(on: name)
        case .pdbHoldsEviction:
            workloads.unholdEvictions(on: name)
        case .kernelDoesNotBoot:
            m.node.setFaults { $0.newGenerationsDoNotBoot = nil }
            if m.node.snapshot.power == .down { m.node.reset() }
        }
    }
}
