#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NK3Common
import NK3Protocol

/// Durable home of the apply state machine: one JSON file in the state directory, written atomically
/// (temp + fsync + rename + fsync dir) before every side effect.
struct ApplyStateStore: Sendable {
    private struct File: Codable {
        var version: Int
        var state: ApplyMachine.State
    }

    let path: String

    init(stateDir: String) {
        path = "\(stateDir)/apply-state.json"
    }

    func load() throws -> ApplyMachine.State {
        guard SecureFiles.exists(path) else { return ApplyMachine.State() }
        do {
            let data = try SecureFiles.read(path)
            let file = try CanonicalJSON.decode(File.self, from: data)
            guard file.version == 1 else {
                throw WireError(.internalError, "\(path) has version \(file.version); this agent reads version 1")
            }
            return file.state
        } catch let e as WireError {
            throw e
        } catch {
            // Never silently forget an apply in flight: refuse to start and say what to do.
            throw WireError(
                .internalError,
                "cannot read the apply state \(path): \(StrictJSON.describe(error)). Inspect it; moving it away "
                    + "makes the agent forget any apply in progress (check /etc/nixos and the system profile by hand)")
        }
    }

    func save(_ state: ApplyMachine.State) throws {
        let data = try CanonicalJSON.encode(File(version: 1, state: state))
        try SecureFiles.writeAtomically(data, to: path, permissions: 0o600)
    }
}
