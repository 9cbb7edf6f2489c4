import Foundation
import NK3Agent

// The `nixos` channel on the simulated node (docs/UPSTREAM.md#channels): what `nix-channel --list` shows, adding
// one, and putting a saved state back. A SIMULATION.
extension SimulatedNode {
    func channelState(incarnation: Int?) throws -> ChannelState {
        try state.withLock { s in
            try checkAlive(s, incarnation)
            return ChannelState(
                listFile: s.channelList, profileGeneration: s.channelProfileGeneration,
                release: s.channelProfileGeneration.flatMap { s.channelGenerations[$0]?.release.channelRelease })
        }
    }

    func addChannel(url: String, name: String, incarnation: Int?) throws {
        // docs/UPSTREAM.md#channels: scheme and name are checked; nothing is downloaded; the list is keyed by name.
        guard url.hasPrefix("https://") || url.hasPrefix("http://") || url.hasPrefix("file://") else {
            throw NodeSystemError(.processFailed, "nix-channel --add \(url) \(name) exited 1: error: invalid channel URL '\(url)'")
        }
        guard name.range(of: #"^[a-zA-Z0-9_][a-zA-Z0-9_.-]*$"#, options: .regularExpression) != nil else {
            throw NodeSystemError(.processFailed, "nix-channel --add \(url) \(name) exited 1: error: invalid channel identifier '\(name)'")
        }
        try state.withLock { s in
            try checkAlive(s, incarnation)
            var entries = Self.channelEntries(s.channelList)
            entries[name] = url
            s.channelList = entries.sorted { $0.key < $1.key }.map { "\($0.value) \($0.key)\n" }.joined()
        }
        logger.info("[simulation] nix-channel --add \(url) \(name)")
    }

    func restoreChannel(_ saved: ChannelState, incarnation: Int?) throws {
        try state.withLock { s in
            try checkAlive(s, incarnation)
            s.channelList = saved.listFile
            if let g = saved.profileGeneration, s.channelProfileGeneration != g {
                guard s.channelGenerations[g] != nil else {
                    throw NodeSystemError(
                        .processFailed, "nix-channel --rollback \(g) exited 1: error: profile version \(g) does not exist")
                }
                s.channelProfileGeneration = g
            }
        }
    }
}
