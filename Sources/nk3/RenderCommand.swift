import ArgumentParser
import Foundation
import NK3Coordinator

/// `nk3 render`: each node's bundle written to files, contacting nothing.
struct RenderCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "render",
        abstract: "Render each node's configuration.nix, nk3-agent.nix and nk3-agent-module.nix to files.",
        discussion: """
            Writes DIR/<node>/<file> for each NODE (an inventory name or address; default: every node), exactly \
            what `nk3 apply` would send, without contacting any node or the Kubernetes API (the Python tool kept \
            its rendered configurations in artifacts/). Needs the cluster's signing public key (`nk3 certs init`), \
            which nk3-agent.nix pins. A template error names the file, line, column and the Jinja2 error.
            """)

    @Option(name: .shortAndLong, help: "Inventory file (YAML).")
    var inventory: String = "inventory.yaml"

    @Option(help: "PKI directory (default: inventory `pki_dir`, else certs/<cluster_name>).")
    var pkiDir: String?

    @Option(name: .shortAndLong, help: "Output directory.")
    var output: String = "artifacts"

    @Argument(help: "Nodes to render: inventory names or addresses (default: all).")
    var nodes: [String] = []

    func run() async throws {
        do {
            let paths = try RenderedFiles.render(
                inventoryPath: inventory, pkiDirectory: pkiDir, nodes: nodes, outputDirectory: output)
            for p in paths { print(p) }
        } catch let e as CoordinatorError {
            FileDescriptorWriter(fd: 2).write("error: \(e.message)\n")
            throw ExitCode(e.kind.exitCode)
        }
    }
}
