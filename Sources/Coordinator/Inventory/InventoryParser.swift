import Foundation
import NK3Protocol
import enum NK3Kube.YAMLNesting
import Yams

/// Turns the composed YAML tree (with line/column marks) into an `Inventory`, or the first error found.
struct InventoryParser {
    let file: String

    init(file: String) {
        self.file = file
    }

    // MARK: errors

    func error(_ code: InventoryError.Code, _ message: String, at node: Node?, key: String) -> InventoryError {
        InventoryError(
            code: code, message: message, file: file, line: node?.mark?.line ?? 0, column: node?.mark?.column ?? 0,
            key: key)
    }

    func wrongType(_ node: Node, key: String, expected: String) -> InventoryError {
        let found = describe(node)
        return error(.wrongType, "'\(key)' must be \(expected), found \(found)", at: node, key: key)
    }

    func describe(_ node: Node) -> String {
        switch node {
        case .scalar(let s):
            switch convertScalar(s) {
            case .null: return "null"
            case let v: return "\(v.typeName) '\(s.string)'"
            }
        case .mapping: return "a map"
        case .sequence: return "a list"
        }
    }

    // MARK: conversion

    func convertScalar(_ s: Node.Scalar) -> InventoryValue {
        let node = Node.scalar(s)
        switch node.tag.description {
        case Tag.Name.bool.rawValue: if let b = node.bool { return .bool(b) }
        case Tag.Name.int.rawValue:
            // Yams computes YAML 1.1 base-60 integers ("1:30" = 90) with unchecked arithmetic and traps on
            // overflow (found by fuzzing: Fuzz/regressions/inventory/); compute those here, checked.
            if s.string.contains(":") { return Self.sexagesimal(s.string).map(InventoryValue.int) ?? .string(s.string) }
            if let i = node.int { return .int(i) }
        case Tag.Name.float.rawValue: if let f = node.float { return .float(f) }
        case Tag.Name.null.rawValue: return .null
        default: break
        }
        return .string(s.string)
    }

    /// A YAML 1.1 base-60 integer (`[-+]?digits(:digits)+`, `_` ignored) as PyYAML reads it; nil if it is
    /// not one or does not fit in an Int.
    static func sexagesimal(_ text: String) -> Int? {
        var t = text.replacingOccurrences(of: "_", with: "")
        var sign = 1
        if t.hasPrefix("-") { sign = -1; t.removeFirst() } else if t.hasPrefix("+") { t.removeFirst() }
        var value = 0
        for part in t.split(separator: ":", omittingEmptySubsequences: false) {
            guard !part.isEmpty, part.allSatisfy({ $0.isASCII && $0.isNumber }), let digit = Int(part) else { return nil }
            let (shifted, o1) = value.multipliedReportingOverflow(by: 60)
            let (sum, o2) = shifted.addingReportingOverflow(digit)
            guard !o1, !o2 else { return nil }
            value = sum
        }
        return sign * value
    }

    /// A mapping's pairs with string keys; a repeated key is an error (YAML parsers keep the last silently).
    func pairs(of mapping: Node.Mapping, path: String, duplicate: InventoryError.Code = .duplicateKey) throws(
        InventoryError
    ) -> [(key: String, keyNode: Node, value: Node)] {
        var seen: [String: Node] = [:]
        var out: [(key: String, keyNode: Node, value: Node)] = []
        for (k, v) in mapping {
            guard case .scalar(let ks) = k else {
                throw error(.wrongType, "keys under '\(path.isEmpty ? "the top level" : path)' must be plain strings",
                    at: k, key: path)
            }
            let key = ks.string
            let keyPath = Self.join(path, key)
            if let first = seen[key] {
                let what = duplicate == .duplicateNode ? "duplicate node '\(key)'" : "duplicate key '\(keyPath)'"
                throw error(
                    duplicate,
                    "\(what) (first defined at line \(first.mark?.line ?? 0), column \(first.mark?.column ?? 0)); "
                        + "remove one of them", at: k, key: keyPath)
            }
            seen[key] = k
            out.append((key, k, v))
        }
        return out
    }

    static func join(_ path: String, _ key: String) -> String {
        if path.isEmpty { return key }
        if path == "nodes" { return "nodes[\"\(key)\"]" }
        return "\(path).\(key)"
    }

    func value(_ node: Node, path: String) throws(InventoryError) -> InventoryValue {
        switch node {
        case .scalar(let s):
            return convertScalar(s)
        case .sequence(let seq):
            var items: [InventoryValue] = []
            for (i, n) in seq.enumerated() { items.append(try value(n, path: "\(path)[\(i)]")) }
            return .list(items)
        case .mapping(let m):
            var entries: [InventoryEntry] = []
            for p in try pairs(of: m, path: path, duplicate: path == "nodes" ? .duplicateNode : .duplicateKey) {
                entries.append(InventoryEntry(key: p.key, value: try value(p.value, path: Self.join(path, p.key))))
            }
            return .map(entries)
        }
    }

    func string(_ node: Node, key: String) throws(InventoryError) -> String {
        guard case .scalar(let s) = node else { throw wrongType(node, key: key, expected: "a string") }
        switch convertScalar(s) {
        case .string, .int, .float: return s.string
        default: throw wrongType(node, key: key, expected: "a string")
        }
    }

    func int(_ node: Node, key: String, range: ClosedRange<Int>) throws(InventoryError) -> Int {
        guard case .scalar(let s) = node, case .int(let i) = convertScalar(s) else {
            throw wrongType(node, key: key, expected: "an integer")
        }
        guard range.contains(i) else {
            throw error(
                .invalidValue, "'\(key)' must be between \(range.lowerBound) and \(range.upperBound), found \(i)",
                at: node, key: key)
        }
        return i
    }

    func bool(_ node: Node, key: String) throws(InventoryError) -> Bool {
        guard case .scalar(let s) = node, case .bool(let b) = convertScalar(s) else {
            throw wrongType(node, key: key, expected: "true or false")
        }
        return b
    }

    func stringList(_ node: Node, key: String) throws(InventoryError) -> [(String, Node)] {
        if case .scalar(let s) = node, case .null = convertScalar(s) { return [] }
        guard case .sequence(let seq) = node else { throw wrongType(node, key: key, expected: "a list of strings") }
        var out: [(String, Node)] = []
        for (i, n) in seq.enumerated() { out.append((try string(n, key: "\(key)[\(i)]"), n)) }
        return out
    }

    func seconds(_ node: Node, key: String) throws(InventoryError) -> Duration {
        guard case .scalar(let s) = node else { throw wrongType(node, key: key, expected: "a number of seconds") }
        let v = convertScalar(s)
        let secs: Double
        switch v {
        case .int(let i): secs = Double(i)
        case .float(let f): secs = f
        default: throw wrongType(node, key: key, expected: "a number of seconds")
        }
        guard secs > 0, secs.isFinite else {
            throw error(.invalidValue, "'\(key)' must be a positive number of seconds, found \(s.string)", at: node, key: key)
        }
        return .milliseconds(Int64((secs * 1000).rounded()))
    }

    func unknownKey(_ key: String, at node: Node, path: String, candidates: [String], hint: String) -> InventoryError {
        let full = Self.join(path, key)
        var msg = "unknown key '\(full)'"
        if let s = InventoryKeys.suggestion(for: key, among: candidates) {
            msg += " (did you mean '\(Self.join(path, s))'?)"
        }
        msg += "; \(hint)"
        return error(.unknownKey, msg, at: node, key: full)
    }

    // MARK: parse

    mutating func parse(_ yaml: String) throws(InventoryError) -> Inventory {
        do throws(YAMLNesting.TooDeep) { try YAMLNesting.check(yaml) } catch {
            throw InventoryError(code: .syntax, message: error.description, file: file, line: error.line, column: 1, key: "")
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: yaml)
        } catch let e as YamlError {
            throw syntaxError(e)
        } catch {
            throw self.error(.syntax, "YAML does not parse: \(error)", at: nil, key: "")
        }
        guard let root else {
            throw self.error(
                .missingKey, "the inventory is empty: it needs join_address, join_token, nix_channel and nodes",
                at: nil, key: "")
        }
        guard case .mapping(let rootMap) = root else {
            throw wrongType(root, key: "(top level)", expected: "a map of inventory keys")
        }
        let top = try pairs(of: rootMap, path: "")
        var byKey: [String: (keyNode: Node, value: Node)] = [:]
        let known = Set(InventoryKeys.allTopLevel)
        for p in top {
            guard known.contains(p.key) else {
                throw unknownKey(
                    p.key, at: p.keyNode, path: "", candidates: InventoryKeys.allTopLevel,
                    hint: "put extra template variables under 'vars:'")
            }
            byKey[p.key] = (p.keyNode, p.value)
        }
        for k in InventoryKeys.required where byKey[k] == nil {
            throw self.error(.missingKey, "missing required key '\(k)'", at: root, key: k)
        }
        let joinAddress = try string(byKey["join_address"]!.value, key: "join_address")
        let joinToken = try string(byKey["join_token"]!.value, key: "join_token")
        let nixChannel = try string(byKey["nix_channel"]!.value, key: "nix_channel")
        if HostAddress.classify(joinAddress) == nil {
            throw self.error(
                .badAddress, "'join_address' value '\(joinAddress)' is not an IPv4/IPv6 address or hostname",
                at: byKey["join_address"]!.value, key: "join_address")
        }
        let watch = try byKey["watch_namespaces"].map { v throws(InventoryError) in
            try stringList(v.value, key: "watch_namespaces").map(\.0)
        } ?? []

        // Every value, as written, for the template's `cluster` scope (also checks nested duplicate keys).
        var topLevel: [InventoryEntry] = []
        for p in top { topLevel.append(InventoryEntry(key: p.key, value: try value(p.value, path: p.key))) }

        var nodes = try parseNodes(byKey["nodes"]!.value)

        // Servers.
        var selection = Inventory.ServerSelection.allNodes
        if let s = byKey["servers"] {
            selection = .explicit
            let wanted = try resolveNodeList(s.value, key: "servers", nodes: nodes)
            for i in nodes.indices { nodes[i].isServer = wanted.contains(nodes[i].name) }
        } else if nodes.contains(where: { $0[hostvar: "role"] != nil }) {
            selection = .roleHostvar
            for i in nodes.indices { nodes[i].isServer = nodes[i][hostvar: "role"] != .string("agent") }
        } else {
            // Nothing says which nodes are servers. The Python tool's clusters join every node as a k3s server
            // (embedded etcd: the initiator with clusterInit, the rest with serverAddr), and counting a node as a
            // server is the safe mistake for quorum, so every node counts (quorum is n/2+1:
            // https://docs.k3s.io/datastore/ha-embedded).
            for i in nodes.indices { nodes[i].isServer = true }
        }

        var order: [String] = []
        if let o = byKey["order"] {
            order = try resolveNodeList(o.value, key: "order", nodes: nodes)
        }
        for n in nodes where !order.contains(n.name) { order.append(n.name) }

        let stem = ((file as NSString).lastPathComponent as NSString).deletingPathExtension
        let directory = (file as NSString).deletingLastPathComponent
        func resolve(_ p: String) -> String {
            if p.hasPrefix("/") || directory.isEmpty { return p }
            return (directory as NSString).appendingPathComponent(p)
        }

        var clusterName = stem.isEmpty ? "default" : stem
        if let v = byKey["cluster_name"] {
            clusterName = try string(v.value, key: "cluster_name")
            guard HostAddress.isNodeName(clusterName), !clusterName.contains(".") else {
                throw self.error(
                    .invalidValue,
                    "'cluster_name' must be lowercase letters, digits and '-' (it names the PKI directory), "
                        + "found '\(clusterName)'", at: v.value, key: "cluster_name")
            }
        }
        let agentPort = try byKey["agent_port"].map { v throws(InventoryError) in
            try int(v.value, key: "agent_port", range: AgentLimits.port)
        } ?? 7443
        let stateVersion = try byKey["state_version"].map { v throws(InventoryError) in
            try self.stateVersion(v.value, key: "state_version")
        }
        // A node's own hostvars (checked in parseNodes) override the top level's.
        for i in nodes.indices {
            if nodes[i][hostvar: "agent_port"] == nil { nodes[i].agentPort = agentPort }
            if nodes[i][hostvar: "state_version"] == nil { nodes[i].stateVersion = stateVersion }
        }
        let budget = try byKey["disruption_budget"].map { v throws(InventoryError) in
            try int(v.value, key: "disruption_budget", range: 1...Int.max)
        } ?? 1
        let pkiDir = try byKey["pki_dir"].map { v throws(InventoryError) in try string(v.value, key: "pki_dir") }
            ?? "certs/\(clusterName)"
        let kubeconfig = try byKey["kubeconfig"].map { v throws(InventoryError) in
            try string(v.value, key: "kubeconfig")
        }
        let kubeContext = try byKey["kube_context"].map { v throws(InventoryError) in
            try string(v.value, key: "kube_context")
        }
        let template = try byKey["template"].map { v throws(InventoryError) in try string(v.value, key: "template") }

        var ceph = CephSettings()
        if let c = byKey["ceph"] {
            guard case .mapping(let m) = c.value else { throw wrongType(c.value, key: "ceph", expected: "a map") }
            ceph.enabled = true
            for p in try pairs(of: m, path: "ceph") {
                let k = "ceph.\(p.key)"
                switch p.key {
                case "enabled": ceph.enabled = try bool(p.value, key: k)
                case "namespace": ceph.namespace = try string(p.value, key: k)
                case "name": ceph.name = try string(p.value, key: k)
                default:
                    throw unknownKey(
                        p.key, at: p.keyNode, path: "ceph", candidates: InventoryKeys.ceph,
                        hint: "ceph takes: \(InventoryKeys.ceph.joined(separator: ", "))")
                }
            }
        }

        var timeouts = Timeouts()
        if let t = byKey["timeouts"] {
            guard case .mapping(let m) = t.value else { throw wrongType(t.value, key: "timeouts", expected: "a map") }
            for p in try pairs(of: m, path: "timeouts") {
                let k = "timeouts.\(p.key)"
                switch p.key {
                case "drain": timeouts.drain = try seconds(p.value, key: k)
                case "reboot": timeouts.reboot = try seconds(p.value, key: k)
                case "ready": timeouts.ready = try seconds(p.value, key: k)
                case "gates": timeouts.gates = try seconds(p.value, key: k)
                case "confirm": timeouts.confirm = try confirmSeconds(p.value, key: k)
                case "rebuild": timeouts.rebuild = try seconds(p.value, key: k)
                default:
                    throw unknownKey(
                        p.key, at: p.keyNode, path: "timeouts", candidates: InventoryKeys.timeouts,
                        hint: "timeouts takes: \(InventoryKeys.timeouts.joined(separator: ", ")) (seconds)")
                }
            }
        }

        var vars: [InventoryEntry] = []
        if let v = byKey["vars"] {
            switch try value(v.value, path: "vars") {
            case .map(let entries): vars = entries
            case .null: vars = []
            default: throw wrongType(v.value, key: "vars", expected: "a map")
            }
        }

        let healthRule = try byKey["health_rule"].map { v throws(InventoryError) -> WorkloadHealthRule in
            let text = try string(v.value, key: "health_rule")
            guard let rule = WorkloadHealthRule(rawValue: text) else {
                throw wrongType(
                    v.value, key: "health_rule",
                    expected: WorkloadHealthRule.allCases.map(\.rawValue).joined(separator: " or "))
            }
            return rule
        }
        let operate = try parseOperate(byKey, resolve: resolve, directory: directory)
        var inventory = Inventory(
            file: file, directory: directory, joinAddress: joinAddress, joinToken: joinToken, nixChannel: nixChannel,
            watchNamespaces: watch, nodes: nodes, rolloutOrder: order, serverSelection: selection,
            clusterName: clusterName, agentPort: agentPort, stateVersion: stateVersion, pkiDirectory: resolve(pkiDir), kubeconfig: kubeconfig,
            kubeContext: kubeContext, disruptionBudget: budget, ceph: ceph, templatePath: template.map(resolve),
            timeouts: timeouts, topLevel: topLevel, vars: vars, healthRule: healthRule ?? .available)
        inventory.operate = operate
        inventory.agentBinaryPath = try byKey["agent_binary"].map { v throws(InventoryError) in
            resolve(try string(v.value, key: "agent_binary"))
        }
        if let v = byKey["flake"] {
            // `flake: true` (the default flake template), `flake: false`, or `flake: PATH` (a flake.nix template).
            let lock = resolve("flake.lock")
            if case .scalar(let s) = v.value, case .bool(let on) = convertScalar(s) {
                inventory.flake = on ? Inventory.FlakeMode(templatePath: nil, lockPath: lock) : nil
            } else {
                let path = try string(v.value, key: "flake")
                inventory.flake = Inventory.FlakeMode(templatePath: resolve(path), lockPath: lock)
            }
        }
        return inventory
    }

    func parseNodes(_ node: Node) throws(InventoryError) -> [InventoryNode] {
        guard case .mapping(let m) = node else {
            throw wrongType(node, key: "nodes", expected: "a map of node address to hostvars")
        }
        var nodes: [InventoryNode] = []
        var names: [String: Node] = [:]
        for p in try pairs(of: m, path: "nodes", duplicate: .duplicateNode) {
            let path = Self.join("nodes", p.key)
            guard HostAddress.classify(p.key) != nil else {
                throw error(
                    .badAddress, "node '\(p.key)' is not an IPv4/IPv6 address or hostname", at: p.keyNode, key: path)
            }
            var hostvars: [InventoryEntry] = []
            switch try value(p.value, path: path) {
            case .map(let entries): hostvars = entries
            case .null: hostvars = []
            default: throw wrongType(p.value, key: path, expected: "a map of hostvars")
            }
            var name = UUIDv5.nodeName(forAddress: p.key)
            var nameNode = p.keyNode
            var agentPort = 7443
            var stateVersion: String?
            if case .mapping(let hm) = p.value {
                for hp in try pairs(of: hm, path: path) {
                    if InventoryKeys.reservedHostvars.contains(hp.key) {
                        throw error(
                            .invalidValue,
                            "hostvar '\(hp.key)' of node '\(p.key)' is computed by nk3 and cannot be set; "
                                + "use 'hostname:' to name a node", at: hp.keyNode, key: Self.join(path, hp.key))
                    }
                    if hp.key == "hostname" {
                        let h = try string(hp.value, key: "\(path).hostname")
                        guard HostAddress.isNodeName(h) else {
                            throw error(
                                .invalidValue,
                                "'\(path).hostname' must be a lowercase RFC 1123 name (Kubernetes node names are), "
                                    + "found '\(h)'", at: hp.value, key: "\(path).hostname")
                        }
                        name = h
                        nameNode = hp.value
                    }
                    if hp.key == "agent_port" {
                        agentPort = try int(hp.value, key: "\(path).agent_port", range: AgentLimits.port)
                    }
                    if hp.key == "state_version" {
                        stateVersion = try self.stateVersion(hp.value, key: "\(path).state_version")
                    }
                }
            }
            if let first = names[name] {
                throw error(
                    .duplicateNode,
                    "duplicate node name '\(name)' (also used at line \(first.mark?.line ?? 0), column "
                        + "\(first.mark?.column ?? 0)); node names must be unique", at: nameNode, key: path)
            }
            names[name] = nameNode
            nodes.append(
                InventoryNode(
                    address: p.key, name: name, hostvars: hostvars, isServer: false, agentPort: agentPort,
                    stateVersion: stateVersion))
        }
        if nodes.isEmpty {
            throw error(.invalidValue, "'nodes' is empty: list at least one node address", at: node, key: "nodes")
        }
        return nodes
    }

    /// `state_version`: a quoted release such as "24.05". Unquoted, YAML reads 24.10 as the number 24.1, which
    /// a template would print as "24.1"; so a number is refused with that explanation.
    func stateVersion(_ node: Node, key: String) throws(InventoryError) -> String {
        guard case .scalar(let s) = node, case .string(let text) = convertScalar(s) else {
            if case .scalar(let s) = node, case .float = convertScalar(s) {
                throw error(
                    .wrongType,
                    "'\(key)' must be a quoted string such as \"\(s.string)\" (unquoted, YAML reads it as a number "
                        + "and 24.10 would become 24.1)", at: node, key: key)
            }
            throw wrongType(node, key: key, expected: "a quoted NixOS release such as \"24.05\"")
        }
        guard InventoryKeys.isStateVersion(text) else {
            throw error(
                .invalidValue,
                "'\(key)' must be a NixOS release such as \"24.05\" (system.stateVersion of the machine's first "
                    + "install), found '\(text)'", at: node, key: key)
        }
        return text
    }

    /// `timeouts.confirm`: whole seconds within `AgentLimits.confirmTimeoutSeconds` (the agent refuses a bundle
    /// outside it, and the NixOS module's option has the same range).
    func confirmSeconds(_ node: Node, key: String) throws(InventoryError) -> Duration {
        guard case .scalar(let s) = node, case .int = convertScalar(s) else {
            throw wrongType(node, key: key, expected: "a whole number of seconds")
        }
        return .seconds(try int(node, key: key, range: AgentLimits.confirmTimeoutSeconds))
    }

    /// Names of the nodes a list refers to, by name or address, in list order.
    func resolveNodeList(_ node: Node, key: String, nodes: [InventoryNode]) throws(InventoryError) -> [String] {
        var out: [String] = []
        for (i, (ref, n)) in try stringList(node, key: key).enumerated() {
            guard let hit = nodes.first(where: { $0.name == ref || $0.address == ref }) else {
                throw error(.invalidValue, "'\(key)[\(i)]' = '\(ref)' names no node under 'nodes:'", at: n, key: key)
            }
            guard !out.contains(hit.name) else {
                throw error(.invalidValue, "'\(key)[\(i)]' = '\(ref)' is listed twice", at: n, key: key)
            }
            out.append(hit.name)
        }
        return out
    }

    func syntaxError(_ e: YamlError) -> InventoryError {
        switch e {
        case .scanner(let context, let problem, let mark, _), .parser(let context, let problem, let mark, _),
            .composer(let context, let problem, let mark, _):
            let ctx = context.map { "\($0.text) " } ?? ""
            return InventoryError(
                code: .syntax, message: "YAML syntax error: \(ctx)\(problem)", file: file, line: mark.line,
                column: mark.column, key: "")
        default:
            return InventoryError(
                code: .syntax, message: "YAML does not parse: \(e)", file: file, line: 0, column: 0, key: "")
        }
    }
}
