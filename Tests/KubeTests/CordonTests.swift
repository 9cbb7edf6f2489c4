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
        try await withFakeKube { server, client throws in
            server.state.addNode("n1")
            // Someone else's cordon, stored without a field manager (an API that keeps none): no nk3 annotation.
            server.state.update(.nodes, name: "n1", as: Node.self) { $0.spec?.unschedulable = true }
            #expect(try await client.cordon(node: "n1", by: "nk3/alice", reason: "upgrade") == .alreadyCordonedByOther)
            #expect(server.state.node("n1")?.annotation(NK3Annotations.cordonedBy) == nil)
            let error = await #expect(throws: KubeError.self) { try await client.uncordonIfCordonedByNK3(node: "n1") }
            #expect(error?.code == .refused)
            #expect(error?.message.contains("held by someone else (no nk3.io/cordoned-by annotation)") == true, "\(error?.message ?? "")")
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

extension CordonTests {
    /// A Node as the API answers it after `kubectl cordon` (manager from kubectl's User-Agent), with nk3's annotations
    /// left from an earlier run.
    static let recordonedByKubectl = #"""
        {"apiVersion":"v1","kind":"Node","metadata":{"name":"n1","resourceVersion":"7",
         "annotations":{"nk3.io/cordoned-by":"nk3/alice","nk3.io/cordon-reason":"rollout"},
         "managedFields":[
          {"manager":"nk3","operation":"Update","apiVersion":"v1","time":"2026-12-07T04:00:00Z","fieldsType":"FieldsV1",
           "fieldsV1":{"f:metadata":{"f:annotations":{"f:nk3.io/cordoned-by":{},"f:nk3.io/cordon-reason":{}}}}},
          {"manager":"kubectl","operation":"Update","apiVersion":"v1","time":"2026-12-07T04:10:00Z","fieldsType":"FieldsV1",
           "fieldsV1":{"f:spec":{"f:unschedulable":{}}}}]},
         "spec":{"unschedulable":true}}
        """#

    @Test("ownership of a cordon comes from managedFields; annotations decide only where none are recorded")
    func ownershipFromManagedFields() throws {
        var node = try JSONDecoder().decode(Node.self, from: Data(Self.recordonedByKubectl.utf8))
        #expect(node.metadata.managedFieldsEntries.map(\.manager) == ["nk3", "kubectl"])
        #expect(node.unschedulableManager == "kubectl")
        #expect(!node.isCordonedByNK3)
        #expect(node.cordonHolder == "kubectl")
        // nk3 set it: nk3's.
        let bySelf = Self.recordonedByKubectl.replacingOccurrences(of: #""manager":"kubectl""#, with: #""manager":"nk3""#)
        #expect(try JSONDecoder().decode(Node.self, from: Data(bySelf.utf8)).isCordonedByNK3)
        // No managedFields (an API that keeps none): the annotation decides.
        node.metadata.managedFields = nil
        #expect(node.isCordonedByNK3)
        node.metadata.annotations = [:]
        #expect(!node.isCordonedByNK3)
        #expect(node.cordonHolder == "someone else")
    }
}
