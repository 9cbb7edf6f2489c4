import Foundation
import NK3Kube
import NK3Simulation
import Testing

/// nk3 as a polite API client: a client-side rate limit like client-go's, lists in pages, a field manager and
/// User-Agent of its own, Lease names the API accepts and Lease expiry judged on locally observed time.
@Suite("polite API client")
struct PoliteClientTests {
    @Test("the token bucket lets a burst through, then one request per 1/qps")
    func tokenBucket() {
        let limiter = KubeRateLimiter(qps: 5, burst: 10)
        let t0 = ContinuousClock.now
        for _ in 0..<10 { #expect(limiter.reserve(now: t0) == .zero) }
        #expect(limiter.reserve(now: t0) == .milliseconds(200))
        #expect(limiter.reserve(now: t0) == .milliseconds(400))
        // Two seconds later ten tokens have come back, two of them already promised.
        #expect(limiter.reserve(now: t0.advanced(by: .seconds(2))) == .zero)
        #expect(KubeRateLimiter(qps: 0, burst: 1).reserve(now: t0) == .zero)
    }

    @Test("the client waits for tokens: 12 requests at qps 20, burst 2 take at least half a second")
    func clientIsRateLimited() async throws {
        var options = fastOptions
        options.qps = 20
        options.burst = 2
        try await withFakeKube(options: options) { server, client in
            server.state.addNode("n1")
            let start = ContinuousClock.now
            for _ in 0..<12 { _ = try await client.getNode("n1") }
            #expect(start.duration(to: .now) >= .milliseconds(450))
        }
    }

    @Test("lists follow metadata.continue in pages of 500")
    func pagedList() async throws {
        try await withFakeKube { server, client in
            for i in 0..<1200 { server.state.addPod(name: "p\(i)", node: "n1") }
            let pods = try await client.listPods(onNode: "n1")
            #expect(pods.count == 1200)
            #expect(Set(pods.map(\.name)).count == 1200)
            #expect(server.state.stats.byRoute["GET pods (list)"] == 3)
        }
    }

    @Test("a cordon is recorded under the field manager nk3")
    func fieldManager() async throws {
        try await withFakeKube { server, client in
            server.state.addNode("n1")
            let outcome = try await client.cordon(node: "n1", by: "nk3", reason: "test")
            #expect(outcome == .cordoned)
            let owners = FakeKubeStrictTests.owners(server.state.object(.nodes, name: "n1"), ["spec", "unschedulable"])
            #expect(owners == ["nk3"])
            #expect(KubeClient.userAgent.hasPrefix("nk3/"))
        }
    }

    @Test("Lease names are DNS-1123 subdomains")
    func leaseNames() {
        #expect(KubeNames.dnsSubdomain("nk3-rollout-Prod_Cluster") == "nk3-rollout-prod-cluster")
        #expect(KubeNames.dnsSubdomain("nk3-rollout-café.eu-") == "nk3-rollout-caf-eu")
        #expect(KubeNames.isDNSSubdomain(KubeNames.dnsSubdomain("nk3-rollout-" + String(repeating: "a", count: 300))))
        #expect(KubeNames.dnsSubdomain("nk3-rollout-" + String(repeating: "a", count: 300)).count == 253)
        #expect(KubeNames.dnsSubdomain("--") == "x")
        #expect(!KubeNames.isDNSSubdomain("-a"))
        #expect(!KubeNames.isDNSSubdomain("A"))
    }

    @Test("a Lease expires on locally observed time: unchanged for its duration, whatever its renewTime says")
    func observedExpiry() {
        let t0 = ContinuousClock.now
        var o = LeaseObservation<ContinuousClock.Instant>()
        // renewTime far in the past (a holder whose clock is behind) does not make it expired on first sight.
        let spec = LeaseSpec(holderIdentity: "a", leaseDurationSeconds: 15, renewTime: "2000-01-01T00:00:00.000000Z")
        o.observe(spec, at: t0)
        #expect(!o.expired(at: t0.advanced(by: .seconds(14))))
        // A renewal seen at t0+10 moves the observation time.
        var renewed = spec
        renewed.renewTime = "2000-01-01T00:00:10.000000Z"
        o.observe(renewed, at: t0.advanced(by: .seconds(10)))
        #expect(!o.expired(at: t0.advanced(by: .seconds(20))))
        // The same record seen again does not.
        o.observe(renewed, at: t0.advanced(by: .seconds(20)))
        #expect(o.expired(at: t0.advanced(by: .seconds(25))))
        // No holder: free.
        var free = LeaseObservation<ContinuousClock.Instant>()
        free.observe(LeaseSpec(holderIdentity: ""), at: t0)
        #expect(free.expired(at: t0))
    }
}
