/// Expression evaluation with Jinja2's semantics.
extension Evaluator {
    func eval(_ e: Expr, _ f: Frame, extraKeywords: [(String, JinjaValue)] = []) throws(JinjaError) -> JinjaValue {
        do {
            return try evalInner(e, f, extraKeywords)
        } catch {
            throw error.located(file: file, line: e.location.line, column: e.location.column)
        }
    }

    private func evalInner(_ e: Expr, _ f: Frame, _ extraKeywords: [(String, JinjaValue)]) throws(JinjaError)
        -> JinjaValue
    {
        switch e {
        case .literal(let l, _):
            return l.value
        case .name(let n, _):
            return f.lookup(n) ?? Globals.lookup(n) ?? .missing(n)
        case .list(let items, _):
            var out: [JinjaValue] = []
            out.reserveCapacity(items.count)
            for i in items { out.append(try eval(i, f)) }
            return .list(out)
        case .tuple(let items, _):
            var out: [JinjaValue] = []
            for i in items { out.append(try eval(i, f)) }
            return .tuple(out)
        case .dict(let pairs, _):
            var d = PyDict()
            for (k, v) in pairs { try d.set(try eval(k, f), try eval(v, f)) }
            return .dict(d)
        case .getattr(let base, let name, _):
            return try Access.attribute(try eval(base, f), name)
        case .getitem(let base, let key, _):
            let b = try eval(base, f)
            if case .slice(let start, let stop, let step, _) = key {
                return try Access.slice(
                    b, try start.map { e throws(JinjaError) in try eval(e, f) },
                    try stop.map { e throws(JinjaError) in try eval(e, f) },
                    try step.map { e throws(JinjaError) in try eval(e, f) })
            }
            return try Access.item(b, try eval(key, f))
        case .slice:
            throw JinjaError(.syntax, "a slice outside a subscript")
        case .call(let callee, let arguments, _):
            let fn = try eval(callee, f)
            var (args, kwargs) = try evalArguments(arguments, f)
            kwargs += extraKeywords
            return try call(fn, args, kwargs)
        case .filter(let base, let name, let arguments, _):
            guard let base else { throw JinjaError(.syntax, "a filter without a value") }
            return try applyFilter(name, try eval(base, f), arguments, f)
        case .test(let base, let name, let arguments, _):
            guard let test = TestFunctions.table[name] else {
                throw JinjaError(.runtime, "No test named '\(name)' found.")
            }
            let v = try eval(base, f)
            let (args, kwargs) = try evalArguments(arguments, f)
            return .bool(try test(v, args, kwargs, self))
        case .not(let x, _):
            return .bool(!(try eval(x, f).truthy))
        case .neg(let x, _):
            return try Operators.negate(try eval(x, f))
        case .pos(let x, _):
            let v = try eval(x, f)
            guard v.numberValue != nil else {
                if case .undefined(let hint) = v { throw JinjaError(.undefined, hint) }
                throw JinjaError(.type, "bad operand type for unary +: '\(v.typeName)'")
            }
            if case .bool(let b) = v { return .int(b ? 1 : 0) }
            return v
        case .binary(let op, let a, let b, _):
            return try Operators.binary(op, try eval(a, f), try eval(b, f))
        case .and(let a, let b, _):
            let l = try eval(a, f)
            return l.truthy ? try eval(b, f) : l
        case .or(let a, let b, _):
            let l = try eval(a, f)
            return l.truthy ? l : try eval(b, f)
        case .concat(let items, _):
            var s = ""
            for i in items { s += try PyFormat.str(try eval(i, f)) }
            return .string(s)
        case .compare(let first, let ops, _):
            var left = try eval(first, f)
            for (op, rhs) in ops {
                let right = try eval(rhs, f)
                if !(try Operators.compare(op, left, right)) { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .condition(let test, let then, let otherwise, let loc):
            if try eval(test, f).truthy { return try eval(then, f) }
            if let otherwise { return try eval(otherwise, f) }
            return .undefined(
                hint: "the inline if-expression on line \(loc.line) evaluated to false and no else section was defined.")
        }
    }

    func evalArguments(_ a: Arguments, _ f: Frame) throws(JinjaError) -> ([JinjaValue], [(String, JinjaValue)]) {
        var args: [JinjaValue] = []
        for p in a.positional { args.append(try eval(p, f)) }
        var kwargs: [(String, JinjaValue)] = []
        for (k, v) in a.keywords { kwargs.append((k, try eval(v, f))) }
        if let star = a.starArgs { args += try iterate(try eval(star, f)) }
        if let star = a.starKwargs {
            guard case .dict(let d) = try eval(star, f) else {
                throw JinjaError(.type, "argument after ** must be a mapping")
            }
            for (k, v) in zip(d.keys, d.values) {
                guard case .string(let key) = k else { throw JinjaError(.type, "keywords must be strings") }
                kwargs.append((key, v))
            }
        }
        var seen = Set<String>()
        for (k, _) in kwargs where !seen.insert(k).inserted {
            throw JinjaError(.type, "got multiple values for keyword argument '\(k)'")
        }
        return (args, kwargs)
    }

    func call(_ fn: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)]) throws(JinjaError) -> JinjaValue {
        switch fn {
        case .callable(let c):
            return try c.call(args, kwargs, self)
        case .object(let o):
            if case .callable(let c)? = o.attributes["__call__"] { return try c.call(args, kwargs, self) }
        case .undefined(let hint):
            throw JinjaError(.undefined, hint)
        default: break
        }
        throw JinjaError(.type, "'\(fn.typeName)' object is not callable")
    }

    func applyFilter(_ name: String, _ value: JinjaValue, _ arguments: Arguments, _ f: Frame) throws(JinjaError)
        -> JinjaValue
    {
        guard let filter = Filters.table[name] else { throw JinjaError(.runtime, "No filter named '\(name)' found.") }
        let (args, kwargs) = try evalArguments(arguments, f)
        return try filter(value, args, kwargs, self)
    }

    /// Applies a filter chain parsed without a value (`{% filter a|b %}`, `{% set x | f %}`) to `value`.
    func applyFilterChain(_ chain: Expr, to value: JinjaValue, _ f: Frame) throws(JinjaError) -> JinjaValue {
        guard case .filter(let base, let name, let arguments, let loc) = chain else {
            throw JinjaError(.syntax, "expected a filter")
        }
        let input = try base.map { b throws(JinjaError) in try applyFilterChain(b, to: value, f) } ?? value
        return try locate(loc) { () throws(JinjaError) in try applyFilter(name, input, arguments, f) }
    }
}
