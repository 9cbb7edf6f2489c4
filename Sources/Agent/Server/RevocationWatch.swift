#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
#if canImport(Glibc)
import Glibc
#endif
import Logging
import NK3Common
import NK3Protocol
import Synchronization

/// The deny-list of client certificates, re-read from the agent's configuration file whenever that file changes.
///
/// The NixOS module keeps the agent running across a `nixos-rebuild switch` (`restartIfChanged = false`, see
/// nix/module.nix), so a new `config.json` would otherwise take effect only at the next restart: a revocation
/// pushed with a rollout must act at once. Each check costs one `stat` of the file; only a changed file (another
/// inode, size or modification time — `/etc/nk3-agent/config.json` is a symlink that activation repoints) is parsed
/// again, and only its `revokedCertificates` key is read. A file that cannot be read or parsed keeps the entries
/// known so far (never fewer) and is logged.
public final class RevocationWatch: Sendable {
    /// The file watched (nil: the list given at start is fixed).
    public let path: String?
    private let state: Mutex<(stamp: [Int]?, list: RevocationList)>
    private let logger: Logger

    /// Watches `path` (may be nil), starting from `initial`.
    public init(path: String?, initial: RevocationList, logger: Logger) {
        self.path = path
        self.logger = logger
        state = Mutex((path.flatMap(Self.stamp), initial))
    }

    /// The deny-list now.
    public var current: RevocationList {
        guard let path else { return state.withLock { $0.list } }
        let stamp = Self.stamp(path)
        if let known = state.withLock({ $0.stamp }), known == stamp { return state.withLock { $0.list } }
        let reloaded = Self.load(path)
        return state.withLock { s in
            s.stamp = stamp
            switch reloaded {
            case .success(let list):
                if list != s.list {
                    logger.notice("revoked client certificates reloaded", metadata: ["agent.revoked": "\(list.entries.count)"])
                }
                s.list = list
            case .failure(let error):
                logger.warning("cannot reload revokedCertificates from \(path): \(error.message); keeping the previous list")
            }
            return s.list
        }
    }

    private struct Section: Decodable { var revokedCertificates: [String]? }

    private static func load(_ path: String) -> Result<RevocationList, WireError> {
        do {
            let data = try SecureFiles.read(path)
            let section = try JSONDecoder().decode(Section.self, from: data)
            return .success(try RevocationList(section.revokedCertificates ?? []))
        } catch let error as WireError {
            return .failure(error)
        } catch let error as SecureFileError {
            return .failure(WireError(.internalError, error.message))
        } catch {
            return .failure(WireError(.malformed, "\(error)"))
        }
    }

    /// Device, inode, size and modification time of what `path` points to (nil: cannot stat).
    private static func stamp(_ path: String) -> [Int]? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return [Int(st.st_dev), Int(st.st_ino), Int(st.st_size), Int(st.st_mtim.tv_sec), Int(st.st_mtim.tv_nsec)]
    }
}
