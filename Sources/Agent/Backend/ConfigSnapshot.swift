#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// What the configuration directory held, for every name an apply may change, before the apply changed
/// anything: saved before staging and put back exactly by a revert or a rollback.
///
/// The names are the bundle's files plus every file nk3 manages at that moment (staging removes managed files
/// the bundle no longer has). A name that did not exist is saved as `.absent`, so that restoring removes what
/// the bundle created; a name that did exist comes back with the same bytes and permission bits, or as the
/// same symbolic link. Files nk3 never managed (the machine's own `hardware-configuration.nix`, a symlinked
/// `configuration.nix`) are therefore restored, never deleted.
public struct ConfigSnapshot: Codable, Sendable, Hashable {
    /// One saved name.
    public enum Entry: Codable, Sendable, Hashable {
        /// Nothing by that name existed.
        case absent
        /// A regular file: its bytes and permission bits (`st_mode & 0o7777`).
        case file(content: Data, mode: UInt16)
        /// A symbolic link and its target, as `readlink` returns it (not resolved).
        case symlink(target: String)
    }

    /// Name (flat, in the configuration directory) → what it was.
    public var entries: [String: Entry]
    /// The managed-file record as it was; nil if there was none.
    public var managedNames: [String]?

    /// Makes a snapshot.
    public init(entries: [String: Entry], managedNames: [String]?) {
        self.entries = entries
        self.managedNames = managedNames
    }

    /// A snapshot of regular files only (mode 0644), with these files as the managed set: what an agent before
    /// snapshots saved (its baseline held the managed files' text), and a convenience for tests.
    public init(files: [String: String], mode: UInt16 = 0o644) {
        entries = files.mapValues { .file(content: Data($0.utf8), mode: mode) }
        managedNames = files.keys.sorted()
    }

    /// Names that existed (as a file or a link).
    public var presentNames: [String] {
        entries.filter { $0.value != .absent }.keys.sorted()
    }
}
