import Foundation
import NIOCore
import NIOHTTP1
import NK3Common
import NK3Kube
import NK3Simulation
import Testing

/// Dry-run evictions (`?dryRun=All`): the fake answers them as kube-apiserver does
/// (kubernetes/kubernetes pkg/registry/core/pod/storage/eviction.go; apimachinery `NewTooManyRequests`; apiserver
/// pkg/endpoints/handlers/create.go), and `dryRunEviction` reads the answer.
extension FakeKubeStrictTests {
    static let webEviction = #"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web-1","namespace":"default"}}"#

    @Test("a dry-run eviction a budget refuses: 429 with the real Status body, and nothing evicted or written")
    func dryRunEvictionRefused() async throws {
        state.addPod(name: "web-1", node: "n1", labels: ["app": "web"])
        state.addPod(name: "web-2", node: "n2", labels: ["app": "web"])
        state.addPodDisruptionBudget(name: "web-pdb", matchLabels: ["app": "web"], minAvailable: .int(2))
        let budgetBefore = state.podDisruptionBudget(name: "web-pdb")
        let (code, body) = await call(.POST, "/api/v1/namespaces/default/pods/web-1/eviction?dryRun=All", Self.webEviction)
        #expect(code == 429)
        // errors.NewTooManyRequests(msg, 0) plus the DisruptionBudget cause of checkAndDecrement; retryAfterSeconds 0
        // is omitted (omitempty), and so is the Retry-After header.
        let expected: JSONValue = .object([
            "kind": .string("Status"), "apiVersion": .string("v1"), "metadata": .object([:]),
            "status": .string("Failure"), "message": .string("Cannot evict pod as it would violate the pod's disruption budget."),
            "reason": .string("TooManyRequests"), "code": .number(429),
            "details": .object([
                "causes": .array([
                    .object([
                        "reason": .string("DisruptionBudget"),
                        "message": .string("The disruption budget web-pdb needs 2 healthy pods and has 2 currently"),
                    ])
                ])
            ]),
        ])
        #expect(body == expected)
        #expect(state.pod(name: "web-1") != nil)
        #expect(state.podDisruptionBudget(name: "web-pdb") == budgetBefore)
        #expect(state.stats.evictions == 0 && state.stats.evictionRefusals == 0)
    }

    @Test("a dry-run eviction that would pass: 201 Success Status; the pod stays")
    func dryRunEvictionAllowed() async throws {
        state.addPod(name: "web-1", node: "n1", labels: ["app": "web"])
        let (code, body) = await call(.POST, "/api/v1/namespaces/default/pods/web-1/eviction?dryRun=All", Self.webEviction)
        #expect(code == 201)
        #expect(
            body
                == .object([
                    "kind": .string("Status"), "apiVersion": .string("v1"), "metadata": .object([:]),
                    "status": .string("Success"), "code": .number(201),
                ]))
        #expect(state.pod(name: "web-1") != nil)
    }

    @Test("dryRun in the Eviction's deleteOptions (kubectl drain --dry-run=server) is a dry run too; a mismatch is a 500")
    func dryRunInTheBody() async throws {
        state.addPod(name: "web-1", node: "n1", labels: ["app": "web"])
        let inBody = #"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web-1","namespace":"default"},"deleteOptions":{"dryRun":["All"]}}"#
        #expect(await call(.POST, "/api/v1/namespaces/default/pods/web-1/eviction", inBody).0 == 201)
        #expect(state.pod(name: "web-1") != nil, "the body's dryRun evicts nothing")
        #expect(state.stats.evictions == 0)

        let other = #"{"apiVersion":"policy/v1","kind":"Eviction","metadata":{"name":"web-1","namespace":"default"},"deleteOptions":{"dryRun":["Other"]}}"#
        let (code, status) = await call(.POST, "/api/v1/namespaces/default/pods/web-1/eviction?dryRun=All", other)
        #expect(code == 500)
        #expect(status["message"] == .string("Non-matching dry-run options in request and content: [All] and [Other]"))
        #expect(status["reason"] == nil)
        #expect(state.pod(name: "web-1") != nil)
    }
}

@Suite("dry-run eviction through the client")
struct EvictionDryRunClientTests {
    @Test("dryRunEviction reads each answer over TLS: allowed, budget refusal, several budgets, gone, terminating namespace")
    func answers() async throws {
        try await withFakeKube { server, client in
            let s = server.state
            s.addPod(name: "web-1", node: "n1", labels: ["app": "web"])
            s.addPod(name: "web-2", node: "n2", labels: ["app": "web"])
            #expect(try await client.dryRunEviction(namespace: "default", name: "web-1") == .allowed)

            s.addPodDisruptionBudget(name: "web-pdb", matchLabels: ["app": "web"], minAvailable: .int(2))
            #expect(
                try await client.dryRunEviction(namespace: "default", name: "web-1")
                    == .refusedByBudget(budget: "web-pdb", detail: "The disruption budget web-pdb needs 2 healthy pods and has 2 currently"))

            s.addPodDisruptionBudget(name: "web-pdb-2", matchLabels: ["app": "web"], minAvailable: .int(1))
            guard case .refused(500, let message) = try await client.dryRunEviction(namespace: "default", name: "web-1") else {
                Issue.record("two budgets: not a 500 refusal")
                return
            }
            #expect(message.contains("more than one PodDisruptionBudget"))

            #expect(try await client.dryRunEviction(namespace: "default", name: "nope") == .gone)
            s.addPod(namespace: "closing", name: "job-1", node: "n1")
            s.setNamespaceTerminating("closing")
            #expect(try await client.dryRunEviction(namespace: "closing", name: "job-1") == .namespaceTerminating)
            #expect(s.pods(onNode: "n1").count == 2, "nothing evicted")
            #expect(s.stats.evictions == 0)
        }
    }

    @Test("a 429 without a DisruptionBudget cause (API priority and fairness) is no verdict: it is thrown")
    func throttlingIsThrown() throws {
        let throttled = KubeError(.tooManyRequests, "too many requests", httpStatus: 429, status: nil)
        #expect(throws: KubeError.self) { try EvictionDryRun.classify(throttled) }
        let processing = KubeError(
            .tooManyRequests, "x", httpStatus: 429,
            status: KubeStatus(
                message: "Cannot evict pod as it would violate the pod's disruption budget.", reason: "TooManyRequests",
                details: KubeStatusDetails(causes: [
                    KubeStatusCause(reason: "DisruptionBudget", message: "The disruption budget web is still being processed by the server.")
                ], retryAfterSeconds: 10), code: 429))
        #expect(try EvictionDryRun.classify(processing) == .budgetNotObservedYet)
    }
}
