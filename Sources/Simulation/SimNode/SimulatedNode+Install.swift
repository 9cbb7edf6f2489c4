import Foundation
import NK3Agent
import NK3Protocol

extension SimulatedNode {
    /// [simulation] Finishes the install the way `nk3 bootstrap` leaves a node: `files` (rendered from the final
    /// inventory, once the simulated agents have their ports) replace the managed files in /etc/nixos, and
    /// generation 1 is the system built from them. Only before the node's first rebuild: afterwards the
    /// generations are history and must not be rewritten.
    /// - Throws: `NodeSystemError(.invalidInput)` after a rebuild, or for a file name a bundle could not carry.
    public func completeInstall(files: [String: String]) throws {
        let fresh = state.withLock { s in
            s.rebuilds == 0 && s.generations.count == 1 && s.generations[1].map { g in
                s.currentSystem == g.storePath && s.bootedSystem == g.storePath
            } == true && s.channelGenerations[1] != nil
        }
        guard fresh else {
            throw NodeSystemError(.invalidInput, "[simulation] \(hostname) has rebuilt already; its install cannot be redone")
        }
        try replaceConfigFiles(with: files, incarnation: nil)
        state.withLock { s in
            guard let first = s.generations[1], let release = s.channelGenerations[1]?.release else { return }
            let path = Self.storePath(host: hostname, files: s.files, release: release)
            s.store[first.storePath] = nil
            s.store[path] = Built(kernel: release.kernel, nixosVersion: release.nixosVersion)
            s.generations[1] = Generation(
                number: 1, storePath: path, kernel: release.kernel, nixosVersion: release.nixosVersion)
            s.currentSystem = path
            s.bootedSystem = path
        }
    }
}
