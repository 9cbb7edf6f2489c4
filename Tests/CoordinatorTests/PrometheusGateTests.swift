import Foundation
import Logging
import NK3Coordinator
import NK3Simulation
import Testing

/// The alert gate against a real Prometheus (Debian's `prometheus`, 2.x): started on 127.0.0.1 with a rule
/// file in which one alert fires (`vector(1)`) and one never does, evaluated every second.
let prometheusPath: String? = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"].first {
    FileManager.default.isExecutableFile(atPath: $0)
}

/// A Prometheus server process in a temporary directory, stopped (SIGTERM, then SIGKILL) by `stop()`.
final class PrometheusProcess: @unchecked Sendable {
    // @unchecked: set up once in init, then only read; `process` is Foundation's thread-safe Process.
    let url: String
    let directory: URL
    let process: Process

    init(binary: String) throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-prom-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        try """
            global:
              evaluation_interval: 1s
            rule_files:
              - rules.yml
            """.write(to: directory.appendingPathComponent("prometheus.yml"), atomically: true, encoding: .utf8)
        // https://prometheus.io/docs/prometheus/latest/configuration/alerting_rules/
        try """
            groups:
              - name: nk3-test
                interval: 1s
                rules:
                  - alert: NodeOnFire
                    expr: vector(1)
                  - alert: NeverFires
                    expr: vector(0) > 1
            """.write(to: directory.appendingPathComponent("rules.yml"), atomically: true, encoding: .utf8)
        let port = try LoopbackSockets.freePort()
        url = "http://127.0.0.1:\(port)"
        process = Process()
        process.executableURL = URL(fileURLWithPath: binary)
        process.currentDirectoryURL = directory
        process.arguments = [
            "--config.file=\(directory.path)/prometheus.yml", "--storage.tsdb.path=\(directory.path)/data",
            "--web.listen-address=127.0.0.1:\(port)",
        ]
        let log = directory.appendingPathComponent("prometheus.log").path
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process.standardOutput = FileHandle(forWritingAtPath: log)
        process.standardError = FileHandle(forWritingAtPath: log)
        try process.run()
    }

    var log: String { (try? String(contentsOf: directory.appendingPathComponent("prometheus.log"), encoding: .utf8)) ?? "" }

    /// Polls the API until `NodeOnFire` fires (the first rule evaluation), within `deadline`.
    func waitUntilFiring(deadline: Duration = .seconds(60)) async throws -> Bool {
        let start = ContinuousClock.now
        let settings = PrometheusGateSettings(url: url)
        while ContinuousClock.now - start < deadline {
            if !process.isRunning { return false }
            let alerts = try? await PrometheusAlertsClient.withClient(settings) { try await $0.alerts() }
            if alerts?.contains(where: { $0.name == "NodeOnFire" && $0.state == "firing" }) == true { return true }
            try await Task.sleep(for: .milliseconds(100))
        }
        return false
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            let start = ContinuousClock.now
            while process.isRunning && ContinuousClock.now - start < .seconds(10) { usleep(20_000) }
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        }
        process.waitUntilExit()
        try? FileManager.default.removeItem(at: directory)
    }
}

@Suite(
    "Alert gate against a real Prometheus", .serialized, .timeLimit(.minutes(3)),
    .enabled(if: prometheusPath != nil, "prometheus is not installed (apt-get install prometheus; .ci/run does)"))
struct PrometheusGateTests {
    @Test func firingAlertsAreReportedByNameAndFiltered() async throws {
        let prom = try PrometheusProcess(binary: prometheusPath!)
        defer { prom.stop() }
        #expect(try await prom.waitUntilFiring(), "NodeOnFire never fired: \(prom.log.suffix(2000))")
        func blocking(_ filter: String) async throws -> [String] {
            try await PrometheusAlertsClient.withClient(PrometheusGateSettings(url: prom.url, alertFilter: filter)) {
                try await $0.blocking()
            }
        }
        #expect(try await blocking(".*") == ["NodeOnFire"])
        #expect(try await blocking("Node.*") == ["NodeOnFire"])
        #expect(try await blocking("Node") == [], "the filter is anchored, as Prometheus anchors =~")
        #expect(try await blocking("NeverFires") == [])
    }

    @Test func aNodeDoesNotStartWhileAMatchingAlertFiresAndStartsWhenNoneMatches() async throws {
        let prom = try PrometheusProcess(binary: prometheusPath!)
        defer { prom.stop() }
        #expect(try await prom.waitUntilFiring(), "NodeOnFire never fired: \(prom.log.suffix(2000))")

        // A filter that matches the firing alert: the node is held, named, and nothing is sent.
        let held = ExecutorRig(agents: ["a1"])
        let settings = PrometheusGateSettings(url: prom.url, alertFilter: "NodeOn.*")
        var policy = NodeStartPolicy(alertRecheck: .milliseconds(500))
        policy.blockingAlerts = { try await PrometheusAlertsClient.withClient(settings) { try await $0.blocking() } }
        let run = Task { try await StartHoldTests.executor(held, policy: policy).run(held.plan()) }
        #expect(await StartHoldTests.waitForMessage(held, "a1 waits: Prometheus alert(s) firing: NodeOnFire"))
        #expect(await !held.world.calls.contains { $0.hasPrefix("submit") })
        run.cancel()
        _ = await run.result
        #expect(await !held.world.calls.contains { $0.hasPrefix("submit") }, "the held node was never sent its bundle")

        // A filter that matches only the alert that does not fire: the rollout runs through.
        let free = ExecutorRig(agents: ["a1"])
        let quiet = PrometheusGateSettings(url: prom.url, alertFilter: "NeverFires")
        var open = NodeStartPolicy(alertRecheck: .milliseconds(500))
        open.blockingAlerts = { try await PrometheusAlertsClient.withClient(quiet) { try await $0.blocking() } }
        _ = try await StartHoldTests.executor(free, policy: open).run(free.plan())
        await free.expectConverged()
        #expect(!free.sink.messages.contains { $0.contains("waits") })
    }
}
