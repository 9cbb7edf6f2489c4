import Foundation
import Logging
import NK3Kube
import NK3Protocol
import Synchronization

/// The real `RolloutCluster`: the Kubernetes API through `KubeAPI`, the health gates of `HealthGates`, and a
/// `coordination.k8s.io/v1` Lease that both locks the cluster for one rollout and carries its progress
/// (annotation `nk3.io/rollout-progress`), so a rerun after a killed coordinator resumes (docs/UPSTREAM.md#lease).
public struct KubeRolloutCluster<C: Clock<Duration>>: RolloutCluster {
    /// Where the Lease lives. kube-system exists in every cluster.
    public var leaseNamespace: String
    /// The Lease's name (one per cluster).
    public var leaseName: String
    public let kube: any KubeAPI
    public let watchNamespaces: [String]
    /// Ceph gate target, if enabled.
    public let ceph: (namespace: String, name: String)?
    public let pollInterval: Duration
    public let drainOptions: DrainOptions
    /// Which rule makes a DaemonSet or Deployment healthy (inventory `health_rule`).
    public let healthRule: WorkloadHealthRule
    public let clock: C
    public let logger: Logger
    /// Where each k3s server's API is reached (node name → host, `host:port` or URL): the client moves off a
    /// server's API before nk3 reboots that server.
    public var apiServers: [String: String] = [:]

    static var progressAnnotation: String { "nk3.io/rollout-progress" }

    /// The Lease as this adapter last wrote it (shared by copies of the adapter).
    private let written = LastWrittenLease()
    /// One node watch for every gate wait of the rollout (shared by copies of the adapter; `NodeWatch`). Once it
    /// runs, its view also saves the GET of a node before nk3's cordon and uncordon patches and a readiness check
    /// that it already answers.
    let nodeWatch: NodeWatch
    /// One DaemonSet and one Deployment watch per watched namespace for every gate wait of the rollout
    /// (`WorkloadWatches`).
    let workloadWatches: WorkloadWatches

    /// Makes the adapter.
    public init(
        kube: any KubeAPI, clusterName: String, watchNamespaces: [String], ceph: (namespace: String, name: String)?,
        pollInterval: Duration = .milliseconds(100), drainOptions: DrainOptions = DrainOptions(), clock: C,
        logger: Logger, leaseNamespace: String = "kube-system", healthRule: WorkloadHealthRule = .available
    ) {
        self.healthRule = healthRule
        self.kube = kube
        self.leaseNamespace = leaseNamespace
        self.leaseName = KubeNames.dnsSubdomain("nk3-rollout-\(clusterName)")
        self.watchNamespaces = watchNamespaces
        self.ceph = ceph
        self.pollInterval = pollInterval
        self.drainOptions = drainOptions
        self.clock = clock
        self.logger = logger
        self.nodeWatch = NodeWatch(kube, keepWatching: true)
        self.workloadWatches = WorkloadWatches(kube, namespaces: watchNamespaces)
    }

    /// From the node watch's view when it shows the node Ready from the boot nk3 waits for: only the kubelet of
    /// that boot can have posted it (`GateLogic.readiness`), so a view that lags cannot make it up, and the gates
    /// that follow read the same view. Otherwise — no boot to tell the new Ready from an old one, no watch yet, or
    /// the view not (yet) showing it — a GET of the node, as before.
    public func nodeReadiness(_ node: String, boot: NodeBoot?) async throws -> NodeReadiness {
        if boot != nil, let seen = nodeWatch.cached(node), GateLogic.readiness(of: seen, boot: boot) == .ready {
            return .ready
        }
        return GateLogic.readiness(of: try await kube.getNode(node), boot: boot)
    }

    /// The node watch's copy (if it runs) stands in for the GET before the patch (`KubeAPI.cordon(known:)`).
    public func cordon(_ node: String, reason: String) async throws {
        _ = try await kube.cordon(node: node, by: "nk3", reason: reason, known: nodeWatch.cached(node))
    }

    /// The node watch's copy (if it runs) stands in for the GET before the patch
    /// (`KubeAPI.uncordonIfCordonedByNK3(known:)`).
    public func uncordonIfOurs(_ node: String) async throws -> Bool {
        do {
            return try await kube.uncordonIfCordonedByNK3(node: node, known: nodeWatch.cached(node)) == .uncordoned
        } catch let e as KubeError where e.code == .refused {
            return false
        }
    }

    public func cordons() async throws -> NodeCordons {
        var out = NodeCordons()
        for n in try await kube.listNodes() {
            guard let name = n.metadata.name else { continue }
            let ours = n.annotation(NK3Annotations.cordonedBy) != nil
            if n.isUnschedulable {
                // managedFields say who set spec.unschedulable (a person's `kubectl cordon` after an uncordon keeps
                // nk3's annotations); the annotation decides only where the API records no manager.
                if n.isCordonedByNK3 {
                    out.byNK3[name] = n.annotation(NK3Annotations.cordonReason) ?? ""
                } else {
                    out.byOthers[name] = n.unschedulableManager.map { "held by \($0)" } ?? ""
                }
            } else if ours {
                // Schedulable with nk3's record: someone uncordoned it (`kubectl uncordon` keeps annotations).
                // Forget the record now, or a later cordon by a person would read as nk3's.
                do {
                    try await kube.setUnschedulable(
                        name, false, annotations: [NK3Annotations.cordonedBy: nil, NK3Annotations.cordonReason: nil],
                        resourceVersion: n.metadata.resourceVersion)
                    logger.info("removed nk3's stale cordon annotations", metadata: ["rollout.node": "\(name)"])
                } catch let e as KubeError where e.code == .conflict {
                    continue  // changed meanwhile: the next look decides
                }
            }
        }
        return out
    }

    public func drainBlockers(nodes: [String]) async throws -> [DrainBlocker] {
        var budgets: [String: [PodDisruptionBudget]] = [:]
        var out: [DrainBlocker] = []
        // One list of every pod, not one per node: at 1,000 nodes that is 1,000 requests fewer, which the client's
        // rate limit (5 per second, client-go's default) would have spread over more than 3 minutes.
        let byNode = Dictionary(grouping: try await kube.listAllPods()) { $0.spec?.nodeName ?? "" }
        for node in nodes {
            let pods = byNode[node] ?? []
            for ns in Set(pods.map { $0.metadata.namespace ?? "default" }).sorted() where budgets[ns] == nil {
                budgets[ns] = try await kube.listPodDisruptionBudgets(namespace: ns)
            }
            let all = budgets.values.flatMap { $0 }
            let found = DrainPreflight.blockers(node: node, pods: pods, budgets: all)
            out += found
            // Each node against the cluster as it is now, as the first node's drain would meet it (a dry run decrements
            // nothing, so the nodes do not see each other's evictions; docs/DEPLOYING.md "5. Changes").
            for pod in DrainPreflight.dryRunCandidates(pods: pods, budgets: all, blocked: found) {
                let answer = try await kube.dryRunEviction(namespace: pod.namespace, name: pod.name)
                if let blocker = DrainPreflight.apiBlocker(node: node, pod: pod, answer: answer) { out.append(blocker) }
            }
        }
        return out
    }

    public func drain(_ node: String, timeout: Duration) async throws {
        var options = drainOptions
        options.timeout = timeout
        _ = try await kube.drain(node: node, options: options, clock: clock, logger: logger)
    }

    public func prepareReboot(_ node: String) async -> GateReport? {
        guard let address = apiServers[node], apiServers.count > 1 else { return nil }
        if let moved = await kube.moveOff(apiServer: address) {
            return GateReport(
                status: .info,
                message: "Kubernetes API: using \(moved.absoluteString) while \(node) reboots (its API server goes down with it)",
                node: node)
        }
        return nil
    }

    public func runGates(
        since: Date?, timeout: Duration, report: @escaping @Sendable (GateReport) -> Void
    ) async throws {
        let gates = HealthGates.standard(
            kube, watchNamespaces: watchNamespaces, ceph: ceph, since: since, rule: healthRule, period: pollInterval,
            nodes: nodeWatch, workloads: workloadWatches)
        _ = try await waitUntilHealthy(gates, deadline: clock.now.advanced(by: timeout), clock: clock, report: report)
    }

    // MARK: Lease

    public func acquireLease(holder: String, ttl: Duration) async throws -> RolloutLease {
        var now = Date()
        for _ in 0..<5 {
            let existing: Lease?
            do {
                existing = try await kube.getLease(namespace: leaseNamespace, name: leaseName)
            } catch let e as KubeError where e.code == .notFound {
                existing = nil
            }
            guard var lease = existing else {
                let created = Lease(
                    metadata: ObjectMeta(name: leaseName, namespace: leaseNamespace),
                    spec: LeaseSpec(
                        holderIdentity: holder, leaseDurationSeconds: Self.seconds(ttl),
                        acquireTime: MicroTime.format(now), renewTime: MicroTime.format(now), leaseTransitions: 0))
                do {
                    written.set(try await kube.createLease(created))
                    return RolloutLease(holder: holder, expiresAt: now.addingTimeInterval(Double(Self.seconds(ttl))))
                } catch let e as KubeError where e.code == .conflict {
                    continue  // somebody created it meanwhile: read it again
                }
            }
            if let other = lease.spec.holderIdentity, other != holder, !other.isEmpty {
                if !LeaseHolders.isDeadLocalHolder(other, me: holder) {
                    if let expires = Self.expiry(of: lease), expires > now {
                        throw RolloutLeaseHeld(holder: other, expiresAt: expires)
                    }
                    // Expired by the holder's own clock: take it over only after seeing it unchanged for its whole
                    // duration on ours (client-go leader election's observedTime rule).
                    lease = try await observedExpired(lease)
                    now = Date()
                }
            }
            if lease.spec.holderIdentity != holder {
                // A new holder (after another one, or after a release): client-go counts a transition and stamps
                // acquireTime whenever the holder changes (tools/leaderelection/leaderelection.go tryAcquireOrRenew).
                lease.spec.leaseTransitions = (lease.spec.leaseTransitions ?? 0) + 1
                lease.spec.acquireTime = MicroTime.format(now)
            }
            lease.spec.holderIdentity = holder
            lease.spec.leaseDurationSeconds = Self.seconds(ttl)
            lease.spec.renewTime = MicroTime.format(now)
            do {
                written.set(try await kube.updateLease(lease))
                return RolloutLease(holder: holder, expiresAt: now.addingTimeInterval(Double(Self.seconds(ttl))))
            } catch let e as KubeError where e.code == .conflict {
                written.set(nil)  // whatever we hold is stale
                continue
            }
        }
        throw CoordinatorError(.other, "the rollout Lease \(leaseNamespace)/\(leaseName) kept changing; retry")
    }

    /// Re-reads a Lease held by another holder (at most once a second) until it has stayed unchanged for its
    /// `leaseDurationSeconds` of local time — then returns the last read, to take over — or changes, which means its
    /// holder is alive: `RolloutLeaseHeld`.
    private func observedExpired(_ first: Lease) async throws -> Lease {
        var observation = LeaseObservation<C.Instant>()
        observation.observe(first.spec, at: clock.now)
        var lease = first
        while !observation.expired(at: clock.now) {
            try await clock.sleep(for: .seconds(1))
            lease = try await kube.getLease(namespace: leaseNamespace, name: leaseName)
            guard lease.spec == first.spec else {
                if (lease.spec.holderIdentity ?? "").isEmpty { return lease }  // released meanwhile
                let renewed = Self.expiry(of: lease) ?? Date().addingTimeInterval(Double(lease.spec.leaseDurationSeconds ?? 0))
                throw RolloutLeaseHeld(holder: lease.spec.holderIdentity ?? "?", expiresAt: renewed)
            }
            observation.observe(lease.spec, at: clock.now)
        }
        return lease
    }

    public func renewLease(holder: String, ttl: Duration) async throws -> RolloutLease {
        try await acquireLease(holder: holder, ttl: ttl)
    }

    public func releaseLease(holder: String) async throws {
        try await mutateOwnLease(holder: holder) { lease in
            lease.spec.holderIdentity = nil
            lease.spec.renewTime = nil
            lease.spec.acquireTime = nil
        }
    }

    public func saveProgress(_ progress: RolloutProgress) async throws {
        let json = String(decoding: try CanonicalJSON.encode(progress), as: UTF8.self)
        try await mutateLease { lease in
            var a = lease.metadata.annotations ?? [:]
            a[Self.progressAnnotation] = json
            lease.metadata.annotations = a
        }
    }

    public func loadProgress() async throws -> RolloutProgress? {
        let lease: Lease
        do {
            lease = try await kube.getLease(namespace: leaseNamespace, name: leaseName)
        } catch let e as KubeError where e.code == .notFound {
            return nil
        }
        guard let text = lease.metadata.annotations?[Self.progressAnnotation] else { return nil }
        do {
            return try CanonicalJSON.decode(RolloutProgress.self, from: Data(text.utf8))
        } catch {
            logger.warning(
                "ignoring unreadable rollout progress on the Lease", metadata: ["rollout.error": "\(error)"])
            return nil
        }
    }

    public func clearProgress() async throws {
        try await mutateLease { lease in
            lease.metadata.annotations?[Self.progressAnnotation] = nil
        }
    }

    private func mutateOwnLease(holder: String, _ change: (inout Lease) -> Void) async throws {
        try await mutateLease { lease in
            guard lease.spec.holderIdentity == holder else { return }
            change(&lease)
        }
    }

    /// Changes the Lease with optimistic concurrency. First from the copy this adapter last wrote, without a
    /// GET: its resourceVersion makes the PUT fail with 409 if anyone (another coordinator, or our own lease
    /// renewal through another path) wrote since, and only then is the Lease read again. Progress is saved at
    /// every step of every node, so this halves the rollout's Lease requests (`nk3 bench`).
    private func mutateLease(_ change: (inout Lease) -> Void) async throws {
        var ours = written.get()  // the first try, without a GET
        for _ in 0..<6 {
            let fromOurWrite = ours != nil
            var lease: Lease
            if let known = ours {
                lease = known
                ours = nil
            } else {
                do {
                    lease = try await kube.getLease(namespace: leaseNamespace, name: leaseName)
                } catch let e as KubeError where e.code == .notFound {
                    return
                }
            }
            let before = lease
            change(&lease)
            if before == lease {
                if fromOurWrite { continue }  // unchanged against our copy, which may be stale: read the Lease
                written.set(lease)
                return
            }
            do {
                written.set(try await kube.updateLease(lease))
                return
            } catch let e as KubeError where e.code == .conflict {
                written.set(nil)  // whatever we hold is stale
                continue
            }
        }
        throw CoordinatorError(.other, "the rollout Lease \(leaseNamespace)/\(leaseName) kept changing; retry")
    }

    static func seconds(_ d: Duration) -> Int { max(1, Int(d.components.seconds)) }

    static func expiry(of lease: Lease) -> Date? {
        guard let renew = lease.spec.renewTime.flatMap(MicroTime.parse) else { return nil }
        return renew.addingTimeInterval(Double(lease.spec.leaseDurationSeconds ?? 0))
    }
}

/// The Lease as last written by a `KubeRolloutCluster` (a reference, so copies of the adapter share it).
final class LastWrittenLease: Sendable {
    private let lease = Mutex<Lease?>(nil)
    func get() -> Lease? { lease.withLock { $0 } }
    func set(_ value: Lease?) { lease.withLock { $0 = value } }
}

/// Rules about rollout Lease holders (`user@host/pid`).
public enum LeaseHolders {
    /// A holder `user@host/pid` on this very host whose process no longer exists (a killed `nk3`): its lease
    /// is stale and may be taken over at once instead of waiting out the TTL. Holders on other hosts are
    /// never second-guessed.
    public static func isDeadLocalHolder(_ other: String, me: String) -> Bool {
        guard let slash = other.lastIndex(of: "/"), let mySlash = me.lastIndex(of: "/"),
            other[..<slash] == me[..<mySlash], let pid = Int32(other[other.index(after: slash)...]), pid > 0
        else { return false }
        return kill(pid, 0) != 0 && errno == ESRCH
    }

}

/// Kubernetes `MicroTime` (RFC 3339 with microseconds, UTC), as Lease renewTime/acquireTime use.
public enum MicroTime {
    /// Formats a date as `2006-01-02T15:04:05.000000Z`.
    public static func format(_ date: Date) -> String {
        let t = date.timeIntervalSince1970
        let secs = floor(t)
        let micros = Int(((t - secs) * 1_000_000).rounded(.down))
        let base = Date(timeIntervalSince1970: secs).formatted(
            Date.ISO8601FormatStyle(timeZone: TimeZone(identifier: "UTC")!).year().month().day().dateSeparator(.dash)
                .time(includingFractionalSeconds: false).timeSeparator(.colon))
        return String(base.dropLast(base.hasSuffix("Z") ? 1 : 0)) + String(format: ".%06dZ", micros)
    }

    /// Parses RFC 3339 with or without fractional seconds.
    public static func parse(_ text: String) -> Date? {
        if let d = try? Date(text, strategy: Date.ISO8601FormatStyle(includingFractionalSeconds: true)) { return d }
        return try? Date(text, strategy: Date.ISO8601FormatStyle())
    }
}
