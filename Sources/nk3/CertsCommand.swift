import ArgumentParser
import Foundation
import NK3Common
import NK3Coordinator
import NK3Protocol

/// `nk3 certs`: the cluster PKI (CA, envelope signing key, agent and client certificates).
struct CertsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "certs",
        abstract: "Create the cluster PKI and issue agent and client certificates.",
        discussion: """
            The PKI lives where the inventory's pki_dir says (default certs/<cluster_name> next to the \
            inventory), the same place `nk3 plan` and `nk3 apply` read it: pass -i INVENTORY, or run in the \
            directory of inventory.yaml. --dir overrides it; with neither, certs/<--cluster>. See \
            certs/README.md. Private keys are written 0600 and refused when group or others can read them.
            """,
        subcommands: [Init.self, IssueAgent.self, IssueClient.self, Revoke.self])

    /// Where the PKI lives: `--dir`, else the inventory's `pki_dir` (as `nk3 plan` and `nk3 apply` read it), else
    /// `certs/<--cluster>`.
    struct Location: ParsableArguments {
        @Option(
            name: .shortAndLong,
            help: """
                Inventory file: use its cluster_name and pki_dir, as the other commands do (default: \
                inventory.yaml when it exists).
                """)
        var inventory: String?

        @Option(help: "PKI directory (default: the inventory's pki_dir, else certs/<cluster>).")
        var dir: String?

        @Option(help: "Cluster name (the CA's name; default: the inventory's cluster_name, else 'default').")
        var cluster: String?

        /// The inventory to read: `-i`, else `inventory.yaml` if present; nil when there is none.
        var inventoryPath: String? {
            if let inventory { return inventory }
            return FileManager.default.fileExists(atPath: "inventory.yaml") ? "inventory.yaml" : nil
        }

        /// The PKI and the cluster name, from the options and the inventory.
        func resolve() throws -> (store: PKIStore, cluster: String) {
            var inv: Inventory?
            if let path = inventoryPath {
                do {
                    inv = try Inventory.load(path: path)
                } catch {
                    throw CertsFailure(message: "\(error)")
                }
            }
            let clusterName = cluster ?? inv?.clusterName ?? "default"
            if let dir { return (PKIStore(directory: dir), clusterName) }
            if let inv, let path = inventoryPath { return (PKIStore(inventory: inv, inventoryPath: path), clusterName) }
            return (PKIStore(directory: PKIStore.defaultDirectory(cluster: clusterName)), clusterName)
        }

        var store: PKIStore { get throws { try resolve().store } }

        func validate() throws {
            if let cluster, !ApplyBundle.isValidFileName(cluster) {
                throw ValidationError("invalid --cluster '\(cluster)': use letters, digits, '.', '_' and '-'")
            }
            if let dir, dir.isEmpty { throw ValidationError("--dir must not be empty") }
            if let inventory, !FileManager.default.fileExists(atPath: inventory) {
                throw ValidationError("no inventory at '\(inventory)'")
            }
        }
    }

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the cluster CA, the envelope signing key and an operator client certificate.")

        @OptionGroup var location: Location

        @Option(help: "Name of the first operator client certificate.")
        var operatorName: String = "operator"

        func run() async throws {
            let (store, cluster) = try location.resolve()
            let files = try Self.wrap { try store.initialize(cluster: cluster, operatorName: operatorName) }
            let pub = try Self.wrap { try store.signingPublicKey() }
            print("Created the PKI of cluster '\(cluster)' in \(store.directory):")
            print("  CA certificate     \(store.caCertificatePath)")
            print("  CA key (secret)    \(store.caPrivateKeyPath)")
            print("  signing key        \(store.signingKeyPath) (secret)")
            print("  signing public key \(store.signingPublicKeyPath)")
            print("  operator cert      \(files.certificatePath)")
            print("  operator key       \(files.privateKeyPath) (secret)")
            print("")
            print("Pin the signing key on every node (NixOS module):")
            print("  services.nk3-agent.signingPublicKeys = [ \"\(pub)\" ];")
            print("Next: nk3 certs issue-agent\(store.hintFlags) NODE --address IP   (once per node)")
        }

        /// Runtime failures (existing PKI, readable key, …) print their message and exit 1, without the
        /// usage text that `ValidationError` (kept for bad arguments) adds.
        static func wrap<T>(_ body: () throws -> T) throws -> T {
            do {
                return try body()
            } catch let error as PKIError {
                throw CertsFailure(message: error.message)
            } catch let error as SecureFileError {
                throw CertsFailure(message: error.message)
            }
        }
    }

    struct IssueAgent: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "issue-agent",
            abstract: "Issue a node agent's server certificate (SAN: the node name and its addresses).")

        @OptionGroup var location: Location

        @Argument(help: "Node hostname, as in the inventory.")
        var node: String

        @Option(name: .customLong("address"), help: "An IP address or DNS name the node is reached at (repeatable).")
        var addresses: [String] = []

        @Flag(help: "Re-issue (e.g. renew) an existing certificate.")
        var force = false

        func validate() throws {
            guard ApplyBundle.isValidFileName(node) else {
                throw ValidationError("invalid node name '\(node)': use letters, digits, '.', '_' and '-'")
            }
            guard !addresses.isEmpty else {
                throw ValidationError("give at least one --address (the IP the coordinator connects to)")
            }
            for a in addresses where IPAddressBytes.parse(a) == nil && !Self.isDNSName(a) {
                throw ValidationError("--address '\(a)' is neither an IP address nor a DNS name")
            }
        }

        static func isDNSName(_ s: String) -> Bool {
            guard !s.isEmpty, s.count <= 253 else { return false }
            return s.split(separator: ".", omittingEmptySubsequences: false).allSatisfy { label in
                !label.isEmpty && label.count <= 63 && !label.hasPrefix("-") && !label.hasSuffix("-")
                    && label.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }
            }
        }

        func run() async throws {
            let store = try location.store
            let files = try Init.wrap { try store.issueAgent(node: node, addresses: addresses, overwrite: force) }
            print("Issued the agent certificate of \(node) (\(addresses.joined(separator: ", "))):")
            print("  \(files.certificatePath)")
            print("  \(files.privateKeyPath) (secret: copy to the node, mode 0600)")
        }
    }

    struct IssueClient: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "issue-client", abstract: "Issue a client certificate with a role (reader or operator).")

        @OptionGroup var location: Location

        @Argument(help: "Client name (becomes the certificate's CN and file name).")
        var name: String

        @Option(help: "reader (status, operations and metrics) or operator (may also read files and send signed commands).")
        var role: ClientRole

        @Option(help: "Days the certificate is valid (1…365; default \(ClusterCA.defaultClientValidityDays)).")
        var days: Int = ClusterCA.defaultClientValidityDays

        @Flag(help: "Re-issue an existing certificate.")
        var force = false

        func validate() throws {
            guard ApplyBundle.isValidFileName(name) else {
                throw ValidationError("invalid client name '\(name)': use letters, digits, '.', '_' and '-'")
            }
            guard (1...365).contains(days) else { throw ValidationError("--days must be from 1 to 365, not \(days)") }
        }

        func run() async throws {
            let store = try location.store
            let files = try Init.wrap {
                try store.issueClient(name: name, role: role, overwrite: force, validity: TimeInterval(days) * 86400)
            }
            print("Issued the \(role.rawValue) client certificate '\(name)' (valid \(days) days):")
            print("  \(files.certificatePath)")
            print("  \(files.privateKeyPath) (secret)")
        }
    }

    struct Revoke: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Revoke a client certificate: agents refuse it once their configuration carries the deny-list.",
            discussion: """
                Records the certificate's serial and SHA-256 fingerprint in revoked.json in the PKI directory and \
                renames its files to *.revoked. The agents learn it through their configuration, like any other \
                change: set services.nk3-agent.settings.revokedCertificates to the printed list and roll it out \
                (nk3 apply). Until then the certificate works (until it expires: client certificates last \
                \(ClusterCA.defaultClientValidityDays) days by default).
                """)

        @OptionGroup var location: Location

        @Argument(help: "Client name (clients/NAME.crt).")
        var name: String

        func validate() throws {
            guard ApplyBundle.isValidFileName(name) else {
                throw ValidationError("invalid client name '\(name)': use letters, digits, '.', '_' and '-'")
            }
        }

        func run() async throws {
            let store = try location.store
            let record = try Init.wrap { try store.revokeClient(name: name) }
            let all = try Init.wrap { try store.revokedCertificateEntries() }
            print("Revoked the client certificate '\(name)' (\(record.serial), \(record.sha256)).")
            print("Recorded in \(store.revokedListPath). Push the deny-list to every agent (NixOS module), then nk3 apply:")
            print("  services.nk3-agent.settings.revokedCertificates = [ \(all.map { "\"\($0)\"" }.joined(separator: " ")) ];")
        }
    }
}

/// A `nk3 certs` failure, printed as `Error: <message>` with exit code 1.
struct CertsFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

extension ClientRole: ExpressibleByArgument {}
