import Foundation
import NK3Coordinator

/// Scenario `render`: `BundleRenderer.renderAll()` of a 1,000-node inventory (configuration.nix through nk3's
/// Jinja2 engine, nk3-agent.nix, the module) — what `nk3 render`, `plan` and `apply` do before contacting
/// anything. Two templates: the built-in one, and one that also lists every peer (`cluster.nodes`) on every
/// node, so its cost grows with the square of the node count.
struct RenderBench {
    let options: BenchRunner.Options

    static func inventoryYAML(nodes: Int) -> String {
        var s = "join_address: 10.0.0.1\njoin_token: bench-token\nnix_channel: nixos-24.05\nstate_version: \"24.05\"\n"
        s += "vars: {ntp: [0.pool.ntp.org, 1.pool.ntp.org]}\nnodes:\n"
        for i in 0..<nodes {
            s += "  10.0.\(i / 250).\(i % 250 + 1):\n"
            s += "    initiator: \(i == 0)\n    boot_device: /dev/nvme0n1\n    disks: [/dev/sda, /dev/sdb]\n"
            s += "    labels: {zone: z\(i % 3), rack: \(i % 40)}\n"
        }
        return s + "watch_namespaces: [default, kube-system]\n"
    }

    static let peersTemplate = DefaultTemplate.source.replacingOccurrences(
        of: "  services.openssh.enable = true;",
        with: """
              networking.extraHosts = ''
            {% for n in cluster.nodes if n.name != node.name %}    {{ n.ip }} {{ n.name|lower }} # {{ n.labels.zone }}
            {% endfor %}  '';
              services.openssh.enable = true;
            """)

    func run(into result: inout BenchScenarioResult) throws {
        let count = options.renderNodes
        let yaml = Self.inventoryYAML(nodes: count)
        let key = Data(repeating: 9, count: 32).base64EncodedString()
        let clock = ContinuousClock()
        var parse: [Double] = []
        var plain: [Double] = []
        var peers: [Double] = []
        var bytes = 0
        for _ in 0..<options.renderRuns {
            var t = clock.now
            let inventory = try Inventory.parse(yaml: yaml, file: "bench-inventory.yaml")
            parse.append(t.duration(to: clock.now).milliseconds)

            t = clock.now
            let all = try BundleRenderer(inventory: inventory, template: nil, signingPublicKeys: [key]).renderAll()
            plain.append(t.duration(to: clock.now).milliseconds)
            precondition(all.count == count)
            bytes = all.values.map { $0.values.map(\.utf8.count).reduce(0, +) }.reduce(0, +)

            t = clock.now
            let template = JinjaTemplate(source: Self.peersTemplate, name: "peers.nix.j2")
            let withPeers = try BundleRenderer(inventory: inventory, template: template, signingPublicKeys: [key])
                .renderAll()
            peers.append(t.duration(to: clock.now).milliseconds)
            precondition(withPeers.count == count)
        }
        result.figures.append(
            BenchFigure(
                "renderAll, \(count) nodes, built-in template", unit: "ms", samples: plain,
                target: count >= 1000 ? "≤ 1000 ms" : nil, met: count >= 1000 ? { $0 <= 1000 } : nil))
        result.figures.append(
            BenchFigure("renderAll, \(count) nodes, template listing every peer", unit: "ms", samples: peers))
        result.figures.append(BenchFigure("Inventory.parse of \(count) nodes (not in renderAll)", unit: "ms", samples: parse))
        result.notes.append(
            "\(count) bundles, \(bytes / 1024) KiB in all; the peer-listing template renders \(count) × \(count - 1) "
                + "loop iterations")
    }
}
