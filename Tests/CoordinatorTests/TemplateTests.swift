import Foundation
import NK3Jinja
import NK3Protocol
import Testing

@testable import NK3Coordinator

/// Jinja2 compatibility: every fixture template rendered for every fixture node must equal, byte for byte, what
/// real Jinja2 3.1 rendered (scripts/gen-jinja-fixtures.py wrote Fixtures/jinja/expected).
@Suite("Templates (Jinja2 compatibility)")
struct TemplateTests {
    static let fixtures = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/jinja")
    static let cases = ["crlf", "default", "jinja-features", "python-tool", "values", "whitespace"]
    static let signingKey = Data(repeating: 7, count: 32).base64EncodedString()

    static func inventory() throws -> Inventory {
        try Inventory.load(path: fixtures.appendingPathComponent("inventory.yaml").path)
    }

    static func template(_ name: String) throws -> JinjaTemplate {
        if name == "default" { return JinjaTemplate(source: DefaultTemplate.source, name: "default") }
        let url = fixtures.appendingPathComponent("templates/\(name).j2")
        return JinjaTemplate(
            source: try String(contentsOf: url, encoding: .utf8), name: url.path,
            directory: url.deletingLastPathComponent().path)
    }

    @Test("every fixture case has expected output from Jinja2, and nothing is left untested")
    func fixtureSetIsComplete() throws {
        let dirs = try FileManager.default.contentsOfDirectory(atPath: Self.fixtures.appendingPathComponent("expected").path)
        #expect(dirs.sorted() == Self.cases)
    }

    @Test("nk3's engine renders every fixture as Jinja2 does, byte for byte", arguments: cases)
    func matchesJinja(_ name: String) throws {
        let inv = try Self.inventory()
        let renderer = BundleRenderer(inventory: inv, template: try Self.template(name), signingPublicKeys: [Self.signingKey])
        #expect(inv.nodes.count == 3)
        for node in inv.nodes {
            let expectedURL = Self.fixtures.appendingPathComponent("expected/\(name)/\(node.name)")
            let expected = try Data(contentsOf: expectedURL)
            let rendered = try renderer.template.render(renderer.context(for: node))
            if Data(rendered.utf8) != expected {
                let diff = UnifiedDiff.make(
                    old: String(decoding: expected, as: UTF8.self), new: rendered, oldName: "jinja2", newName: "nk3")
                Issue.record("\(name) for \(node.name) differs from Jinja2:\n\(diff)")
            }
        }
    }

    @Test("the default template renders through BundleRenderer for the seed inventory")
    func defaultBundle() throws {
        let inv = try Self.inventory()
        let renderer = BundleRenderer(inventory: inv, template: nil, signingPublicKeys: [Self.signingKey])
        let bundles = try renderer.renderAll()
        #expect(Set(bundles.keys) == Set(inv.nodes.map(\.name)))
        for node in inv.nodes {
            let b = try #require(bundles[node.name])
            #expect(Set(b.keys) == Set(BundleFile.all))
            let expected = try String(
                contentsOf: Self.fixtures.appendingPathComponent("expected/default/\(node.name)"), encoding: .utf8)
            #expect(b[BundleFile.configuration] == expected)
            #expect(b[BundleFile.agentModule] == NixAgentModule.source)
            #expect(b[BundleFile.agent]!.contains("nodeName = \"\(node.name)\";"))
        }
    }

    @Test("inventory values reach the template as PyYAML gives them to Jinja2")
    func inventoryValues() throws {
        let inv = try Inventory.parse(
            yaml: "join_address: 10.0.0.1\njoin_token: t\nnix_channel: c\nnodes:\n  10.0.0.1: {b: 1, a: [x, null, 2.5, yes]}\n",
            file: "i.yaml")
        let renderer = BundleRenderer(
            inventory: inv, template: JinjaTemplate(source: "{{ hostvars }} {{ node.a|tojson }}", name: "t"),
            signingPublicKeys: [Self.signingKey])
        let out = try renderer.template.render(renderer.context(for: inv.nodes[0]))
        #expect(out == "{'b': 1, 'a': ['x', None, 2.5, True]} [\"x\", null, 2.5, true]")
    }

    @Test("a template error names the template, line, column and Jinja2's exception")
    func templateError() {
        let t = JinjaTemplate(source: "a\n{% if node.x %}\nb\n", name: "t.nix")
        #expect(throws: TemplateError.self) { try t.check() }
        do {
            _ = try t.render(["node": .dict(PyDict())])
            Issue.record("expected an error")
        } catch {
            #expect(error.template == "t.nix")
            #expect(error.kind == "TemplateSyntaxError")
            #expect(error.line == 3)
            #expect(error.description.hasPrefix("t.nix:3:"))
        }
        let u = JinjaTemplate(source: "{{ node.x.y }}", name: "u.nix")
        #expect(throws: TemplateError.self) { try u.render(["node": .dict(PyDict())]) }
    }

    @Test("a template includes and imports files from its own directory")
    func includeFromTemplateDirectory() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("nk3-tpl-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        try Data("{% macro pkgs(xs) %}[ {{ xs|join(' ') }} ]{% endmacro %}".utf8)
            .write(to: dir.appendingPathComponent("lib.j2"))
        try Data("{% from 'lib.j2' import pkgs %}{ ... }: { imports = [ ./nk3-agent.nix ]; x = {{ pkgs(['a', 'b']) }}; }\n"
            .utf8).write(to: dir.appendingPathComponent("configuration.nix.j2"))
        let inv = try Inventory.parse(
            yaml: "join_address: 10.0.0.1\njoin_token: t\nnix_channel: c\ntemplate: configuration.nix.j2\n"
                + "nodes:\n  10.0.0.1: {}\n", file: dir.appendingPathComponent("inventory.yaml").path)
        let bundle = try BundleRenderer.load(inventory: inv, signingPublicKeys: [Self.signingKey]).render(node: inv.nodes[0])
        #expect(bundle[BundleFile.configuration] == "{ ... }: { imports = [ ./nk3-agent.nix ]; x = [ a b ]; }")
    }
}

@Suite("Bundles")
struct BundleTests {
    static let key = Data(repeating: 1, count: 32).base64EncodedString()
    static let seed = try! Inventory.parse(
        yaml: """
            join_address: 172.30.190.3
            join_token: woof
            nix_channel: nixos-24.05
            agent_port: 8443
            state_version: "24.05"
            timeouts: {confirm: 900}
            nodes:
              172.30.190.3: {initiator: true, boot_device: /dev/nvme0n1}
              172.30.190.4: {initiator: false, boot_device: /dev/nvme0n1}
            """, file: "inventory.yaml")

    @Test("nk3-agent.nix: the agent enabled with node name, port, keys and confirm timeout, Nix-escaped")
    func agentNix() throws {
        let r = BundleRenderer(inventory: Self.seed, template: nil, signingPublicKeys: [Self.key])
        let node = Self.seed.nodes[0]
        let text = try #require(try r.render(node: node)[BundleFile.agent])
        #expect(text == """
            # Generated by nk3 for \(node.name): enables nk3-agent. Do not edit; nk3 rewrites it.
            { lib, pkgs, ... }:
            {
              imports = [ ./nk3-agent-module.nix ];
              services.nk3-agent = {
                enable = true;
                # The prebuilt agent `nk3 bootstrap` placed on the node, patched for this system. A template may
                # set services.nk3-agent.package itself (normal priority wins over this default).
                package = lib.mkDefault (pkgs.callPackage ./nk3-agent-binary.nix {
                  binary = /var/lib/nk3-agent/bin/nk3-agent;
                  version = "\(NK3Wire.softwareVersion)";
                });
                nodeName = "\(node.name)";
                listenAddress = "0.0.0.0";
                port = 8443;
                openFirewall = true;
                certFile = "/var/lib/nk3-agent/tls/agent.crt";
                keyFile = "/var/lib/nk3-agent/tls/agent.key";
                caFile = "/var/lib/nk3-agent/tls/ca.crt";
                signingPublicKeys = [ "\(Self.key)" ];
                k3sUnit = "k3s";
                confirmTimeout = 900;
              };
            }

            """)
        #expect(AgentNix.nixString("a\"b\\c${d}$e\n") == #""a\"b\\c\${d}$e\n""#)
    }

    @Test("refuses a configuration that does not import ./nk3-agent.nix")
    func refusesWithoutAgentImport() throws {
        let t = JinjaTemplate(source: "{ ... }: {\n  imports = [ ./hardware-configuration.nix ];\n}\n", name: "my.nix.j2")
        let r = BundleRenderer(inventory: Self.seed, template: t, signingPublicKeys: [Self.key])
        do {
            _ = try r.render(node: Self.seed.nodes[0])
            Issue.record("expected a refusal")
        } catch {
            #expect(error.code == .agentMissing)
            #expect(error.node == Self.seed.nodes[0].name)
            #expect(error.message.contains("does not import ./nk3-agent.nix"))
            #expect(error.message.contains("my.nix.j2"))
        }
    }

    @Test("an import only inside a comment, or an explicit enable = false, is refused too")
    func refusesCommentedOrDisabled() throws {
        for body in [
            "{ ... }: {\n  # imports = [ ./nk3-agent.nix ];\n}\n",
            "{ ... }: {\n  /* ./nk3-agent.nix */ imports = [ ];\n}\n",
            "{ ... }: {\n  imports = [ ./nk3-agent.nix.bak ];\n}\n",
            "{ lib, ... }: {\n  imports = [ ./nk3-agent.nix ];\n  services.nk3-agent.enable = lib.mkForce false;\n}\n",
        ] {
            #expect(throws: BundleError.self, "\(body)") {
                try BundleRenderer.checkKeepsAgent(body, node: "n", template: "t")
            }
        }
        // A string that merely mentions '#' does not hide a real import.
        try BundleRenderer.checkKeepsAgent(
            "{ ... }: {\n  x = \"#\"; imports = [ ./nk3-agent.nix ];\n  y = ''a # b'';\n}\n", node: "n", template: "t")
    }

    @Test("the default template needs boot_device; no signing key is refused")
    func defaultNeedsBootDevice() throws {
        let inv = try Inventory.parse(
            yaml: "join_address: 10.0.0.1\njoin_token: t\nnix_channel: c\nnodes:\n  10.0.0.1: {}\n", file: "i.yaml")
        #expect(throws: BundleError.self) {
            try BundleRenderer(inventory: inv, template: nil, signingPublicKeys: [Self.key]).renderAll()
        }
        #expect(throws: BundleError.self) {
            try BundleRenderer(inventory: Self.seed, template: nil, signingPublicKeys: []).renderAll()
        }
        #expect(throws: BundleError.self) {
            try BundleRenderer(inventory: Self.seed, template: nil, signingPublicKeys: ["bm90IGEga2V5"]).renderAll()
        }
    }

    @Test("NixAgentModule.source is byte-identical to nix/module.nix")
    func moduleMatchesRepository() throws {
        let repo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        let url = repo.appendingPathComponent("nix/module.nix")
        guard FileManager.default.fileExists(atPath: url.path) else { return }  // not in this checkout
        let file = try String(contentsOf: url, encoding: .utf8)
        #expect(NixAgentModule.source == file, "run nix/embed-in-swift.sh")
        let derivation = try String(contentsOf: repo.appendingPathComponent("nix/agent-binary.nix"), encoding: .utf8)
        #expect(NixAgentModule.binaryDerivation == derivation, "run nix/embed-in-swift.sh")
    }
}
