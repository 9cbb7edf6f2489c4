import Foundation
import NK3Coordinator
import Testing

@Suite("Inventory")
struct InventoryTests {
    static let seed = """
        ---
        join_address: 172.30.190.3
        join_token: woof
        nix_channel: nixos-24.05
        nodes:
          172.30.190.3:
            initiator: false
            boot_device: /dev/nvme0n1
          172.30.190.4:
            initiator: false
            boot_device: /dev/nvme0n1
          172.30.190.5:
            initiator: false
            boot_device: /dev/nvme0n1
        watch_namespaces:
          - default
          - kube-system
          - rook-ceph

        """

    /// Parses `yaml` and returns the error it must throw.
    func failure(_ yaml: String, file: String = "inventory.yaml") -> InventoryError? {
        do {
            _ = try Inventory.parse(yaml: yaml, file: file)
            return nil
        } catch {
            return error
        }
    }

    @Test("the Python nk3 README's inventory parses unchanged")
    func seedParses() throws {
        let inv = try Inventory.parse(yaml: Self.seed, file: "inventory.yaml")
        #expect(inv.joinAddress == "172.30.190.3")
        #expect(inv.joinToken == "woof")
        #expect(inv.nixChannel == "nixos-24.05")
        #expect(inv.watchNamespaces == ["default", "kube-system", "rook-ceph"])
        #expect(inv.nodes.map(\.address) == ["172.30.190.3", "172.30.190.4", "172.30.190.5"])
        #expect(inv.nodes[0][hostvar: "boot_device"] == .string("/dev/nvme0n1"))
        #expect(inv.nodes[0][hostvar: "initiator"] == .bool(false))
        // Defaults.
        #expect(inv.agentPort == 7443)
        #expect(inv.disruptionBudget == 1)
        #expect(inv.clusterName == "inventory")
        #expect(inv.pkiDirectory == "certs/inventory")
        #expect(inv.ceph == CephSettings(enabled: false, namespace: "rook-ceph", name: nil))
        #expect(inv.timeouts == Timeouts())
        #expect(inv.templatePath == nil)
        // Nothing names the servers: every node counts as one (the safe assumption for etcd quorum).
        #expect(inv.serverSelection == .allNodes)
        #expect(inv.nodes.map(\.isServer) == [true, true, true])
        #expect(inv.rolloutOrder == inv.nodes.map(\.name))
    }

    @Test("the checked-in seed fixture is the same inventory")
    func seedFixture() throws {
        let url = try #require(Bundle.module.url(forResource: "Fixtures/seed-inventory", withExtension: "yaml"))
        let inv = try Inventory.load(path: url.path)
        #expect(inv.nodes.count == 3)
        #expect(inv.clusterName == "seed-inventory")
        #expect(inv.pkiDirectory == url.deletingLastPathComponent().appendingPathComponent("certs/seed-inventory").path)
    }

    @Test("names are the Python tool's uuid5(NAMESPACE_OID, ip): the sample output's names come back")
    func pythonNames() throws {
        // The README's sample output was produced by nodes at .198, .137 and .167 (its inventory shows edited
        // addresses): uuid.uuid5(uuid.NAMESPACE_OID, "172.30.190.198") == d752cf78-....
        let yaml = Self.seed
            .replacingOccurrences(of: "172.30.190.3:", with: "172.30.190.198:")
            .replacingOccurrences(of: "172.30.190.4:", with: "172.30.190.137:")
            .replacingOccurrences(of: "172.30.190.5:", with: "172.30.190.167:")
        let inv = try Inventory.parse(yaml: yaml, file: "inventory.yaml")
        #expect(
            inv.nodes.map(\.name) == [
                "d752cf78-d889-5bd9-8dd4-2bb7eeb898f4", "538f6fb5-5666-5387-9faf-fdea7aa309f7",
                "933fa9c8-51d7-5477-8163-5890a80109bd",
            ])
        // And the README inventory's own addresses, computed independently with Python's uuid module.
        let seed = try Inventory.parse(yaml: Self.seed, file: "inventory.yaml")
        #expect(seed.nodes[0].name == "d6c27852-4d1c-5830-8e94-40b76fa2b5ec")
    }

    @Test("UUIDv5 matches Python for every standard namespace")
    func uuidNamespaces() {
        // python3 -c 'import uuid; print(uuid.uuid5(uuid.NAMESPACE_DNS, "python.org"))' (also in Python's docs)
        #expect(UUIDv5.make(namespace: UUIDv5.namespaceDNS, name: "python.org").uuidString.lowercased()
            == "886313e1-3b8a-5372-9b90-0c9aee199e5d")
        #expect(UUIDv5.make(namespace: UUIDv5.namespaceURL, name: "172.30.190.3").uuidString.lowercased()
            == "0b9a0f51-b927-5e8e-8fab-9405a3e87749")
        #expect(UUIDv5.make(namespace: UUIDv5.namespaceX500, name: "172.30.190.3").uuidString.lowercased()
            == "a578840d-6193-5cbc-9871-b1c56a9767cd")
        // A name longer than one SHA-1 block.
        let long = String(repeating: "node-", count: 40)
        #expect(UUIDv5.make(namespace: UUIDv5.namespaceOID, name: long).uuidString.lowercased()
            == "6f0a4807-1818-547d-8b3a-ea7d141e47df")
    }

    @Test("hostname, servers, order, nk3 keys and vars")
    func nk3Keys() throws {
        let yaml = """
            join_address: 10.0.0.1
            join_token: t
            nix_channel: nixos-25.05
            cluster_name: lab
            agent_port: 9443
            pki_dir: /etc/nk3/pki
            kubeconfig: ~/.kube/lab
            kube_context: lab-admin
            disruption_budget: 2
            template: templates/configuration.nix
            default_gateway: 10.0.0.254
            ceph:
              namespace: storage
            timeouts:
              drain: 30
              confirm: 15
            servers: [10.0.0.1, n2]
            order: [n3]
            vars:
              ntp: pool.ntp.org
            nodes:
              10.0.0.1: {hostname: n1}
              10.0.0.2: {hostname: n2}
              10.0.0.3: {hostname: n3}
              fe80::1:
              node4.example.org:
            """
        let inv = try Inventory.parse(yaml: yaml, file: "/srv/lab/inventory.yml")
        #expect(inv.nodes.map(\.name) == ["n1", "n2", "n3", UUIDv5.nodeName(forAddress: "fe80::1"),
            UUIDv5.nodeName(forAddress: "node4.example.org")])
        #expect(inv.nodes.map(\.isServer) == [true, true, false, false, false])
        #expect(inv.serverSelection == .explicit)
        #expect(Array(inv.rolloutOrder.prefix(3)) == ["n3", "n1", "n2"])
        #expect(inv.clusterName == "lab")
        #expect(inv.agentPort == 9443)
        #expect(inv.pkiDirectory == "/etc/nk3/pki")
        #expect(inv.kubeconfig == "~/.kube/lab")
        #expect(inv.kubeContext == "lab-admin")
        #expect(inv.disruptionBudget == 2)
        #expect(inv.templatePath == "/srv/lab/templates/configuration.nix")
        #expect(inv.ceph == CephSettings(enabled: true, namespace: "storage", name: nil))
        #expect(inv.timeouts.drain == .seconds(30))
        #expect(inv.timeouts.confirm == .seconds(15))
        #expect(inv.timeouts.reboot == .seconds(900))
        #expect(inv.vars == [InventoryEntry(key: "ntp", value: .string("pool.ntp.org"))])
        #expect(inv.topLevel.first { $0.key == "default_gateway" }?.value == .string("10.0.0.254"))
    }

    @Test("servers default to every node; role hostvars decide when present")
    func serverDefaults() throws {
        let b = try Inventory.parse(
            yaml: """
                join_address: lb.example.org
                join_token: t
                nix_channel: c
                nodes:
                  10.0.0.1: {initiator: true}
                  10.0.0.2:
                """, file: "i.yaml")
        #expect(b.serverSelection == .allNodes)
        #expect(b.nodes.map(\.isServer) == [true, true])
        let c = try Inventory.parse(
            yaml: """
                join_address: 10.0.0.1
                join_token: t
                nix_channel: c
                nodes:
                  10.0.0.1: {role: server}
                  10.0.0.2: {role: agent}
                """, file: "i.yaml")
        #expect(c.serverSelection == .roleHostvar)
        #expect(c.nodes.map(\.isServer) == [true, false])
    }

    // MARK: errors — each kind, with its exact message

    @Test("unknown top-level key: file:line:column, key and a did-you-mean")
    func unknownKey() throws {
        let yaml = Self.seed.replacingOccurrences(of: "join_token:", with: "join_tokn:")
        let e = try #require(failure(yaml))
        #expect(e.code == .unknownKey)
        #expect(e.key == "join_tokn")
        #expect(
            e.description
                == "inventory.yaml:3:1: unknown key 'join_tokn' (did you mean 'join_token'?); "
                + "put extra template variables under 'vars:'")
        let far = try #require(failure(Self.seed + "frobnicate: 1\n"))
        #expect(far.description == "inventory.yaml:19:1: unknown key 'frobnicate'; put extra template variables under 'vars:'")
    }

    @Test("unknown key inside timeouts: has its own did-you-mean")
    func unknownTimeoutKey() throws {
        let e = try #require(failure(Self.seed + "timeouts:\n  drian: 5\n"))
        #expect(e.description
            == "inventory.yaml:20:3: unknown key 'timeouts.drian' (did you mean 'timeouts.drain'?); "
            + "timeouts takes: drain, reboot, ready, gates, confirm, rebuild (seconds)")
    }

    @Test("duplicate node: YAML keeps the last silently, nk3 refuses and says where the first is")
    func duplicateNode() throws {
        let yaml = Self.seed.replacingOccurrences(of: "172.30.190.5:", with: "172.30.190.3:")
        let e = try #require(failure(yaml))
        #expect(e.code == .duplicateNode)
        #expect(e.key == "nodes[\"172.30.190.3\"]")
        #expect(e.description
            == "inventory.yaml:12:3: duplicate node '172.30.190.3' (first defined at line 6, column 3); remove one of them")
    }

    @Test("duplicate top-level key and duplicate hostvar")
    func duplicateKey() throws {
        let e = try #require(failure(Self.seed + "join_token: again\n"))
        #expect(e.code == .duplicateKey)
        #expect(e.description
            == "inventory.yaml:19:1: duplicate key 'join_token' (first defined at line 3, column 1); remove one of them")
        let h = try #require(failure(Self.seed.replacingOccurrences(
            of: "    initiator: false\n    boot_device: /dev/nvme0n1\n  172.30.190.5:",
            with: "    initiator: false\n    initiator: true\n  172.30.190.5:")))
        #expect(h.code == .duplicateKey)
        #expect(h.key == "nodes[\"172.30.190.4\"].initiator")
        #expect(h.line == 11 && h.column == 5)
    }

    @Test("bad address: neither IPv4/IPv6 nor a hostname")
    func badAddress() throws {
        let e = try #require(failure(Self.seed.replacingOccurrences(of: "172.30.190.4:", with: "172.30.190.400:")))
        #expect(e.code == .badAddress)
        #expect(e.description == "inventory.yaml:9:3: node '172.30.190.400' is not an IPv4/IPv6 address or hostname")
        let u = try #require(failure(Self.seed.replacingOccurrences(of: "172.30.190.4:", with: "node_4:")))
        #expect(u.description == "inventory.yaml:9:3: node 'node_4' is not an IPv4/IPv6 address or hostname")
        let j = try #require(failure(Self.seed.replacingOccurrences(of: "join_address: 172.30.190.3", with: "join_address: 1.2.3")))
        #expect(j.description == "inventory.yaml:2:15: 'join_address' value '1.2.3' is not an IPv4/IPv6 address or hostname")
    }

    @Test("wrong type")
    func wrongType() throws {
        let e = try #require(failure(Self.seed + "agent_port: https\n"))
        #expect(e.code == .wrongType)
        #expect(e.key == "agent_port")
        #expect(e.description == "inventory.yaml:19:13: 'agent_port' must be an integer, found string 'https'")
        let w = try #require(failure(Self.seed.replacingOccurrences(
            of: "watch_namespaces:\n  - default\n  - kube-system\n  - rook-ceph\n", with: "watch_namespaces: default\n")))
        #expect(w.description == "inventory.yaml:15:19: 'watch_namespaces' must be a list of strings, found string 'default'")
        let n = try #require(failure(Self.seed.replacingOccurrences(of: "  172.30.190.5:\n    initiator: false\n    boot_device: /dev/nvme0n1\n", with: "  172.30.190.5: [a, b]\n")))
        #expect(n.description == "inventory.yaml:12:17: 'nodes[\"172.30.190.5\"]' must be a map of hostvars, found a list")
    }

    @Test("missing required key")
    func missingKey() throws {
        let e = try #require(failure(Self.seed.replacingOccurrences(of: "nix_channel: nixos-24.05\n", with: "")))
        #expect(e.code == .missingKey)
        #expect(e.key == "nix_channel")
        #expect(e.description == "inventory.yaml:2:1: missing required key 'nix_channel'")
    }

    @Test("invalid values: port range, unknown node in servers, bad hostname, reserved hostvar")
    func invalidValues() throws {
        #expect(failure(Self.seed + "agent_port: 70000\n")?.description
            == "inventory.yaml:19:13: 'agent_port' must be between 1 and 65535, found 70000")
        #expect(failure(Self.seed + "servers: [172.30.190.9]\n")?.description
            == "inventory.yaml:19:11: 'servers[0]' = '172.30.190.9' names no node under 'nodes:'")
        #expect(failure(Self.seed.replacingOccurrences(of: "    initiator: false\n    boot_device: /dev/nvme0n1\n  172.30.190.4:", with: "    hostname: Node_A\n  172.30.190.4:"))?.description
            == "inventory.yaml:7:15: 'nodes[\"172.30.190.3\"].hostname' must be a lowercase RFC 1123 name (Kubernetes node names are), found 'Node_A'")
        #expect(failure(Self.seed.replacingOccurrences(of: "    initiator: false\n    boot_device: /dev/nvme0n1\n  172.30.190.4:", with: "    name: a\n  172.30.190.4:"))?.code == .invalidValue)
    }

    @Test("YAML syntax errors carry the parser's line and column")
    func syntax() throws {
        let e = try #require(failure("join_address: [1\nnodes: {}\n"))
        #expect(e.code == .syntax)
        #expect(e.line == 2)
        #expect(e.description.hasPrefix("inventory.yaml:2:"))
    }

    @Test("load: an unreadable file is an error, not a crash")
    func unreadable() {
        do {
            _ = try Inventory.load(path: "/nonexistent/nk3/inventory.yaml")
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .unreadable)
            #expect(error.file == "/nonexistent/nk3/inventory.yaml")
        }
    }

    @Test("addresses")
    func addresses() {
        #expect(HostAddress.classify("172.30.190.3") == .ipv4)
        #expect(HostAddress.classify("::1") == .ipv6)
        #expect(HostAddress.classify("2001:db8::42") == .ipv6)
        #expect(HostAddress.classify("node-1.lab") == .hostname)
        #expect(HostAddress.classify("010.0.0.1") == nil)
        #expect(HostAddress.classify("1.2.3.4.5") == nil)
        #expect(HostAddress.classify("-bad") == nil)
        #expect(HostAddress.classify("") == nil)
    }
}
