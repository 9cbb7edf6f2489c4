import Foundation

/// The concurrency rules of a rollout (documented on `RolloutPlan.Options.disruptionBudget`), apart from
/// what each node does: which node starts next, when a node may enter disruption, and when the health gates
/// run. Pure bookkeeping that `RolloutMachine` consults; it never looks inside a node's pipeline.
///
/// - at most `budget` nodes are in flight (started, not yet finished), and at most `serverLimit` of them are
///   k3s servers (etcd quorum);
/// - a node starts only while the cluster is *verified*: the gates passed and no node entered disruption
///   since (so "gates before each new node" holds with any budget);
/// - gates run only while no node is disrupted, and a node enters disruption only while no gate run is due
///   or running — so a gate run never sees a node nk3 is still taking down, and never starves.
/// - once a start is refused (`--no-wait` outside the maintenance window) no node starts any more; the nodes in
///   flight finish, and the rollout stops between nodes.
struct RolloutScheduler: Sendable, Hashable {
    /// The processing order (`RolloutPlan.order()`).
    let order: [String]
    /// Most nodes in flight.
    let budget: Int
    /// k3s servers of the plan.
    let servers: Set<String>
    /// Most servers in flight (0 refuses every server).
    var serverLimit: Int
    /// Nodes waiting to start.
    private(set) var pending: Set<String> = []
    /// Nodes in flight, in start order.
    private(set) var inFlight: [String] = []
    /// The gates passed and no node entered disruption since.
    private(set) var verified = true
    /// The gates must pass before any node is touched.
    private(set) var initialGatesPending = false
    /// A gate run was handed out and its answer is outstanding.
    private(set) var gatesRunning = false
    /// The nodes waiting on the running gate run.
    private(set) var gateNodes: [String] = []
    /// No node starts any more (the rollout stops once the nodes in flight have finished).
    private(set) var stopped = false

    /// A scheduler for `order`; every node starts neither pending nor in flight.
    init(order: [String], budget: Int, servers: Set<String>, serverLimit: Int) {
        self.order = order
        self.budget = budget
        self.servers = servers
        self.serverLimit = serverLimit
    }

    /// `name` waits to start.
    mutating func addPending(_ name: String) { pending.insert(name) }

    /// `name` is in flight already (a resumed node).
    mutating func addInFlight(_ name: String) { inFlight.append(name) }

    /// Whether `name` is pending or in flight.
    func isToBeTouched(_ name: String) -> Bool { pending.contains(name) || inFlight.contains(name) }

    /// Asks for the gates before the first node (unless skipped), and counts the cluster as verified.
    mutating func beginWithGates(_ initialGates: Bool) {
        initialGatesPending = initialGates
        verified = true
    }

    /// The next node that may start now, if any; it is then in flight.
    mutating func startNext() -> String? {
        guard !stopped, !pending.isEmpty, verified, !gatesRunning, !initialGatesPending, inFlight.count < budget else {
            return nil
        }
        let serversInFlight = inFlight.filter(servers.contains).count
        guard let next = order.first(where: { pending.contains($0) && (!servers.contains($0) || serversInFlight < serverLimit) })
        else { return nil }
        pending.remove(next)
        inFlight.append(next)
        return next
    }

    /// `name` left the pipeline.
    mutating func finished(_ name: String) { inFlight.removeAll { $0 == name } }

    /// `name` was started but did not take its first step: it waits again, and no node starts from now on.
    mutating func stopStarting(unstarting name: String) {
        inFlight.removeAll { $0 == name }
        pending.insert(name)
        stopped = true
    }

    /// Whether a node may enter disruption now (no gate run is due or running). `nodesAtGates`: some node
    /// in flight waits at its gates step.
    func mayEnterDisruption(nodesAtGates: Bool) -> Bool { !(gatesRunning || initialGatesPending || nodesAtGates) }

    /// A node entered disruption: the cluster is no longer verified.
    mutating func enteredDisruption() { verified = false }

    /// Whether to start a gate run now, for the nodes `waiting` at their gates step; it is then running.
    mutating func startGates(waiting: [String], anyInDisruption: Bool) -> Bool {
        let wantStart = !stopped && !verified && !pending.isEmpty && inFlight.count < budget
        guard !gatesRunning, !anyInDisruption, initialGatesPending || !waiting.isEmpty || wantStart else { return false }
        gatesRunning = true
        gateNodes = waiting
        return true
    }

    /// The gate run passed: the cluster is verified; returns the nodes that waited on it.
    mutating func gatesPassed() -> [String] {
        gatesRunning = false
        initialGatesPending = false
        verified = true
        defer { gateNodes = [] }
        return gateNodes
    }

    /// Nothing pending, in flight or running.
    var isIdle: Bool { pending.isEmpty && inFlight.isEmpty && !gatesRunning }
}
