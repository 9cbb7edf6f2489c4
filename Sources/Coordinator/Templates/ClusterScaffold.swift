import Foundation
import NK3Common
import NK3Protocol

/// Writes rendered bundles to files (`nk3 render`): `DIR/<node>/configuration.nix`, `nk3-agent.nix`,
/// `nk3-agent-module.nix` — what the Python tool kept in `artifacts/`.
public enum RenderedFiles {
    /// Loads the inventory and the signing public key, renders the chosen nodes (names or addresses; empty:
    /// all) and writes their files under `outputDirectory`. Contacts nothing. Returns the paths written.
    public static func render(
        inventoryPath: String, pkiDirectory: String?, nodes wanted: [String], outputDirectory: String
    ) throws -> [String] {
        let inventory: Inventory
        do {
            inventory = try Inventory.load(path: inventoryPath)
        } catch {
            throw CoordinatorError(.invalidInput, "\(error)")
        }
        var names: [String] = []
        for w in wanted {
            guard let node = inventory.node(w) else {
                throw CoordinatorError(.invalidInput, "no node '\(w)' in \(inventoryPath) (give a name or an address)")
            }
            if !names.contains(node.name) { names.append(node.name) }
        }
        if wanted.isEmpty { names = inventory.nodes.map(\.name) }
        let pki = PKIStore(directory: pkiDirectory ?? inventory.pkiDirectory)
        let key: String
        do {
            key = try pki.signingPublicKey()
        } catch {
            throw CoordinatorError(
                .invalidInput, "no signing public key in \(pki.directory) (the agents' pinned key goes into "
                    + "nk3-agent.nix): \(error); run `nk3 certs init` first")
        }
        var bundles: [String: [String: String]] = [:]
        do {
            let renderer = try BundleRenderer.load(inventory: inventory, signingPublicKeys: [key])
            let maps = renderer.nodeMaps()
            for name in names {
                bundles[name] = try renderer.render(node: inventory.node(name)!, nodeMaps: maps)
            }
        } catch {
            throw CoordinatorError(.invalidInput, "\(error)")
        }
        return try write(bundles, nodes: names, to: outputDirectory)
    }

    /// Writes each node's files under `directory/<node>/`, replacing earlier renders; returns the paths written.
    public static func write(_ bundles: [String: [String: String]], nodes: [String], to directory: String) throws
        -> [String]
    {
        var written: [String] = []
        try SecureFiles.createDirectory(directory)
        for node in nodes {
            guard let files = bundles[node] else { continue }
            guard ApplyBundle.isValidFileName(node) else {
                throw CoordinatorError(.invalidInput, "node name '\(node)' cannot name a directory")
            }
            let dir = (directory as NSString).appendingPathComponent(node)
            try SecureFiles.createDirectory(dir)
            for name in files.keys.sorted() {
                let path = (dir as NSString).appendingPathComponent(name)
                try SecureFiles.writeAtomically(files[name]!, to: path)
                written.append(path)
            }
        }
        return written
    }
}

/// A new cluster's directory (`nk3 init DIR`): a commented inventory, a configuration template that imports
/// `./hardware-configuration.nix` and `./nk3-agent.nix`, and the PKI (the same `PKIStore.initialize` as
/// `nk3 certs init`), ready for `nk3 bootstrap`.
public enum ClusterScaffold {
    /// File name of the inventory in the new directory.
    public static let inventoryFile = "inventory.yaml"
    /// File name of the configuration template in the new directory.
    public static let templateFile = "configuration.nix.j2"

    /// What `create` made.
    public struct Created: Sendable {
        /// The inventory's path.
        public var inventory: String
        /// The template's path.
        public var template: String
        /// The PKI directory.
        public var pki: String
        /// The operator client certificate and key.
        public var operatorFiles: IssuedFiles
        /// The signing public key to pin on the nodes.
        public var signingPublicKey: String
    }

    /// `cluster_name` rules (lowercase letters, digits and '-'), as the inventory parser checks them.
    public static func isValidClusterName(_ s: String) -> Bool {
        !s.isEmpty && s.utf8.count <= 63 && s.first != "-"
            && s.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "-" }
    }

    /// Creates the cluster directory; refuses a directory that exists and is not empty.
    public static func create(directory: String, cluster: String, operatorName: String = "operator") throws -> Created {
        guard isValidClusterName(cluster) else {
            throw CoordinatorError(
                .invalidInput, "invalid cluster name '\(cluster)': use lowercase letters, digits and '-' (--cluster)")
        }
        let fm = FileManager.default
        if SecureFiles.exists(directory) {
            let contents = (try? fm.contentsOfDirectory(atPath: directory)) ?? ["?"]
            guard contents.isEmpty else {
                throw CoordinatorError(
                    .invalidInput, "\(directory) exists and is not empty; refusing to overwrite anything in it "
                        + "(choose a new directory)")
            }
        }
        try SecureFiles.createDirectory(directory)
        let inventory = (directory as NSString).appendingPathComponent(inventoryFile)
        let template = (directory as NSString).appendingPathComponent(templateFile)
        let pkiDir = (directory as NSString).appendingPathComponent(PKIStore.defaultDirectory(cluster: cluster))
        // The inventory holds the k3s join token: owner-only, as the PKI's secrets are.
        try SecureFiles.writeAtomically(
            inventoryText(cluster: cluster, joinToken: randomToken()), to: inventory, permissions: 0o600, overwrite: false)
        try SecureFiles.writeAtomically(templateText, to: template, overwrite: false)
        let store = PKIStore(directory: pkiDir)
        let files = try store.initialize(cluster: cluster, operatorName: operatorName)
        return Created(
            inventory: inventory, template: template, pki: pkiDir, operatorFiles: files,
            signingPublicKey: try store.signingPublicKey())
    }

    /// 32 random bytes, hex (the k3s token: any string; k3s docs: https://docs.k3s.io/cli/token).
    static func randomToken() -> String {
        var g = SystemRandomNumberGenerator()
        return (0..<32).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &g)) }.joined()
    }

    /// The commented inventory of a new cluster.
    public static func inventoryText(cluster: String, joinToken: String) -> String {
        """
        # nk3 inventory of cluster "\(cluster)", created by `nk3 init`. The Python tool's keys (join_address,
        # join_token, nix_channel, nodes, watch_namespaces) mean what they meant there; README.md lists nk3's own.
        cluster_name: \(cluster)

        # The k3s API address every node joins (the first server's address).
        join_address: 192.0.2.10
        # The k3s cluster token (a random secret made by `nk3 init`; this file is 0600 because of it).
        join_token: \(joinToken)
        # The NixOS channel `nk3 upgrade` pins on every node.
        nix_channel: nixos-24.05
        # system.stateVersion: the NixOS release your machines were FIRST installed with (their current
        # configuration.nix says it). Never raise it on an upgrade (nixpkgs nixos/modules/misc/version.nix).
        # `nk3 bootstrap` refuses a machine whose configuration says otherwise; set it per node as a hostvar
        # where machines differ.
        state_version: "24.05"

        # The configuration.nix template (Jinja2), next to this file. It must import ./nk3-agent.nix (nk3
        # generates it for each node); ./hardware-configuration.nix is the node's own.
        template: \(templateFile)

        # The PKI `nk3 init` created: certs/\(cluster) next to this file (`nk3 certs` manages it).
        # pki_dir: certs/\(cluster)

        # Nodes, by address: the hostvars the template reads (node.<key>). Replace the example with your machines,
        # then enrol them: nk3 bootstrap -i \(inventoryFile) --all
        nodes:
          192.0.2.10:
            initiator: true          # the first k3s server: clusterInit
            boot_device: /dev/nvme0n1
          # 192.0.2.11:
          #   boot_device: /dev/nvme0n1

        # Namespaces whose DaemonSets and Deployments must be healthy between nodes.
        watch_namespaces:
          - default
          - kube-system

        """
    }

    /// The configuration template of a new cluster: the built-in default template with a header saying what it
    /// may use (the `{#- … -#}` comment renders as nothing).
    public static var templateText: String {
        """
        {#- nk3 configuration template (Jinja2, rendered like Jinja2 3.1's default Environment). Variables:
            node      this node's hostvars plus name, ip, address, is_server
            hostvars  this node's hostvars only
            cluster   every top-level inventory key; cluster.nodes lists every node's `node`
            vars      the inventory's vars: map
            Keep ./nk3-agent.nix in imports: nk3 refuses a configuration that would drop its agent.
            Preview with: nk3 render -i inventory.yaml -o artifacts -#}

        """ + DefaultTemplate.source
    }
}
