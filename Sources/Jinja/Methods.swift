/// Python's call binding for built-in functions, filters and methods: positional, then keyword, with defaults.
enum Binder {
    static func bind(
        _ fname: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], _ names: [String],
        required: Int = 0
    ) throws(JinjaError) -> [JinjaValue?] {
        if args.count > names.count {
            throw JinjaError(.type, "\(fname)() takes at most \(names.count) argument(s) (\(args.count) given)")
        }
        var out: [JinjaValue?] = args + Array(repeating: nil, count: names.count - args.count)
        for (k, v) in kwargs {
            guard let i = names.firstIndex(of: k) else {
                throw JinjaError(.type, "\(fname)() got an unexpected keyword argument '\(k)'")
            }
            if out[i] != nil { throw JinjaError(.type, "\(fname)() got multiple values for argument '\(k)'") }
            out[i] = v
        }
        for i in 0..<required where out[i] == nil {
            throw JinjaError(.type, "\(fname)() missing required argument '\(names[i])'")
        }
        return out
    }

    static func int(_ v: JinjaValue?, _ what: String) throws(JinjaError) -> Int? {
        guard let v, !v.isNone else { return nil }
        guard let i = v.intValue else {
            throw JinjaError(.type, "'\(v.typeName)' object cannot be interpreted as an integer (\(what))")
        }
        return i
    }

    static func string(_ v: JinjaValue?, _ what: String) throws(JinjaError) -> String? {
        guard let v, !v.isNone else { return nil }
        guard let s = v.stringValue else { throw JinjaError(.type, "\(what) must be str, not \(v.typeName)") }
        return s
    }
}

/// Methods of Python's `str`, `dict`, `list` and `tuple` that templates call (`d.items()`, `s.split(',')`).
/// Methods that mutate are refused: nk3's values are immutable.
enum Methods {
    /// A dict view (`dict_items([...])`): iterable, sized, printable, not subscriptable.
    static func view(_ typeName: String, _ items: [JinjaValue]) throws(JinjaError) -> JinjaValue {
        .object(
            JinjaObject(
                typeName: typeName, attributes: ["__iter__": .list(items), "__len__": .int(items.count)],
                reprText: typeName + "(" + (try PyFormat.repr(.list(items))) + ")"))
    }

    static func bound(_ receiver: JinjaValue, _ name: String) -> JinjaValue {
        .callable(
            JinjaCallable(name: name, typeName: "builtin_function_or_method") { args, kwargs, _ throws(JinjaError) in
                try call(receiver, name, args, kwargs)
            })
    }

    static func call(_ r: JinjaValue, _ name: String, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)])
        throws(JinjaError) -> JinjaValue
    {
        func b(_ names: [String], required: Int = 0) throws(JinjaError) -> [JinjaValue?] {
            try Binder.bind(name, args, kwargs, names, required: required)
        }
        switch r {
        case .dict(let d):
            switch name {
            case "items": _ = try b([]); return try view("dict_items", d.items)
            case "keys": _ = try b([]); return try view("dict_keys", d.keys)
            case "values": _ = try b([]); return try view("dict_values", d.values)
            case "get":
                let a = try b(["key", "default"], required: 1)
                _ = try HashKey(a[0]!)
                return d.get(a[0]!) ?? a[1] ?? .none
            case "copy": _ = try b([]); return r
            default: break
            }
        case .list(let items), .tuple(let items):
            switch name {
            case "count":
                let a = try b(["value"], required: 1)
                return .int(items.filter { Operators.equal($0, a[0]!) }.count)
            case "index":
                let a = try b(["value"], required: 1)
                guard let i = items.firstIndex(where: { Operators.equal($0, a[0]!) }) else {
                    throw JinjaError(.value, "\(try PyFormat.repr(a[0]!)) is not in \(r.typeName)")
                }
                return .int(i)
            case "copy": _ = try b([]); return r
            default: break
            }
        case .string(let s), .markup(let s):
            return try stringMethod(r, s, name, b)
        default: break
        }
        throw JinjaError(.unsupported, "the method \(r.typeName).\(name)() (nk3's engine does not implement it)")
    }

    static func stringMethod(
        _ r: JinjaValue, _ s: String, _ name: String, _ b: ([String], Int) throws(JinjaError) -> [JinjaValue?]
    ) throws(JinjaError) -> JinjaValue {
        func wrap(_ t: String) -> JinjaValue { r.isMarkup ? .markup(t) : .string(t) }
        switch name {
        case "upper": _ = try b([], 0); return wrap(Text.upper(s))
        case "lower": _ = try b([], 0); return wrap(Text.lower(s))
        case "casefold": _ = try b([], 0); return .string(Text.lower(s))
        case "capitalize": _ = try b([], 0); return wrap(Text.capitalize(s))
        case "title": _ = try b([], 0); return wrap(pythonTitle(s))
        case "swapcase":
            _ = try b([], 0)
            return wrap(Text.string(s.unicodeScalars.flatMap { c in
                (c.properties.isUppercase ? c.properties.lowercaseMapping : c.properties.isLowercase
                    ? c.properties.uppercaseMapping : String(Character(c))).unicodeScalars
            }))
        case "strip", "lstrip", "rstrip":
            let a = try b(["chars"], 0)
            let chars = try Binder.string(a[0], "strip arg")
            return wrap(Text.strip(s, chars, left: name != "rstrip", right: name != "lstrip"))
        case "split", "rsplit":
            let a = try b(["sep", "maxsplit"], 0)
            let sep = try Binder.string(a[0], "sep")
            if sep == "" { throw JinjaError(.value, "empty separator") }
            let max = try Binder.int(a[1], "maxsplit") ?? -1
            if name == "rsplit" && max >= 0 {
                throw JinjaError(.unsupported, "str.rsplit() with maxsplit")
            }
            return .list(Text.split(s, sep, max: max).map { .string($0) })
        case "splitlines":
            let a = try b(["keepends"], 0)
            if a[0]?.truthy == true { throw JinjaError(.unsupported, "str.splitlines(keepends=True)") }
            return .list(Text.splitlines(s).map { .string($0) })
        case "startswith", "endswith":
            let a = try b(["prefix"], 1)
            var options: [String] = []
            switch a[0]! {
            case .tuple(let t):
                for o in t {
                    guard let x = o.stringValue else { throw JinjaError(.type, "tuple for \(name) must only contain str") }
                    options.append(x)
                }
            case let v:
                guard let x = v.stringValue else {
                    throw JinjaError(.type, "\(name) first arg must be str or a tuple of str, not \(v.typeName)")
                }
                options = [x]
            }
            let u = Array(s.utf8)
            return .bool(options.contains { o in
                let p = Array(o.utf8)
                return name == "startswith" ? u.starts(with: p) : u.reversed().starts(with: p.reversed())
            })
        case "replace":
            let a = try b(["old", "new", "count"], 2)
            guard let old = a[0]!.stringValue, let new = a[1]!.stringValue else {
                throw JinjaError(.type, "replace() arguments must be str")
            }
            return wrap(Text.replace(s, old, new, count: try Binder.int(a[2], "count") ?? -1))
        case "join":
            let a = try b(["iterable"], 1)
            var parts: [String] = []
            for v in try Evaluator(loader: nil).iterate(a[0]!) {
                guard let x = v.stringValue else {
                    throw JinjaError(.type, "sequence item \(parts.count): expected str instance, \(v.typeName) found")
                }
                parts.append(x)
            }
            return .string(parts.joined(separator: s))
        case "count":
            let a = try b(["sub"], 1)
            guard let sub = a[0]!.stringValue else { throw JinjaError(.type, "must be str, not \(a[0]!.typeName)") }
            return .int(Text.count(s, sub))
        case "find", "index", "rfind", "rindex":
            let a = try b(["sub"], 1)
            guard let sub = a[0]!.stringValue else { throw JinjaError(.type, "must be str, not \(a[0]!.typeName)") }
            let h = Array(s.utf8)
            let n = Array(sub.utf8)
            var found: Int?
            if name.hasPrefix("r") {
                var i = 0
                while let at = Text.find(h, n, from: i) {
                    found = at
                    i = at + 1
                }
            } else {
                found = Text.find(h, n, from: 0)
            }
            guard let at = found else {
                if name.hasSuffix("index") { throw JinjaError(.value, "substring not found") }
                return .int(-1)
            }
            return .int(String(decoding: h[..<at], as: UTF8.self).unicodeScalars.count)
        case "isdigit", "isdecimal", "isnumeric":
            _ = try b([], 0)
            return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.numericType != nil })
        case "isalpha":
            _ = try b([], 0)
            return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy { $0.properties.isAlphabetic })
        case "isalnum":
            _ = try b([], 0)
            return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy {
                $0.properties.isAlphabetic || $0.properties.numericType != nil
            })
        case "isspace":
            _ = try b([], 0)
            return .bool(!s.isEmpty && s.unicodeScalars.allSatisfy(PyFormat.isSpace))
        case "islower", "isupper":
            _ = try b([], 0)
            return .bool(TestFunctions.caseTest(s, upper: name == "isupper"))
        case "removeprefix", "removesuffix":
            let a = try b(["affix"], 1)
            guard let x = a[0]!.stringValue else { throw JinjaError(.type, "\(name)() argument must be str") }
            let u = Array(s.unicodeScalars)
            let p = Array(x.unicodeScalars)
            if name == "removeprefix", u.starts(with: p) { return wrap(Text.string(u.dropFirst(p.count))) }
            if name == "removesuffix", !p.isEmpty, u.reversed().starts(with: p.reversed()) {
                return wrap(Text.string(u.dropLast(p.count)))
            }
            return r
        case "zfill", "ljust", "rjust", "center":
            let a = try b(name == "zfill" ? ["width"] : ["width", "fillchar"], 1)
            guard let width = a[0]!.intValue else { throw JinjaError(.type, "width must be an integer") }
            let fill = try Binder.string(a.count > 1 ? a[1] : nil, "fillchar") ?? (name == "zfill" ? "0" : " ")
            guard fill.unicodeScalars.count == 1 else {
                throw JinjaError(.type, "The fill character must be exactly one character long")
            }
            return wrap(try Filters.justify(s, width, fill, mode: name))
        default:
            throw JinjaError(.unsupported, "the method str.\(name)() (nk3's engine does not implement it)")
        }
    }

    /// Python's `str.title()`: a cased character after an uncased one is title-cased, the others lower-cased.
    static func pythonTitle(_ s: String) -> String {
        var out = String.UnicodeScalarView()
        var prevCased = false
        for c in s.unicodeScalars {
            if prevCased {
                out.append(contentsOf: c.properties.lowercaseMapping.unicodeScalars)
            } else {
                out.append(contentsOf: c.properties.titlecaseMapping.unicodeScalars)
            }
            prevCased = c.properties.isCased
        }
        return String(out)
    }
}
