import Foundation
import NK3Agent
import NK3Coordinator
import NK3Protocol
import Testing

/// nk3's NixOS module and the per-node files nk3 generates, evaluated by nixpkgs' real module system
/// (`lib.evalModules` from ../shared/nixpkgs-lib/lib, Debian's nix-instantiate) with the stand-in option
/// declarations of nix/tests/stand-ins.nix, typed and defaulted as nixpkgs declares them. The bundles are
/// rendered by `BundleRenderer` exactly as `nk3 apply` ships them; config.json goes through the agent's own
/// strict reader (`AgentConfig.parse`).
@Suite("NixOS module under lib.evalModules", .enabled(if: NixEval.enabled, "nix-instantiate or ../shared/nixpkgs-lib missing"))
struct NixModuleEvalTests {
    static let signingKey = Data(repeating: 7, count: 32).base64EncodedString()

    /// A node directory like /etc/nixos after a rollout: the rendered bundle, a hardware-configuration.nix,
    /// extra modules, and a stand-in agent binary the generated nk3-agent.nix packages.
    struct NodeDir {
        let url: URL
        var files: [String: String]

        func path(_ name: String) -> String { url.appendingPathComponent(name).path }

        func evaluate(extraModules: [String: String] = [:], root: String = "/nk3-stand-in") throws -> (NixEval.Output, EvaluatedNode?) {
            var modules = [path(BundleFile.configuration)]
            for (name, text) in extraModules.sorted(by: { $0.key < $1.key }) {
                try text.write(toFile: path(name), atomically: true, encoding: .utf8)
                modules.append(path(name))
            }
            let out = try NixEval.evalNode(modules: modules, root: root)
            guard out.status == 0 else { return (out, nil) }
            return (out, try JSONDecoder().decode(EvaluatedNode.self, from: Data(out.stdout.utf8)))
        }

        func remove() { try? FileManager.default.removeItem(at: url) }
    }

    static func inventory(node hostvars: String, top: String = "") -> String {
        """
        join_address: 10.0.0.1
        join_token: t0ken
        nix_channel: nixos-24.05
        \(top)nodes:
          10.0.0.1:
            hostname: n1
            initiator: true
        \(hostvars.split(separator: "\n").map { "    \($0)" }.joined(separator: "\n"))

        """
    }

    /// Renders node n1's bundle from `yaml` (default template unless `template` is given) into a fresh directory.
    static func node(_ yaml: String, template: String? = nil) throws -> NodeDir {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-nixeval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        let inv = try Inventory.parse(yaml: yaml, file: url.appendingPathComponent("inventory.yaml").path)
        var renderer = BundleRenderer(
            inventory: inv, template: template.map { JinjaTemplate(source: $0, name: "test") },
            signingPublicKeys: [signingKey])
        // The binary `nk3 bootstrap` would have placed at AgentNix.binaryPath; any file does for evaluation.
        let binary = url.appendingPathComponent("nk3-agent.bin")
        try Data("not really an agent".utf8).write(to: binary)
        renderer.agentBinary = AgentNix.Binary(path: binary.path)
        let files = try renderer.render(node: try #require(inv.node("n1")))
        var dir = NodeDir(url: url, files: files)
        for (name, text) in files { try text.write(toFile: dir.path(name), atomically: true, encoding: .utf8) }
        try "{ ... }: { }\n".write(toFile: dir.path("hardware-configuration.nix"), atomically: true, encoding: .utf8)
        dir.files = files
        return dir
    }

    static let defaultNode = "boot_device: /dev/sda\nstate_version: \"24.05\""

    /// Evaluates and requires success; returns the result.
    static func evaluated(_ dir: NodeDir, extraModules: [String: String] = [:]) throws -> EvaluatedNode {
        let (out, node) = try dir.evaluate(extraModules: extraModules)
        guard let node else {
            Issue.record("evaluation failed (exit \(out.status)):\n\(out.stderr)")
            throw NixEval.Unavailable(description: "evaluation failed")
        }
        return node
    }

    /// Evaluates and requires a failure whose message contains every string of `expected`.
    static func evaluationFails(_ dir: NodeDir, extraModules: [String: String], expected: [String]) throws {
        let (out, _) = try dir.evaluate(extraModules: extraModules)
        #expect(out.status != 0, "expected evaluation to fail, got: \(out.stdout.prefix(300))")
        for e in expected { #expect(out.stderr.contains(e), "stderr lacks '\(e)':\n\(out.stderr)") }
    }

    // MARK: boot loaders

    @Test("default template, GRUB on a BIOS disk: evaluates; GRUB (config.system.build.grub) and ssh are on the agent's PATH")
    func grubBIOS() throws {
        let dir = try Self.node(Self.inventory(node: Self.defaultNode))
        defer { dir.remove() }
        let node = try Self.evaluated(dir)
        #expect(node.failedAssertions == [])
        #expect(node.grubDevices == ["/dev/sda"])
        let unit = try #require(node.unit)
        #expect(unit.path.contains("grub"))
        #expect(unit.path.contains("openssh"))
        #expect(unit.path.starts(with: ["nixos-rebuild", "nix", "systemd", "openssh"]))
        #expect(node.stateVersion == "24.05")
    }

    @Test("GRUB with devices = [ \"nodev\" ] (menu only, system.build.grub is null): evaluates, no GRUB on PATH")
    func grubNodev() throws {
        let dir = try Self.node(Self.inventory(node: "boot_device: nodev\nstate_version: \"24.05\""))
        defer { dir.remove() }
        let node = try Self.evaluated(dir)
        #expect(node.failedAssertions == [])
        #expect(node.grubDevices == ["nodev"])
        #expect(node.unit?.path.contains("grub") == false)
    }

    @Test("systemd-boot (turns GRUB off by default, as systemd-boot.nix does): evaluates, no GRUB on PATH")
    func systemdBoot() throws {
        let template = """
            { ... }:
            {
              imports = [ ./hardware-configuration.nix ./nk3-agent.nix ];
              boot.loader.systemd-boot.enable = true;
              system.stateVersion = "25.05";
            }

            """
        let dir = try Self.node(Self.inventory(node: "role: server"), template: template)
        defer { dir.remove() }
        let node = try Self.evaluated(dir)
        #expect(node.failedAssertions == [])
        let unit = try #require(node.unit)
        #expect(!unit.path.contains("grub"))
        #expect(unit.path.contains("systemd"))
    }

    @Test("the VM test's node (nix/tests/vm-base.nix: GRUB on /dev/vda, k3s) with nk3's files, as its /etc/nixos holds them")
    func vmTestNode() throws {
        let template = """
            { ... }:
            {
              imports = [ ./hardware-configuration.nix ./vm-base.nix ./nk3-agent.nix ];
              environment.etc."nk3-vm-test-revision".text = "2";
              system.stateVersion = "24.05";
            }

            """
        let dir = try Self.node(Self.inventory(node: "role: server"), template: template)
        defer { dir.remove() }
        // What vm-test.nix copies to the node: vm-base-fn.nix (the file) and vm-base.nix (applying it).
        try FileManager.default.copyItem(
            atPath: NixEval.repo.appendingPathComponent("nix/tests/vm-base.nix").path, toPath: dir.path("vm-base-fn.nix"))
        try #"""
            import ./vm-base-fn.nix (builtins.fromJSON "{\"init\":false,\"ip\":\"192.168.1.12\",\"name\":\"n2\",\"serverIP\":\"192.168.1.11\",\"token\":\"nk3-vm-test-token\"}")

            """#.write(toFile: dir.path("vm-base.nix"), atomically: true, encoding: .utf8)
        let node = try Self.evaluated(dir)
        #expect(node.failedAssertions == [])
        #expect(node.grubDevices == ["/dev/vda"])
        #expect(node.unit?.path.contains("grub") == true)
    }

    // MARK: the generated unit and config.json

    @Test("the generated unit and config.json: the agent's strict reader accepts the file, with the node's values")
    func unitAndConfig() throws {
        let dir = try Self.node(Self.inventory(node: Self.defaultNode + "\nagent_port: 7555", top: "timeouts: {confirm: 900}\n"))
        defer { dir.remove() }
        let node = try Self.evaluated(dir)
        let unit = try #require(node.unit)
        #expect(unit.restartIfChanged == false)
        #expect(unit.unitConfig["X-StopOnRemoval"] == .bool(false))
        #expect(unit.wantedBy == ["multi-user.target"])
        #expect(unit.environment["HOME"] == "/root")
        // The package is nk3-agent-binary.nix wrapping the binary on the node.
        let recipe = try #require(node.packageRecipe)
        #expect(unit.serviceConfig["ExecStart"] == .string("\(recipe.out)/bin/nk3-agent --config /etc/nk3-agent/config.json"))
        #expect(recipe.installPhase.contains("patchelf --set-interpreter"))
        let json = try #require(node.configJSON)
        let config = try AgentConfig.parse(Data(json.utf8), path: "config.json (evaluated)")
        #expect(config.nodeName == "n1")
        // The node's own agent_port (7555 in this inventory), not the inventory-wide default 7443.
        #expect(config.port == 7555)
        #expect(node.firewallTCP.contains(7555) && !node.firewallTCP.contains(7443))
        #expect(config.confirmTimeoutSeconds == 900)
        #expect(config.signingPublicKeys == [Self.signingKey])
        #expect(config.tls == AgentConfig.TLS(
            certFile: "/var/lib/nk3-agent/tls/agent.crt", keyFile: "/var/lib/nk3-agent/tls/agent.key",
            caFile: "/var/lib/nk3-agent/tls/ca.crt"))
        #expect(node.tmpfiles.contains("d /var/lib/nk3-agent/tls 0700 root root -"))
    }

    @Test("settings: free-form keys reach config.json and the agent reads them; a key the agent does not know is refused by it")
    func settingsReachTheAgent() throws {
        let dir = try Self.node(Self.inventory(node: Self.defaultNode))
        defer { dir.remove() }
        let node = try Self.evaluated(dir, extraModules: ["extra.nix": """
            { ... }: { services.nk3-agent.settings = { kubeletHealthzURL = "http://127.0.0.1:10248/healthz"; port = 7600; }; }
            """])
        let config = try AgentConfig.parse(Data(try #require(node.configJSON).utf8))
        #expect(config.port == 7600)
        #expect(config.kubeletHealthzURL == "http://127.0.0.1:10248/healthz")
        let typo = try Self.evaluated(dir, extraModules: ["extra.nix": """
            { ... }: { services.nk3-agent.settings.kubeletHealthURL = "x"; }
            """])
        #expect(throws: AgentConfigError.self) { try AgentConfig.parse(Data(typo.configJSON!.utf8)) }
    }

    @Test("allowedSources: the port opens only to the listed addresses (iptables or nftables rules), and a value that is not an address is refused")
    func allowedSources() throws {
        let dir = try Self.node(Self.inventory(node: Self.defaultNode))
        defer { dir.remove() }
        let open = try Self.evaluated(dir)
        #expect(open.firewallTCP.contains(7443))
        #expect(open.firewallCommands.isEmpty && open.firewallInputRules.isEmpty)

        let sources = """
            { ... }: { services.nk3-agent.allowedSources = [ "192.0.2.10" "10.1.0.0/16" "2001:db8::/64" ]; }
            """
        let iptables = try Self.evaluated(dir, extraModules: ["extra.nix": sources])
        #expect(!iptables.firewallTCP.contains(7443), "open to all despite allowedSources")
        #expect(iptables.firewallInputRules.isEmpty)
        let lines = iptables.firewallCommands.split(separator: "\n").map(String.init)
        #expect(lines == [
            "iptables -A nixos-fw -p tcp --dport 7443 -s 192.0.2.10 -j nixos-fw-accept",
            "iptables -A nixos-fw -p tcp --dport 7443 -s 10.1.0.0/16 -j nixos-fw-accept",
            "ip6tables -A nixos-fw -p tcp --dport 7443 -s 2001:db8::/64 -j nixos-fw-accept",
        ])

        let nft = try Self.evaluated(dir, extraModules: [
            "extra.nix": sources, "nft.nix": "{ ... }: { networking.nftables.enable = true; }",
        ])
        #expect(nft.firewallCommands.isEmpty)
        #expect(nft.firewallInputRules.split(separator: "\n").map(String.init) == [
            "ip saddr 192.0.2.10 tcp dport 7443 accept comment \"nk3-agent\"",
            "ip saddr 10.1.0.0/16 tcp dport 7443 accept comment \"nk3-agent\"",
            "ip6 saddr 2001:db8::/64 tcp dport 7443 accept comment \"nk3-agent\"",
        ])

        for bad in ["10.0.0.1; rm -rf /", "any", "10.0.0.0/8 10.0.0.1", ""] {
            let node = try Self.evaluated(dir, extraModules: [
                "extra.nix": "{ ... }: { services.nk3-agent.allowedSources = [ \(String(reflecting: bad)) ]; }",
            ])
            #expect(node.failedAssertions.contains { $0.contains("allowedSources must hold IPv4 or IPv6") }, "\(bad)")
        }
    }

    // MARK: assertions

    @Test("missing TLS files: the assertion names each unset one as null, not as an empty string")
    func missingTLS() throws {
        let dir = try Self.node(Self.inventory(node: Self.defaultNode))
        defer { dir.remove() }
        let node = try Self.evaluated(dir, extraModules: ["extra.nix": """
            { lib, ... }: { services.nk3-agent.certFile = lib.mkForce null; services.nk3-agent.caFile = lib.mkForce null; }
            """])
        let message = try #require(node.failedAssertions.first)
        #expect(node.failedAssertions.count == 1)
        #expect(message.contains("certFile = null (not set)"))
        #expect(message.contains("keyFile = \"/var/lib/nk3-agent/tls/agent.key\""))
        #expect(message.contains("caFile = null (not set)"))
        #expect(!message.contains("= ,"))
    }

    @Test("a key file in the Nix store is refused: a path literal by the type (option and settings), a store string by the assertion")
    func keyInStore() throws {
        let dir = try Self.node(Self.inventory(node: Self.defaultNode))
        defer { dir.remove() }
        try "secret\n".write(toFile: dir.path("agent.key"), atomically: true, encoding: .utf8)
        try Self.evaluationFails(dir, extraModules: ["extra.nix": """
            { lib, ... }: { services.nk3-agent.keyFile = lib.mkForce ./agent.key; }
            """], expected: ["services.nk3-agent.keyFile", "is not of type"])
        try Self.evaluationFails(dir, extraModules: ["extra.nix": """
            { ... }: { services.nk3-agent.settings.tls.keyFile = ./agent.key; }
            """], expected: ["services.nk3-agent.settings.tls.keyFile", "is not of type"])
        for setting in ["keyFile = lib.mkForce", "settings.tls.keyFile ="] {
            let node = try Self.evaluated(dir, extraModules: ["extra.nix": """
                { lib, ... }: { services.nk3-agent.\(setting) "${builtins.storeDir}/0000-agent.key"; }
                """])
            #expect(node.failedAssertions.count == 1, "\(setting)")
            #expect(node.failedAssertions.first?.contains("must not be in the Nix store") == true, "\(setting)")
            #expect(node.failedAssertions.first?.contains("/nix/store/0000-agent.key") == true, "\(setting)")
        }
    }

    @Test("a malformed or missing signing key is refused by an assertion")
    func malformedSigningKey() throws {
        let dir = try Self.node(Self.inventory(node: Self.defaultNode))
        defer { dir.remove() }
        let bad = try Self.evaluated(dir, extraModules: ["extra.nix": """
            { lib, ... }: { services.nk3-agent.signingPublicKeys = lib.mkForce [ "AAAA" ]; }
            """])
        #expect(bad.failedAssertions.count == 1)
        #expect(bad.failedAssertions.first?.contains("these are not: AAAA") == true)
        let none = try Self.evaluated(dir, extraModules: ["extra.nix": """
            { lib, ... }: { services.nk3-agent.settings.signingPublicKeys = lib.mkForce [ ]; }
            """])
        #expect(none.failedAssertions.first?.contains("signingPublicKeys is empty") == true)
    }

    // MARK: ranges (one source: AgentLimits)

    @Test("port and confirmTimeout: the module accepts exactly AgentLimits' ranges, as option and as settings")
    func ranges() throws {
        let dir = try Self.node(Self.inventory(node: Self.defaultNode))
        defer { dir.remove() }
        let cases: [(String, ClosedRange<Int>)] = [
            ("port", AgentLimits.port), ("settings.port", AgentLimits.port),
            ("confirmTimeout", AgentLimits.confirmTimeoutSeconds),
            ("settings.confirmTimeoutSeconds", AgentLimits.confirmTimeoutSeconds),
        ]
        for (option, range) in cases {
            for (value, ok) in [(range.lowerBound - 1, false), (range.lowerBound, true), (range.upperBound, true),
                (range.upperBound + 1, false)]
            {
                let module = "{ lib, ... }: { services.nk3-agent.\(option) = lib.mkForce \(value); }\n"
                let (out, node) = try dir.evaluate(extraModules: ["extra.nix": module])
                if ok {
                    #expect(out.status == 0, "\(option) = \(value): \(out.stderr)")
                    if let json = node?.configJSON {
                        #expect((try? AgentConfig.parse(Data(json.utf8))) != nil, "the agent refuses \(option) = \(value)")
                    }
                } else {
                    #expect(out.status != 0, "\(option) = \(value) was accepted")
                    #expect(out.stderr.contains("services.nk3-agent.\(option)"), "\(option) = \(value): \(out.stderr)")
                }
            }
        }
    }
}

/// nix/package.nix (the from-source build for flake users) fetches every SwiftPM dependency with fetchgit from
/// the lock in nix/swiftpm/; the lock must pin exactly what Package.resolved pins.
@Suite("nix/package.nix: the SwiftPM lock matches Package.resolved", .enabled(if: NixEval.enabled, "nix-instantiate or ../shared/nixpkgs-lib missing"))
struct NixPackageLockTests {
    struct Dependency: Decodable { var name, url, rev, hash: String; var fetchSubmodules: Bool }
    struct Resolved: Decodable {
        struct Pin: Decodable {
            struct State: Decodable { var revision: String }
            var identity, location: String
            var state: State
        }
        var pins: [Pin]
    }

    @Test("every Package.resolved pin is fetched at its revision from its URL, with an SRI sha256 hash")
    func lockMatchesResolved() throws {
        let out = try NixEval.run(
            file: NixEval.repo.appendingPathComponent("nix/tests/eval-package.nix").path,
            args: [("lib", "import \(NixEval.libDirectory.path)")])
        #expect(out.status == 0, "\(out.stderr)")
        let deps = try JSONDecoder().decode([Dependency].self, from: Data(out.stdout.utf8))
        let resolved = try JSONDecoder().decode(
            Resolved.self, from: Data(contentsOf: NixEval.repo.appendingPathComponent("Package.resolved")))
        #expect(deps.count == resolved.pins.count)
        for pin in resolved.pins {
            let dep = deps.first { $0.url == pin.location }
            #expect(dep?.rev == pin.state.revision, "\(pin.identity)")
            #expect(dep?.hash.hasPrefix("sha256-") == true && dep?.hash.count == 51, "\(pin.identity)")
        }
    }
}
