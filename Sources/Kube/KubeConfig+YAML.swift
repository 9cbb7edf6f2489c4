import Foundation
import Yams

extension KubeConfig {
    /// Renders a kubeconfig (one cluster, user and context, all named `name`) with inline `*-data` fields, like
    /// k3s's `k3s.yaml` (docs/UPSTREAM.md#kubeconfig). Yams encodes it, so every value is quoted as YAML needs.
    /// Field names follow kubernetes/client-go tools/clientcmd/api/v1/types.go.
    public func yaml(name: String = "default") -> String {
        func b64(_ s: String?) -> String? { s.map { Data($0.utf8).base64EncodedString() } }
        let file = KubeConfigFile(
            clusters: [.init(name: name, cluster: .init(
                server: server.absoluteString, certificateAuthorityData: b64(certificateAuthorityPEM),
                tlsServerName: tlsServerName))],
            contexts: [.init(name: name, context: .init(cluster: name, user: name, namespace: namespace))],
            currentContext: name,
            users: [.init(name: name, user: .init(
                clientCertificateData: b64(clientCertificatePEM), clientKeyData: b64(clientKeyPEM), token: token))])
        do {
            return try YAMLEncoder().encode(file)
        } catch {
            // Strings, arrays and optionals only: encoding cannot fail for this shape.
            preconditionFailure("kubeconfig encoding failed: \(error)")
        }
    }
}

/// The written shape of a kubeconfig (client-go tools/clientcmd/api/v1/types.go `Config`), in field order.
private struct KubeConfigFile: Encodable {
    struct NamedCluster: Encodable {
        struct Cluster: Encodable {
            var server: String
            var certificateAuthorityData: String?
            var tlsServerName: String?
            enum CodingKeys: String, CodingKey {
                case server
                case certificateAuthorityData = "certificate-authority-data"
                case tlsServerName = "tls-server-name"
            }
        }
        var name: String
        var cluster: Cluster
    }
    struct NamedContext: Encodable {
        struct Context: Encodable {
            var cluster: String
            var user: String
            var namespace: String?
        }
        var name: String
        var context: Context
    }
    struct NamedUser: Encodable {
        struct User: Encodable {
            var clientCertificateData: String?
            var clientKeyData: String?
            var token: String?
            enum CodingKeys: String, CodingKey {
                case clientCertificateData = "client-certificate-data"
                case clientKeyData = "client-key-data"
                case token
            }
        }
        var name: String
        var user: User
    }
    var apiVersion = "v1"
    var kind = "Config"
    var clusters: [NamedCluster]
    var contexts: [NamedContext]
    var currentContext: String
    var users: [NamedUser]
    enum CodingKeys: String, CodingKey {
        case apiVersion, kind, clusters, contexts, users
        case currentContext = "current-context"
    }
}
