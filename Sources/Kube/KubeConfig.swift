import Foundation
import Yams

/// Credentials and endpoint resolved from a kubeconfig (docs/UPSTREAM.md#kubeconfig): what `KubeClient` needs.
///
/// TLS is always verified. `insecure-skip-tls-verify` is refused, and so are credential kinds nk3 does not
/// implement (`exec`, `auth-provider`, basic auth), each with an error that says what to use instead.
public struct KubeConfig: Sendable, Hashable {
    /// `https://host:port` of the API server.
    public var server: URL
    /// The CA that signs the API server's certificate (PEM); nil means the system trust store.
    public var certificateAuthorityPEM: String?
    /// Client certificate (PEM), with `clientKeyPEM`.
    public var clientCertificatePEM: String?
    /// Client key (PEM).
    public var clientKeyPEM: String?
    /// Bearer token.
    public var token: String?
    /// The context's default namespace.
    public var namespace: String?
    /// The context used (nil when built directly).
    public var contextName: String?
    /// kubeconfig `tls-server-name`: the name the API servers' certificates are checked against (and sent as SNI)
    /// instead of the host in `server` (kubernetes/client-go tools/clientcmd/api/v1/types.go `TLSServerName`).
    public var tlsServerName: String?
    /// More API servers of the same cluster (same CA and credentials): full URLs, or hosts that take `server`'s
    /// scheme and port. Every k3s server serves the API, so nk3 adds the inventory's servers here and the client
    /// moves to another one when the one it uses goes down (e.g. rebooted by nk3 itself).
    public var extraServers: [String] = []

    /// Makes a configuration directly (tests, the simulator).
    public init(
        server: URL, certificateAuthorityPEM: String?, clientCertificatePEM: String? = nil, clientKeyPEM: String? = nil,
        token: String? = nil, namespace: String? = nil, contextName: String? = nil
    ) {
        self.server = server
        self.certificateAuthorityPEM = certificateAuthorityPEM
        self.clientCertificatePEM = clientCertificatePEM
        self.clientKeyPEM = clientKeyPEM
        self.token = token
        self.namespace = namespace
        self.contextName = contextName
    }

    /// Loads like kubectl: an explicit `path` (`--kubeconfig`) wins; else the `KUBECONFIG` colon list
    /// (first file to define a name wins the whole entry, first `current-context` wins, missing files
    /// skipped); else `~/.kube/config`. `context` picks a context other than `current-context`.
    public static func load(
        path: String? = nil, context: String? = nil,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> KubeConfig {
        var files: [String]
        if let path {
            guard FileManager.default.fileExists(atPath: path) else {
                throw KubeError(.config, "kubeconfig \(path) does not exist; pass the path of a kubeconfig file (on a k3s server: /etc/rancher/k3s/k3s.yaml)")
            }
            files = [path]
        } else if let list = environment["KUBECONFIG"], !list.isEmpty {
            // client-go tools/clientcmd/loader.go: split on ':', dedupe, ignore empty names, skip missing files.
            var seen = Set<String>()
            files = list.split(separator: ":").map(String.init).filter { !$0.isEmpty && seen.insert($0).inserted }
            let existing = files.filter { FileManager.default.fileExists(atPath: $0) }
            guard !existing.isEmpty else {
                throw KubeError(.config, "none of the files in KUBECONFIG (\(list)) exists; fix KUBECONFIG or pass --kubeconfig")
            }
            files = existing
        } else {
            let home = environment["HOME"] ?? NSHomeDirectory()
            let def = (home as NSString).appendingPathComponent(".kube/config")
            guard FileManager.default.fileExists(atPath: def) else {
                throw KubeError(.config, "no kubeconfig: KUBECONFIG is unset and \(def) does not exist; pass --kubeconfig (k3s writes /etc/rancher/k3s/k3s.yaml)")
            }
            files = [def]
        }
        var merged = MergedConfig()
        for file in files {
            let text: String
            do { text = try String(contentsOfFile: file, encoding: .utf8) } catch {
                throw KubeError(.config, "cannot read kubeconfig \(file): \(error.localizedDescription)")
            }
            let raw: RawKubeConfig
            do {
                try YAMLNesting.check(text)
                raw = try YAMLDecoder().decode(RawKubeConfig.self, from: text.isEmpty ? "{}" : text)
            } catch {
                throw KubeError(.config, "kubeconfig \(file) is not a valid kubeconfig: \(error)")
            }
            let dir = (file as NSString).deletingLastPathComponent
            merged.add(raw, directory: dir)
        }
        return try merged.resolve(context: context)
    }

    /// Parses one kubeconfig document (relative paths resolve against `directory`).
    public static func parse(yaml: String, directory: String, context: String? = nil) throws -> KubeConfig {
        let raw: RawKubeConfig
        do {
            try YAMLNesting.check(yaml)
            raw = try YAMLDecoder().decode(RawKubeConfig.self, from: yaml)
        } catch {
            throw KubeError(.config, "not a valid kubeconfig: \(error)")
        }
        var merged = MergedConfig()
        merged.add(raw, directory: directory)
        return try merged.resolve(context: context)
    }
}

// MARK: - raw file shape (docs/UPSTREAM.md#kubeconfig)

struct RawKubeConfig: Decodable {
    struct Named<T: Decodable>: Decodable {
        var name: String
        var value: T?
        enum CodingKeys: String, CodingKey { case name, cluster, user, context }
        init(from decoder: Decoder) throws {
            let c = try decoder.container(keyedBy: CodingKeys.self)
            name = try c.decode(String.self, forKey: .name)
            value =
                try c.decodeIfPresent(T.self, forKey: .cluster) ?? c.decodeIfPresent(T.self, forKey: .user)
                ?? c.decodeIfPresent(T.self, forKey: .context)
        }
    }
    struct Cluster: Decodable {
        var server: String?
        var certificateAuthority: String?
        var certificateAuthorityData: String?
        var insecureSkipTLSVerify: Bool?
        var tlsServerName: String?
        var proxyURL: String?
        enum CodingKeys: String, CodingKey {
            case server
            case certificateAuthority = "certificate-authority"
            case certificateAuthorityData = "certificate-authority-data"
            case insecureSkipTLSVerify = "insecure-skip-tls-verify"
            case tlsServerName = "tls-server-name"
            case proxyURL = "proxy-url"
        }
    }
    struct User: Decodable {
        var clientCertificate: String?
        var clientCertificateData: String?
        var clientKey: String?
        var clientKeyData: String?
        var token: String?
        var tokenFile: String?
        var username: String?
        var password: String?
        var exec: JSONValue?
        var authProvider: JSONValue?
        enum CodingKeys: String, CodingKey {
            case clientCertificate = "client-certificate"
            case clientCertificateData = "client-certificate-data"
            case clientKey = "client-key"
            case clientKeyData = "client-key-data"
            case token, tokenFile, username, password, exec
            case authProvider = "auth-provider"
        }
    }
    struct Context: Decodable {
        var cluster: String?
        var user: String?
        var namespace: String?
    }
    var clusters: [Named<Cluster>]?
    var users: [Named<User>]?
    var contexts: [Named<Context>]?
    var currentContext: String?
    enum CodingKeys: String, CodingKey {
        case clusters, users, contexts
        case currentContext = "current-context"
    }
}

/// kubectl's merge: the first file to define a name wins the whole entry; the first current-context wins.
struct MergedConfig {
    var clusters: [String: (RawKubeConfig.Cluster, String)] = [:]
    var users: [String: (RawKubeConfig.User, String)] = [:]
    var contexts: [String: RawKubeConfig.Context] = [:]
    var currentContext: String?

    mutating func add(_ raw: RawKubeConfig, directory: String) {
        for c in raw.clusters ?? [] where clusters[c.name] == nil {
            if let v = c.value { clusters[c.name] = (v, directory) }
        }
        for u in raw.users ?? [] where users[u.name] == nil {
            users[u.name] = (u.value ?? RawKubeConfig.User(), directory)
        }
        for x in raw.contexts ?? [] where contexts[x.name] == nil {
            if let v = x.value { contexts[x.name] = v }
        }
        if currentContext == nil, let cc = raw.currentContext, !cc.isEmpty { currentContext = cc }
    }

    func resolve(context requested: String?) throws -> KubeConfig {
        guard let name = requested ?? currentContext else {
            throw KubeError(.config, "the kubeconfig has no current-context; pass a context name (known: \(contexts.keys.sorted().joined(separator: ", ")))")
        }
        guard let ctx = contexts[name] else {
            throw KubeError(.config, "context \"\(name)\" is not in the kubeconfig (known: \(contexts.keys.sorted().joined(separator: ", ")))")
        }
        guard let clusterName = ctx.cluster, let (cluster, cdir) = clusters[clusterName] else {
            throw KubeError(.config, "context \"\(name)\" names cluster \"\(ctx.cluster ?? "")\", which is not in the kubeconfig")
        }
        if cluster.insecureSkipTLSVerify == true {
            throw KubeError(.config, "cluster \"\(clusterName)\" sets insecure-skip-tls-verify: nk3 never skips TLS verification; remove it and set certificate-authority-data (k3s: the CA in /etc/rancher/k3s/k3s.yaml)")
        }
        if cluster.proxyURL != nil {
            throw KubeError(.config, "cluster \"\(clusterName)\" sets proxy-url, which nk3 does not support; connect to the API server directly")
        }
        guard let serverText = cluster.server, let server = URL(string: serverText), server.host != nil else {
            throw KubeError(.config, "cluster \"\(clusterName)\" has no valid server URL")
        }
        guard server.scheme == "https" else {
            throw KubeError(.config, "cluster \"\(clusterName)\" server \(serverText) is not https: nk3 talks to the API only over verified TLS")
        }
        // client-go tools/clientcmd/validation.go: a *-data field overrides its file-path twin.
        let ca = try Self.material(data: cluster.certificateAuthorityData, file: cluster.certificateAuthority, dir: cdir, what: "certificate-authority")
        var config = KubeConfig(server: server, certificateAuthorityPEM: ca, namespace: ctx.namespace, contextName: name)
        if let sni = cluster.tlsServerName, !sni.isEmpty { config.tlsServerName = sni }
        if let userName = ctx.user, !userName.isEmpty {
            guard let (user, udir) = users[userName] else {
                throw KubeError(.config, "context \"\(name)\" names user \"\(userName)\", which is not in the kubeconfig")
            }
            if user.exec != nil || user.authProvider != nil {
                throw KubeError(.config, "user \"\(userName)\" uses an exec/auth-provider credential plugin, which nk3 does not run; use a client certificate or a token")
            }
            if user.username != nil || user.password != nil {
                throw KubeError(.config, "user \"\(userName)\" uses basic auth (username/password), which nk3 does not support; use a client certificate or a token")
            }
            config.clientCertificatePEM = try Self.material(data: user.clientCertificateData, file: user.clientCertificate, dir: udir, what: "client-certificate")
            config.clientKeyPEM = try Self.material(data: user.clientKeyData, file: user.clientKey, dir: udir, what: "client-key")
            if (config.clientCertificatePEM == nil) != (config.clientKeyPEM == nil) {
                throw KubeError(.config, "user \"\(userName)\" sets a client certificate without its key (or the reverse); set both client-certificate(-data) and client-key(-data)")
            }
            // client-go tools/clientcmd/api/v1/types.go: the tokenFile's content wins over token.
            if let tf = user.tokenFile, !tf.isEmpty {
                let path = Self.resolve(tf, dir: udir)
                do {
                    config.token = try String(contentsOfFile: path, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
                } catch {
                    throw KubeError(.config, "user \"\(userName)\": cannot read tokenFile \(path): \(error.localizedDescription)")
                }
            } else if let t = user.token, !t.isEmpty {
                config.token = t
            }
        }
        return config
    }

    static func resolve(_ path: String, dir: String) -> String {
        // client-go tools/clientcmd/loader.go `ResolveLocalPaths`: relative paths resolve against the kubeconfig file's
        // directory.
        path.hasPrefix("/") ? path : (dir as NSString).appendingPathComponent(path)
    }

    static func material(data: String?, file: String?, dir: String, what: String) throws -> String? {
        if let data, !data.isEmpty {
            guard let bytes = Data(base64Encoded: data, options: .ignoreUnknownCharacters),
                let text = String(data: bytes, encoding: .utf8)
            else { throw KubeError(.config, "\(what)-data is not base64 of PEM text") }
            return text
        }
        if let file, !file.isEmpty {
            let path = resolve(file, dir: dir)
            do { return try String(contentsOfFile: path, encoding: .utf8) } catch {
                throw KubeError(.config, "cannot read \(what) file \(path): \(error.localizedDescription)")
            }
        }
        return nil
    }
}
