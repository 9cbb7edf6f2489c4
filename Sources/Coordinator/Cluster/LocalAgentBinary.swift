import Crypto
import Foundation
import NK3Protocol

/// A release nk3-agent binary on this machine, to ship to nodes (`nk3 bootstrap --agent-binary`, inventory
/// `agent_binary`), with the SHA-256 the rendered `nk3-agent.nix` pins it by.
public struct LocalAgentBinary: Sendable {
    /// Where it was read from.
    public let path: String
    /// Its bytes.
    public let data: Data
    /// Lowercase hex SHA-256 of `data`.
    public let sha256: String

    /// Reads and checks the binary: an ELF executable, and a release build (a debug build carries the kill -9
    /// matrix's kill points, Sources/Agent/Engine/TestKillPoints.swift, and never goes to a node).
    public init(path: String) throws(CoordinatorError) {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw CoordinatorError(.invalidInput, "cannot read the agent binary \(path): \(error.localizedDescription)")
        }
        try self.init(path: path, data: data)
    }

    /// Checks `data` as read from `path` (see `init(path:)`).
    public init(path: String, data: Data) throws(CoordinatorError) {
        // An ELF executable: the first bytes are 0x7f 'E' 'L' 'F' (the ELF specification's e_ident).
        guard data.starts(with: [0x7f, 0x45, 0x4c, 0x46]) else {
            throw CoordinatorError(.invalidInput, "\(path) is not an ELF executable (nk3-agent for Linux)")
        }
        if data.range(of: Data("NK3_AGENT_TEST_KILL_AT".utf8)) != nil {
            throw CoordinatorError(
                .invalidInput,
                "\(path) is a debug build of nk3-agent (it has test kill points); build one with "
                    + "`swift build -c release --static-swift-stdlib --product nk3-agent` (scripts/build-agent-release.sh)")
        }
        guard data.count <= StageAgentBinaryCommand.maxSize else {
            throw CoordinatorError(
                .invalidInput, "\(path) is \(data.count) bytes, more than an agent takes (\(StageAgentBinaryCommand.maxSize))")
        }
        self.path = path
        self.data = data
        self.sha256 = Hex.lowercase(SHA256.hash(data: data))
    }

    /// How the rendered `nk3-agent.nix` names it: the node's copy under its SHA-256, pinned by that digest.
    public var nixBinary: AgentNix.Binary {
        AgentNix.Binary(path: AgentNix.binaryPath(sha256: sha256), sha256: sha256)
    }
}
