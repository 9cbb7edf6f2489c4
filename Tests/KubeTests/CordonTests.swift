import Foundation
import NK3Kube
import NK3Simulation
import Testing

/// Cordon/uncordon with nk3's record (docs/UPSTREAM.md#nodes), against the fake API server over TLS.
@Suite("cordon and uncordon")
struct CordonTests {
    @Test("cordon sets spec.unschedulable and the nk3 annotations; uncordon removes all three")
    func cordonRoundTrip() async throws {
        try await withFakeKube { server, client in
            server.state.addNode("n1")
            let outcome = try await client.cordon(node: "n1", by: "nk3/alice", reason: "reboot for kernel 6.6.31")
            #expect(outcome == .cordoned)
            let cordoned = try #require(server.state.node("n1"))
            #expect(cordoned.isUnschedulable)
            #expect(cordoned.annotation(NK3Annotations.cordonedBy) == "nk3/alice")
            #expect(cordoned.annotation(NK3Annotations.cordonReason) == "reboot for kernel 6.6.31")
            #expect(cordoned.annotation("k3s.io/node-args") != nil)  // other annotations untouched

            // A resumed rollout finds its own cordon.
            #expect(try await client.cordon(node: "n1", by: "nk3/alice", reason: "x") == .alreadyCordonedByNK3(by: "nk3/alice"))

            #expect(try await client.uncordonIfCordonedByNK3(node: "n1") == .uncordoned)
            let json = try #require(server.state.object(.nodes, name: "n1"))
            #expect(json["spec"]?["unschedulable"] == nil)  // sent as null: the omitempty field is removed
            #expect(json["metadata"]?["annotations"]?[NK3Annotations.cordonedBy] == nil)
            #expect(json["metadata"]?["annotations"]?[NK3Annotations.cordonReason] == nil)
            #expect(try await client.uncordonIfCordonedByNK3(node: "n1") == .notCordoned)
        }
    }

    @Test("a node someone else cordoned is not claimed, and nk3 refuses to uncordon it")
    func othersCordon() async throws {
        try await withFakeKube { server, client in
            server.state.addNode("n1")
            try await client.setUnschedulable("n1", true)  // the raw op, like `kubectl cordon`
            #expect(try await client.cordon(node: "n1", by: "nk3/alice", reason: "upgrade") == .alreadyCordonedByOther)
            #expect(server.state.node("n1")?.annotation(NK3Annotations.cordonedBy) == nil)
            let error = await #expect(throws: KubeError.self) { try await client.uncordonIfCordonedByNK3(node: "n1") }
            #expect(error?.code == .refused)
            #expect(error?.message.contains("not by nk3") == true)
            #expect(server.state.node("n1")?.isUnschedulable == true)
        }
    }

    @Test("a patch carrying a stale resourceVersion is a 409 .conflict (optimistic concurrency)")
    func staleResourceVersion() async throws {
        try await withFakeKube { server, client in
            server.state.addNode("n1")
            let before = try await client.getNode("n1")
            server.state.setNodeReady("n1", false)  // someone else writes: resourceVersion moves
            let error = await #expect(throws: KubeError.self) {
                try await client.setUnschedulable("n1", true, resourceVersion: before.metadata.resourceVersion)
            }
            #expect(error?.code == .conflict)
            #expect(error?.status?.reason == "Conflict")
            #expect(server.state.node("n1")?.isUnschedulable == false)
            // cordon() re-reads and retries on such a conflict.
            #expect(try await client.cordon(node: "n1", by: "nk3/a", reason: "r") == .cordoned)
        }
    }

    @Test("cordon of a missing node is .notFound")
    func missingNode() async throws {
        try await withFakeKube { _, client in
            let error = await #expect(throws: KubeError.self) { try await client.cordon(node: "ghost", by: "nk3", reason: "r") }
            #expect(error?.code == .notFound)
        }
    }
}
