import Foundation
import NK3Kube
import NK3Simulation
import Testing

/// Cordon and uncordon from a copy of the node the caller already holds (a watch's view): no GET when the copy is
/// current, proven by the patch's resourceVersion precondition (docs/UPSTREAM.md#nodes).
extension CordonTests {
    @Test("cordon and uncordon from a current known copy send only the patch; a stale copy is refused with 409 and the node is read again")
    func knownCopy() async throws {
        try await withFakeKube { server, client in
            let s = server.state
            s.addNode("n1")
            let gets = { s.stats.byRoute["GET nodes/{name}"] ?? 0 }
            let patches = { s.stats.byRoute["PATCH nodes/{name}"] ?? 0 }
            let copy = try #require(s.node("n1"))
            #expect(try await client.cordon(node: "n1", by: "nk3/a", reason: "r", known: copy) == .cordoned)
            #expect(gets() == 0 && patches() == 1)
            let cordoned = try #require(s.node("n1"))
            #expect(cordoned.isUnschedulable && cordoned.annotation(NK3Annotations.cordonedBy) == "nk3/a")

            // Someone writes after the copy was taken (a kubelet status update): the patch is a 409, then GET and patch.
            s.setNodeReady("n1", false)
            #expect(try await client.uncordonIfCordonedByNK3(node: "n1", known: cordoned) == .uncordoned)
            #expect(gets() == 1 && patches() == 3, "\(s.stats.byRoute)")
            #expect(s.node("n1")?.isUnschedulable == false)
            #expect(s.node("n1")?.annotation(NK3Annotations.cordonedBy) == nil)
        }
    }

    @Test("a known copy that would leave the node alone decides nothing: the node is read (a stale 'cordoned by someone else' must not skip nk3's cordon)")
    func knownCopyThatWritesNothingIsChecked() async throws {
        try await withFakeKube { server, client in
            let s = server.state
            s.addNode("n1")
            let gets = { s.stats.byRoute["GET nodes/{name}"] ?? 0 }
            // A copy from while someone else held a cordon that has since been lifted.
            var stale = try #require(s.node("n1"))
            stale.spec?.unschedulable = true
            #expect(try await client.cordon(node: "n1", by: "nk3/a", reason: "r", known: stale) == .cordoned)
            #expect(gets() == 1)
            // A copy showing the node schedulable and unannotated (nothing to undo), though nk3's cordon is on now.
            #expect(try await client.uncordonIfCordonedByNK3(node: "n1", known: stale.withoutCordon) == .uncordoned)
            #expect(gets() == 2)
            #expect(s.node("n1")?.isUnschedulable == false)
        }
    }
}

extension Node {
    fileprivate var withoutCordon: Node {
        var n = self
        n.spec?.unschedulable = nil
        n.metadata.annotations?[NK3Annotations.cordonedBy] = nil
        return n
    }
}

extension CordonTests {
    @Test("a transient failure of the patch sent from a known copy (500, 429: writes are not retried) falls back to a GET, which the client retries, and the patch; as the GET used to absorb them")
    func knownCopyPatchMeetsTransientFaults() async throws {
        try await withFakeKube { server, client in
            let s = server.state
            s.addNode("n1")
            let copy = try #require(s.node("n1"))
            s.injectFaults(.internalError, count: 2, pathPrefix: "/api/v1/nodes/n1")
            s.injectFaults(.tooManyRequests, count: 1, pathPrefix: "/api/v1/nodes/n1")
            #expect(try await client.cordon(node: "n1", by: "nk3/a", reason: "r", known: copy) == .cordoned)
            #expect(s.node("n1")?.isUnschedulable == true)
            let cordoned = try #require(s.node("n1"))
            s.injectFaults(.internalError, count: 2, pathPrefix: "/api/v1/nodes/n1")
            #expect(try await client.uncordonIfCordonedByNK3(node: "n1", known: cordoned) == .uncordoned)
            #expect(s.node("n1")?.isUnschedulable == false)
        }
    }
}
