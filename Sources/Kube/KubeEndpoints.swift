import AsyncHTTPClient
import Foundation
import Synchronization

/// The API servers one client can use — every k3s server serves the API (port 6443) with a certificate from the same
/// cluster CA and accepts the same credentials — and which one it uses now. A request goes to the current endpoint
/// first; when it cannot connect there, to the next (see `KubeClient.perform`); an endpoint named by `avoid(host:)` (a
/// server about to reboot) is used only when no other answers.
final class KubeEndpoints: Sendable {
    /// One API server.
    struct Endpoint: Sendable {
        /// Where it is (`https://host:port`), as configured.
        let server: URL
        /// What requests are addressed to: `server`, or with `tls-server-name` that name (the connection still goes to
        /// `server`'s host through the HTTP client's DNS override, and the certificate is checked against the name).
        let base: String
        /// Its HTTP client (its own, for the DNS override).
        let http: HTTPClient
        /// The host, for `avoid(host:)`.
        var host: String { server.host ?? "" }
    }

    let all: [Endpoint]
    private struct Choice {
        var current = 0
        var avoided: Set<String> = []
    }
    private let choice = Mutex(Choice())

    init(_ all: [Endpoint]) {
        precondition(!all.isEmpty)
        self.all = all
    }

    /// The endpoint in use.
    var current: Endpoint { all[choice.withLock { $0.current }] }

    /// The order to try for one request: the current endpoint, the others in configuration order, and the avoided
    /// ones last.
    func order() -> [Int] {
        choice.withLock { c in
            let rest = all.indices.filter { $0 != c.current }
            let ordered = [c.current] + rest
            return ordered.filter { !c.avoided.contains(all[$0].host) } + ordered.filter { c.avoided.contains(all[$0].host) }
        }
    }

    /// A request succeeded on endpoint `i`: keep using it.
    func succeeded(_ i: Int) {
        choice.withLock { $0.current = i }
    }

    /// Avoids the endpoints on `host` (nil: none); returns whether the current endpoint is on it.
    func avoid(_ host: String?) -> Bool {
        choice.withLock { c in
            c.avoided = host.map { [$0] } ?? []
            return host != nil && all[c.current].host == host
        }
    }

    /// The endpoints not on the avoided host, in order after the current one.
    func candidates() -> [Int] {
        order().filter { i in choice.withLock { !$0.avoided.contains(all[i].host) } }
    }

    /// The URLs of the API servers: the kubeconfig's server first, then `extra` (full URLs, or hosts that take the
    /// server's scheme and port), without repeats.
    static func urls(server: URL, extra: [String]) -> [URL] {
        var out = [server]
        let port = server.port ?? 443
        for e in extra {
            let text: String
            if e.contains("://") {
                text = e
            } else if e.filter({ $0 == ":" }).count > 1, !e.hasPrefix("[") {
                text = "https://[\(e)]:\(port)"  // a bare IPv6 address
            } else if e.contains(":") {
                text = "https://\(e)"  // host:port, or [v6]:port
            } else {
                text = "https://\(e):\(port)"
            }
            guard let url = URL(string: text), url.host != nil else { continue }
            if !out.contains(where: { $0.host == url.host && ($0.port ?? 443) == (url.port ?? 443) }) { out.append(url) }
        }
        return out
    }
}
