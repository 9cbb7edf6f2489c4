/// The filters over sequences and mappings.
extension Filters {
    /// A Python iterator (what `map`, `select`, `unique`, `batch`, `reverse` … return): iterates, is always
    /// true, has no `len()`, and printing it is refused (Python prints its memory address).
    static func generator(_ items: [JinjaValue], _ typeName: String = "generator") -> JinjaValue {
        .object(JinjaObject(typeName: typeName, attributes: ["__iter__": .list(items)]))
    }

    /// Jinja2's `make_attrgetter`: `a.b.0` walks items (`environment.getitem`), digits are integers.
    static func attrGetter(_ attribute: JinjaValue?, default def: JinjaValue? = nil, lower: Bool = false)
        -> (JinjaValue) throws(JinjaError) -> JinjaValue
    {
        var parts: [JinjaValue] = []
        if let attribute, !attribute.isNone {
            if case .string(let s) = attribute {
                parts = s.split(separator: ".", omittingEmptySubsequences: false).map { p in
                    !p.isEmpty && p.allSatisfy({ $0.isASCII && $0.isNumber }) ? .int(Int(p) ?? 0) : .string(String(p))
                }
            } else {
                parts = [attribute]
            }
        }
        return { item throws(JinjaError) in
            var v = item
            for p in parts {
                v = try Access.item(v, p)
                if let def, !def.isNone, v.isUndefined { v = def }
            }
            if lower, let s = v.stringValue { return .string(Text.lower(s)) }
            return v
        }
    }

    /// `make_multi_attrgetter`: comma-separated attributes compared as a list.
    static func multiAttrGetter(_ attribute: JinjaValue?, lower: Bool) -> (JinjaValue) throws(JinjaError) -> JinjaValue {
        guard case .string(let s)? = attribute, s.contains(",") else {
            let g = attrGetter(attribute, lower: lower)
            return { item throws(JinjaError) in .list([try g(item)]) }
        }
        let getters = s.split(separator: ",", omittingEmptySubsequences: false).map {
            attrGetter(.string(String($0)), lower: lower)
        }
        return { item throws(JinjaError) in
            var out: [JinjaValue] = []
            for g in getters { out.append(try g(item)) }
            return .list(out)
        }
    }

    static func less(_ a: JinjaValue, _ b: JinjaValue) throws(JinjaError) -> Bool {
        (try Operators.order(a, b, .lt) ?? 0) < 0
    }

    static func sortedBy(_ items: [JinjaValue], key: (JinjaValue) throws(JinjaError) -> JinjaValue, reverse: Bool)
        throws(JinjaError) -> [JinjaValue]
    {
        var keys: [JinjaValue] = []
        for i in items { keys.append(try key(i)) }
        let order = try Sorting.sorted(Array(items.indices)) { (i, j) throws(JinjaError) in
            reverse ? try less(keys[j], keys[i]) : try less(keys[i], keys[j])
        }
        return order.map { items[$0] }
    }

    static func callTest(_ name: String, _ item: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], _ ev: Evaluator)
        throws(JinjaError) -> Bool
    {
        guard let t = TestFunctions.table[name] else { throw JinjaError(.runtime, "No test named '\(name)'.") }
        return try t(item, args, kwargs, ev)
    }

    static func selectOrReject(_ attr: Bool, _ keep: Bool) -> Filter {
        { v, a, k, ev throws(JinjaError) in
            var args = a
            var getter: (JinjaValue) throws(JinjaError) -> JinjaValue = { $0 }
            if attr {
                guard !args.isEmpty else { throw JinjaError(.filterArgument, "Missing parameter for attribute name") }
                getter = attrGetter(args.removeFirst())
            }
            var out: [JinjaValue] = []
            let testName = args.isEmpty ? nil : try textOf(args.removeFirst())
            for item in try ev.iterate(v) {
                let x = try getter(item)
                let passed = try testName.map { n throws(JinjaError) in try callTest(n, x, args, k, ev) } ?? x.truthy
                if passed == keep { out.append(item) }
            }
            return generator(out)
        }
    }

    static func minMax(_ name: String, _ wantMax: Bool) -> Filter {
        { v, a, k, ev throws(JinjaError) in
            let p = try Binder.bind(name, a, k, ["case_sensitive", "attribute"])
            let items = try ev.iterate(v)
            guard var best = items.first else { return .undefined(hint: "No aggregated item, sequence was empty.") }
            let key = attrGetter(p[1], lower: p[0]?.truthy != true)
            var bestKey = try key(best)
            for item in items.dropFirst() {
                let kv = try key(item)
                if wantMax ? try less(bestKey, kv) : try less(kv, bestKey) {
                    best = item
                    bestKey = kv
                }
            }
            return best
        }
    }

    static let sequences: [String: Filter] = [
        "batch": { v, a, k, ev throws(JinjaError) in
            let p = try Binder.bind("batch", a, k, ["linecount", "fill_with"], required: 1)
            guard let n = p[0]!.intValue else { throw JinjaError(.type, "linecount must be an integer") }
            var out: [JinjaValue] = []
            var tmp: [JinjaValue] = []
            for item in try ev.iterate(v) {
                if tmp.count == n {
                    out.append(.list(tmp))
                    tmp = []
                }
                tmp.append(item)
            }
            if !tmp.isEmpty {
                if let fill = p[1], !fill.isNone, tmp.count < n { tmp += Array(repeating: fill, count: n - tmp.count) }
                out.append(.list(tmp))
            }
            return generator(out)
        },
        "slice": { v, a, k, ev throws(JinjaError) in
            let p = try Binder.bind("slice", a, k, ["slices", "fill_with"], required: 1)
            guard let slices = p[0]!.intValue else { throw JinjaError(.type, "slices must be an integer") }
            guard slices > 0 else {
                if slices == 0 { throw JinjaError(.zeroDivision, "integer division or modulo by zero") }
                return generator([])
            }
            let seq = try ev.iterate(v)
            let per = seq.count / slices
            let extra = seq.count % slices
            var offset = 0
            var out: [JinjaValue] = []
            for n in 0..<min(slices, 1_000_000) {
                let start = offset + n * per
                if n < extra { offset += 1 }
                let end = offset + (n + 1) * per
                var tmp = Array(seq[min(start, seq.count)..<min(end, seq.count)])
                if let fill = p[1], !fill.isNone, n >= extra { tmp.append(fill) }
                out.append(.list(tmp))
            }
            return generator(out)
        },
        "dictsort": { v, a, k, _ throws(JinjaError) in
            let p = try Binder.bind("dictsort", a, k, ["case_sensitive", "by", "reverse"])
            guard case .dict(let d) = v else {
                if case .undefined(let hint) = v { throw JinjaError(.undefined, hint) }
                throw JinjaError(.type, "'\(v.typeName)' object has no attribute 'items'")
            }
            let by = try Binder.string(p[1], "by") ?? "key"
            guard by == "key" || by == "value" else {
                throw JinjaError(.filterArgument, "You can only sort by either \"key\" or \"value\"")
            }
            let pos = by == "key" ? 0 : 1
            let lower = p[0]?.truthy != true
            return .list(
                try sortedBy(d.items, key: { item throws(JinjaError) in
                    guard case .tuple(let kv) = item else { return item }
                    if lower, let s = kv[pos].stringValue { return .string(Text.lower(s)) }
                    return kv[pos]
                }, reverse: p[2]?.truthy == true))
        },
        "first": { v, a, k, ev throws(JinjaError) in
            _ = try Binder.bind("first", a, k, [])
            return try ev.iterate(v).first ?? .undefined(hint: "No first item, sequence was empty.")
        },
        "last": { v, a, k, ev throws(JinjaError) in
            _ = try Binder.bind("last", a, k, [])
            if case .object = v { throw JinjaError(.type, "'\(v.typeName)' object is not reversible") }
            return try ev.iterate(v).last ?? .undefined(hint: "No last item, sequence was empty.")
        },
        "groupby": { v, a, k, ev throws(JinjaError) in
            let p = try Binder.bind("groupby", a, k, ["attribute", "default", "case_sensitive"], required: 1)
            let lower = p[2]?.truthy != true
            let key = attrGetter(p[0], default: p[1], lower: lower)
            let output = attrGetter(p[0], default: p[1])
            let sorted = try sortedBy(try ev.iterate(v), key: key, reverse: false)
            var groups: [(JinjaValue, [JinjaValue])] = []
            for item in sorted {
                let kv = try key(item)
                if let last = groups.last, Operators.equal(try key(last.1[0]), kv) {
                    groups[groups.count - 1].1.append(item)
                } else {
                    groups.append((kv, [item]))
                }
            }
            var out: [JinjaValue] = []
            for (_, items) in groups {
                let grouper = try output(items[0])
                let tuple = JinjaValue.tuple([grouper, .list(items)])
                out.append(
                    .object(
                        JinjaObject(
                            typeName: "_GroupTuple",
                            attributes: ["grouper": grouper, "list": .list(items), "__iter__": .list([grouper, .list(items)])],
                            reprText: try PyFormat.repr(tuple))))
            }
            return .list(out)
        },
        "items": { v, a, k, _ throws(JinjaError) in
            _ = try Binder.bind("items", a, k, [])
            if v.isUndefined { return generator([]) }
            guard case .dict(let d) = v else { throw JinjaError(.type, "Can only get item pairs from a mapping.") }
            return generator(d.items)
        },
        "join": { v, a, k, ev throws(JinjaError) in
            let p = try Binder.bind("join", a, k, ["d", "attribute"])
            let sep = try p[0].map { x throws(JinjaError) in try textOf(x) } ?? ""
            let getter = attrGetter(p[1])
            var parts: [String] = []
            var anyMarkup = false
            for item in try ev.iterate(v) {
                let x = try getter(item)
                anyMarkup = anyMarkup || x.isMarkup
                parts.append(try textOf(x))
            }
            return .string(parts.joined(separator: sep))
        },
        "length": { v, a, k, _ throws(JinjaError) in
            _ = try Binder.bind("length", a, k, [])
            switch v {
            case .undefined: return .int(0)
            case .string(let s), .markup(let s): return .int(Text.length(s))
            case .list(let x), .tuple(let x): return .int(x.count)
            case .dict(let d): return .int(d.count)
            case .object(let o) where o.attributes["__len__"] != nil: return o.attributes["__len__"]!
            default: throw JinjaError(.type, "object of type '\(v.typeName)' has no len()")
            }
        },
        "list": { v, a, k, ev throws(JinjaError) in
            _ = try Binder.bind("list", a, k, [])
            return .list(try ev.iterate(v))
        },
        "map": { v, a, k, ev throws(JinjaError) in
            var args = a
            var kwargs = k
            let fn: (JinjaValue) throws(JinjaError) -> JinjaValue
            if args.isEmpty, let i = kwargs.firstIndex(where: { $0.0 == "attribute" }) {
                let attribute = kwargs.remove(at: i).1
                var def: JinjaValue?
                if let j = kwargs.firstIndex(where: { $0.0 == "default" }) { def = kwargs.remove(at: j).1 }
                if let extra = kwargs.first {
                    throw JinjaError(.filterArgument, "Unexpected keyword argument '\(extra.0)'")
                }
                fn = attrGetter(attribute, default: def)
            } else {
                guard !args.isEmpty else { throw JinjaError(.filterArgument, "map requires a filter argument") }
                let name = try textOf(args.removeFirst())
                guard let f = table[name] else { throw JinjaError(.runtime, "No filter named '\(name)'.") }
                let fargs = args
                let fkw = kwargs
                fn = { item throws(JinjaError) in try f(item, fargs, fkw, ev) }
            }
            var out: [JinjaValue] = []
            for item in try ev.iterate(v) { out.append(try fn(item)) }
            return generator(out)
        },
        "max": minMax("max", true),
        "min": minMax("min", false),
        "reject": selectOrReject(false, false),
        "rejectattr": selectOrReject(true, false),
        "select": selectOrReject(false, true),
        "selectattr": selectOrReject(true, true),
        "reverse": { v, a, k, ev throws(JinjaError) in
            _ = try Binder.bind("reverse", a, k, [])
            switch v {
            case .string(let s), .markup(let s): return wrap(v, Text.string(s.unicodeScalars.reversed()))
            case .list(let x): return generator(x.reversed(), "list_reverseiterator")
            case .tuple(let x): return generator(x.reversed(), "reversed")
            case .dict(let d): return generator(d.keys.reversed(), "dict_reversekeyiterator")
            default: return .list(try ev.iterate(v).reversed())
            }
        },
        "sort": { v, a, k, ev throws(JinjaError) in
            let p = try Binder.bind("sort", a, k, ["reverse", "case_sensitive", "attribute"])
            let key = multiAttrGetter(p[2], lower: p[1]?.truthy != true)
            return .list(try sortedBy(try ev.iterate(v), key: key, reverse: p[0]?.truthy == true))
        },
        "sum": { v, a, k, ev throws(JinjaError) in
            let p = try Binder.bind("sum", a, k, ["attribute", "start"])
            var total = p[1] ?? .int(0)
            if total.stringValue != nil { throw JinjaError(.type, "sum() can't sum strings [use ''.join(seq) instead]") }
            let getter = attrGetter(p[0])
            for item in try ev.iterate(v) { total = try Operators.binary(.add, total, try getter(item)) }
            return total
        },
        "unique": { v, a, k, ev throws(JinjaError) in
            let p = try Binder.bind("unique", a, k, ["case_sensitive", "attribute"])
            let key = attrGetter(p[1], lower: p[0]?.truthy != true)
            var seen = Set<HashKey>()
            var out: [JinjaValue] = []
            for item in try ev.iterate(v) where seen.insert(try HashKey(try key(item))).inserted { out.append(item) }
            return generator(out)
        },
    ]
}

/// A stable merge sort with a throwing comparison (Python's `sorted` is stable; a key that cannot be compared
/// is a `TypeError`).
enum Sorting {
    static func sorted<T>(_ items: [T], by less: (T, T) throws(JinjaError) -> Bool) throws(JinjaError) -> [T] {
        if items.count < 2 { return items }
        let mid = items.count / 2
        let left = try sorted(Array(items[..<mid]), by: less)
        let right = try sorted(Array(items[mid...]), by: less)
        var out: [T] = []
        out.reserveCapacity(items.count)
        var i = 0
        var j = 0
        while i < left.count && j < right.count {
            if try less(right[j], left[i]) {
                out.append(right[j])
                j += 1
            } else {
                out.append(left[i])
                i += 1
            }
        }
        out += left[i...]
        out += right[j...]
        return out
    }
}
