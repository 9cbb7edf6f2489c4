import Foundation
import NIOCore
import NK3Common
import NK3Kube

/// Request rules of the real kube-apiserver that the fake enforces — a SIMULATION, each rule citing the upstream
/// code it follows: `dryRun`, decoding (wrongly typed fields, `MicroTime` with exactly six fractional digits), the
/// field manager of an update, and `metadata.managedFields`.
enum FakeKubeStrict {
    // MARK: dryRun

    /// `?dryRun=All` runs the request without persisting anything; absent means a normal request; any other value
    /// is refused with 422 (kubernetes/apiserver pkg/endpoints/handlers/rest.go, `validation.ValidateDryRun`: the
    /// only supported value is "All"; kubectl `--dry-run=server` sends it, also for evictions).
    static func dryRun(_ request: HTTPServerRequest, options: String) -> Result<Bool, FakeKubeRefusal> {
        guard let value = request.query["dryRun"] else { return .success(false) }
        if value == "All" { return .success(true) }
        let message = "Unsupported value: \"\(value)\": supported values: \"All\""
        return .failure(
            FakeKubeRefusal(
                422, reason: "Invalid", message: "\(options).meta.k8s.io \"\" is invalid: dryRun: \(message)",
                details: KubeStatusDetails(
                    group: "meta.k8s.io", kind: options,
                    causes: [KubeStatusCause(reason: "FieldValueNotSupported", message: message, field: "dryRun")])))
    }

    // MARK: field manager

    /// The manager an update is recorded under: `?fieldManager=`, else the User-Agent up to its first `/`
    /// (kubernetes/apiserver pkg/endpoints/handlers/create.go `managerOrUserAgent`, `prefixFromUserAgent`, capped
    /// at 128 bytes).
    static func manager(_ request: HTTPServerRequest) -> String {
        if let m = request.query["fieldManager"], !m.isEmpty { return m }
        let ua = request.headers.first(name: "User-Agent") ?? ""
        let prefix = ua.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false).first.map(String.init) ?? ""
        var out = ""
        for ch in prefix where !ch.unicodeScalars.contains(where: { $0.properties.generalCategory == .control }) {
            guard out.utf8.count + ch.utf8.count <= 128 else { break }
            out.append(ch)
        }
        return out
    }

    // MARK: decoding

    /// The JSON type a field decodes into.
    enum FieldType {
        case string, bool, int, stringMap, array
        /// `metav1.Time`: RFC 3339 (kubernetes/apimachinery pkg/apis/meta/v1/time.go).
        case time
        /// `metav1.MicroTime`: RFC 3339 with exactly six fractional digits, layout
        /// `2006-01-02T15:04:05.000000Z07:00` (kubernetes/apimachinery pkg/apis/meta/v1/micro_time.go `UnmarshalJSON`).
        case microTime
    }

    /// The typed fields checked, per resource (the Go structs in kubernetes/api core/v1 and coordination/v1 types.go).
    static func schema(_ r: FakeKubeResource) -> [(path: [String], type: FieldType)] {
        var fields: [(path: [String], type: FieldType)] = [
            (["metadata", "name"], .string), (["metadata", "namespace"], .string),
            (["metadata", "resourceVersion"], .string), (["metadata", "generation"], .int),
            (["metadata", "labels"], .stringMap), (["metadata", "annotations"], .stringMap),
        ]
        switch r {
        case .nodes:
            fields += [(["spec", "unschedulable"], .bool), (["spec", "taints"], .array)]
        case .leases:
            fields += [
                (["spec", "holderIdentity"], .string), (["spec", "leaseDurationSeconds"], .int),
                (["spec", "acquireTime"], .microTime), (["spec", "renewTime"], .microTime),
                (["spec", "leaseTransitions"], .int),
            ]
        case .pods:
            fields += [(["spec", "nodeName"], .string)]
        default:
            break
        }
        return fields
    }

    /// The decode errors of `object` as resource `r`, in Go's wording (`json: cannot unmarshal …`), empty if it decodes.
    static func decodeErrors(_ r: FakeKubeResource, _ object: JSONValue) -> [String] {
        var errors: [String] = []
        for (path, type) in schema(r) {
            var v: JSONValue? = object
            for p in path { v = v?[p] }
            guard let value = v, value != .null else { continue }
            let field = path.joined(separator: ".")
            if let problem = check(value, type) {
                errors.append("json: cannot unmarshal \(problem) into Go struct field \(r.kind).\(field)")
            }
        }
        return errors
    }

    /// Why `value` does not decode as `type` (nil when it does).
    static func check(_ value: JSONValue, _ type: FieldType) -> String? {
        switch (type, value) {
        case (.string, .string), (.bool, .bool), (.array, .array): return nil
        case (.int, .number(let d)): return d.rounded() == d ? nil : "number \(d) of type int"
        case (.stringMap, .object(let o)):
            return o.values.allSatisfy({ if case .string = $0 { return true }; return $0 == .null })
                ? nil : "non-string value of type string"
        case (.time, .string(let s)):
            return KubeTime.parse(s) == nil ? "\"\(s)\" of type metav1.Time (not RFC 3339)" : nil
        case (.microTime, .string(let s)):
            return isMicroTime(s)
                ? nil : "\"\(s)\" of type metav1.MicroTime (parsing as \"2006-01-02T15:04:05.000000Z07:00\")"
        default:
            return "\(jsonTypeName(value)) of type \(type)"
        }
    }

    /// Exactly `YYYY-MM-DDTHH:MM:SS.ffffff` followed by `Z` or `±HH:MM`: what Go's `time.Parse` with the
    /// `RFC3339Micro` layout accepts (it reads exactly as many fractional digits as the layout has).
    static func isMicroTime(_ s: String) -> Bool {
        let b = Array(s.utf8)
        func digits(_ range: Range<Int>) -> Bool { range.allSatisfy { $0 < b.count && (48...57).contains(b[$0]) } }
        func at(_ i: Int, _ c: Character) -> Bool { i < b.count && b[i] == c.asciiValue! }
        guard b.count >= 27, digits(0..<4), at(4, "-"), digits(5..<7), at(7, "-"), digits(8..<10), at(10, "T"),
            digits(11..<13), at(13, ":"), digits(14..<16), at(16, ":"), digits(17..<19), at(19, "."), digits(20..<26)
        else { return false }
        if b.count == 27 { return at(26, "Z") }
        return b.count == 32 && (at(26, "+") || at(26, "-")) && digits(27..<29) && at(29, ":") && digits(30..<32)
    }

    static func jsonTypeName(_ v: JSONValue) -> String {
        switch v {
        case .null: return "null"
        case .bool: return "bool"
        case .number: return "number"
        case .string: return "string"
        case .array: return "array"
        case .object: return "object"
        }
    }

    /// A POST/PUT body that does not decode: 400 BadRequest, `Lease in version "v1" cannot be handled as a Lease: …`
    /// (kubernetes/apiserver pkg/endpoints/handlers/rest.go `transformDecodeError`).
    static func undecodableBody(_ r: FakeKubeResource, _ errors: [String]) -> FakeKubeRefusal {
        FakeKubeRefusal(
            400, reason: "BadRequest",
            message: "\(r.kind) in version \"\(r.version)\" cannot be handled as a \(r.kind): \(errors.joined(separator: "; "))")
    }

    /// A patch whose result does not decode: 422 Invalid on field `patch`, with an empty kind and name
    /// (kubernetes/apiserver pkg/endpoints/handlers/patch.go: `errors.NewInvalid(schema.GroupKind{}, "",
    /// field.Invalid(field.NewPath("patch"), …))`).
    static func undecodablePatch(_ patch: JSONValue, _ errors: [String]) -> FakeKubeRefusal {
        let text = String(decoding: patch.jsonData(), as: UTF8.self)
        let message = "Invalid value: \(String(reflecting: text)): \(errors.joined(separator: "; "))"
        return FakeKubeRefusal(
            422, reason: "Invalid", message: " \"\" is invalid: patch: \(message)",
            details: KubeStatusDetails(causes: [KubeStatusCause(reason: "FieldValueInvalid", message: message, field: "patch")]))
    }

    // MARK: managedFields

    /// Records an Update by `manager` in `metadata.managedFields` (FieldsV1): the leaf fields whose value changed
    /// become the manager's and leave every other manager's set; removed fields leave every set; entries left empty
    /// are dropped (https://kubernetes.io/docs/reference/using-api/server-side-apply/#field-management: "changes
    /// made by … update … take ownership"). Only `spec` and `metadata.labels`/`annotations` are tracked.
    static func recordUpdate(old: JSONValue, new: JSONValue, manager: String, apiVersion: String, now: Date) -> JSONValue {
        let before = leaves(old), after = leaves(new)
        let changed = Set(after.filter { before[$0.key] != $0.value }.keys)
        let removed = Set(before.keys).subtracting(after.keys)
        guard !changed.isEmpty || !removed.isEmpty else { return new }
        var entries: [JSONValue] = []
        if case .array(let list)? = old["metadata"]?["managedFields"] { entries = list }
        var mine: Set<[String]> = changed
        var out: [JSONValue] = []
        for entry in entries {
            var fields = fieldSet(entry["fieldsV1"])
            if entry["manager"] == .string(manager), entry["operation"] == .string("Update") {
                mine.formUnion(fields.subtracting(removed))
                continue
            }
            fields.subtract(changed)
            fields.subtract(removed)
            guard !fields.isEmpty, case .object(var o) = entry else { continue }
            o["fieldsV1"] = fieldsV1(fields)
            out.append(.object(o))
        }
        out.append(
            .object([
                "manager": .string(manager), "operation": .string("Update"), "apiVersion": .string(apiVersion),
                "time": .string(KubeTime.format(now)), "fieldsType": .string("FieldsV1"), "fieldsV1": fieldsV1(mine),
            ]))
        guard case .object(var o) = new, case .object(var meta)? = o["metadata"] else { return new }
        meta["managedFields"] = .array(out)
        o["metadata"] = .object(meta)
        return .object(o)
    }

    /// The tracked leaf paths of an object and their values.
    static func leaves(_ object: JSONValue) -> [[String]: JSONValue] {
        var out: [[String]: JSONValue] = [:]
        func walk(_ v: JSONValue, _ path: [String]) {
            if case .object(let o) = v, !o.isEmpty {
                for (k, c) in o { walk(c, path + [k]) }
            } else {
                out[path] = v
            }
        }
        if let spec = object["spec"] { walk(spec, ["spec"]) }
        for key in ["labels", "annotations"] {
            if case .object(let o)? = object["metadata"]?[key] {
                for (k, v) in o { out[["metadata", key, k]] = v }
            }
        }
        return out
    }

    /// `{"f:spec":{"f:unschedulable":{}}}` for the set {["spec","unschedulable"]}.
    static func fieldsV1(_ fields: Set<[String]>) -> JSONValue {
        var root = JSONValue.object([:])
        for path in fields.sorted(by: { $0.joined(separator: ".") < $1.joined(separator: ".") }) {
            var patch = JSONValue.object([:])
            for key in path.reversed() { patch = .object(["f:" + key: patch]) }
            root = root.merging(patch: patch)
        }
        return root
    }

    /// The leaf paths of a FieldsV1 value (the inverse of `fieldsV1`).
    static func fieldSet(_ v: JSONValue?) -> Set<[String]> {
        var out = Set<[String]>()
        func walk(_ v: JSONValue, _ path: [String]) {
            guard case .object(let o) = v, !o.isEmpty else {
                if !path.isEmpty { out.insert(path) }
                return
            }
            for (k, c) in o where k.hasPrefix("f:") { walk(c, path + [String(k.dropFirst(2))]) }
        }
        if let v { walk(v, []) }
        return out
    }
}

/// An error answer of the fake API (a `Status` with its HTTP code).
struct FakeKubeRefusal: Error {
    var code: Int
    var reason: String?
    var message: String
    var details: KubeStatusDetails?
    init(_ code: Int, reason: String?, message: String, details: KubeStatusDetails? = nil) {
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
    }
    var response: HTTPServerResponse {
        FakeKubeRouter.status(code, reason: reason, message: message, details: details)
    }
}
