import Foundation
import Logging

/// How `drain` behaves. The defaults are `kubectl drain --ignore-daemonsets --delete-emptydir-data`,
/// always under a timeout (kubectl drain's `--timeout` defaults to 0, forever: kubectl pkg/cmd/drain/drain.go).
public struct DrainOptions: Sendable {
    /// The whole drain (evictions and waiting for pods to be gone) must finish within this.
    public var timeout: Duration
    /// First wait after a PDB's 429 (doubled per refusal, with jitter, capped at `maxBackoff`).
    public var initialBackoff: Duration
    /// Cap on the wait between eviction attempts (kubectl waits a fixed 5 s).
    public var maxBackoff: Duration
    /// How often to check that an evicted pod is gone (kubectl: 1 s; here fast, docs/UPSTREAM.md#eviction).
    public var pollInterval: Duration
    /// `deleteOptions.gracePeriodSeconds`; nil uses each pod's own.
    public var gracePeriodSeconds: Int?
    /// Evict pods that declare no controller (kubectl `--force`). Off: such pods make the drain fail
    /// before anything is evicted.
    public var force: Bool

    /// Makes options.
    public init(
        timeout: Duration = .seconds(300), initialBackoff: Duration = .milliseconds(100),
        maxBackoff: Duration = .seconds(5), pollInterval: Duration = .milliseconds(100), gracePeriodSeconds: Int? = nil,
        force: Bool = false
    ) {
        self.timeout = timeout
        self.initialBackoff = initialBackoff
        self.maxBackoff = maxBackoff
        self.pollInterval = pollInterval
        self.gracePeriodSeconds = gracePeriodSeconds
        self.force = force
    }
}

/// What a drain did.
public struct DrainReport: Sendable, Hashable {
    /// Pods evicted and gone (`namespace/name`).
    public var evicted: [String] = []
    /// DaemonSet-managed pods left in place.
    public var skippedDaemonSet: [String] = []
    /// Mirror (static) pods left in place.
    public var skippedMirror: [String] = []
    /// Evicted pods that had emptyDir data (deleted with it, like `--delete-emptydir-data`).
    public var emptyDirDeleted: [String] = []
    /// How many PDB refusals (429) were waited out.
    public var budgetRefusals: Int = 0
    /// Makes an empty report.
    public init() {}
}

/// The pure part of drain: which pods to evict (docs/UPSTREAM.md#drain, `kubectl drain` filters, with
/// `--ignore-daemonsets --delete-emptydir-data`).
public enum DrainPlanner {
    /// The decision for one pod.
    public enum Decision: Sendable, Hashable {
        /// Evict it.
        case evict(emptyDir: Bool)
        /// Managed by a DaemonSet: left running (it would be recreated on the node anyway).
        case skipDaemonSet
        /// A mirror pod: the kubelet owns it.
        case skipMirror
        /// Declares no controller and `force` is off: the drain must not start.
        case refuseUnreplicated
    }

    /// Decides for one pod, filters in kubectl's order.
    public static func decide(_ pod: Pod, force: Bool) -> Decision {
        if pod.isDaemonSetPod && !pod.isTerminal { return .skipDaemonSet }
        if pod.isMirrorPod { return .skipMirror }
        if pod.isTerminal { return .evict(emptyDir: false) }
        if pod.metadata.controller == nil && !force { return .refuseUnreplicated }
        return .evict(emptyDir: pod.hasEmptyDir)
    }

    /// The PDB name in a 429's cause: "The disruption budget web-pdb needs 2 healthy pods and has 2 currently"
    /// (docs/UPSTREAM.md#eviction).
    public static func budgetName(in error: KubeError) -> String? {
        for cause in error.status?.details?.causes ?? [] {
            guard let m = cause.message else { continue }
            for prefix in ["The disruption budget "] {
                if let r = m.range(of: prefix) {
                    let rest = m[r.upperBound...]
                    let name = rest.prefix { $0 != " " }
                    if !name.isEmpty { return String(name) }
                }
            }
        }
        return nil
    }
}

extension KubeAPI {
    /// Drains `node` like `kubectl drain --ignore-daemonsets --delete-emptydir-data`: evicts every pod
    /// through the Eviction API (docs/UPSTREAM.md#eviction), waits out PodDisruptionBudget 429s with jittered
    /// backoff, then waits until each evicted pod is gone (404, or recreated with a new uid) — all within
    /// `options.timeout`. A timeout throws `.timeout` naming the PDB that blocked (in the message and in
    /// `blockingPodDisruptionBudget`). The caller cordons first (see `cordon(node:by:reason:)`).
    public func drain<C: Clock<Duration>>(
        node: String, options: DrainOptions = DrainOptions(), clock: C, logger: Logger
    ) async throws -> DrainReport {
        let deadline = clock.now.advanced(by: options.timeout)
        let pods = try await listPods(onNode: node)
        var report = DrainReport()
        var toEvict: [Pod] = []
        var refused: [String] = []
        for pod in pods {
            switch DrainPlanner.decide(pod, force: options.force) {
            case .skipDaemonSet: report.skippedDaemonSet.append(pod.qualifiedName)
            case .skipMirror: report.skippedMirror.append(pod.qualifiedName)
            case .refuseUnreplicated: refused.append(pod.qualifiedName)
            case .evict(let emptyDir):
                toEvict.append(pod)
                if emptyDir { report.emptyDirDeleted.append(pod.qualifiedName) }
            }
        }
        if !refused.isEmpty {
            // docs/UPSTREAM.md#drain: errors are aggregated and the drain aborts before it evicts anything.
            throw KubeError(
                .refused,
                "cannot drain \(node): pods that declare no controller would be lost: \(refused.joined(separator: ", ")) (delete them, give them a controller, or drain with force)")
        }
        let results = try await withThrowingTaskGroup(of: (String, Int).self) { group in
            for pod in toEvict {
                group.addTask {
                    let refusals = try await self.evictAndWait(pod, node: node, options: options, deadline: deadline, clock: clock, logger: logger)
                    return (pod.qualifiedName, refusals)
                }
            }
            var out: [(String, Int)] = []
            for try await r in group { out.append(r) }
            return out
        }
        report.evicted = results.map(\.0).sorted()
        report.budgetRefusals = results.reduce(0) { $0 + $1.1 }
        return report
    }

    private func evictAndWait<C: Clock<Duration>>(
        _ pod: Pod, node: String, options: DrainOptions, deadline: C.Instant, clock: C, logger: Logger
    ) async throws -> Int {
        var refusals = 0
        var backoff = options.initialBackoff
        var lastBlock: (pdb: String?, message: String)? = nil
        evicting: while true {
            do {
                try await evictPod(namespace: pod.namespace, name: pod.name, gracePeriodSeconds: options.gracePeriodSeconds)
                break evicting
            } catch let error as KubeError where error.code == .notFound {
                return refusals  // kubectl pkg/drain/drain.go `evictPods`: a 404 on eviction counts as done
            } catch let error as KubeError where error.code == .tooManyRequests {
                refusals += 1
                var pdb = DrainPlanner.budgetName(in: error).map { "\(pod.namespace)/\($0)" }
                if pdb == nil { pdb = try? await self.budgetCovering(pod) }
                lastBlock = (pdb, error.status?.details?.causes?.first?.message ?? error.message)
                logger.info(
                    "eviction refused by a disruption budget, will retry",
                    metadata: ["kube.pod": "\(pod.qualifiedName)", "kube.pdb": "\(pdb ?? "?")", "kube.node": "\(node)"])
                var delay = min(backoff, options.maxBackoff) * Double.random(in: 0.5...1.0)
                if let ra = error.retryAfterSeconds, ra > 0 { delay = min(.seconds(ra), options.maxBackoff) }
                backoff = backoff * 2
                if clock.now.advanced(by: delay) >= deadline {
                    // Try one last time at the deadline rather than giving up early.
                    let remaining = clock.now.duration(to: deadline)
                    if remaining > .zero { try await clock.sleep(for: remaining) }
                    do {
                        try await evictPod(namespace: pod.namespace, name: pod.name, gracePeriodSeconds: options.gracePeriodSeconds)
                        break evicting
                    } catch let e as KubeError where e.code == .notFound {
                        return refusals
                    } catch let e as KubeError where e.code == .tooManyRequests {
                        refusals += 1
                        throw drainTimeout(node: node, pod: pod, options: options, block: lastBlock, refusals: refusals)
                    }
                }
                try await clock.sleep(for: delay)
            }
        }
        // Wait until the pod is gone, or recreated under the same name with a new uid (kubectl pkg/drain/drain.go
        // `waitForDelete`).
        let evicted = clock.now
        while true {
            do {
                let current = try await getPod(namespace: pod.namespace, name: pod.name)
                if current.metadata.uid != pod.metadata.uid { return refusals }
            } catch let error as KubeError where error.code == .notFound {
                return refusals
            }
            let delay = PollPace.delay(waited: evicted.duration(to: clock.now), interval: options.pollInterval)
            if clock.now.advanced(by: delay) > deadline {
                throw KubeError(
                    .timeout,
                    "drain of \(node) timed out after \(options.timeout): pod \(pod.qualifiedName) was evicted but is still terminating")
            }
            try await clock.sleep(for: delay)
        }
    }

    private func drainTimeout(
        node: String, pod: Pod, options: DrainOptions, block: (pdb: String?, message: String)?, refusals: Int
    ) -> KubeError {
        let who = block?.pdb.map { "PodDisruptionBudget \($0)" } ?? "a PodDisruptionBudget"
        return KubeError(
            .timeout,
            "drain of \(node) timed out after \(options.timeout): eviction of \(pod.qualifiedName) was refused \(refusals) times by \(who) (\(block?.message ?? "")); wait for its pods to become healthy elsewhere, or relax the budget",
            httpStatus: 429, blockingPodDisruptionBudget: block?.pdb)
    }

    /// The PDB whose selector matches `pod` (`namespace/name`), for 429s whose cause does not name one.
    private func budgetCovering(_ pod: Pod) async throws -> String? {
        let pdbs = try await listPodDisruptionBudgets(namespace: pod.namespace)
        let labels = pod.metadata.labels ?? [:]
        return pdbs.first { $0.spec?.selector?.matches(labels) ?? false }.map { "\(pod.namespace)/\($0.name)" }
    }
}
