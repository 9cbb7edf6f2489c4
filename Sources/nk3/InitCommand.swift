import ArgumentParser
import Foundation
import NK3Coordinator

/// `nk3 init DIR`: a new cluster's inventory, template and PKI.
struct InitCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create a new cluster directory: a commented inventory, a configuration template and the PKI.",
        discussion: """
            Writes DIR/inventory.yaml (0600: it holds a fresh random k3s join token), DIR/configuration.nix.j2 \
            (imports ./hardware-configuration.nix and ./nk3-agent.nix) and the PKI in DIR/certs/<cluster> (as \
            `nk3 certs init`). Refuses a DIR that exists and is not empty. Then: put your nodes in the inventory, \
            `nk3 render` to preview, `nk3 bootstrap --all` to enrol them.
            """)

    @Argument(help: "The new cluster's directory.")
    var directory: String

    @Option(help: "Cluster name: lowercase letters, digits and '-' (default: DIR's name, if it is one).")
    var cluster: String?

    @Option(help: "Name of the first operator client certificate.")
    var operatorName: String = "operator"

    func validate() throws {
        if directory.isEmpty { throw ValidationError("DIR must not be empty") }
        if cluster == nil && !ClusterScaffold.isValidClusterName(Self.defaultCluster(directory)) {
            throw ValidationError(
                "'\(Self.defaultCluster(directory))' cannot be a cluster name (lowercase letters, digits and '-'); "
                    + "give one with --cluster")
        }
    }

    static func defaultCluster(_ directory: String) -> String {
        (URL(fileURLWithPath: directory).standardizedFileURL.lastPathComponent)
    }

    func run() async throws {
        let name = cluster ?? Self.defaultCluster(directory)
        let created: ClusterScaffold.Created
        do {
            created = try ClusterScaffold.create(directory: directory, cluster: name, operatorName: operatorName)
        } catch let e as CoordinatorError {
            FileDescriptorWriter(fd: 2).write("error: \(e.message)\n")
            throw ExitCode(e.kind.exitCode)
        } catch {
            FileDescriptorWriter(fd: 2).write("error: \(error)\n")
            throw ExitCode(1)
        }
        print("Created cluster '\(name)' in \(directory):")
        print("  inventory      \(created.inventory)")
        print("  template       \(created.template)")
        print("  PKI            \(created.pki)")
        print("  operator cert  \(created.operatorFiles.certificatePath)")
        print("")
        print("Next: put your nodes in \(created.inventory), then")
        print("  nk3 render -i \(created.inventory)")
        print("  nk3 bootstrap -i \(created.inventory) --all")
    }
}
