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
            let binary: LocalAgentBinary
            do {
                binary = try LocalAgentBinary(path: path)
            } catch {
                throw BootstrapError(.materials, node: target.name, error.message)
            }
            placed.append(PlacedContent(file: .agentBinary, source: .localFile(path), sha256: binary.sha256))
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
