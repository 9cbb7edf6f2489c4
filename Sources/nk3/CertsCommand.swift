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
            Files live in certs/<cluster>/ unless --dir is given (see certs/README.md). Private keys are \
            written 0600 and refused when group or others can read them.
            """,
        subcommands: [Init.self, IssueAgent.self, IssueClient.self])

    /// Where the PKI lives.
    struct Location: ParsableArguments {
        @Option(help: "PKI directory (default: certs/<cluster>).")
        var dir: String?

        @Option(help: "Cluster name (used for the default directory and the CA's name).")
        var cluster: String = "default"

        var store: PKIStore { PKIStore(directory: dir ?? PKIStore.defaultDirectory(cluster: cluster)) }

        func validate() throws {
            guard ApplyBundle.isValidFileName(cluster) else {
                throw ValidationError("invalid --cluster '\(cluster)': use letters, digits, '.', '_' and '-'")
            }
            if let dir, dir.isEmpty { throw ValidationError("--dir must not be empty") }
        }
    }

    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Create the cluster CA, the envelope signing key and an operator client certificate.")

        @OptionGroup var location: Location

        @Option(help: "Name of the first operator client certificate.")
        var operatorName: String = "operator"

        func run() async throws {
            let store = location.store
            let files = try Self.wrap { try store.initialize(cluster: location.cluster, operatorName: operatorName) }
            let pub = try Self.wrap { try store.signingPublicKey() }
            print("Created the PKI of cluster '\(location.cluster)' in \(store.directory):")
            print("  CA certificate     \(store.caCertificatePath)")
            print("  CA key (secret)    \(store.caPrivateKeyPath)")
            print("  signing key        \(store.signingKeyPath) (secret)")
            print("  signing public key \(store.signingPublicKeyPath)")
            print("  operator cert      \(files.certificatePath)")
            print("  operator key       \(files.privateKeyPath) (secret)")
            print("")
            print("Pin the signing key on every node (NixOS module):")
            print("  services.nk3-agent.signingPublicKeys = [ \"\(pub)\" ];")
            print("Next: nk3 certs issue-agent NODE --address IP   (once per node)")
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
            let store = location.store
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

        @Option(help: "reader (status and metrics) or operator (may also send signed commands).")
        var role: ClientRole

        @Flag(help: "Re-issue an existing certificate.")
        var force = false

        func validate() throws {
            guard ApplyBundle.isValidFileName(name) else {
                throw ValidationError("invalid client name '\(name)': use letters, digits, '.', '_' and '-'")
            }
        }

        func run() async throws {
            let store = location.store
            let files = try Init.wrap { try store.issueClient(name: name, role: role, overwrite: force) }
            print("Issued the \(role.rawValue) client certificate '\(name)':")
            print("  \(files.certificatePath)")
            print("  \(files.privateKeyPath) (secret)")
        }
    }
}

/// A `nk3 certs` failure, printed as `Error: <message>` with exit code 1.
struct CertsFailure: Error, CustomStringConvertible {
    var message: String
    var description: String { message }
}

extension ClientRole: ExpressibleByArgument {}
