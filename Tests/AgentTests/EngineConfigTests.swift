import Foundation
import NK3Agent
import NK3Protocol
import NK3Simulation
import Testing

#if canImport(Glibc)
import Glibc
#endif

@Suite("AgentConfig and the nk3-agent executable", .serialized, .timeLimit(.minutes(2)))
struct EngineConfigTests {
    let key = Data(repeating: 7, count: 32).base64EncodedString()

    var minimal: String {
        #"{"nodeName":"node1","tls":{"certFile":"/c","keyFile":"/k","caFile":"/ca"},"signingPublicKeys":["\#(key)"]}"#
    }

    @Test("minimal file: every optional key takes the documented default")
    func defaults() throws {
        let c = try AgentConfig.parse(Data(minimal.utf8))
        #expect(c.listenAddress == "0.0.0.0" && c.port == 7443)
        #expect(c.stateDir == "/var/lib/nk3-agent" && c.configDir == "/etc/nixos")
        #expect(c.k3sUnit == "k3s" && c.kubeletHealthzURL == "http://127.0.0.1:10248/healthz")
        #expect(c.confirmTimeoutSeconds == 600)
        #expect(c.commands == AgentConfig.Commands())
        #expect(c.commands.nixosRebuild == "nixos-rebuild" && c.commands.systemctl == "systemctl")
        #expect(c.paths.systemProfile == "/nix/var/nix/profiles/system")
        #expect(c.paths.channelsFile == "/root/.nix-channels" && c.paths.bootID == "/proc/sys/kernel/random/boot_id")
    }

    @Test("the full shape the NixOS module renders parses and round-trips")
    func fullShape() throws {
        let json = #"""
            {"nodeName": "n", "listenAddress": "::", "port": 9443,
             "tls": {"certFile": "/a", "keyFile": "/b", "caFile": "/c"},
             "signingPublicKeys": ["\#(key)"], "stateDir": "/s", "configDir": "/e", "k3sUnit": "k3s-agent",
             "kubeletHealthzURL": "http://[::1]:10248/healthz", "confirmTimeoutSeconds": 900,
             "commands": {"nixosRebuild": "/run/current-system/sw/bin/nixos-rebuild", "nixChannel": "nix-channel",
                          "nixEnv": "nix-env", "systemctl": "systemctl"},
             "paths": {"currentSystem": "/run/current-system", "bootedSystem": "/run/booted-system",
                       "systemProfile": "/nix/var/nix/profiles/system", "channelsFile": "/root/.nix-channels",
                       "osrelease": "/proc/sys/kernel/osrelease", "bootID": "/proc/sys/kernel/random/boot_id",
                       "uptime": "/proc/uptime"}}
            """#
        let c = try AgentConfig.parse(Data(json.utf8))
        #expect(c.port == 9443 && c.k3sUnit == "k3s-agent" && c.confirmTimeoutSeconds == 900)
        #expect(c.commands.nixosRebuild == "/run/current-system/sw/bin/nixos-rebuild")
        #expect(try AgentConfig.parse(JSONEncoder().encode(c)) == c)
    }

    @Test("unknown keys (top level and nested), missing required keys and bad values are clear errors")
    func errors() {
        func problem(_ json: String) -> String {
            do {
                _ = try AgentConfig.parse(Data(json.utf8), path: "/etc/nk3-agent/config.json")
                return "accepted"
            } catch {
                return error.description
            }
        }
        let base = minimal.dropLast()
        #expect(problem(base + #","prot":7443}"#).contains("unknown key 'prot'"))
        #expect(problem(base + #","paths":{"bootId":"/x"}}"#).contains("unknown key 'paths.bootId'"))
        #expect(problem(base + #","commands":{"nixos-rebuild":"x"}}"#).contains("unknown key 'commands.nixos-rebuild'"))
        #expect(problem(#"{"tls":{"certFile":"/c","keyFile":"/k","caFile":"/ca"},"signingPublicKeys":[]}"#).contains("nodeName"))
        #expect(problem(base + #","port":70000}"#).contains("port 70000"))
        #expect(problem(minimal.replacingOccurrences(of: key, with: "short")).contains("signingPublicKeys[0]"))
        #expect(problem(base + #","stateDir":"relative"}"#).contains("absolute"))
        #expect(problem(base + #","port":70000}"#).hasPrefix("agent config /etc/nk3-agent/config.json:"))
    }

    @Test("nk3-agent serve: loads the config, serves mTLS, and exits 0 on SIGTERM (graceful shutdown)")
    func serveAndSIGTERM() async throws {
        let fake = try EngineFakeRoot()
        let ca = try ClusterCA.create(cluster: "engine-test")
        let agentCert = try ca.issueAgent(hostname: "node1", addresses: ["127.0.0.1"])
        try ca.certificatePEM.write(toFile: fake.root + "/ca.crt", atomically: true, encoding: .utf8)
        try agentCert.certificatePEM.write(toFile: fake.root + "/agent.crt", atomically: true, encoding: .utf8)
        _ = FileManager.default.createFile(atPath: fake.root + "/agent.key", contents: Data(agentCert.privateKeyPEM.utf8), attributes: [.posixPermissions: 0o600])
        var config = fake.agentConfig(signingKey: key)
        config.tls = .init(certFile: fake.root + "/agent.crt", keyFile: fake.root + "/agent.key", caFile: fake.root + "/ca.crt")
        config.listenAddress = "127.0.0.1"
        let reservation = try LoopbackSockets.reserveStablePort()  // not ephemeral, not another test's
        defer { withExtendedLifetime(reservation) {} }
        config.port = reservation.port
        let path = fake.root + "/serve.json"
        try JSONEncoder().encode(config).write(to: URL(fileURLWithPath: path))

        let p = Process()
        p.executableURL = URL(fileURLWithPath: EngineKit.agentBinary)
        p.arguments = ["--config", path]
        let log = fake.root + "/serve.log"
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        p.standardError = FileHandle(forWritingAtPath: log)
        p.standardOutput = FileHandle(forWritingAtPath: "/dev/null")
        try p.run()
        defer { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        let listening = await EngineKit.eventually("the agent to listen") {
            (try? String(contentsOfFile: log, encoding: .utf8))?.contains("nk3-agent listening") == true || !p.isRunning
        }
        #expect(listening && p.isRunning, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        kill(p.processIdentifier, SIGTERM)
        await EngineKit.waitForExit(p)
        #expect(!p.isRunning)
        if !p.isRunning {
            #expect(p.terminationReason == .exit && p.terminationStatus == 0, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        }
    }
}
