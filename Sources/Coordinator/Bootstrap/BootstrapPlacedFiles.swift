import Crypto
import Foundation
import NK3Protocol

/// A file bootstrap places outside /etc/nixos, with its content on the coordinator's side: the k3s join
/// token (text from the inventory) or the agent binary (a local file), and the SHA-256 the preflight compares.
struct PlacedContent: Sendable {
    enum Source: Sendable {
        case text(String)
        case localFile(String)
    }

    var file: PlacedFile
    var source: Source
    /// Hex SHA-256 of the content.
    var sha256: String

    /// Writes (or copies) the content into the local scratch directory under its staged name; returns the path.
    func stage(in scratch: LocalScratch) throws -> String {
        switch source {
        case .text(let text):
            return try scratch.write(file.stagedName, text, permissions: 0o600)
        case .localFile(let path):
            let target = scratch.path + "/" + file.stagedName
            try FileManager.default.copyItem(atPath: path, toPath: target)
            return target
        }
    }
}

extension NodeBootstrapper {
    /// The placed files for `target`: the k3s token when the materials have one, the agent binary when the
    /// settings name one.
    func placedContents(_ target: BootstrapTarget) async throws(BootstrapError) -> [PlacedContent] {
        var placed: [PlacedContent] = []
        if let path = settings.agentBinary {
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: path))
            } catch {
                throw BootstrapError(.materials, node: target.name, "cannot read the agent binary \(path): \(error)")
            }
            // An ELF executable: the first bytes are 0x7f 'E' 'L' 'F' (the ELF specification's e_ident).
            guard data.starts(with: [0x7f, 0x45, 0x4c, 0x46]) else {
                throw BootstrapError(.materials, node: target.name, "\(path) is not an ELF executable (nk3-agent for Linux)")
            }
            // A debug build carries the kill -9 matrix's kill points (Sources/Agent/Engine/TestKillPoints.swift);
            // only release builds, which have none, go to a node.
            if data.range(of: Data("NK3_AGENT_TEST_KILL_AT".utf8)) != nil {
                throw BootstrapError(
                    .materials, node: target.name,
                    "\(path) is a debug build of nk3-agent (it has test kill points); build one with "
                        + "`swift build -c release --static-swift-stdlib --product nk3-agent` and pass it with --agent-binary")
            }
            placed.append(
                PlacedContent(file: .agentBinary, source: .localFile(path), sha256: Hex.lowercase(SHA256.hash(data: data))))
        }
        let token: String?
        do {
            token = try await materials.k3sToken(for: target)
        } catch {
            throw BootstrapError(.materials, node: target.name, "cannot get the k3s join token: \(error)")
        }
        if let token, !token.isEmpty {
            guard token.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value < 0x7f }) else {
                throw BootstrapError(
                    .invalidInput, node: target.name, "the k3s join token must be printable ASCII without spaces")
            }
            placed.append(PlacedContent(file: .k3sToken, source: .text(token), sha256: sha256Hex(token)))
        }
        return placed
    }
}
