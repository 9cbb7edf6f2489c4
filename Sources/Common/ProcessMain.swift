import Dispatch

/// The entry point of `nk3` and `nk3-agent`: the command runs on Swift's global executor while the main thread
/// waits for it. An `async` main leaves the main thread through `dispatch_main()` on Linux, and valgrind 3.19
/// (Debian 12's) crashes in such a process — a four-line `dispatchMain()` program reproduces it — which kept
/// `scripts/bench-instructions.sh` and `scripts/rss-by-module.py --callgrind` from running. Neither program runs
/// anything on the main actor or the main dispatch queue; signals reach ServiceLifecycle through dispatch sources,
/// which do not need the main queue.
public enum ProcessMain {
    /// Runs `command` (a command's `main()`) and returns when it does.
    public static func run(_ command: @escaping @Sendable () async -> Void) {
        let finished = DispatchSemaphore(value: 0)
        Task.detached {
            await command()
            finished.signal()
        }
        finished.wait()
    }
}
