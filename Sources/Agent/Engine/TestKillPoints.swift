#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#endif

// Kill points for the kill -9 matrix (Tests/AgentTests/KillMatrixTests.swift).
//
// The boundary: kill points exist only when NK3Agent is compiled with `NK3_TEST_HOOKS`, which Package.swift
// defines for the debug configuration alone (what `swift build` / `swift test` build). A release build
// (`swift build -c release`, the binary nix/ wraps and `nk3 bootstrap` ships) compiles every call below to
// nothing: no environment variable is read, there is no hook to set, and the variable's name is not in the
// binary (`scripts/check-release-hooks.sh` checks that with `strings`). No public API carries a hook.

/// Where a test may have the agent SIGKILL itself: `NK3_AGENT_TEST_KILL_AT=<point>`, matched exactly or as a
/// prefix followed by `:`. Points: `persisted:<phase>` after every state write, `before:<step>` before every
/// apply step, `file-replaced:<name>` after each configuration file is written, restored or removed.
enum TestKillPoints {
    #if NK3_TEST_HOOKS
    static let killAt: String? = ProcessInfo.processInfo.environment["NK3_AGENT_TEST_KILL_AT"]
    #endif

    /// The process reached `point`: in a test build with the variable naming it, die of SIGKILL here.
    @inline(__always)
    static func reached(_ point: @autoclosure () -> String) {
        #if NK3_TEST_HOOKS
        guard let killAt else { return }
        let point = point()
        guard point == killAt || point.hasPrefix(killAt + ":") else { return }
        let line = Array("nk3-agent: test kill point: SIGKILL at \(point)\n".utf8)
        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        kill(getpid(), SIGKILL)
        #endif
    }
}
