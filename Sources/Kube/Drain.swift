import Foundation
import Logging

/// How `drain` behaves. The defaults are `kubectl drain --ignore-daemonsets --delete-emptydir-data`,
/// always under a timeout (kubectl drain's `--timeout` defaults to 0, forever: kubectl pkg/cmd/drain/drain.go).
public struct DrainOptions: Sendable {
    /// The whole drain (evictions and waiting for pods to be gone) must finish within this.
    public var timeout: Duration
    /// The wait before evicting again after a 429 that names no `Retry-After`, or a 403 NamespaceTerminating:
    /// kubectl's `EvictErrorRetryDelay`, 5 s (kubernetes/kubectl pkg/drain/drain.go `evictPods`).
    public var evictRetryDelay: Duration
    /// The longest `Retry-After` honoured (a longer one is waited for this long).
    public var maxRetryAfter: Duration
    /// The least time between two looks at a pod that is still terminating after its watch ended (kubectl polls
    /// every 1 s; nk3 watches and looks again only when a watch ends).
    public var pollInterval: Duration
    /// `deleteOptions.gracePeriodSeconds`; nil uses each pod's own.
    public var gracePeriodSeconds: Int?
    /// kubectl `--force`: evict pods that declare no controller, and pods whose DaemonSet is gone. Off: such
    /// pods make the drain refuse before anything is evicted.
    public var force: Bool

    /// Makes options.
    public init(
        timeout: Duration = .seconds(300), evictRetryDelay: Duration = .seconds(5), maxRetryAfter: Duration = .seconds(60),
        pollInterval: Duration = .seconds(1), gracePeriodSeconds: Int? = nil, force: Bool = false
    ) {
        self.timeout = timeout
        self.evictRetryDelay = evictRetryDelay
        self.maxRetryAfter = maxRetryAfter
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
    /// Pods whose DaemonSet is gone, evicted because `force` is on (kubectl warns the same way).
    public var orphanedDaemonSetEvicted: [String] = []
    /// How many PDB refusals (429) were waited out.
    public var budgetRefusals: Int = 0
    /// Makes an empty report.
    public init() {}
}

/// The pure part of drain: which pods to evict (kubernetes/kubectl pkg/drain/filters.go, with
/// `--ignore-daemonsets --delete-emptydir-data`).
public enum DrainPlanner {
    /// The decision for one pod.
    public enum Decision: Sendable, Hashable {
        /// Evict it.
        case evict(emptyDir: Bool)
        /// Managed by a DaemonSet that exists: left running (it would be recreated on the node anyway).
        case skipDaemonSet
        /// A mirror pod: the kubelet owns it.
        case skipMirror
        /// Declares no controller and `force` is off: the drain must not start.
        case refuseUnreplicated
        /// Its DaemonSet is gone and `force` is off: the drain must not start.
        case refuseOrphanedDaemonSet
        /// Its DaemonSet is gone and `force` is on: evicted, with a warning.
        case evictOrphanedDaemonSet
    }

    /// Decides for one pod, filters in kubectl's order. `daemonSetExists` answers for a DaemonSet pod whether
    /// its DaemonSet is still there (kubectl GETs it; a 404 is an error unless `--force`).
    public static func decide(_ pod: Pod, force: Bool, daemonSetExists: Bool = true) -> Decision {
        if pod.isDaemonSetPod && !pod.isTerminal {
            if daemonSetExists { return .skipDaemonSet }
            return force ? .evictOrphanedDaemonSet : .refuseOrphanedDaemonSet
        }
        if pod.isMirrorPod { return .skipMirror }
        if pod.isTerminal { return .evict(emptyDir: false) }
        if pod.metadata.controller == nil && !force { return .refuseUnreplicated }
        return .evict(emptyDir: pod.hasEmptyDir)
    }

    /// The PDB name in a 429's cause: "The disruption budget web-pdb needs 2 healthy pods and has 2 currently"
    /// (docs/UPSTREAM.md#eviction).
    public static func budgetName(in error: KubeError) -> String? {
        for cause in error.status?.details?.causes ?? [] {
            guard let m = cause.message, let r = m.range(of: "The disruption budget ") else { continue }
            let name = m[r.upperBound...].prefix { $0 != " " }
            if !name.isEmpty { return String(name) }
        }
        return nil
    }

    /// A budget whose spec rules out every voluntary disruption, so that waiting cannot help: `maxUnavailable` 0
    /// (or "0%"), or `minAvailable` "100%". An integer `minAvailable` equal to the pods counted now does not count:
    /// for it the disruption controller takes `expectedPods` from the pods that match right now
    /// (kubernetes/kubernetes pkg/controller/disruption/disruption.go `getExpectedPodCount`), which is low while an
    /// evicted pod's replacement is not created yet — waiting can help there, as kubectl's retries assume.
    public static func neverAllows(_ pdb: PodDisruptionBudget?) -> Bool {
        guard let spec = pdb?.spec else { return false }
        switch spec.maxUnavailable {
        case .int(0)?, .string("0%")?: return true
        default: break
        }
        if case .string("100%")? = spec.minAvailable { return true }
        return false
    }
}

extension KubeAPI {
    /// Drains `node` like `kubectl drain --ignore-daemonsets --delete-emptydir-data`: evicts every pod through the
    /// Eviction API and handles its answers as kubectl's `evictPods` does — 404 is done, 429 is retried after its
    /// `Retry-After` (else `evictRetryDelay`), 403 NamespaceTerminating is retried (or, for a pod already being
    /// deleted, waited out), anything else (e.g. the 500 of a pod under several budgets) stops the drain — then
    /// watches each evicted pod until it is gone (deleted, or recreated with a new uid). All within
    /// `options.timeout`. The caller cordons first (see `cordon(node:by:reason:)`).
    ///
    /// Throws `.drainRefused` when the drain cannot succeed by waiting: pods that would be lost (no controller, or
    /// a DaemonSet that is gone), a pod under several budgets, a budget that can never allow the eviction, or one
    /// that still refused when the time ran out (`blockingPodDisruptionBudget` names it). `.timeout` means evicted
    /// pods were still terminating at the deadline.
    public func drain<C: Clock<Duration>>(
        node: String, options: DrainOptions = DrainOptions(), clock: C, logger: Logger
    ) async throws -> DrainReport {
        let deadline = clock.now.advanced(by: options.timeout)
        let pods = try await listPods(onNode: node)
        var report = DrainReport()
        var toEvict: [Pod] = []
        var refused: [String] = []
        var daemonSets: [String: Bool] = [:]
        for pod in pods {
            var exists = true
            if pod.isDaemonSetPod, !pod.isTerminal, let ds = pod.metadata.controller?.name {
                let key = "\(pod.namespace)/\(ds)"
                if daemonSets[key] == nil { daemonSets[key] = try await daemonSetExists(namespace: pod.namespace, name: ds) }
                exists = daemonSets[key]!
            }
            switch DrainPlanner.decide(pod, force: options.force, daemonSetExists: exists) {
            case .skipDaemonSet: report.skippedDaemonSet.append(pod.qualifiedName)
            case .skipMirror: report.skippedMirror.append(pod.qualifiedName)
            case .refuseUnreplicated: refused.append("\(pod.qualifiedName) (no controller)")
            case .refuseOrphanedDaemonSet:
                refused.append("\(pod.qualifiedName) (its DaemonSet \(pod.metadata.controller?.name ?? "?") is gone)")
            case .evictOrphanedDaemonSet:
                report.orphanedDaemonSetEvicted.append(pod.qualifiedName)
                toEvict.append(pod)
                logger.warning("evicting a pod whose DaemonSet is gone (force)", metadata: ["kube.pod": "\(pod.qualifiedName)"])
            case .evict(let emptyDir):
                toEvict.append(pod)
                if emptyDir { report.emptyDirDeleted.append(pod.qualifiedName) }
            }
        }
        if !refused.isEmpty {
            // kubectl aggregates the filters' errors and evicts nothing (kubernetes/kubectl pkg/drain/drain.go
            // `GetPodsForDeletion`).
            throw KubeError(
                .drainRefused,
                "cannot drain \(node): pods would be lost: \(refused.joined(separator: ", ")) (delete them, give them a controller, or drain with force)")
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

    private func daemonSetExists(namespace: String, name: String) async throws -> Bool {
        do {
            _ = try await getDaemonSet(namespace: namespace, name: name)
            return true
        } catch let e as KubeError where e.code == .notFound {
            return false
        }
    }

    /// Evicts one pod (retrying as kubectl does), then waits until it is gone. Returns the number of 429s.
    private func evictAndWait<C: Clock<Duration>>(
        _ pod: Pod, node: String, options: DrainOptions, deadline: C.Instant, clock: C, logger: Logger
    ) async throws -> Int {
        var refusals = 0
        var active = pod
        evicting: while true {
            let delay: Duration
            do {
                try await evictPod(namespace: pod.namespace, name: pod.name, gracePeriodSeconds: options.gracePeriodSeconds)
                break evicting
            } catch let error as KubeError where error.code == .notFound {
                return refusals  // kubectl: a 404 on eviction counts as done
            } catch let error as KubeError where error.code == .tooManyRequests {
                refusals += 1
                let pdb = try await refusingBudget(pod, error)
                if DrainPlanner.neverAllows(pdb) {
                    throw drainRefused(node: node, pod: pod, pdb: pdb?.name, error: error, why: "its spec allows no voluntary disruption, so it can never allow this eviction")
                }
                logger.info(
                    "eviction refused by a disruption budget, will retry",
                    metadata: ["kube.pod": "\(pod.qualifiedName)", "kube.pdb": "\(pdb?.name ?? "?")", "kube.node": "\(node)"])
                delay = error.retryAfterSeconds.map { min(.seconds($0), options.maxRetryAfter) } ?? options.evictRetryDelay
                if clock.now.advanced(by: delay) >= deadline {
                    throw drainRefused(node: node, pod: pod, pdb: pdb?.name, error: error, why: "it still refused after \(options.timeout) (\(refusals) refusals)")
                }
            } catch let error as KubeError where error.code == .forbidden && error.hasCause("NamespaceTerminating") {
                // kubectl: a pod already being deleted in a terminating namespace is waited for; otherwise retried.
                if active.metadata.deletionTimestamp != nil { break evicting }
                delay = options.evictRetryDelay
            } catch let error as KubeError where error.httpStatus == 500 && error.message.contains("more than one PodDisruptionBudget") {
                throw KubeError(
                    .drainRefused, "cannot drain \(node): \(error.message); the eviction API supports one budget per pod",
                    httpStatus: 500, status: error.status)
            }
            if clock.now.advanced(by: delay) >= deadline {
                throw KubeError(.timeout, "drain of \(node) timed out after \(options.timeout): pod \(pod.qualifiedName) could not be evicted yet")
            }
            try await clock.sleep(for: delay)
            // kubectl re-reads the pod between attempts; a failure here is left to the next eviction to sort out.
            if let fresh = try? await getPod(namespace: pod.namespace, name: pod.name) { active = fresh }
        }
        try await waitUntilGone(pod, node: node, options: options, deadline: deadline, clock: clock)
        return refusals
    }

    /// Waits until `pod` is deleted or replaced by a pod of the same name with another uid (kubectl's
    /// `waitForDelete`), by watching it instead of polling: one GET, then a watch from that GET's resourceVersion,
    /// again only when a watch ends (at most once per `pollInterval`).
    private func waitUntilGone<C: Clock<Duration>>(
        _ pod: Pod, node: String, options: DrainOptions, deadline: C.Instant, clock: C
    ) async throws {
        while true {
            let current: Pod
            do {
                current = try await getPod(namespace: pod.namespace, name: pod.name)
            } catch let e as KubeError where e.code == .notFound {
                return
            }
            if current.metadata.uid != pod.metadata.uid { return }
            let lookedAt = clock.now
            let uid = pod.metadata.uid
            let from = current.metadata.resourceVersion ?? ""
            let outcome: Bool? = try await withThrowingTaskGroup(of: Bool?.self) { group in
                group.addTask {
                    do {
                        for try await event in self.watchPod(namespace: pod.namespace, name: pod.name, from: from) {
                            switch event {
                            case .deleted(let p) where p.metadata.uid == uid: return true
                            case .added(let p), .modified(let p): if p.metadata.uid != uid { return true }
                            case .error: return false  // e.g. 410 Expired: look again
                            default: continue
                            }
                        }
                    } catch is KubeError {
                        return false  // a broken watch: look again
                    }
                    return false  // the server ended the watch: look again
                }
                group.addTask {
                    try await clock.sleep(until: deadline, tolerance: nil)
                    return nil
                }
                let first = try await group.next() ?? nil
                group.cancelAll()
                return first
            }
            switch outcome {
            case true?: return
            case nil:
                throw KubeError(
                    .timeout,
                    "drain of \(node) timed out after \(options.timeout): pod \(pod.qualifiedName) was evicted but is still terminating")
            case false?:
                let next = lookedAt.advanced(by: options.pollInterval)
                if next >= deadline {
                    throw KubeError(
                        .timeout,
                        "drain of \(node) timed out after \(options.timeout): pod \(pod.qualifiedName) was evicted but is still terminating")
                }
                if clock.now < next { try await clock.sleep(until: next, tolerance: nil) }
            }
        }
    }

    private func drainRefused(node: String, pod: Pod, pdb: String?, error: KubeError, why: String) -> KubeError {
        let who = pdb.map { "PodDisruptionBudget \(pod.namespace)/\($0)" } ?? "a PodDisruptionBudget"
        let said = error.status?.details?.causes?.first?.message ?? error.message
        return KubeError(
            .drainRefused,
            "cannot drain \(node): \(who) refuses to let \(pod.qualifiedName) go: \(why) (\(said)); scale the workload up, or relax the budget",
            httpStatus: 429, blockingPodDisruptionBudget: pdb.map { "\(pod.namespace)/\($0)" })
    }

    /// The budget behind a 429: the one its cause names, else the one whose selector matches the pod.
    private func refusingBudget(_ pod: Pod, _ error: KubeError) async throws -> PodDisruptionBudget? {
        let pdbs = try await listPodDisruptionBudgets(namespace: pod.namespace)
        if let name = DrainPlanner.budgetName(in: error) { return pdbs.first { $0.name == name } }
        let labels = pod.metadata.labels ?? [:]
        return pdbs.first { $0.spec?.selector?.matches(labels) ?? false }
    }
}
