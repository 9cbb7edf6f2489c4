#if canImport(Glibc)
import Glibc

/// Spawn-time file actions that Swift's Glibc module does not import.
public enum SpawnFileActions {
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>?, Int32) -> Int32

    /// glibc ≥ 2.34's `posix_spawn_file_actions_addclosefrom_np`, looked up at run time.
    private static let addCloseFrom: AddCloseFrom? = {
        guard let sym = dlsym(nil, "posix_spawn_file_actions_addclosefrom_np") else { return nil }
        return unsafeBitCast(sym, to: AddCloseFrom.self)
    }()

    /// Adds "close every descriptor from `lowest` up" to `actions`, so that nothing of the parent's (listening
    /// sockets, connections, state files, descriptors a library opened without CLOEXEC) reaches the child.
    /// Returns false when this libc cannot (then only CLOEXEC descriptors are closed).
    @discardableResult
    public static func closeFrom(_ lowest: Int32, in actions: inout posix_spawn_file_actions_t) -> Bool {
        guard let addCloseFrom else { return false }
        return addCloseFrom(&actions, lowest) == 0
    }
}
#endif
