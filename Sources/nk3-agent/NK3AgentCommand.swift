import ArgumentParser
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import Logging
import NK3Agent
import NK3Common
import NK3Protocol
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#endif

/// The process entry point (`ProcessMain`: the main thread waits instead of leaving through `dispatch_main()`).
@main
enum NK3AgentMain {
    static func main() { ProcessMain.run { await NK3AgentCommand.main() } }
}

/// `nk3-agent`: the node agent. Parses, wires, runs (as swift-argument-parser's examples do); all behaviour lives in
/// NK3Agent.
struct NK3AgentCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "nk3-agent",
        abstract: "nk3 node agent: applies signed NixOS configuration bundles with automatic rollback.",
        discussion: """
            Listens on HTTPS with mutual TLS (client certificates from the cluster CA), accepts commands signed by a pinned Ed25519 key (apply, confirm, reboot, rollback), lands bundles in the NixOS configuration directory, runs nixos-rebuild, and rolls back by itself when a change is not confirmed in time. Reports kernel, generations, boot id and kubelet state at GET /v1/status, metrics at GET /metrics.

            --config names a JSON file (the NixOS module writes it from services.nk3-agent.settings). Required: nodeName, tls {certFile, keyFile (mode 0600), caFile}, signingPublicKeys (base64 of 32 raw bytes each). Optional, with defaults: listenAddress 0.0.0.0, port 7443, stateDir /var/lib/nk3-agent, configDir /etc/nixos, k3sUnit k3s, kubeletHealthzURL http://127.0.0.1:10248/healthz, confirmTimeoutSeconds 600, revokedCertificates [] (client certificates refused: serial:HEX or sha256:HEX, re-read whenever the file changes), commands {nixosRebuild, nixChannel, nixEnv, systemctl}, paths {currentSystem, bootedSystem, systemProfile, channelsFile, channelsProfile, osrelease, bootID, uptime, hostname}. Unknown keys are refused.

            Logs go to stderr (the journal). SIGTERM shuts down gracefully; an apply in flight is resumed or rolled back at the next start.
            """,
        version: NK3Wire.softwareVersion,
        subcommands: [Serve.self, RunOnce.self],
        defaultSubcommand: Serve.self
    )
}

struct CommonOptions: ParsableArguments {
    @Option(name: .long, help: "Path of the agent's JSON configuration file.")
    var config: String = "/etc/nk3-agent/config.json"

    @Option(name: .long, help: "Log level: trace, debug, info, notice, warning, error, critical.")
    var logLevel: String = "info"

    func makeLogger() -> Logger {
        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = level
            return h
        }
        return Logger(label: "nk3-agent")
    }

    func loadConfig() throws -> AgentConfig {
        do {
            return try AgentConfig.load(path: config)
        } catch {
            throw ValidationError(error.description)
        }
    }
}

func makeEngine(_ config: AgentConfig, logger: Logger) throws -> ApplyEngine {
    let system = NixOSSystem(options: config.nixOSOptions(), logger: logger)
    return try ApplyEngine(system: system, stateDir: config.stateDir, k3sUnit: config.k3sUnit, logger: logger)
}

extension NK3AgentCommand {
    /// Serve: the daemon (default).
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run the agent: HTTPS/mTLS server, apply engine and confirm-deadline watcher (default).")

        @OptionGroup var options: CommonOptions

        func run() async throws {
            let logger = options.makeLogger()
            let config = try options.loadConfig()
            let engine = try makeEngine(config, logger: logger)
            var settings = serverConfig(config)
            settings.revocationFile = options.config  // a revocation pushed with a rollout acts without a restart
            let server = try AgentServer(config: settings, engine: engine, logger: logger)
            let group = ServiceGroup(
                configuration: .init(
                    services: [.init(service: engine), .init(service: server)],
                    gracefulShutdownSignals: [.sigterm, .sigint], logger: logger))
            logger.info(
                "nk3-agent starting",
                metadata: ["agent.node": "\(config.nodeName)", "agent.version": "\(NK3Wire.softwareVersion)"])
            try await group.run()
        }
    }

    /// Run the engine once without the HTTPS server (tests and break-glass on the node).
    struct RunOnce: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "run-once",
            abstract: "Resume any interrupted apply, optionally carry out one signed envelope, wait, print status.",
            discussion: """
                Without the HTTPS front end: the envelope must still be signed by a pinned key, addressed to
                this node and unexpired, but the last-accepted serial is not checked (run as root on the node).
                """,
            shouldDisplay: false)

        @OptionGroup var options: CommonOptions

        @Option(name: .long, help: "A signed envelope (JSON) to carry out.")
        var envelope: String?

        func run() async throws {
            let logger = options.makeLogger()
            let config = try options.loadConfig()
            let engine = try makeEngine(config, logger: logger)
            await engine.start()
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            encoder.dateEncodingStrategy = .iso8601
            if let envelope {
                let verifier = try serverConfig(config).makeVerifier()
                let data = try Data(contentsOf: URL(fileURLWithPath: envelope))
                let payload: CommandPayload
                do {
                    payload = try verifier.verify(envelopeJSON: data, lastAcceptedSerial: nil, now: Date())
                } catch {
                    throw ValidationError("envelope refused: \(error.description)")
                }
                do {
                    let receipt = try await engine.handle(payload)
                    print(String(decoding: try encoder.encode(receipt), as: UTF8.self))
                } catch let error as WireError {
                    writeStandardError("nk3-agent: refused: \(error.description)\n")
                    throw ExitCode(3)
                }
            }
            await engine.waitUntilSettled()
            print(String(decoding: try encoder.encode(await engine.status()), as: UTF8.self))
        }
    }
}

/// Writes `text` to fd 2 unbuffered.
func writeStandardError(_ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let n = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        guard n > 0 else { return }
        bytes = bytes.dropFirst(n)
    }
}

/// The HTTPS front end's settings from the agent configuration.
func serverConfig(_ config: AgentConfig) -> AgentServerConfig {
    AgentServerConfig(
        host: config.listenAddress, port: config.port, certificate: .file(config.tls.certFile),
        privateKey: .file(config.tls.keyFile), clientCA: .file(config.tls.caFile),
        signingPublicKeys: config.signingPublicKeys, nodeName: config.nodeName, stateDirectory: config.stateDir,
        revokedCertificates: config.revokedCertificates)
}
