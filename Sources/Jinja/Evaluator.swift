/// A variable scope. Jinja2 opens one for each `for` iteration, macro call, `with`, block `set` and `filter`
/// block; `if` does not open one. Lookups walk outwards to the render variables.
final class Frame {
    var vars: [String: JinjaValue]
    let parent: Frame?

    init(parent: Frame?, vars: [String: JinjaValue] = [:]) {
        self.parent = parent
        self.vars = vars
    }

    func lookup(_ name: String) -> JinjaValue? {
        var f: Frame? = self
        while let cur = f {
            if let v = cur.vars[name] { return v }
            f = cur.parent
        }
        return nil
    }
}

/// Renders parsed templates: statements here, expressions in `Evaluator+Expr.swift`.
final class Evaluator {
    let loader: (any TemplateLoader)?
    var file = ""
    var depth = 0
    var templates: [String: Template] = [:]
    /// Macro calls, includes and recursive loops nested deeper than this are a `RecursionError` (Python's
    /// default recursion limit stops Jinja2 at a similar depth).
    static let maxDepth = 100
    /// Frames that hold a macro defined in them (each macro holds its frame in turn): emptied after the render.
    var macroFrames: [Frame] = []

    /// Breaks the macro ↔ frame cycles once the render is over.
    func releaseMacroFrames() {
        for f in macroFrames { f.vars = [:] }
        macroFrames = []
    }

    init(loader: (any TemplateLoader)?) {
        self.loader = loader
    }

    func renderTemplate(_ t: Template, context: [String: JinjaValue]) throws(JinjaError) -> String {
        let top = Frame(parent: Frame(parent: nil, vars: context))
        var out = ""
        let saved = file
        file = t.name
        defer { file = saved }
        try render(t.nodes, top, &out)
        return out
    }

    func nested<T>(_ body: () throws(JinjaError) -> T) throws(JinjaError) -> T {
        depth += 1
        defer { depth -= 1 }
        if depth > Self.maxDepth { throw JinjaError(.recursion, "maximum recursion depth exceeded") }
        return try body()
    }

    func render(_ nodes: [Node], _ frame: Frame, _ out: inout String) throws(JinjaError) {
        for node in nodes { try render(node, frame, &out) }
    }

    func render(_ node: Node, _ frame: Frame, _ out: inout String) throws(JinjaError) {
        switch node {
        case .text(let s):
            out += s
        case .output(let e):
            let v = try eval(e, frame)
            do { out += try PyFormat.str(v) } catch { throw error.located(file: file, line: e.location.line, column: e.location.column) }
        case .ifChain(let branches, let otherwise):
            for (test, body) in branches where try eval(test, frame).truthy {
                try render(body, frame, &out)
                return
            }
            if let otherwise { try render(otherwise, frame, &out) }
        case .forLoop(let f):
            let iterable = try eval(f.iterable, frame)
            try locate(f.location) { () throws(JinjaError) in
                try runLoop(f, items: try iterate(iterable), frame: frame, depth: 1, out: &out)
            }
        case .set(let target, let e, let loc):
            let v = try eval(e, frame)
            try locate(loc) { () throws(JinjaError) in try assign(target, v, frame) }
        case .setBlock(let target, let filter, let body, let loc):
            var text = ""
            try render(body, Frame(parent: frame), &text)
            var v = JinjaValue.string(text)
            if let filter { v = try applyFilterChain(filter, to: v, frame) }
            try locate(loc) { () throws(JinjaError) in try assign(target, v, frame) }
        case .macro(let m):
            frame.vars[m.name] = .callable(makeMacro(m.name, m.parameters, m.body, m, closure: frame))
            macroFrames.append(frame)
        case .callBlock(let call, let params, let body, let loc):
            let callerDef = MacroDef(
                name: "caller", parameters: params, body: body, usesVarargs: false, usesKwargs: false,
                usesCaller: false, location: loc)
            var names = Set<String>()
            NameScan.names(in: body, into: &names)
            var def = callerDef
            def.usesVarargs = names.contains("varargs")
            def.usesKwargs = names.contains("kwargs")
            let caller = makeMacro("caller", params, body, def, closure: frame)
            let v = try eval(call, frame, extraKeywords: [("caller", .callable(caller))])
            do { out += try PyFormat.str(v) } catch { throw error.located(file: file, line: loc.line, column: loc.column) }
        case .with(let pairs, let body):
            var values: [JinjaValue] = []
            for (_, e) in pairs { values.append(try eval(e, frame)) }
            let inner = Frame(parent: frame)
            for ((target, e), v) in zip(pairs, values) {
                try locate(e.location) { () throws(JinjaError) in try assign(target, v, inner) }
            }
            try render(body, inner, &out)
        case .filterBlock(let filter, let body):
            var text = ""
            try render(body, Frame(parent: frame), &text)
            let v = try applyFilterChain(filter, to: .string(text), frame)
            do { out += try PyFormat.str(v) } catch { throw error.located(file: file, line: filter.location.line, column: filter.location.column) }
        case .include(let e, let ignoreMissing, let withContext, let loc):
            let name = try eval(e, frame)
            try locate(loc) { () throws(JinjaError) in
                guard let t = try loadTemplate(name, ignoreMissing: ignoreMissing) else { return }
                let top = Frame(parent: withContext ? frame : nil)
                try nested { () throws(JinjaError) in
                    let saved = file
                    file = t.name
                    defer { file = saved }
                    try render(t.nodes, top, &out)
                }
            }
        case .importModule(let e, let alias, let withContext, let loc):
            let name = try eval(e, frame)
            frame.vars[alias] = try locate(loc) { () throws(JinjaError) in
                try module(name, withContext ? frame : nil)
            }
        case .fromImport(let e, let names, let withContext, let loc):
            let name = try eval(e, frame)
            let m = try locate(loc) { () throws(JinjaError) in try module(name, withContext ? frame : nil) }
            guard case .object(let o) = m else { return }
            for (n, alias) in names {
                frame.vars[alias] = o.attributes[n] ?? .undefined(
                    hint: "the template \(PyFormat.string(o.typeName)) (imported on line \(loc.line)) does not "
                        + "export the requested name \(PyFormat.string(n))")
            }
        }
    }

    func locate<T>(_ loc: SourceLocation, _ body: () throws(JinjaError) -> T) throws(JinjaError) -> T {
        do { return try body() } catch { throw error.located(file: file, line: loc.line, column: loc.column) }
    }

    // MARK: - Assignment

    func assign(_ target: Target, _ value: JinjaValue, _ frame: Frame) throws(JinjaError) {
        switch target {
        case .name(let n):
            frame.vars[n] = value
        case .tuple(let targets):
            let items = try iterate(value)
            if items.count > targets.count {
                throw JinjaError(.value, "too many values to unpack (expected \(targets.count))")
            }
            if items.count < targets.count {
                throw JinjaError(.value, "not enough values to unpack (expected \(targets.count), got \(items.count))")
            }
            for (t, v) in zip(targets, items) { try assign(t, v, frame) }
        case .attribute(let n, let attr):
            guard case .object(let o)? = frame.lookup(n), o.assignable else {
                throw JinjaError(.runtime, "cannot assign attribute on non-namespace object")
            }
            o.attributes[attr] = value
        }
    }

    // MARK: - Loops

    func runLoop(_ f: ForLoop, items all: [JinjaValue], frame: Frame, depth: Int, out: inout String) throws(JinjaError) {
        var items = all
        if let condition = f.condition {
            items = []
            for item in all {
                let probe = Frame(parent: frame)
                try assign(f.target, item, probe)
                if try eval(condition, probe).truthy { items.append(item) }
            }
        }
        if items.isEmpty {
            if let otherwise = f.otherwise { try render(otherwise, Frame(parent: frame), &out) }
            return
        }
        let changed = ChangedState()
        let n = items.count
        for (i, item) in items.enumerated() {
            let body = Frame(parent: frame)
            try assign(f.target, item, body)
            var attrs: [String: JinjaValue] = [
                "index": .int(i + 1), "index0": .int(i), "revindex": .int(n - i), "revindex0": .int(n - i - 1),
                "first": .bool(i == 0), "last": .bool(i == n - 1), "length": .int(n), "depth": .int(depth),
                "depth0": .int(depth - 1),
                "previtem": i > 0 ? items[i - 1] : .undefined(hint: "there is no previous item"),
                "nextitem": i + 1 < n ? items[i + 1] : .undefined(hint: "there is no next item"),
                "cycle": .callable(
                    JinjaCallable(name: "cycle", typeName: "method") { args, _, _ throws(JinjaError) in
                        guard !args.isEmpty else { throw JinjaError(.type, "no items for cycling given") }
                        return args[i % args.count]
                    }),
                "changed": .callable(
                    JinjaCallable(name: "changed", typeName: "method") { args, _, _ throws(JinjaError) in
                        if let last = changed.last, Operators.equal(.tuple(last), .tuple(args)) { return .bool(false) }
                        changed.last = args
                        return .bool(true)
                    }),
            ]
            if f.recursive {
                attrs["__call__"] = .callable(
                    JinjaCallable(name: "loop", typeName: "LoopContext") { args, _, ev throws(JinjaError) in
                        guard args.count == 1 else { throw JinjaError(.type, "loop() takes exactly one argument") }
                        var text = ""
                        try ev.nested { () throws(JinjaError) in
                            try ev.runLoop(f, items: try ev.iterate(args[0]), frame: frame, depth: depth + 1, out: &text)
                        }
                        return .string(text)
                    })
            }
            body.vars["loop"] = .object(JinjaObject(typeName: "LoopContext", attributes: attrs))
            try render(f.body, body, &out)
        }
    }

    final class ChangedState {
        var last: [JinjaValue]?
    }

    /// Python's `iter(value)` materialised.
    func iterate(_ v: JinjaValue) throws(JinjaError) -> [JinjaValue] {
        switch v {
        case .undefined: return []
        case .list(let a), .tuple(let a): return a
        case .dict(let d): return d.keys
        case .string(let s), .markup(let s): return s.unicodeScalars.map { .string(String(Character($0))) }
        case .object(let o) where o.attributes["__iter__"] != nil:
            if case .list(let a)? = o.attributes["__iter__"] { return a }
            return []
        default: throw JinjaError(.type, "'\(v.typeName)' object is not iterable")
        }
    }

    // MARK: - Macros

    func makeMacro(
        _ name: String, _ params: Parameters, _ body: [Node], _ def: MacroDef, closure: Frame
    ) -> JinjaCallable {
        JinjaCallable(name: name, typeName: "Macro") { args, kwargs, ev throws(JinjaError) in
            let inner = Frame(parent: closure)
            var kw = kwargs
            let count = params.names.count
            var explicitCaller = false
            for (i, (pname, defaultExpr)) in params.names.enumerated() {
                if i < args.count {
                    inner.vars[pname] = args[i]
                } else if let k = kw.firstIndex(where: { $0.0 == pname }) {
                    inner.vars[pname] = kw.remove(at: k).1
                    if pname == "caller" { explicitCaller = true }
                } else if let defaultExpr {
                    inner.vars[pname] = try ev.eval(defaultExpr, inner)
                } else {
                    inner.vars[pname] = .undefined(hint: "parameter \(PyFormat.string(pname)) was not provided")
                }
            }
            if def.usesCaller && !explicitCaller {
                if let k = kw.firstIndex(where: { $0.0 == "caller" }) {
                    inner.vars["caller"] = kw.remove(at: k).1
                } else {
                    inner.vars["caller"] = .undefined(hint: "No caller defined")
                }
            }
            if def.usesKwargs {
                var d = PyDict()
                for (k, v) in kw { try d.set(.string(k), v) }
                inner.vars["kwargs"] = .dict(d)
            } else if let first = kw.first {
                if first.0 == "caller" {
                    throw JinjaError(
                        .type, "macro '\(name)' was invoked with two values for the special caller argument. This "
                            + "is most likely a bug.")
                }
                throw JinjaError(.type, "macro '\(name)' takes no keyword argument '\(first.0)'")
            }
            if def.usesVarargs {
                inner.vars["varargs"] = .tuple(args.count > count ? Array(args[count...]) : [])
            } else if args.count > count {
                throw JinjaError(.type, "macro '\(name)' takes not more than \(count) argument(s)")
            }
            var text = ""
            try ev.nested { () throws(JinjaError) in try ev.render(body, inner, &text) }
            return .string(text)
        }
    }

    // MARK: - Templates

    func loadTemplate(_ name: JinjaValue, ignoreMissing: Bool) throws(JinjaError) -> Template? {
        var names: [String] = []
        switch name {
        case .string(let s), .markup(let s): names = [s]
        case .list(let a), .tuple(let a):
            for n in a {
                guard let s = n.stringValue else { throw JinjaError(.type, "template names must be strings") }
                names.append(s)
            }
        case .undefined(let hint): throw JinjaError(.undefined, hint)
        default: throw JinjaError(.type, "a template name must be a string, not \(name.typeName)")
        }
        for n in names {
            if let t = templates[n] { return t }
            if let (source, path) = try loader?.load(n) {
                let t = try Template(source: source, name: path)
                templates[n] = t
                return t
            }
        }
        if ignoreMissing { return nil }
        if names.count == 1 { throw JinjaError(.notFound, PyFormat.string(names[0])) }
        throw JinjaError(
            .notFound, "none of the templates given were found: " + names.map(PyFormat.string).joined(separator: ", "))
    }

    func module(_ name: JinjaValue, _ context: Frame?) throws(JinjaError) -> JinjaValue {
        let t = try loadTemplate(name, ignoreMissing: false)!
        let top = Frame(parent: context)
        var discarded = ""
        try nested { () throws(JinjaError) in
            let saved = file
            file = t.name
            defer { file = saved }
            try render(t.nodes, top, &discarded)
        }
        var exported: [String: JinjaValue] = [:]
        for (k, v) in top.vars where !k.hasPrefix("_") { exported[k] = v }
        return .object(JinjaObject(typeName: t.name, attributes: exported))
    }
}
