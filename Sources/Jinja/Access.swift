/// Attribute and subscript access with Jinja2's fallback rules (`Environment.getattr` / `getitem`): `a.b` tries
/// the attribute, then the item; `a['b']` tries the item, then the attribute. A miss is Undefined, with
/// Jinja2's hint for the error it raises when used.
enum Access {
    static let strMethods: Set<String> = [
        "capitalize", "casefold", "center", "count", "encode", "endswith", "expandtabs", "find", "format",
        "format_map", "index", "isalnum", "isalpha", "isascii", "isdecimal", "isdigit", "isidentifier", "islower",
        "isnumeric", "isprintable", "isspace", "istitle", "isupper", "join", "ljust", "lower", "lstrip", "maketrans",
        "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit",
        "rstrip", "split", "splitlines", "startswith", "strip", "swapcase", "title", "translate", "upper", "zfill",
    ]
    static let dictMethods: Set<String> = [
        "clear", "copy", "fromkeys", "get", "items", "keys", "pop", "popitem", "setdefault", "update", "values",
    ]
    static let listMethods: Set<String> = [
        "append", "clear", "copy", "count", "extend", "index", "insert", "pop", "remove", "reverse", "sort",
    ]
    static let tupleMethods: Set<String> = ["count", "index"]
    static let numberAttributes: Set<String> = [
        "real", "imag", "numerator", "denominator", "conjugate", "bit_length", "bit_count", "to_bytes", "from_bytes",
        "as_integer_ratio", "is_integer", "hex", "fromhex",
    ]

    static func noAttribute(_ obj: JinjaValue, _ name: String) -> JinjaValue {
        .undefined(hint: "\(obj.objectTypeRepr) has no attribute \(PyFormat.string(name))")
    }

    /// `getattr(obj, name)`, falling back to `obj[name]`.
    static func attribute(_ obj: JinjaValue, _ name: String) throws(JinjaError) -> JinjaValue {
        if name.hasPrefix("__") {
            throw JinjaError(.unsupported, "the Python attribute '\(name)' (nk3's engine has no Python objects)")
        }
        switch obj {
        case .undefined(let hint):
            throw JinjaError(.undefined, hint)
        case .dict(let d):
            if dictMethods.contains(name) { return Methods.bound(obj, name) }
            return d.get(name) ?? noAttribute(obj, name)
        case .string, .markup:
            return strMethods.contains(name) ? Methods.bound(obj, name) : noAttribute(obj, name)
        case .list:
            return listMethods.contains(name) ? Methods.bound(obj, name) : noAttribute(obj, name)
        case .tuple:
            return tupleMethods.contains(name) ? Methods.bound(obj, name) : noAttribute(obj, name)
        case .object(let o):
            if name == "__call__" || name == "__iter__" { return noAttribute(obj, name) }
            return o.attributes[name] ?? noAttribute(obj, name)
        case .int, .float, .bool:
            if numberAttributes.contains(name) {
                throw JinjaError(.unsupported, "the number attribute '\(name)'")
            }
            return noAttribute(obj, name)
        case .none, .callable:
            return noAttribute(obj, name)
        }
    }

    /// `obj[key]`, falling back to `getattr(obj, key)` for a string key.
    static func item(_ obj: JinjaValue, _ key: JinjaValue) throws(JinjaError) -> JinjaValue {
        if case .undefined(let hint) = obj { throw JinjaError(.undefined, hint) }
        switch obj {
        case .dict(let d):
            _ = try HashKey(key)
            if let v = d.get(key) { return v }
        case .list(let a), .tuple(let a):
            if let i = key.intValue {
                let idx = i < 0 ? i + a.count : i
                if idx >= 0 && idx < a.count { return a[idx] }
            }
        case .object(let o):
            if o.attributes["__getitem__"] != nil, case .list(let a)? = o.attributes["__iter__"], let i = key.intValue {
                let idx = i < 0 ? i + a.count : i
                if idx >= 0 && idx < a.count { return a[idx] }
            }
        case .string(let s), .markup(let s):
            if let i = key.intValue {
                let u = Array(s.unicodeScalars)
                let idx = i < 0 ? i + u.count : i
                if idx >= 0 && idx < u.count { return .string(String(Character(u[idx]))) }
            }
        default: break
        }
        if case .string(let name) = key {
            if name.hasPrefix("__") { return noAttribute(obj, name) }
            return try attribute(obj, name)
        }
        return .undefined(hint: "\(obj.objectTypeRepr) has no element \(try PyFormat.repr(key))")
    }

    /// `obj[start:stop:step]`.
    static func slice(_ obj: JinjaValue, _ start: JinjaValue?, _ stop: JinjaValue?, _ step: JinjaValue?)
        throws(JinjaError) -> JinjaValue
    {
        if case .undefined(let hint) = obj { throw JinjaError(.undefined, hint) }
        func bound(_ v: JinjaValue?) throws(JinjaError) -> Int? {
            guard let v, !(v.isNone) else { return nil }
            guard let i = v.intValue else {
                throw JinjaError(.type, "slice indices must be integers or None or have an __index__ method")
            }
            return i
        }
        let st = try bound(step) ?? 1
        guard st != 0 else { throw JinjaError(.value, "slice step cannot be zero") }
        func indices(_ n: Int) throws(JinjaError) -> [Int] {
            func clamp(_ v: Int?, _ def: Int) -> Int {
                guard var x = v else { return def }
                if x < 0 { x += n }
                if st > 0 { return Swift.min(Swift.max(x, 0), n) }
                return Swift.min(Swift.max(x, -1), n - 1)
            }
            let lo = clamp(try bound(start), st > 0 ? 0 : n - 1)
            let hi = clamp(try bound(stop), st > 0 ? n : -1)
            return Array(stride(from: lo, to: hi, by: st))
        }
        switch obj {
        case .list(let a): return .list(try indices(a.count).map { a[$0] })
        case .object(let o) where o.typeName == "range":
            guard case .int(let rStart)? = o.attributes["start"], case .int(let rStep)? = o.attributes["step"],
                case .int(let n)? = o.attributes["__len__"]
            else { break }
            let picked = try indices(n)
            // range(...)[i:j:k] is range(start + i*step, start + j*step, step*k) with i, j from slice.indices().
            func clampIndex(_ v: Int?, _ def: Int) -> Int {
                guard var x = v else { return def }
                if x < 0 { x += n }
                return st > 0 ? Swift.min(Swift.max(x, 0), n) : Swift.min(Swift.max(x, -1), n - 1)
            }
            let lo = clampIndex(try bound(start), st > 0 ? 0 : n - 1)
            let hi = clampIndex(try bound(stop), st > 0 ? n : -1)
            return Globals.makeRange(rStart + lo * rStep, rStart + hi * rStep, rStep * st, count: picked.count)
        case .object(let o) where o.attributes["__getitem__"] != nil:
            if case .list(let a)? = o.attributes["__iter__"] { return .tuple(try indices(a.count).map { a[$0] }) }
        case .tuple(let a): return .tuple(try indices(a.count).map { a[$0] })
        case .string(let s), .markup(let s):
            let u = Array(s.unicodeScalars)
            let r = Text.string(try indices(u.count).map { u[$0] })
            return obj.isMarkup ? .markup(r) : .string(r)
        default: break
        }
        return .undefined(hint: "\(obj.objectTypeRepr) has no element slice(\(try start.map(PyFormat.repr) ?? "None"), "
                + "\(try stop.map(PyFormat.repr) ?? "None"), \(try step.map(PyFormat.repr) ?? "None"))")
    }
}

extension JinjaValue {
    var isNone: Bool { if case .none = self { true } else { false } }
}
