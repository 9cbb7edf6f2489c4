import Foundation

/// How many nodes a rollout can have in flight, as the ETA needs it: the disruption budget, and among the nodes
/// in flight at most `serverLimit` k3s servers (etcd quorum) — the rules `RolloutScheduler` enforces
/// (`RolloutPlan.Options.disruptionBudget`, `RolloutPlan.maxServersDown`).
public struct RolloutCapacity: Sendable, Hashable {
    /// Most nodes in flight (`--disruption-budget`).
    public var budget: Int
    /// The k3s servers among the nodes.
    public var servers: Set<String>
    /// Most servers in flight; at least 1 (a rollout that may take down no server refuses servers up front).
    public var serverLimit: Int

    /// A capacity; `budget` and `serverLimit` below 1 count as 1.
    public init(budget: Int = 1, servers: Set<String> = [], serverLimit: Int = 1) {
        self.budget = max(budget, 1)
        self.servers = servers
        self.serverLimit = max(serverLimit, 1)
    }

    /// The capacity of `plan`: its budget, its servers, and the servers it may take down at once (one with
    /// `--allow-quorum-loss` where quorum allows none, as the machine does).
    public init(plan: RolloutPlan) {
        self.init(
            budget: plan.options.disruptionBudget, servers: Set(plan.nodes.filter(\.isServer).map(\.name)),
            serverLimit: plan.maxServersDown)
    }
}

/// The time a rollout still needs, estimated from the node times measured so far. Pure and exact: the nodes
/// still to start are placed, in start order, as `RolloutScheduler` places them — a node starts when fewer than
/// `budget` nodes are in flight and, for a server, fewer than `serverLimit` servers — and each takes the mean
/// time measured for its role (servers, other nodes; the mean of all where its role has none yet). A node in
/// flight takes what is left of its mean (nothing, once it has run longer). The measured times are whole node
/// times, from a node's start to its confirm, so they already hold the waits for the other nodes in flight
/// (gates run only while no node is disrupted), which is why a batch of nodes advances together.
public enum RolloutETA {
    /// Seconds until the last node is done.
    /// - Parameters:
    ///   - inFlight: nodes in flight and the seconds each has run (0 for one still held before its start).
    ///   - pending: nodes not started yet, in start order (`RolloutPlan.order()`).
    ///   - measured: the whole times of the nodes done so far (node → seconds); none → nil.
    public static func remaining(
        inFlight: [(node: String, elapsed: TimeInterval)], pending: [String], measured: [String: TimeInterval],
        capacity: RolloutCapacity
    ) -> TimeInterval? {
        guard !measured.isEmpty else { return nil }
        func mean(_ times: [TimeInterval]) -> TimeInterval? { times.isEmpty ? nil : times.reduce(0, +) / Double(times.count) }
        let all = mean(Array(measured.values))!
        let servers = mean(measured.filter { capacity.servers.contains($0.key) }.map(\.value)) ?? all
        let others = mean(measured.filter { !capacity.servers.contains($0.key) }.map(\.value)) ?? all
        func duration(_ node: String) -> TimeInterval { capacity.servers.contains(node) ? servers : others }

        // List scheduling in time order: `running` holds each node in flight and when it ends.
        var running = inFlight.map { (node: $0.node, end: max(duration($0.node) - $0.elapsed, 0)) }
        var queue = pending
        var now: TimeInterval = 0
        while !queue.isEmpty {
            while running.count < capacity.budget {
                let serversRunning = running.filter { capacity.servers.contains($0.node) }.count
                guard let i = queue.firstIndex(where: { !capacity.servers.contains($0) || serversRunning < capacity.serverLimit })
                else { break }
                let node = queue.remove(at: i)
                running.append((node, now + duration(node)))
            }
            guard !queue.isEmpty, let next = running.map(\.end).min() else { break }
            now = max(now, next)
            running.removeAll { $0.end <= now }
        }
        return running.map(\.end).max().map { max($0, now) } ?? now
    }
}

extension Inventory {
    /// What the live view needs to estimate a rollout with `options`: the nodes in the order they start
    /// (`RolloutPlan.order()`) and how many may be in flight (`RolloutCapacity`).
    public func liveViewLayout(options: RolloutPlan.Options) -> (nodes: [String], capacity: RolloutCapacity) {
        let plan = RolloutPlan(kind: .reboot, nodes: nodes.map { .init(name: $0.name, isServer: $0.isServer, bundle: nil) }, options: options)
        return (plan.order(), RolloutCapacity(plan: plan))
    }
}
