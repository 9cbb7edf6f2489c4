import Foundation
import NK3Jinja
import NK3Protocol

/// Renders each node's bundle: `configuration.nix` from the (Jinja2-dialect) template, `nk3-agent.nix` generated,
/// `nk3-agent-module.nix` verbatim — and refuses a configuration that would drop the agent.
///
/// Template scope (the Python tool passed `node` and `cluster`; nk3 adds `hostvars` and `vars`):
/// - `node`: every hostvar as written, then `name`, `ip` and `address` (both the inventory key) and `is_server`;
/// - `hostvars`: the node's hostvars only;
/// - `cluster`: every top-level inventory key as written (`join_address`, `join_token`, `nix_channel`,
///   `watch_namespaces`, extras such as `default_gateway`, `vars`, nk3's keys), with `nodes` as the list of
///   every node's `node` map in inventory order and `namespaces` = `watch_namespaces` (the Python tool's names);
/// - `vars`: the `vars:` map.
public struct BundleRenderer: Sendable {
    /// The inventory.
    public var inventory: Inventory
    /// The configuration template.
    public var template: JinjaTemplate
    /// Whether `template` is the built-in `DefaultTemplate` (which needs a `boot_device` hostvar).
    public var usesDefaultTemplate: Bool
    /// Base64 Ed25519 public keys the agents accept (`signingPublicKeys`).
    public var signingPublicKeys: [String]
    /// The prebuilt agent binary the generated `nk3-agent.nix` packages (nil: the template sets the package).
    public var agentBinary: AgentNix.Binary? = AgentNix.Binary()
    /// Flake mode (`inventory.flake`): the `flake.nix` template (nil: channel mode, no flake files).
    public var flakeTemplate: JinjaTemplate?
    /// Flake mode: the inventory directory's `flake.lock`, which every node gets; nil: each node keeps the lock
    /// it reports (`reportedFlakeLocks`).
    public var flakeLock: String?
    /// Flake mode: the `flake.lock` each node's agent reports holding (node name → file).
    public var reportedFlakeLocks: [String: String] = [:]

    /// A renderer with an explicit template (nil: `DefaultTemplate`).
    public init(inventory: Inventory, template: JinjaTemplate?, signingPublicKeys: [String]) {
        self.inventory = inventory
        self.template = template ?? JinjaTemplate(source: DefaultTemplate.source, name: "(default template)")
        self.usesDefaultTemplate = template == nil
        self.signingPublicKeys = signingPublicKeys
        if inventory.flake != nil {
            flakeTemplate = JinjaTemplate(source: DefaultFlakeTemplate.source, name: "(default flake template)")
        }
    }

    /// A renderer with the inventory's `template:` file, or the default template when it names none.
    public static func load(inventory: Inventory, signingPublicKeys: [String]) throws(BundleError) -> BundleRenderer {
        var renderer = BundleRenderer(
            inventory: inventory, template: try inventory.templatePath.map { p throws(BundleError) in
                try readTemplate(p, key: "template", inventory: inventory)
            }, signingPublicKeys: signingPublicKeys)
        if let flake = inventory.flake {
            if let path = flake.templatePath { renderer.flakeTemplate = try readTemplate(path, key: "flake", inventory: inventory) }
            if FileManager.default.fileExists(atPath: flake.lockPath) {
                do {
                    renderer.flakeLock = try String(contentsOfFile: flake.lockPath, encoding: .utf8)
                } catch {
                    throw BundleError(
                        code: .template, node: nil,
                        message: "cannot read \(flake.lockPath): \(error.localizedDescription)")
                }
            }
        }
        return renderer
    }

    static func readTemplate(_ path: String, key: String, inventory: Inventory) throws(BundleError) -> JinjaTemplate {
        do {
            let text = try String(contentsOfFile: path, encoding: .utf8)
            let directory = (path as NSString).deletingLastPathComponent
            return JinjaTemplate(source: text, name: path, directory: directory.isEmpty ? "." : directory)
        } catch {
            throw BundleError(
                code: .template, node: nil,
                message: "cannot read the template '\(path)' named by '\(key):' in \(inventory.file): "
                    + "\(error.localizedDescription)")
        }
    }

    /// Every node's bundle: node name → file name → content.
    public func renderAll() throws(BundleError) -> [String: [String: String]] {
        var out: [String: [String: String]] = [:]
        let nodes = nodeMaps()
        for node in inventory.nodes { out[node.name] = try render(node: node, nodeMaps: nodes) }
        return out
    }

    /// One node's bundle: file name → content.
    public func render(node: InventoryNode) throws(BundleError) -> [String: String] {
        try render(node: node, nodeMaps: nodeMaps())
    }

    func render(node: InventoryNode, nodeMaps: JinjaValue) throws(BundleError) -> [String: String] {
        try validateKeys()
        if usesDefaultTemplate, node[hostvar: "boot_device"] == nil {
            throw BundleError(
                code: .missingHostvar, node: node.name,
                message: "node \(node.address) has no 'boot_device' hostvar, which the default template needs "
                    + "(e.g. boot_device: /dev/nvme0n1); add it, or name your own template with 'template:'")
        }
        if usesDefaultTemplate, node.stateVersion == nil {
            throw BundleError(
                code: .missingHostvar, node: node.name,
                message: "node \(node.address) has no 'state_version' (hostvar, or top-level key for every node), "
                    + "which the default template needs: the NixOS release the machine was first installed with, "
                    + "as its current configuration.nix sets system.stateVersion (e.g. state_version: \"24.05\")")
        }
        let configuration: String
        do {
            configuration = try template.render(context(for: node, nodeMaps: nodeMaps))
        } catch {
            throw BundleError(code: .template, node: node.name, message: error.description)
        }
        try Self.checkKeepsAgent(configuration, node: node.name, template: template.name)
        let confirm = Int((Double(inventory.timeouts.confirm.components.seconds)
            + Double(inventory.timeouts.confirm.components.attoseconds) / 1e18).rounded(.up))
        var files = [
            BundleFile.configuration: configuration,
            BundleFile.agent: AgentNix.render(
                nodeName: node.name, port: node.agentPort, signingPublicKeys: signingPublicKeys,
                confirmTimeoutSeconds: max(1, confirm), binary: agentBinary),
            BundleFile.agentModule: NixAgentModule.source,
            BundleFile.agentBinary: NixAgentModule.binaryDerivation,
        ]
        if let flakeTemplate {
            guard ApplyBundle.isValidFlakeAttribute(node.name) else {
                throw BundleError(
                    code: .template, node: node.name,
                    message: "node name '\(node.name)' cannot name a flake's NixOS configuration (flake: in "
                        + "\(inventory.file)): it must be [A-Za-z_][A-Za-z0-9_-]* (no dots), at most 63 characters; "
                        + "set a 'hostname' hostvar")
            }
            var context = context(for: node, nodeMaps: nodeMaps)
            context["flake"] = .dict(PyDict([
                ("attribute", .string(node.name)),
                ("nixpkgs_url", .string("github:NixOS/nixpkgs/\(Self.nixpkgsBranch(inventory.nixChannel))")),
                ("system", .string(node[hostvar: "system"]?.stringValue ?? "x86_64-linux")),
            ]))
            let flake: String
            do {
                flake = try flakeTemplate.render(context)
            } catch {
                throw BundleError(code: .template, node: node.name, message: error.description)
            }
            // The flake builds configuration.nix, which keeps the agent (checkKeepsAgent); a flake that does not
            // would build a system without it.
            let code = NixText.strippingComments(flake)
            if code.range(of: #"\./configuration\.nix(?![A-Za-z0-9._+-])"#, options: .regularExpression) == nil {
                throw BundleError(
                    code: .agentMissing, node: node.name,
                    message: "refusing to ship flake.nix for \(node.name): it does not use ./configuration.nix, which "
                        + "imports ./nk3-agent.nix, so the node could lose nk3-agent. Add ./configuration.nix to the "
                        + "modules of nixosConfigurations.\"\(node.name)\" in \(flakeTemplate.name)")
            }
            files[FlakeLock.flakeFile] = flake
            if let lock = flakeLock ?? reportedFlakeLocks[node.name] { files[FlakeLock.lockFile] = lock }
        }
        return files
    }

    /// The nixpkgs branch of `nix_channel`: its last path component (`nixos-24.05` for `nixos-24.05` or
    /// `https://nixos.org/channels/nixos-24.05`); NixOS channels are named after the nixpkgs branches they follow.
    static func nixpkgsBranch(_ channel: String) -> String {
        var c = Substring(channel)
        while c.hasSuffix("/") { c = c.dropLast() }
        return c.split(separator: "/").last.map(String.init) ?? String(c)
    }

    /// The template variables for `node` (see the type's documentation).
    public func context(for node: InventoryNode) -> [String: JinjaValue] {
        context(for: node, nodeMaps: nodeMaps())
    }

    /// `cluster.nodes`: every node's `node` map, in inventory order (built once for all nodes of a render).
    func nodeMaps() -> JinjaValue { .list(inventory.nodes.map(Self.nodeMap)) }

    func context(for node: InventoryNode, nodeMaps: JinjaValue) -> [String: JinjaValue] {
        var cluster: [(String, JinjaValue)] = inventory.topLevel.map { entry in
            entry.key == "nodes" ? ("nodes", nodeMaps) : (entry.key, PythonValues.value(entry.value))
        }
        if !cluster.contains(where: { $0.0 == "namespaces" }) {
            cluster.append(("namespaces", .list(inventory.watchNamespaces.map { .string($0) })))
        }
        return [
            "node": Self.nodeMap(node),
            "hostvars": PythonValues.dict(node.hostvars),
            "cluster": .dict(PyDict(cluster)),
            "vars": PythonValues.dict(inventory.vars),
        ]
    }

    static func nodeMap(_ node: InventoryNode) -> JinjaValue {
        var entries = node.hostvars.map { ($0.key, PythonValues.value($0.value)) }
        entries += [
            ("name", .string(node.name)), ("ip", .string(node.address)), ("address", .string(node.address)),
            ("is_server", .bool(node.isServer)),
        ]
        return .dict(PyDict(entries))
    }

    func validateKeys() throws(BundleError) {
        if signingPublicKeys.isEmpty {
            throw BundleError(
                code: .signingKeys, node: nil,
                message: "no signing public key: agents would accept no command; run `nk3 certs init` first")
        }
        for k in signingPublicKeys where Data(base64Encoded: k)?.count != 32 {
            throw BundleError(
                code: .signingKeys, node: nil,
                message: "signing public key '\(k)' is not base64 of a 32-byte Ed25519 key")
        }
    }

    /// Refuses a configuration that would not run the agent: it must import `./nk3-agent.nix` (outside comments)
    /// and must not set `services.nk3-agent.enable = false`.
    public static func checkKeepsAgent(_ configuration: String, node: String, template: String) throws(BundleError) {
        let code = NixText.strippingComments(configuration)
        let importsAgent = code.range(of: #"\./nk3-agent\.nix(?![A-Za-z0-9._+-])"#, options: .regularExpression) != nil
        if !importsAgent {
            throw BundleError(
                code: .agentMissing, node: node,
                message: "refusing to ship configuration.nix for \(node): it does not import ./nk3-agent.nix, so the "
                    + "node would lose nk3-agent and nk3 could never reach it again. Add ./nk3-agent.nix to "
                    + "`imports` in \(template)")
        }
        let disables = #"nk3-agent\.enable\s*=\s*(lib\.)?(mkForce\s+|mkOverride\s+\d+\s+)?\(?\s*false"#
        if code.range(of: disables, options: .regularExpression) != nil {
            throw BundleError(
                code: .agentMissing, node: node,
                message: "refusing to ship configuration.nix for \(node): it sets services.nk3-agent.enable = false, "
                    + "so nk3 could never reach the node again. Remove that line from \(template)")
        }
    }
}

/// A bundle that cannot be rendered or must not be shipped.
public struct BundleError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of problem.
    public enum Code: String, Sendable, Hashable {
        /// The template does not parse, render or read.
        case template
        /// The rendered configuration would drop the agent.
        case agentMissing = "agent_missing"
        /// A hostvar the template needs is absent.
        case missingHostvar = "missing_hostvar"
        /// No or malformed signing public keys.
        case signingKeys = "signing_keys"
    }

    /// The kind of problem.
    public var code: Code
    /// The node concerned, if one.
    public var node: String?
    /// What went wrong and how to fix it.
    public var message: String

    /// Makes an error.
    public init(code: Code, node: String?, message: String) {
        self.code = code
        self.node = node
        self.message = message
    }

    /// The message.
    public var description: String { message }
}

/// Small lexical helpers for Nix source.
enum NixText {
    /// The text with `#` line comments and `/* */` block comments blanked, strings left intact.
    static func strippingComments(_ s: String) -> String {
        let c = Array(s.unicodeScalars)
        var out = String.UnicodeScalarView()
        var i = 0
        enum Mode { case code, dq, ind, line, block }
        var mode = Mode.code
        while i < c.count {
            let ch = c[i]
            let next: Unicode.Scalar? = i + 1 < c.count ? c[i + 1] : nil
            switch mode {
            case .code:
                if ch == "#" { mode = .line; i += 1; continue }
                if ch == "/" && next == "*" { mode = .block; i += 2; continue }
                if ch == "\"" { mode = .dq }
                if ch == "'" && next == "'" { mode = .ind; out.append(ch); out.append(next!); i += 2; continue }
                out.append(ch)
            case .dq:
                out.append(ch)
                if ch == "\\", let n = next { out.append(n); i += 2; continue }
                if ch == "\"" { mode = .code }
            case .ind:
                out.append(ch)
                if ch == "'" && next == "'" {
                    let after: Unicode.Scalar? = i + 2 < c.count ? c[i + 2] : nil
                    out.append(next!)
                    i += 2
                    // '''  ''$  ''\ are escapes inside an indented string.
                    if after == "'" || after == "$" || after == "\\" {
                        out.append(after!)
                        i += 1
                    } else {
                        mode = .code
                    }
                    continue
                }
            case .line:
                if ch == "\n" { out.append(ch); mode = .code }
            case .block:
                if ch == "*" && next == "/" { mode = .code; i += 2; continue }
                if ch == "\n" { out.append(ch) }
            }
            i += 1
        }
        return String(out)
    }
}
