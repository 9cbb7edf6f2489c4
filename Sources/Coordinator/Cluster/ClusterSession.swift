import Foundation
import Logging
import NIOSSL
import NK3Common
import NK3Kube
import NK3Protocol

/// Everything one `nk3` invocation needs about a cluster, loaded from the inventory: the nodes, the PKI, one
/// agent client per node and (lazily) the Kubernetes client. Commands (`apply`, `upgrade`, `reboot`, `status`,
/// `plan`) are methods; the CLI only parses flags and calls them.
public struct ClusterSession: Sendable {
    public let inventory: Inventory
    public let pki: PKIStore
    public let agents: ClusterAgents
    public let clients: [String: AgentClient]
    public let logger: Logger
    let signingPublicKey: String
    let kubeconfigPath: String?
    let kubeContext: String?
    /// One request to an agent (`Overrides.agentTimeout`).
    let agentTimeout: Duration
    /// The Kubernetes client's options (`Overrides.kubeOptions`).
    public let kubeOptions: KubeClient.Options
    /// (`Overrides.evictRetryDelay`.)
    let evictRetryDelay: Duration

    /// Options that override the inventory.
    public struct Overrides: Sendable {
        public var kubeconfig: String?
        public var kubeContext: String?
        public var pkiDirectory: String?
        public var clientName: String
        public var agentTimeout: Duration
        /// The Kubernetes client's options (client-go's rate limit by default). A simulation whose time runs faster
        /// than the wall clock scales the rate limit by its speed, so that the limit holds in the simulation's time.
        public var kubeOptions: KubeClient.Options
        /// How long a drain waits after an eviction a budget refused without Retry-After (kubectl's 5 s); a
        /// simulation divides it by its speed.
        public var evictRetryDelay: Duration
        public init(
            kubeconfig: String? = nil, kubeContext: String? = nil, pkiDirectory: String? = nil,
            clientName: String = "operator", agentTimeout: Duration = AgentClient.defaultTimeout,
            kubeOptions: KubeClient.Options = KubeClient.Options(), evictRetryDelay: Duration = DrainOptions().evictRetryDelay
        ) {
            self.kubeOptions = kubeOptions
            self.evictRetryDelay = evictRetryDelay
            self.kubeconfig = kubeconfig
            self.kubeContext = kubeContext
            self.pkiDirectory = pkiDirectory
            self.clientName = clientName
            self.agentTimeout = agentTimeout
        }
    }

    /// Loads the inventory and the PKI. Contacts nothing: an invalid inventory or PKI fails here.
    public static func load(inventoryPath: String, overrides: Overrides = Overrides(), logger: Logger) throws -> ClusterSession {
        let inventory: Inventory
        do {
            inventory = try Inventory.load(path: inventoryPath)
        } catch {
            throw CoordinatorError(.invalidInput, "\(error)")
        }
        let pki = overrides.pkiDirectory.map { PKIStore(directory: $0) }
            ?? PKIStore(inventory: inventory, inventoryPath: inventoryPath)
        let roots: [NIOSSLCertificate]
        let identity: TLSIdentity
        let signer: EnvelopeSigner
        let pub: String
        do {
            roots = try pki.trustRoots()
            identity = try pki.clientIdentity(name: overrides.clientName)
            signer = try pki.loadSigner()
            pub = try pki.signingPublicKey()
        } catch {
            throw CoordinatorError(.invalidInput, "cluster PKI in \(pki.directory): \(error)")
        }
        let tls = try AgentClientTLS(trustRoots: roots, identity: identity)
        var clients: [String: AgentClient] = [:]
        for node in inventory.nodes {
            // A per-node `agent_port` hostvar overrides the inventory's (several agents on one host, e.g. a lab).
            var port = inventory.agentPort
            if case .int(let p)? = node[hostvar: "agent_port"] { port = p }
            // `agent_address` connects elsewhere than the inventory key (e.g. nodes keyed by hostname, several
            // agents behind one address); the certificate is still checked against the inventory key.
            let host = node[hostvar: "agent_address"]?.stringValue ?? node.address
            clients[node.name] = AgentClient(
                endpoint: AgentEndpoint(host: host, port: port, expectedName: node.address), tls: tls,
                timeout: overrides.agentTimeout, logger: logger, keepAlive: true)
        }
        let agentBinary = try inventory.agentBinaryPath.map { path throws(CoordinatorError) in
            try LocalAgentBinary(path: path)
        }
        return ClusterSession(
            inventory: inventory, pki: pki, agents: ClusterAgents(clients: clients, signer: signer, agentBinary: agentBinary),
            clients: clients,
            logger: logger, signingPublicKey: pub, kubeconfigPath: overrides.kubeconfig ?? inventory.kubeconfig,
            kubeContext: overrides.kubeContext ?? inventory.kubeContext, agentTimeout: overrides.agentTimeout,
            kubeOptions: overrides.kubeOptions, evictRetryDelay: overrides.evictRetryDelay)
    }

    /// Node names in inventory order.
    public var nodeNames: [String] { inventory.nodes.map(\.name) }

    /// Loads the kubeconfig (flags, inventory, `KUBECONFIG`, `~/.kube/config`, like kubectl).
    /// Every k3s server's API (same port, CA and credentials) is added as another endpoint, at the address its agent
    /// is reached at, so the client can move off a server that is rebooting.
    public func kubeConfig() throws -> KubeConfig {
        do {
            var config = try KubeConfig.load(path: kubeconfigPath, context: kubeContext)
            config.extraServers = apiServers.map(\.address)
            return config
        } catch {
            throw CoordinatorError(.invalidInput, "\(error)")
        }
    }

    /// Every k3s server's Kubernetes API address, in inventory order: the `kube_api_address` hostvar (host,
    /// `host:port` or URL; a lab or a load balancer in front), else the address its agent is reached at. A bare host
    /// takes the kubeconfig server's port (k3s serves the API on 6443 on every server).
    public var apiServers: [(node: String, address: String)] {
        inventory.nodes.filter(\.isServer).map { n in
            (n.name, n[hostvar: "kube_api_address"]?.stringValue ?? n[hostvar: "agent_address"]?.stringValue ?? n.address)
        }
    }

    /// Renders every node's bundle (node → file → content). Flake mode: a node gets the inventory directory's
    /// `flake.lock`, or else the one its agent reports in `statuses`.
    public func render(statuses: [String: AgentStatus] = [:]) throws -> [String: [String: String]] {
        do {
            var renderer = try BundleRenderer.load(inventory: inventory, signingPublicKeys: [signingPublicKey])
            if let binary = agents.agentBinary { renderer.agentBinary = binary.nixBinary }
            renderer.reportedFlakeLocks = statuses.compactMapValues { $0.flakeLock?.content }
            return try renderer.renderAll()
        } catch {
            throw CoordinatorError(.invalidInput, "\(error)")
        }
    }

    // MARK: Status of every agent, in parallel

    /// One node's answer to a status probe.
    public struct Probe: Sendable {
        public var node: String
        public var address: String
        public var result: Result<AgentStatus, AgentClientError>
    }

    /// Fetches every agent's status concurrently (at most `concurrency` in flight), in inventory order.
    public func probeAll(concurrency: Int = ClusterSession.agentConcurrency) async -> [Probe] {
        let clients = self.clients
        return await BoundedConcurrency.map(inventory.nodes, limit: concurrency) { node in
            let result: Result<AgentStatus, AgentClientError>
            do throws(AgentClientError) {
                result = .success(try await clients[node.name]!.status())
            } catch {
                result = .failure(error)
            }
            return Probe(node: node.name, address: node.address, result: result)
        }
    }

    /// How many agents a session talks to at once (status probes, file fetches).
    public static let agentConcurrency = 64

    /// Probes every agent and emits "X is reachable"; throws (exit code 3) naming every unreachable node
    /// before anything has been changed.
    public func preflight(sink: any RolloutEventSink, announce: Bool = true) async throws -> [String: AgentStatus] {
        try preflight(await probeAll(), sink: sink, announce: announce)
    }

    /// `preflight` over probes already made.
    func preflight(_ probes: [Probe], sink: any RolloutEventSink, announce: Bool) throws -> [String: AgentStatus] {
        var statuses: [String: AgentStatus] = [:]
        var unreachable: [String] = []
        for p in probes {
            switch p.result {
            case .success(let s):
                statuses[p.node] = s
                if announce { sink.emit(RolloutEvent(timestamp: Date(), node: p.node, phase: .preflight, status: .ok, message: "\(p.node) is reachable")) }
            case .failure(let e):
                unreachable.append("\(p.node) (\(p.address)): \(e.message)")
                sink.emit(RolloutEvent(timestamp: Date(), node: p.node, phase: .preflight, status: .failed, message: "\(p.node) is unreachable: \(e.message)"))
            }
        }
        if !unreachable.isEmpty {
            let failure = RolloutFailure(
                kind: .unreachable, step: nil, cause: "unreachable agents",
                message: "refusing to start: \(unreachable.count) agent(s) unreachable, nothing was changed:\n  "
                    + unreachable.joined(separator: "\n  "))
            sink.emit(RolloutEvent(timestamp: Date(), node: nil, phase: .preflight, status: .failed, message: failure.message))
            throw failure
        }
        return statuses
    }

    // MARK: Plan

    /// Renders every node's files and diffs them against what each agent has landed. Fetches file contents
    /// only for nodes whose hash differs.
    public func plan(statuses: [String: AgentStatus]) async throws -> (rendered: [String: [String: String]], plans: [NodePlan]) {
        let rendered = try render(statuses: statuses)
        if let flake = inventory.flake {
            let unlocked = nodeNames.filter { rendered[$0]?[FlakeLock.lockFile] == nil }
            if !unlocked.isEmpty {
                throw CoordinatorError(
                    .invalidInput,
                    "flake mode: no flake.lock for \(unlocked.joined(separator: ", ")): nk3 ships a lock with every "
                        + "flake (a node never locks nixpkgs by itself). Put one at \(flake.lockPath): `nk3 render` "
                        + "writes each node's flake.nix, and `nix flake lock` beside one writes the lock")
            }
        }
        var landed: [String: [String: String]] = [:]
        var fetch: [String] = []
        for node in nodeNames {
            guard let files = rendered[node] else { continue }
            if let s = statuses[node], Plan.isLanded(rendered: files, status: s) {
                landed[node] = files
            } else {
                fetch.append(node)
            }
        }
        // The landed files of every node that differs, fetched in parallel (one at a time took 2.3 s for 1,000
        // changed nodes: BENCHMARKS.md); a failure is reported for the first such node in inventory order.
        let clients = self.clients
        let fetched = await BoundedConcurrency.map(fetch, limit: Self.agentConcurrency) { node -> Result<[String: String], AgentClientError> in
            do throws(AgentClientError) {
                return .success(try await clients[node]!.files().files)
            } catch {
                return .failure(error)
            }
        }
        for (node, result) in zip(fetch, fetched) { landed[node] = try result.get() }
        return (rendered, Plan.compute(rendered: rendered, landed: landed, order: nodeNames))
    }

    /// Emits each node's plan: "X modified:" and its diff, or "No action needed on X".
    public static func emit(plans: [NodePlan], sink: any RolloutEventSink) {
        for p in plans {
            if p.needsApply {
                sink.emit(RolloutEvent(timestamp: Date(), node: p.node, phase: .plan, status: .info, message: "\(p.node) modified:"))
                for c in p.changes {
                    sink.emit(RolloutEvent(timestamp: Date(), node: p.node, phase: .plan, status: .diff, message: c.diff))
                }
            } else {
                sink.emit(RolloutEvent(timestamp: Date(), node: p.node, phase: .plan, status: .skipped, message: "No action needed on \(p.node)"))
            }
        }
    }

    // MARK: Rollouts

    /// What to roll out.
    public enum RolloutKind: Sendable, Hashable {
        /// Ship rendered configuration (only to nodes whose files differ).
        case apply(RebuildAction)
        /// Enforce the inventory's channel and rebuild every node with `--upgrade`.
        case upgrade(RebuildAction)
        /// Rolling reboot, no configuration change.
        case reboot
    }

    /// Builds the plan for `kind`. For `.apply` every node carries its rendered bundle: the rollout machine
    /// compares it with what the agent reports and says "No action needed" for a node already in sync — and
    /// resumes a node whose files landed but whose apply is still open (a killed or failed earlier run), which
    /// it can only do with the bundle in hand. (A plan without bundles is refused as invalid by
    /// `RolloutPlan.validationProblem`: every rerun after a partial rollout failed that way.)
    /// For `.upgrade` every node gets a bundle with `upgrade`.
    public func rolloutPlan(
        kind: RolloutKind, rendered: [String: [String: String]], options: RolloutPlan.Options
    ) -> RolloutPlan {
        let confirm = Int(inventory.timeouts.confirm.components.seconds)
        var nodes: [RolloutPlan.Node] = []
        for n in inventory.nodes {
            switch kind {
            case .reboot:
                nodes.append(.init(name: n.name, isServer: n.isServer, bundle: nil))
            case .apply(let action):
                let bundle = ApplyBundle(
                    files: rendered[n.name] ?? [:], action: action, confirmTimeoutSeconds: confirm,
                    flake: inventory.flake == nil ? nil : n.name)
                nodes.append(.init(name: n.name, isServer: n.isServer, bundle: bundle))
            case .upgrade(let action):
                nodes.append(
                    .init(
                        name: n.name, isServer: n.isServer,
                        bundle: ApplyBundle(
                            files: rendered[n.name] ?? [:], action: action, upgrade: true,
                            nixChannel: inventory.flake == nil ? Self.channelURL(inventory.nixChannel) : nil,
                            confirmTimeoutSeconds: confirm, flake: inventory.flake == nil ? nil : n.name)))
            }
        }
        return RolloutPlan(kind: kind == .reboot ? .reboot : .apply, nodes: nodes, options: options)
    }

    /// `nix_channel` as the Python tool used it: a bare name means `https://nixos.org/channels/NAME`.
    public static func channelURL(_ channel: String) -> String {
        if channel.contains("://") { return channel }
        return "https://nixos.org/channels/\(channel)"
    }

    /// Flake mode: an upgrade's lock replaces the `flake.lock` beside the inventory as soon as it is known, so the
    /// next `nk3 apply` ships the upgraded lock instead of taking every node back to the old nixpkgs, and a rerun of
    /// an interrupted upgrade renders the same lock.
    static func writeBack(lock: String, to path: String) -> RolloutNotice? {
        if let current = try? String(contentsOfFile: path, encoding: .utf8), current == lock { return nil }
        let rev = FlakeLock.locked(lock)?.revision.map { " (nixpkgs \($0.prefix(12)))" } ?? ""
        do {
            try SecureFiles.writeAtomically(Data(lock.utf8), to: path, permissions: 0o644)
            return RolloutNotice(
                node: nil, phase: .rebuild, status: .info,
                message: "wrote this upgrade's flake.lock\(rev) to \(path): the next nk3 apply ships it")
        } catch {
            return RolloutNotice(
                node: nil, phase: .rebuild, status: .warning,
                message: "could not write this upgrade's flake.lock to \(path) (\(error)): copy a node's lock there "
                    + "before the next nk3 apply, or it takes the nodes back to the old nixpkgs")
        }
    }

    /// Runs a rollout end to end: preflight, plan/diff output, then the rollout executor against the agents
    /// and the Kubernetes API. Throws `RolloutFailure` (exit code in `.exitCode`).
    public func rollout<C: Clock<Duration>>(
        _ kind: RolloutKind, options: RolloutPlan.Options, sink: any RolloutEventSink, clock: C,
        pollInterval: Duration = .milliseconds(100), holder: String = ClusterSession.defaultHolder(), noWait: Bool = false
    ) async throws -> RolloutSummary {
        // Every rollout leaves its events in the inventory's log directory (ClusterSession+Operate).
        let sink = loggingSink(sink)
        // Nodes an interrupted rollout was rebooting may still be down: wait for them first. The executor
        // announces reachability itself; this pass only refuses early and feeds the plan.
        let probes = try await probeAwaitingInterruptedReboots(sink: sink, clock: clock, pollInterval: pollInterval)
        let statuses = try preflight(probes, sink: sink, announce: false)
        var rendered: [String: [String: String]] = [:]
        var plans: [NodePlan] = []
        if kind != .reboot {
            (rendered, plans) = try await plan(statuses: statuses)
            // The diffs of changed nodes; "No action needed on X" comes from the rollout, which knows about
            // nodes an interrupted run left half-way.
            if case .apply = kind { Self.emit(plans: plans.filter(\.needsApply), sink: sink) }
        }
        let plan = rolloutPlan(kind: kind, rendered: rendered, options: options)
        return try await KubeClient.withClient(config: try kubeConfig(), options: kubeOptions, logger: logger) { kube in
            let cluster = rolloutCluster(kube: kube, clock: clock, pollInterval: pollInterval)
            var configuration = RolloutExecutor<C>.Configuration(
                holder: holder, pollInterval: pollInterval,
                timeouts: RolloutTimeouts(inventory.timeouts, agentCall: agentTimeout),
                startPolicy: startPolicy(noWait: noWait))
            if case .upgrade = kind, let flake = inventory.flake, FileManager.default.fileExists(atPath: flake.lockPath) {
                configuration.flakeLockPinned = { lock in Self.writeBack(lock: lock, to: flake.lockPath) }
            }
            let executor = RolloutExecutor(
                agents: agents, cluster: cluster, configuration: configuration, clock: clock, sink: sink, logger: logger)
            // The agents were probed just now (preflight): the executor takes those answers, not a second round.
            return try await executor.run(plan, probed: statuses)
        }
    }

    private func rolloutCluster<C: Clock<Duration>>(kube: KubeClient, clock: C, pollInterval: Duration) -> KubeRolloutCluster<C> {
        var cluster = KubeRolloutCluster(
            kube: kube, clusterName: inventory.clusterName, watchNamespaces: inventory.watchNamespaces,
            ceph: inventory.ceph.enabled ? (inventory.ceph.namespace, inventory.ceph.name ?? inventory.ceph.namespace) : nil,
            pollInterval: pollInterval, drainOptions: DrainOptions(evictRetryDelay: evictRetryDelay), clock: clock,
            logger: logger, healthRule: inventory.healthRule)
        cluster.apiServers = Dictionary(apiServers.map { ($0.node, $0.address) }, uniquingKeysWith: { a, _ in a })
        return cluster
    }

    /// A coordinator killed just after asking a node to reboot leaves progress saying so; a rerun started while
    /// that node is down would otherwise be refused as "unreachable". Waits (up to the reboot timeout, paced
    /// polls) for every unreachable node whose saved progress says it was being rebooted; refuses nothing
    /// itself — `preflight` afterwards does, if one is still down. Unreachable nodes without such progress
    /// are not waited for.
    /// Returns the probes of every agent, made again after such a wait.
    private func probeAwaitingInterruptedReboots<C: Clock<Duration>>(
        sink: any RolloutEventSink, clock: C, pollInterval: Duration
    ) async throws -> [Probe] {
        let probes = await probeAll()
        var down = Set(probes.filter { if case .failure = $0.result { return true } else { return false } }.map(\.node))
        guard !down.isEmpty else { return probes }
        let progress = try? await KubeClient.withClient(config: try kubeConfig(), options: kubeOptions, logger: logger) { kube in
            try await rolloutCluster(kube: kube, clock: clock, pollInterval: pollInterval).loadProgress()
        }
        let rebooting = down.filter { [.reboot, .waitReachable].contains(progress?.inFlight[$0]?.step) }
        guard !rebooting.isEmpty else { return probes }
        down = rebooting
        let timeout = inventory.timeouts.reboot
        for node in down.sorted() {
            sink.emit(
                RolloutEvent(
                    timestamp: Date(), node: node, phase: .preflight, status: .info,
                    message: "\(node) is down: the interrupted rollout was rebooting it; waiting up to "
                        + "\(RolloutDurations.describe(timeout)) for it to come back"))
        }
        let start = clock.now
        while !down.isEmpty, start.duration(to: clock.now) < timeout {
            try await clock.sleep(
                until: clock.now.advanced(by: PollPace.delay(waited: start.duration(to: clock.now), interval: pollInterval)),
                tolerance: nil)
            for node in down.sorted() {
                if (try? await clients[node]!.status()) != nil { down.remove(node) }
            }
        }
        return await probeAll()
    }

    /// Whether each node is cordoned, from one node list of the Kubernetes API (the status table's CORDONED
    /// column); empty when the API cannot be asked (the column then shows `?`).
    public func cordonStates() async -> [String: Bool] {
        guard let config = try? kubeConfig(),
            let nodes = try? await KubeClient.withClient(config: config, options: kubeOptions, logger: logger, { try await $0.listNodes() })
        else { return [:] }
        var cordoned: [String: Bool] = [:]
        for n in nodes { if let name = n.metadata.name { cordoned[name] = n.isUnschedulable } }
        return cordoned
    }

    /// `user@host/pid`: who holds the rollout Lease.
    public static func defaultHolder() -> String {
        let env = ProcessInfo.processInfo.environment
        var user = env["USER"] ?? env["LOGNAME"]
        if user == nil, let pw = getpwuid(getuid()), let name = pw.pointee.pw_name { user = String(cString: name) }
        return "\(user ?? "uid\(getuid())")@\(ProcessInfo.processInfo.hostName)/\(getpid())"
    }
}
