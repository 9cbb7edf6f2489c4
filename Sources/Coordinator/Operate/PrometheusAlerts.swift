import AsyncHTTPClient
import Foundation
import NIOCore
import NIOSSL
import NK3Common

/// One alert as `GET /api/v1/alerts` returns it (https://prometheus.io/docs/prometheus/latest/querying/api/#alerts):
/// `{"labels": {"alertname": …}, "annotations": {…}, "state": "firing"|"pending", "activeAt": …, "value": …}`.
public struct PrometheusAlert: Codable, Sendable, Hashable {
    public var labels: [String: String]
    public var state: String
    public var activeAt: String?

    /// The `alertname` label.
    public var name: String { labels["alertname"] ?? "(unnamed)" }
}

/// The alert gate's rule, pure: which alerts block a node from starting.
public enum AlertGateRule {
    /// The names (sorted, unique) of `alerts` that are `firing` (not `pending`) and whose name matches `filter`
    /// as a whole (anchored, like Prometheus's `=~`).
    public static func blocking(_ alerts: [PrometheusAlert], filter: String) -> [String] {
        guard let re = try? NSRegularExpression(pattern: "^(?:\(filter))$") else { return [] }
        let names = alerts.filter { $0.state == "firing" }.map(\.name).filter { name in
            re.firstMatch(in: name, range: NSRange(name.startIndex..., in: name)) != nil
        }
        return Array(Set(names)).sorted()
    }

    /// Decodes the API's answer; an answer whose `status` is not `success` is an error carrying its `error`.
    public static func decode(_ body: Data) throws -> [PrometheusAlert] {
        struct Envelope: Decodable {
            struct DataField: Decodable { var alerts: [PrometheusAlert] }
            var status: String
            var data: DataField?
            var error: String?
        }
        let e = try JSONDecoder().decode(Envelope.self, from: body)
        guard e.status == "success", let data = e.data else {
            throw CoordinatorError(.other, "Prometheus answered \(e.status): \(e.error ?? "no data")")
        }
        return data.alerts
    }
}

/// Asks a Prometheus server for its alerts. One HTTP client per gate, shut down by `withClient`.
public struct PrometheusAlertsClient: Sendable {
    let settings: PrometheusGateSettings
    let http: HTTPClient

    /// Runs `body` with a client for `settings` and shuts it down afterwards.
    public static func withClient<T: Sendable>(
        _ settings: PrometheusGateSettings, _ body: (PrometheusAlertsClient) async throws -> T
    ) async throws -> T {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .fullVerification
        if let ca = settings.caFile {
            let pem: String
            do { pem = try String(contentsOfFile: ca, encoding: .utf8) } catch {
                throw CoordinatorError(.invalidInput, "gates.prometheus.ca: cannot read \(ca): \(error.localizedDescription)")
            }
            tls.trustRoots = .certificates(try TLSConfigs.trustRoots(pem: pem))
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls)
        configuration.redirectConfiguration = .disallow
        configuration.timeout.connect = .seconds(5)
        let http = HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
        do {
            let result = try await body(PrometheusAlertsClient(settings: settings, http: http))
            try await http.shutdown()
            return result
        } catch {
            try? await http.shutdown()
            throw error
        }
    }

    /// Every alert the server knows (firing and pending).
    public func alerts() async throws -> [PrometheusAlert] {
        var base = settings.url
        while base.hasSuffix("/") { base.removeLast() }
        let request = HTTPClientRequest(url: base + "/api/v1/alerts")
        let response = try await http.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 8 << 20)
        guard response.status == .ok else {
            throw CoordinatorError(.other, "Prometheus \(base)/api/v1/alerts answered HTTP \(response.status.code)")
        }
        return try AlertGateRule.decode(Data(body.readableBytesView))
    }

    /// The names of the firing alerts that block (see `AlertGateRule.blocking`).
    public func blocking() async throws -> [String] {
        AlertGateRule.blocking(try await alerts(), filter: settings.alertFilter)
    }
}
