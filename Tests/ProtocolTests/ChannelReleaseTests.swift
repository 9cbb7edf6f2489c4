import NK3Protocol
import Testing

@Suite("ChannelRelease: a channel's exact release and its fixed URL")
struct ChannelReleaseTests {
    let release = ChannelRelease(
        version: "24.05", versionSuffix: ".4100.f6e5d4c3b2a1", gitRevision: "f6e5d4c3b2a1" + String(repeating: "0", count: 28))

    @Test("both nixos.org spellings of a channel pin to releases.nixos.org/nixos/SERIES/nixos-VERSIONSUFFIX")
    func pinned() {
        #expect(release.name == "nixos-24.05.4100.f6e5d4c3b2a1")
        #expect(release.nixosVersion == "24.05.4100.f6e5d4c3b2a1")
        for url in ["https://channels.nixos.org/nixos-24.05", "https://nixos.org/channels/nixos-24.05/"] {
            #expect(release.pinnedURL(forChannel: url) == "https://releases.nixos.org/nixos/24.05/nixos-24.05.4100.f6e5d4c3b2a1")
        }
        #expect(ChannelRelease.nixosChannelSeries("https://channels.nixos.org/nixos-unstable") == "unstable")
        #expect(ChannelRelease.nixosChannelSeries("https://channels.nixos.org/nixos-24.05-small") == "24.05-small")
    }

    @Test("no pin for other hosts, other paths, or fields that could smuggle text into a URL or an argument")
    func refused() {
        for url in [
            "https://mirror.example.org/nixos-24.05", "http://channels.nixos.org/nixos-24.05",
            "https://channels.nixos.org/nixpkgs-unstable", "https://channels.nixos.org/nixos-24.05/x",
            "https://channels.nixos.org/nixos-", "https://channels.nixos.org/nixos-24.05?x=1",
        ] {
            #expect(release.pinnedURL(forChannel: url) == nil, "\(url)")
        }
        for bad in [
            ChannelRelease(version: "24.05", versionSuffix: ".1 2", gitRevision: nil),
            ChannelRelease(version: "24.05\n", versionSuffix: ".1", gitRevision: nil),
            ChannelRelease(version: "-rf", versionSuffix: ".1", gitRevision: nil),
            ChannelRelease(version: "24.05", versionSuffix: ".1/../x", gitRevision: nil),
            ChannelRelease(version: "24.05", versionSuffix: ".1", gitRevision: "abc;rm"),
            ChannelRelease(version: "", versionSuffix: ".1", gitRevision: nil),
        ] {
            #expect(!bad.isWellFormed, "\(bad)")
            #expect(bad.pinnedURL(forChannel: "https://channels.nixos.org/nixos-24.05") == nil)
        }
    }
}
