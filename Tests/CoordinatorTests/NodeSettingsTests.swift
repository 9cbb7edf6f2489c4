import Foundation
import NK3Coordinator
import NK3Protocol
import Testing

/// What the inventory says about each node's agent and NixOS install: the agent's port (per node), the confirm
/// timeout (one range with the agent and the NixOS module: `AgentLimits`), `system.stateVersion`, and how the
/// default template uses them (issue 14, defects 3, 5 and 6; issue 16: the join token stays out of the store).
@Suite("Inventory: agent port, confirm timeout and stateVersion per node")
struct NodeSettingsTests {
    static let key = Data(repeating: 3, count: 32).base64EncodedString()

    static func yaml(top: String = "", n1: String = "", n2: String = "") -> String {
        """
        join_address: 10.0.0.1
        join_token: "secret-token"
        nix_channel: nixos-24.05
        \(top)
        nodes:
          10.0.0.1:
            hostname: n1
            initiator: true
            boot_device: /dev/sda
        \(n1)
          10.0.0.2:
            hostname: n2
            boot_device: /dev/sda
        \(n2)

        """
    }

    static func parse(_ yaml: String) throws(InventoryError) -> Inventory {
        try Inventory.parse(yaml: yaml, file: "inventory.yaml")
    }

    static func failure(_ yaml: String) -> InventoryError? {
        do {
            _ = try parse(yaml)
            return nil
        } catch {
            return error
        }
    }

    @Test("agent_port: the node's hostvar overrides the top level; both checked against AgentLimits.port")
    func agentPortPerNode() throws {
        let inv = try Self.parse(Self.yaml(top: "agent_port: 8443\nstate_version: \"24.05\"", n1: "    agent_port: 7555"))
        #expect(inv.node("n1")?.agentPort == 7555)
        #expect(inv.node("n2")?.agentPort == 8443)
        #expect(try Self.parse(Self.yaml()).node("n2")?.agentPort == 7443)
        for bad in [AgentLimits.port.lowerBound - 1, AgentLimits.port.upperBound + 1] {
            #expect(Self.failure(Self.yaml(top: "agent_port: \(bad)"))?.code == .invalidValue)
            let e = Self.failure(Self.yaml(n1: "    agent_port: \(bad)"))
            #expect(e?.code == .invalidValue)
            #expect(e?.key == "nodes[\"10.0.0.1\"].agent_port")
        }
        #expect(Self.failure(Self.yaml(n1: "    agent_port: \"7555\""))?.code == .wrongType)
    }

    @Test("the generated nk3-agent.nix carries each node's own port (the coordinator connects there)")
    func generatedPortPerNode() throws {
        let inv = try Self.parse(Self.yaml(top: "agent_port: 8443\nstate_version: \"24.05\"", n1: "    agent_port: 7555"))
        let r = BundleRenderer(inventory: inv, template: nil, signingPublicKeys: [Self.key])
        #expect(try r.render(node: inv.node("n1")!)[BundleFile.agent]?.contains("port = 7555;") == true)
        #expect(try r.render(node: inv.node("n2")!)[BundleFile.agent]?.contains("port = 8443;") == true)
    }

    @Test("timeouts.confirm: whole seconds within AgentLimits.confirmTimeoutSeconds, or a clear error")
    func confirmRange() throws {
        let r = AgentLimits.confirmTimeoutSeconds
        for ok in [r.lowerBound, r.upperBound] {
            #expect(try Self.parse(Self.yaml(top: "timeouts: {confirm: \(ok)}")).timeouts.confirm == .seconds(ok))
        }
        for bad in [r.lowerBound - 1, r.upperBound + 1, 0] {
            let e = Self.failure(Self.yaml(top: "timeouts: {confirm: \(bad)}"))
            #expect(e?.code == .invalidValue, "\(bad)")
            #expect(e?.message.contains("between \(r.lowerBound) and \(r.upperBound)") == true)
        }
        #expect(Self.failure(Self.yaml(top: "timeouts: {confirm: 15.5}"))?.code == .wrongType)
        // The agent's own check is the same range: a bundle at the bounds is valid, one past them is not.
        #expect(ApplyBundle(files: ["configuration.nix": ""], action: .boot, confirmTimeoutSeconds: r.upperBound)
            .validationProblem() == nil)
        #expect(ApplyBundle(files: ["configuration.nix": ""], action: .boot, confirmTimeoutSeconds: r.upperBound + 1)
            .validationProblem() != nil)
    }

    @Test("state_version: hostvar over top level; must be a quoted release (unquoted 24.10 would print as 24.1)")
    func stateVersion() throws {
        let inv = try Self.parse(Self.yaml(top: "state_version: \"24.05\"", n2: "    state_version: \"23.11\""))
        #expect(inv.stateVersion == "24.05")
        #expect(inv.node("n1")?.stateVersion == "24.05")
        #expect(inv.node("n2")?.stateVersion == "23.11")
        #expect(try Self.parse(Self.yaml()).node("n1")?.stateVersion == nil)
        let unquoted = Self.failure(Self.yaml(top: "state_version: 24.10"))
        #expect(unquoted?.code == .wrongType)
        #expect(unquoted?.message.contains("quoted") == true)
        #expect(Self.failure(Self.yaml(n1: "    state_version: \"24.5\""))?.code == .invalidValue)
        #expect(Self.failure(Self.yaml(n1: "    state_version: \"unstable\""))?.code == .invalidValue)
    }

    @Test("default template: system.stateVersion rendered per node, and refused without one")
    func defaultTemplateStateVersion() throws {
        let inv = try Self.parse(Self.yaml(top: "state_version: \"24.05\"", n2: "    state_version: \"23.11\""))
        let r = BundleRenderer(inventory: inv, template: nil, signingPublicKeys: [Self.key])
        #expect(try r.render(node: inv.node("n1")!)[BundleFile.configuration]?
            .contains("system.stateVersion = \"24.05\";") == true)
        #expect(try r.render(node: inv.node("n2")!)[BundleFile.configuration]?
            .contains("system.stateVersion = \"23.11\";") == true)
        let none = try Self.parse(Self.yaml())
        do {
            _ = try BundleRenderer(inventory: none, template: nil, signingPublicKeys: [Self.key]).render(node: none.nodes[0])
            Issue.record("expected a refusal without state_version")
        } catch {
            #expect(error.code == .missingHostvar)
            #expect(error.message.contains("state_version"))
        }
        // A template of one's own decides for itself.
        let own = JinjaTemplate(source: "{ ... }: { imports = [ ./nk3-agent.nix ]; }\n", name: "own")
        _ = try BundleRenderer(inventory: none, template: own, signingPublicKeys: [Self.key]).render(node: none.nodes[0])
    }

    @Test("default template: k3s reads the join token from tokenFile; it is never written into configuration.nix")
    func tokenFile() throws {
        let inv = try Self.parse(Self.yaml(top: "state_version: \"24.05\""))
        let r = BundleRenderer(inventory: inv, template: nil, signingPublicKeys: [Self.key])
        for node in inv.nodes {
            let files = try r.render(node: node)
            let configuration = try #require(files[BundleFile.configuration])
            #expect(configuration.contains("tokenFile = \"\(DefaultTemplate.tokenFile)\";"))
            for (name, text) in files { #expect(!text.contains("secret-token"), "\(name) contains the join token") }
        }
        // A Python-tool template that still uses `token` keeps working (compatibility).
        let python = JinjaTemplate(
            source: "{ ... }: {\n  imports = [ ./nk3-agent.nix ];\n  services.k3s.token = \"{{cluster.join_token}}\";\n}\n",
            name: "python-tool")
        let rendered = try BundleRenderer(inventory: inv, template: python, signingPublicKeys: [Self.key])
            .render(node: inv.nodes[0])
        #expect(rendered[BundleFile.configuration]?.contains("services.k3s.token = \"secret-token\";") == true)
    }

    @Test("nk3-agent.nix packages the prebuilt binary by default; a known digest pins it; none leaves the package to the template")
    func agentBinary() throws {
        let inv = try Self.parse(Self.yaml(top: "state_version: \"24.05\""))
        var r = BundleRenderer(inventory: inv, template: nil, signingPublicKeys: [Self.key])
        let text = try #require(try r.render(node: inv.nodes[0])[BundleFile.agent])
        #expect(text.contains("package = lib.mkDefault (pkgs.callPackage ./nk3-agent-binary.nix {"))
        #expect(text.contains("binary = \(AgentNix.binaryPath);"))
        #expect(!text.contains("sha256"))
        #expect(try r.render(node: inv.nodes[0])[BundleFile.agentBinary] == NixAgentModule.binaryDerivation)
        let digest = String(repeating: "ab", count: 32)
        r.agentBinary = AgentNix.Binary(sha256: digest, version: "9.9.9")
        let pinned = try #require(try r.render(node: inv.nodes[0])[BundleFile.agent])
        #expect(pinned.contains("  sha256 = \"\(digest)\";\n"))
        #expect(pinned.contains("version = \"9.9.9\";"))
        r.agentBinary = nil
        #expect(try r.render(node: inv.nodes[0])[BundleFile.agent]?.contains("package =") == false)
        // A path Nix cannot write as a literal is still the same path.
        #expect(AgentNix.nixPath("/var/lib/a b") == "(/. + \"/var/lib/a b\")")
        #expect(AgentNix.nixPath("/var/lib/nk3-agent/bin/nk3-agent") == "/var/lib/nk3-agent/bin/nk3-agent")
    }
}
