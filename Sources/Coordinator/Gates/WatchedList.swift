import Foundation
import NK3Kube
import Synchronization

/// One collection as the API has it — every node, or the DaemonSets or Deployments of one namespace — behind a gate:
/// a list, then a watch from the list's resourceVersion (docs/UPSTREAM.md#watch), as a client-go informer keeps its
/// cache (client-go tools/cache/reflector.go `ListAndWatch`; "Efficient detection of changes",
/// https://kubernetes.io/docs/reference/using-api/api-concepts/#efficient-detection-of-changes).
///
/// A lone gate (`keepWatching` false) lists on its first check, since most gate waits pass at once. If it has to
/// wait, the next check lists with the list's resourceVersion and starts a watch from it, and later checks read the
/// watched view: a gate waiting minutes on a large cluster no longer lists and decodes every object about ten times
/// a second. Once a check passes, the gate calls `passed()`, which ends the watch, so the next check — the first of
/// the next wait, for a gate used again — lists afresh. A watched view lags a write by the event's way through the
/// API; a caller that writes and then waits again must not be answered from before its write (the gate bench caught
/// exactly that). The watch also ends when the gate is dropped. If the server ends it (timeoutSeconds), fails it, or
/// answers 410 Expired, the next check lists again and watches anew, as a client-go reflector re-lists. A list
/// without a resourceVersion means a list on every check.
///
/// A rollout keeps one watch per collection for all its gate waits instead (`keepWatching`): listing on every gate
/// round made the coordinator's requests and work per node grow with the fleet (BENCHMARKS.md). Why that is safe for
/// each collection is said where the rollout makes them (`KubeRolloutCluster`).
final class WatchedList<Item: Codable & Sendable>: Sendable {
    /// Where the objects come from.
    struct Source: Sendable {
        /// A plain list (a lone gate's first check).
        var list: @Sendable () async throws -> [Item]
        /// A list and its `metadata.resourceVersion`, to watch from (nil: the server gave none).
        var listForWatch: @Sendable () async throws -> ([Item], resourceVersion: String?)
        /// The changes after a resourceVersion.
        var watch: @Sendable (String) -> AsyncThrowingStream<WatchEvent<Item>, any Error>
        /// An object's key in the view (its name: a view holds one namespace, or a cluster-scoped resource).
        var key: @Sendable (Item) -> String
    }

    private struct State {
        var checks = 0
        /// The watched view (by key), nil while no watch runs.
        var items: [String: Item]?
        var task: Task<Void, Never>?
        /// Tells the current watch from an ended one.
        var generation = 0
    }

    private let source: Source
    private let state = Mutex(State())
    /// Watch from the first check and keep watching after a pass (a rollout's gates); false: list first, and
    /// watch only while a gate waits.
    let keepWatching: Bool

    init(_ source: Source, keepWatching: Bool = false) {
        self.source = source
        self.keepWatching = keepWatching
    }

    // Cancelled outside the lock: cancellation runs the watch's termination handlers synchronously.
    deinit { state.withLock { $0.task }?.cancel() }

    /// Whether a watch feeds the view now (tests).
    var isWatching: Bool { state.withLock { $0.items != nil } }

    /// The object `key` as the watched view has it now; nil when no watch runs or the view has no such object.
    /// Makes no request: callers that need an answer fall back to a GET.
    func cached(_ key: String) -> Item? { state.withLock { $0.items?[key] } }

    /// The gate passed: end the watch and start over (the next check lists).
    func passed() {
        guard !keepWatching else { return }
        let task = state.withLock { s -> Task<Void, Never>? in
            defer { s = State(generation: s.generation + 1) }
            return s.task
        }
        task?.cancel()
    }

    /// The objects as the API has them now: the watched view, or a fresh list.
    func items() async throws -> [Item] {
        let (watched, first) = state.withLock { s -> ([Item]?, Bool) in
            s.checks += 1
            return (s.items.map { Array($0.values) }, s.checks == 1)
        }
        if let watched { return watched }
        if first, !keepWatching { return try await source.list() }
        let (list, resourceVersion) = try await source.listForWatch()
        if let resourceVersion { startWatch(from: resourceVersion, over: list) }
        return list
    }

    private func startWatch(from resourceVersion: String, over list: [Item]) {
        state.withLock { s in
            guard s.task == nil else { return }
            s.generation += 1
            let generation = s.generation
            s.items = Dictionary(list.map { (source.key($0), $0) }, uniquingKeysWith: { _, later in later })
            // Created here, so the request starts now; the changes since the list come first (replayed from the
            // list's resourceVersion), so nothing between the list and the watch is missed.
            let events = source.watch(resourceVersion)
            s.task = Task { [weak self] in
                do {
                    for try await event in events {
                        guard let self, self.apply(event, generation) else { break }
                    }
                } catch {
                    // Ended by the server, an error or cancellation: the next check lists again.
                }
                self?.endWatch(generation)
            }
        }
    }

    /// Applies one event to the view; false when the watch must end (an ERROR event, e.g. 410 Expired).
    private func apply(_ event: WatchEvent<Item>, _ generation: Int) -> Bool {
        state.withLock { s in
            guard s.generation == generation, s.items != nil else { return false }
            switch event {
            case .added(let item), .modified(let item): s.items?[source.key(item)] = item
            case .deleted(let item): s.items?[source.key(item)] = nil
            case .bookmark: break
            case .error: return false
            }
            return true
        }
    }

    private func endWatch(_ generation: Int) {
        state.withLock { s in
            guard s.generation == generation else { return }
            s.items = nil
            s.task = nil
        }
    }
}

/// The nodes behind the "kubelet ready on every node" gate (`WatchedList`).
///
/// A rollout keeps one node watch for all its gate waits: listing every node about twice per node rolled made the
/// coordinator's work per node grow with the fleet (at 300 nodes three quarters of its CPU decoded node lists;
/// BENCHMARKS.md). That is safe there because nk3's own writes during a rollout (cordon, uncordon, annotations) never
/// change a Ready condition, the one thing this gate reads, and a node's return is proven before the gates run
/// (`KubeRolloutCluster.nodeReadiness`: the node's Ready from its new boot, in this view or by a GET): a view that
/// lags shows a node not ready a moment longer, or as ready as that proof found it.
typealias NodeWatch = WatchedList<Node>

extension WatchedList where Item == Node {
    convenience init(_ kube: any KubeAPI, keepWatching: Bool = false) {
        self.init(
            Source(
                list: { try await kube.listNodes() }, listForWatch: { try await kube.listNodesForWatch() },
                watch: { kube.watchNodes(from: $0) }, key: { $0.name }),
            keepWatching: keepWatching)
    }

    /// The nodes as the API has them now: the watched view, or a fresh list.
    func nodes() async throws -> [Node] { try await items() }
}

/// The DaemonSets and Deployments of a rollout's watched namespaces: one list and one watch per namespace and kind
/// for the whole rollout (`WatchedList` with `keepWatching`), instead of a list of each on every gate round. Only
/// namespaced `list` and `watch` are needed, on the namespaces the inventory names.
///
/// Safe to keep for every gate wait, as the node watch is: nk3 writes no DaemonSet or Deployment. Their status is
/// written by their controllers, which see nk3's writes (evictions, cordons) only through their own watches, so
/// a list just after such a write can be as far behind as this view; the view adds only the event's way to nk3
/// (milliseconds), and nk3 never checks these gates right after a write of its own that they would have to show:
/// a node's evictions are followed by its whole reboot and its return before its gates run.
final class WorkloadWatches: Sendable {
    /// By namespace.
    let daemonSets: [String: WatchedList<DaemonSet>]
    /// By namespace.
    let deployments: [String: WatchedList<Deployment>]

    init(_ kube: any KubeAPI, namespaces: [String]) {
        var daemonSets: [String: WatchedList<DaemonSet>] = [:]
        var deployments: [String: WatchedList<Deployment>] = [:]
        for ns in Set(namespaces) {
            daemonSets[ns] = WatchedList(
                .init(
                    list: { try await kube.listDaemonSets(namespace: ns) },
                    listForWatch: { try await kube.listDaemonSetsForWatch(namespace: ns) },
                    watch: { kube.watchDaemonSets(namespace: ns, from: $0) }, key: { $0.name }),
                keepWatching: true)
            deployments[ns] = WatchedList(
                .init(
                    list: { try await kube.listDeployments(namespace: ns) },
                    listForWatch: { try await kube.listDeploymentsForWatch(namespace: ns) },
                    watch: { kube.watchDeployments(namespace: ns, from: $0) }, key: { $0.name }),
                keepWatching: true)
        }
        self.daemonSets = daemonSets
        self.deployments = deployments
    }
}
