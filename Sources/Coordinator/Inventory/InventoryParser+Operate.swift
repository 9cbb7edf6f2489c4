import Foundation
import Yams

/// Parsing of `rollout_log_dir`, `window:` and `gates:` (`OperateSettings`).
extension InventoryParser {
    /// Keys of `window:`.
    static let windowKeys = ["days", "start", "end", "timezone"]
    /// Keys of `gates:` and of `gates.prometheus:`.
    static let gatesKeys = ["prometheus"]
    static let prometheusKeys = ["url", "alert_filter", "ca"]

    func parseOperate(
        _ byKey: [String: (keyNode: Node, value: Node)], resolve: (String) -> String, directory: String
    ) throws(InventoryError) -> OperateSettings {
        var settings = OperateSettings(rolloutLogDirectory: RolloutLog.defaultDirectory(inventoryDirectory: directory))
        if let v = byKey["rollout_log_dir"] { settings.rolloutLogDirectory = resolve(try string(v.value, key: "rollout_log_dir")) }
        if let w = byKey["window"] { settings.window = try parseWindow(w.value) }
        if let g = byKey["gates"] {
            guard case .mapping(let m) = g.value else { throw wrongType(g.value, key: "gates", expected: "a map") }
            for p in try pairs(of: m, path: "gates") {
                switch p.key {
                case "prometheus": settings.prometheus = try parsePrometheus(p.value, resolve: resolve)
                default:
                    throw unknownKey(p.key, at: p.keyNode, path: "gates", candidates: Self.gatesKeys, hint: "gates takes: prometheus")
                }
            }
        }
        return settings
    }

    private func parseWindow(_ node: Node) throws(InventoryError) -> MaintenanceWindow {
        guard case .mapping(let m) = node else { throw wrongType(node, key: "window", expected: "a map") }
        var days = Set(1...7)
        var start: Int?
        var end: Int?
        var zone = TimeZone(identifier: "UTC")!
        var zoneName = "UTC"
        for p in try pairs(of: m, path: "window") {
            let k = "window.\(p.key)"
            switch p.key {
            case "days":
                days = []
                for (name, n) in try stringList(p.value, key: k) {
                    guard let d = MaintenanceWindow.dayNames[name.lowercased()] else {
                        throw error(.invalidValue, "'\(k)': '\(name)' is not a day (mon, tue, … sun)", at: n, key: k)
                    }
                    days.insert(d)
                }
                if days.isEmpty { throw error(.invalidValue, "'\(k)' names no day", at: p.value, key: k) }
            case "start", "end":
                let text = try string(p.value, key: k)
                guard let minutes = MaintenanceWindow.minutes(text) else {
                    throw error(.invalidValue, "'\(k)' must be a time HH:MM (00:00–23:59), found '\(text)'", at: p.value, key: k)
                }
                if p.key == "start" { start = minutes } else { end = minutes }
            case "timezone":
                let text = try string(p.value, key: k)
                guard let tz = TimeZone(identifier: text) else {
                    throw error(.invalidValue, "'\(k)': '\(text)' is not an IANA time zone (e.g. Europe/Berlin, UTC)", at: p.value, key: k)
                }
                zone = tz
                zoneName = text
            default:
                throw unknownKey(
                    p.key, at: p.keyNode, path: "window", candidates: Self.windowKeys,
                    hint: "window takes: \(Self.windowKeys.joined(separator: ", "))")
            }
        }
        guard let start, let end else {
            throw error(.missingKey, "'window' needs both 'start' and 'end' (HH:MM)", at: node, key: "window")
        }
        guard start != end else {
            throw error(.invalidValue, "'window' start and end are equal: leave 'window' out to allow any time", at: node, key: "window")
        }
        return MaintenanceWindow(days: days, start: start, end: end, timeZone: zone, zoneName: zoneName)
    }

    private func parsePrometheus(_ node: Node, resolve: (String) -> String) throws(InventoryError) -> PrometheusGateSettings {
        guard case .mapping(let m) = node else { throw wrongType(node, key: "gates.prometheus", expected: "a map") }
        var url: String?
        var filter = ".*"
        var ca: String?
        for p in try pairs(of: m, path: "gates.prometheus") {
            let k = "gates.prometheus.\(p.key)"
            switch p.key {
            case "url":
                let text = try string(p.value, key: k)
                guard let u = URL(string: text), ["http", "https"].contains(u.scheme ?? ""), u.host != nil else {
                    throw error(.invalidValue, "'\(k)' must be an http(s) URL, found '\(text)'", at: p.value, key: k)
                }
                url = text
            case "alert_filter":
                filter = try string(p.value, key: k)
                if (try? NSRegularExpression(pattern: filter)) == nil {
                    throw error(.invalidValue, "'\(k)' is not a regular expression: '\(filter)'", at: p.value, key: k)
                }
            case "ca": ca = resolve(try string(p.value, key: k))
            default:
                throw unknownKey(
                    p.key, at: p.keyNode, path: "gates.prometheus", candidates: Self.prometheusKeys,
                    hint: "gates.prometheus takes: \(Self.prometheusKeys.joined(separator: ", "))")
            }
        }
        guard let url else { throw error(.missingKey, "'gates.prometheus' needs 'url'", at: node, key: "gates.prometheus") }
        return PrometheusGateSettings(url: url, alertFilter: filter, caFile: ca)
    }
}
