import Foundation
import NK3Coordinator
import NK3Kube
import Testing

/// The `kubectl rollout status` rule (inventory `health_rule: rollout-status`) beside the seed's rule, on
/// real-shaped JSON.
@Suite struct GateRulesTests {
    static func ds(_ json: String) throws -> DaemonSet { try GateFixtures.decode(json) }
    static func deploy(_ json: String) throws -> Deployment { try GateFixtures.decode(json) }

    @Test("DaemonSet: all available but not all updated passes the seed's rule and waits under rollout-status")
    func daemonSetUpdatedCount() throws {
        let d = try Self.ds(#"""
            {"metadata":{"name":"node-exporter","namespace":"default","generation":2},
             "spec":{"updateStrategy":{"type":"RollingUpdate"}},
             "status":{"currentNumberScheduled":3,"numberMisscheduled":0,"desiredNumberScheduled":3,"numberReady":3,"observedGeneration":2,"updatedNumberScheduled":2,"numberAvailable":3}}
            """#)
        #expect(GateLogic.daemonSets([d], namespace: "default").passed)
        let strict = GateLogic.daemonSets([d], namespace: "default", rule: .rolloutStatus)
        #expect(!strict.passed)
        #expect(strict.failure?.contains("2 of 3 updated pods scheduled") == true, "\(strict.failure ?? "")")
        #expect(strict.lines.map(\.message) == ["1 daemonsets recovering in namespace default"])
    }

    @Test("DaemonSet with OnDelete has no rollout to wait for: the seed's rule applies")
    func daemonSetOnDelete() throws {
        let d = try Self.ds(#"""
            {"metadata":{"name":"legacy","namespace":"default","generation":5},
             "spec":{"updateStrategy":{"type":"OnDelete"}},
             "status":{"currentNumberScheduled":2,"numberMisscheduled":0,"desiredNumberScheduled":2,"numberReady":2,"observedGeneration":5,"updatedNumberScheduled":1,"numberAvailable":2}}
            """#)
        #expect(GateLogic.daemonSets([d], namespace: "default", rule: .rolloutStatus).passed)
    }

    @Test("Deployment: old replicas pending termination wait; a passed progress deadline fails at once")
    func deploymentRules() throws {
        let rolling = try Self.deploy(#"""
            {"metadata":{"name":"web","namespace":"default","generation":7},"spec":{"replicas":3},
             "status":{"observedGeneration":7,"replicas":4,"updatedReplicas":3,"readyReplicas":4,"availableReplicas":4,
              "conditions":[{"type":"Available","status":"True","reason":"MinimumReplicasAvailable"},
                            {"type":"Progressing","status":"True","reason":"ReplicaSetUpdated"}]}}
            """#)
        #expect(GateLogic.deployments([rolling], namespace: "default").passed, "the seed's rule: Available")
        let r = GateLogic.deployments([rolling], namespace: "default", rule: .rolloutStatus)
        #expect(!r.passed && !r.unrecoverable)
        #expect(r.failure?.contains("1 old replicas pending termination") == true)

        let stuck = try Self.deploy(#"""
            {"metadata":{"name":"api","namespace":"default","generation":3},"spec":{"replicas":2},
             "status":{"observedGeneration":3,"replicas":3,"updatedReplicas":1,"readyReplicas":2,"availableReplicas":2,
              "conditions":[{"type":"Available","status":"True","reason":"MinimumReplicasAvailable"},
                            {"type":"Progressing","status":"False","reason":"ProgressDeadlineExceeded","message":"ReplicaSet \"api-5d9\" has timed out progressing."}]}}
            """#)
        let s = GateLogic.deployments([stuck], namespace: "default", rule: .rolloutStatus)
        #expect(!s.passed && s.unrecoverable)
        #expect(s.failure?.contains("exceeded its progress deadline") == true)

        let done = try Self.deploy(#"""
            {"metadata":{"name":"web","namespace":"default","generation":7},"spec":{"replicas":3},
             "status":{"observedGeneration":7,"replicas":3,"updatedReplicas":3,"readyReplicas":3,"availableReplicas":3,
              "conditions":[{"type":"Available","status":"True","reason":"MinimumReplicasAvailable"}]}}
            """#)
        #expect(GateLogic.deployments([done], namespace: "default", rule: .rolloutStatus).passed)
        let unobserved = try Self.deploy(#"""
            {"metadata":{"name":"web","namespace":"default","generation":8},"spec":{"replicas":3},
             "status":{"observedGeneration":7,"replicas":3,"updatedReplicas":3,"availableReplicas":3}}
            """#)
        #expect(!GateLogic.deployments([unobserved], namespace: "default", rule: .rolloutStatus).passed)
    }

    @Test("a gate result that waiting cannot fix stops the gates at once")
    func unrecoverableStopsTheWait() async throws {
        let gate = HealthGate(name: "deployments in namespace default") {
            GateResult(passed: false, lines: [], failure: "api: exceeded its progress deadline", unrecoverable: true)
        }
        let clock = ContinuousClock()
        await #expect(throws: HealthGateError.self) {
            _ = try await waitUntilHealthy([gate], deadline: clock.now.advanced(by: .seconds(600)), clock: clock)
        }
    }
}
