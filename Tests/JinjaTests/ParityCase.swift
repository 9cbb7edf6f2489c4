import Foundation

@testable import NK3Jinja

/// A case of `Fixtures/parity.json`: a template, its context and files, and what real Jinja2 3.1 rendered
/// (`scripts/gen-jinja-fixtures.py`).
struct ParityCase: Sendable, CustomStringConvertible {
    let name: String
    let template: String
    let contextJSON: Data
    let files: [String: String]
    let output: String?
    let error: String?
    let message: String?

    var description: String { name }

    static func load() throws -> [ParityCase] {
        let url = Bundle.module.resourceURL!.appendingPathComponent("Fixtures/parity.json")
        return try load(Data(contentsOf: url))
    }

    static func load(_ data: Data) throws -> [ParityCase] {
        let root = try JSONSerialization.jsonObject(with: data) as! [String: Any]
        return try (root["cases"] as! [[String: Any]]).map { c in
            ParityCase(
                name: c["name"] as! String, template: c["template"] as! String,
                contextJSON: try JSONSerialization.data(withJSONObject: c["context"]!),
                files: c["files"] as? [String: String] ?? [:], output: c["output"] as? String,
                error: c["error"] as? String, message: c["message"] as? String)
        }
    }

    /// The context, rebuilt from the tagged values.
    func context() throws -> [String: JinjaValue] {
        let tagged = try JSONSerialization.jsonObject(with: contextJSON)
        guard case .dict(let d) = Self.value(tagged) else { return [:] }
        var out: [String: JinjaValue] = [:]
        for (k, v) in zip(d.keys, d.values) { out[k.stringValue!] = v }
        return out
    }

    static func value(_ any: Any) -> JinjaValue {
        let pair = any as! [Any]
        let tag = pair[0] as! String
        switch tag {
        case "none": return .none
        case "bool": return .bool((pair[1] as! NSNumber).boolValue)
        case "int": return .int((pair[1] as! NSNumber).intValue)
        case "float": return .float(Double(pair[1] as! String)!)
        case "str": return .string(pair[1] as! String)
        case "list": return .list((pair[1] as! [Any]).map(value))
        case "tuple": return .tuple((pair[1] as! [Any]).map(value))
        default:
            var d = PyDict()
            for kv in pair[1] as! [[Any]] { try! d.set(value(kv[0]), value(kv[1])) }
            return .dict(d)
        }
    }

    /// Renders the case with nk3's engine (files written under `directory`).
    func render(in directory: URL) throws -> Result<String, JinjaError> {
        for (name, text) in files {
            let url = directory.appendingPathComponent(name)
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(text.utf8).write(to: url)
        }
        let ctx = try context()
        do {
            let t = try Template(source: template, name: name)
            return .success(try t.render(ctx, loader: DirectoryLoader(directory: directory.path)))
        } catch {
            return .failure(error)
        }
    }

    /// nil when nk3's engine agrees with Jinja2, else what differs.
    func mismatch(in directory: URL) throws -> String? {
        switch try render(in: directory) {
        case .success(let got):
            if let output, Data(got.utf8) == Data(output.utf8) { return nil }
            if let output { return "expected \(output.debugDescription)\n     got \(got.debugDescription)" }
            return "expected \(error ?? "?"): \(message ?? ""), rendered \(got.debugDescription)"
        case .failure(let e):
            if let error, error == e.kind.rawValue { return nil }
            if let error { return "expected \(error): \(message ?? "")\n     got \(e)" }
            return "expected \(output!.debugDescription)\n     got \(e)"
        }
    }
}
