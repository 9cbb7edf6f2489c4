import Foundation
import NK3Kube
import Synchronization

/// The nodes behind the "kubelet ready on every node" gate. The first check lists them, since most gate waits pass
/// at once. If the gate has to wait, the next check lists them with the list's resourceVersion and starts a watch
/// from it (docs/UPSTREAM.md#watch), and later checks read the watched view: a gate waiting minutes on a large cluster
/// no longer lists and decodes every node about ten times a second.
///
/// The watch only serves a gate that is failing: once a check passes, the gate calls `passed()`, which ends the
/// watch, so the next check — the first of the next wait, for a gate used again — lists afresh. A watched view
/// lags a write by the event's way through the API; a caller that writes and then waits again must not be
/// answered from before its write (the gate bench caught exactly that). The watch also ends when the gate is
/// dropped. If the server ends it (timeoutSeconds), fails it, or answers 410 Expired, the next check lists again
/// and watches anew, as a client-go reflector re-lists. A list without a resourceVersion means a list on every check.
///
/// A rollout keeps one watch for all its gate waits instead (`keepWatching`, as a client-go informer keeps its
/// cache): listing every node about twice per node rolled made the coordinator's work per node grow with the
/// fleet (at 300 nodes three quarters of its CPU decoded node lists; BENCHMARKS.md). That is safe there because
/// nk3's own writes during a rollout (cordon, uncordon, annotations) never change a Ready condition, the one thing
/// this gate reads, and a node's return is proven by a GET of that node (`nodeReadiness`) before the gates run: a
/// view that lags shows a node not ready a moment longer, or as ready as the GET found it.
final class NodeWatch: Sendable {
    private struct State {
        var checks = 0
        /// The watched view (by name), nil while no watch runs.
        var nodes: [String: Node]?
        var task: Task<Void, Never>?
        /// Tells the current watch from an ended one.
        var generation = 0
    }

    private let kube: any KubeAPI
    private let state = Mutex(State())
    /// Watch from the first check and keep watching after a pass (a rollout's gates); false: list first, and
    /// watch only while a gate waits.
    let keepWatching: Bool

    init(_ kube: any KubeAPI, keepWatching: Bool = false) {
        self.kube = kube
        self.keepWatching = keepWatching
    }

    // Cancelled outside the lock: cancellation runs the watch's termination handlers synchronously.
    deinit { state.withLock { $0.task }?.cancel() }

    /// Whether a watch feeds the view now (tests).
    var isWatching: Bool { state.withLock { $0.nodes != nil } }

    /// The gate passed: end the watch and start over (the next check lists).
    func passed() {
        guard !keepWatching else { return }
        let task = state.withLock { s -> Task<Void, Never>? in
            defer { s = State(generation: s.generation + 1) }
            return s.task
        }
        task?.cancel()
    }

    /// The nodes as the API has them now: the watched view, or a fresh list.
    func nodes() async throws -> [Node] {
        let (watched, first) = state.withLock { s -> ([Node]?, Bool) in
            s.checks += 1
            return (s.nodes.map { Array($0.values) }, s.checks == 1)
        }
        if let watched { return watched }
        if first, !keepWatching { return try await kube.listNodes() }
        let (list, resourceVersion) = try await kube.listNodesForWatch()
        if let resourceVersion { startWatch(from: resourceVersion, over: list) }
        return list
    }

    private func startWatch(from resourceVersion: String, over list: [Node]) {
        state.withLock { s in
            guard s.task == nil else { return }
            s.generation += 1
            let generation = s.generation
            s.nodes = Dictionary(list.map { ($0.name, $0) }, uniquingKeysWith: { _, later in later })
            // Created here, so the request starts now; the changes since the list come first (replayed from the
            // list's resourceVersion), so nothing between the list and the watch is missed.
            let events = kube.watchNodes(from: resourceVersion)
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
    private func apply(_ event: WatchEvent<Node>, _ generation: Int) -> Bool {
        state.withLock { s in
            guard s.generation == generation, s.nodes != nil else { return false }
            switch event {
            case .added(let node), .modified(let node): s.nodes?[node.name] = node
            case .deleted(let node): s.nodes?[node.name] = nil
            case .bookmark: break
            case .error: return false
            }
            return true
        }
    }

    private func endWatch(_ generation: Int) {
        state.withLock { s in
            guard s.generation == generation else { return }
            s.nodes = nil
            s.task = nil
        }
    }
}
