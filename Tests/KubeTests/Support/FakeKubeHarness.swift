import Foundation
import Logging
import NK3Kube
import NK3Simulation

/// A logger that discards everything (libraries never bootstrap logging).
let quietLogger = Logger(label: "nk3.tests.kube") { _ in SwiftLogNoOpLogHandler() }

/// Client options for tests: fast retries so fault tests finish quickly, and no client-side rate limit (tested on
/// its own in `PoliteClientTests`).
let fastOptions = KubeClient.Options(
    requestTimeout: .seconds(20), maxAttempts: 5, initialBackoff: .milliseconds(5), maxBackoff: .milliseconds(20), qps: 0)

/// Starts a fake API server (real TLS on 127.0.0.1, fresh CA) and a client with a fresh client certificate.
func withFakeKube<R: Sendable>(
    options: KubeClient.Options = fastOptions,
    _ body: (FakeKubeServer, KubeClient) async throws -> R
) async throws -> R {
    let server = try await FakeKubeServer.start(logger: quietLogger)
    do {
        let r = try await KubeClient.withClient(config: try server.clientConfig(), options: options, logger: quietLogger) {
            try await body(server, $0)
        }
        await server.shutdown()
        return r
    } catch {
        await server.shutdown()
        throw error
    }
}

/// Polls `condition` every few milliseconds until it holds or `timeout` (generous) passes.
func eventually(
    timeout: Duration = .seconds(90), _ condition: @Sendable () async throws -> Bool
) async throws -> Bool {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while clock.now < deadline {
        if try await condition() { return true }
        try await Task.sleep(for: .milliseconds(5))
    }
    return try await condition()
}

/// A fresh temporary directory.
func temporaryDirectory() throws -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-kube-\(UUID().uuidString)").path
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}
