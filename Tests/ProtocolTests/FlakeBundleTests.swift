import NK3Protocol
import Testing

#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Flake bundles on the wire and their validation; reading a flake.lock.
@Suite("Protocol: flake bundles and flake.lock")
struct FlakeBundleTests {
    static let revA = String(repeating: "a", count: 40)
    static func lock(rev: String, key: String = "nixpkgs") -> String {
        """
        {"nodes":{"\(key)":{"locked":{"lastModified":1720000000,"narHash":"sha256-x","owner":"NixOS","repo":"nixpkgs",\
        "rev":"\(rev)","type":"github"},"original":{"owner":"NixOS","ref":"nixos-24.05","repo":"nixpkgs","type":"github"}},\
        "root":{"inputs":{"nixpkgs":"\(key)"}}},"root":"root","version":7}
        """
    }
    static let files = ["configuration.nix": "{ }", "flake.nix": "{ outputs = _: { }; }", "flake.lock": lock(rev: revA)]

    @Test func aFlakeBundleRoundTripsAndAChannelBundleHeaderHasNoFlakeKey() throws {
        let now = Date(timeIntervalSince1970: 1_750_000_000)
        let flake = CommandPayload(
            node: "node-a", serial: 3, issuedAt: now, expiresAt: now.addingTimeInterval(60),
            command: .apply(ApplyBundle(files: Self.files, action: .boot, upgrade: true, flake: "node-a")))
        let back = try CommandPayload(wireBytes: try flake.wireBytes())
        #expect(back == flake)
        guard case .apply(let b) = back.command else { Issue.record("not an apply"); return }
        #expect(b.flake == "node-a")

        let channel = CommandPayload(
            node: "node-a", serial: 3, issuedAt: now, expiresAt: now.addingTimeInterval(60),
            command: .apply(ApplyBundle(files: ["configuration.nix": "{ }"], action: .boot)))
        let bytes = try channel.wireBytes()
        let header = String(decoding: bytes.prefix(while: { $0 != 0x0A }), as: UTF8.self)
        #expect(!header.contains("flake"), "\(header)")
    }

    @Test func validation() {
        #expect(ApplyBundle(files: Self.files, action: .boot, flake: "node-a").validationProblem() == nil)
        var noLock = Self.files
        noLock["flake.lock"] = nil
        #expect(ApplyBundle(files: noLock, action: .boot, flake: "n").validationProblem()?.contains("no flake.lock") == true)
        #expect(ApplyBundle(files: noLock, action: .boot, upgrade: true, flake: "n").validationProblem() != nil)
        var noFlake = Self.files
        noFlake["flake.nix"] = nil
        #expect(ApplyBundle(files: noFlake, action: .boot, flake: "n").validationProblem()?.contains("no flake.nix") == true)
        #expect(ApplyBundle(files: Self.files, action: .boot, nixChannel: "https://x/y", flake: "n").validationProblem() != nil)
        #expect(ApplyBundle(files: Self.files, action: .boot).validationProblem()?.contains("must name the flake attribute") == true)
        for bad in ["", "a.b", "1node", "-x", "a b", "a\"b", "x'", String(repeating: "a", count: 64)] {
            #expect(!ApplyBundle.isValidFlakeAttribute(bad), "\(bad)")
            #expect(ApplyBundle(files: Self.files, action: .boot, flake: bad).validationProblem() != nil, "\(bad)")
        }
        for good in ["node-a", "k3s_1", "_x", "N1", String(repeating: "a", count: 63)] {
            #expect(ApplyBundle.isValidFlakeAttribute(good), "\(good)")
        }
    }

    @Test func lockReading() {
        #expect(FlakeLock.locked(Self.lock(rev: Self.revA))?.revision == Self.revA)
        #expect(FlakeLock.locked(Self.lock(rev: Self.revA))?.lastModified == 1_720_000_000)
        // The root's inputs are followed: a second nixpkgs is locked as nixpkgs_2.
        #expect(FlakeLock.locked(Self.lock(rev: Self.revA, key: "nixpkgs_2"))?.revision == Self.revA)
        #expect(FlakeLock.locked(Self.lock(rev: "not-a-rev"))?.revision == nil)
        #expect(FlakeLock.locked("not json") == nil)
        #expect(FlakeLock.locked(#"{"nodes":{"root":{}},"root":"root","version":7}"#) == nil)
        let report = FlakeLock.report(Self.lock(rev: Self.revA))
        #expect(report.nixpkgsRevision == Self.revA)
        #expect(report.content == Self.lock(rev: Self.revA))
        #expect(report.sha256 == ConfigFiles.hash(content: Self.lock(rev: Self.revA)))
        #expect(FlakeLock.report(String(repeating: " ", count: FlakeLock.maxReportedBytes + 1)).content == nil)
    }
}
