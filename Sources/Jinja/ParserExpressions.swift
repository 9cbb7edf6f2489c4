/// Expressions, as `jinja2/parser.py` parses them.
extension Parser {
    /// One more link of a left-associative chain (`a + b + c`, `x|f|g`, `a.b.c`): it nests the tree as deeply
    /// as parentheses do, and evaluation recurses through it, so it counts against the same depth limit.
    mutating func link(_ links: inout Int) throws(JinjaError) {
        links += 1
        try enter()
    }

    func isTupleEnd(_ extraEnd: [String]) -> Bool {
        switch current.kind {
        case .variableEnd, .blockEnd, .eof: return true
        case .op(")"): return true
        case .name(let n): return extraEnd.contains(n)
        default: return false
        }
    }

    mutating func parseTuple(
        simplified: Bool = false, withCondExpr: Bool = true, extraEnd: [String] = [],
        explicitParentheses: Bool = false, withNamespace: Bool = false
    ) throws(JinjaError) -> Expr {
        let loc = current.location
        var items: [Expr] = []
        var isTuple = false
        while true {
            if !items.isEmpty { try expectOp(",") }
            if isTupleEnd(extraEnd) { break }
            items.append(
                simplified ? try parsePrimary(withNamespace: withNamespace) : try parseExpression(withCondExpr: withCondExpr))
            if isOp(",") { isTuple = true } else { break }
        }
        if !isTuple {
            if let first = items.first { return first }
            if !explicitParentheses { throw fail("Expected an expression, got '\(current.describe)'") }
        }
        return .tuple(items, loc)
    }

    mutating func parseExpression(withCondExpr: Bool = true) throws(JinjaError) -> Expr {
        try enter()
        defer { depth -= 1 }
        return withCondExpr ? try parseCondExpr() : try parseOr()
    }

    mutating func parseCondExpr() throws(JinjaError) -> Expr {
        var loc = current.location
        var expr = try parseOr()
        while skipName("if") {
            let test = try parseOr()
            var otherwise: Expr?
            if skipName("else") {
                try enter()
                defer { depth -= 1 }
                otherwise = try parseCondExpr()
            }
            expr = .condition(test: test, then: expr, otherwise: otherwise, loc)
            loc = current.location
        }
        return expr
    }

    mutating func parseOr() throws(JinjaError) -> Expr {
        let loc = current.location
        var left = try parseAnd()
        var links = 0
        defer { depth -= links }
        while skipName("or") {
            try link(&links)
            left = .or(left, try parseAnd(), loc)
        }
        return left
    }

    mutating func parseAnd() throws(JinjaError) -> Expr {
        let loc = current.location
        var left = try parseNot()
        var links = 0
        defer { depth -= links }
        while skipName("and") {
            try link(&links)
            left = .and(left, try parseNot(), loc)
        }
        return left
    }

    mutating func parseNot() throws(JinjaError) -> Expr {
        if isName("not") {
            let loc = advance().location
            try enter()
            defer { depth -= 1 }
            return .not(try parseNot(), loc)
        }
        return try parseCompare()
    }

    mutating func parseCompare() throws(JinjaError) -> Expr {
        let loc = current.location
        let expr = try parseMath1()
        var ops: [(CompareOp, Expr)] = []
        while true {
            if case .op(let o) = current.kind, let op = CompareOp(rawValue: o), op != .in, op != .notIn {
                _ = advance()
                ops.append((op, try parseMath1()))
            } else if skipName("in") {
                ops.append((.in, try parseMath1()))
            } else if isName("not"), isName("in", look()) {
                _ = advance()
                _ = advance()
                ops.append((.notIn, try parseMath1()))
            } else {
                break
            }
        }
        return ops.isEmpty ? expr : .compare(expr, ops, loc)
    }

    mutating func parseMath1() throws(JinjaError) -> Expr {
        let loc = current.location
        var left = try parseConcat()
        var links = 0
        defer { depth -= links }
        while isOp("+") || isOp("-") {
            try link(&links)
            let op: BinaryOp = isOp("+") ? .add : .sub
            _ = advance()
            left = .binary(op, left, try parseConcat(), loc)
        }
        return left
    }

    mutating func parseConcat() throws(JinjaError) -> Expr {
        let loc = current.location
        var args = [try parseMath2()]
        while skipOp("~") { args.append(try parseMath2()) }
        return args.count == 1 ? args[0] : .concat(args, loc)
    }

    mutating func parseMath2() throws(JinjaError) -> Expr {
        let loc = current.location
        var left = try parsePow()
        var links = 0
        defer { depth -= links }
        while true {
            let op: BinaryOp
            if isOp("*") { op = .mul } else if isOp("/") { op = .div } else if isOp("//") { op = .floorDiv } else if isOp("%") {
                op = .mod
            } else {
                break
            }
            _ = advance()
            try link(&links)
            left = .binary(op, left, try parsePow(), loc)
        }
        return left
    }

    mutating func parsePow() throws(JinjaError) -> Expr {
        let loc = current.location
        var left = try parseUnary()
        var links = 0
        defer { depth -= links }
        while skipOp("**") {
            try link(&links)
            left = .binary(.pow, left, try parseUnary(), loc)
        }
        return left
    }

    mutating func parseUnary(withFilter: Bool = true) throws(JinjaError) -> Expr {
        try enter()
        defer { depth -= 1 }
        let loc = current.location
        var node: Expr
        if skipOp("-") {
            node = .neg(try parseUnary(withFilter: false), loc)
        } else if skipOp("+") {
            node = .pos(try parseUnary(withFilter: false), loc)
        } else {
            node = try parsePrimary()
        }
        node = try parsePostfix(node)
        if withFilter { node = try parseFilterExpr(node) }
        return node
    }

    mutating func parsePrimary(withNamespace: Bool = false) throws(JinjaError) -> Expr {
        let token = current
        let loc = token.location
        switch token.kind {
        case .name(let n):
            _ = advance()
            switch n {
            case "true", "True": return .literal(.bool(true), loc)
            case "false", "False": return .literal(.bool(false), loc)
            case "none", "None": return .literal(.none, loc)
            default:
                if withNamespace, skipOp(".") {
                    return .getattr(.name(n, loc), try expectName(), loc)
                }
                return .name(n, loc)
            }
        case .string(let s):
            _ = advance()
            var buf = s
            while case .string(let more) = current.kind {
                buf += more
                _ = advance()
            }
            return .literal(.string(buf), loc)
        case .integer(let i):
            _ = advance()
            return .literal(.int(i), loc)
        case .float(let d):
            _ = advance()
            return .literal(.float(d), loc)
        case .op("("):
            _ = advance()
            try enter()
            defer { depth -= 1 }
            let node = try parseTuple(explicitParentheses: true)
            try expectOp(")")
            return node
        case .op("["):
            _ = advance()
            try enter()
            defer { depth -= 1 }
            var items: [Expr] = []
            while !isOp("]") {
                if !items.isEmpty { try expectOp(",") }
                if isOp("]") { break }
                items.append(try parseExpression())
            }
            try expectOp("]")
            return .list(items, loc)
        case .op("{"):
            _ = advance()
            try enter()
            defer { depth -= 1 }
            var pairs: [(Expr, Expr)] = []
            while !isOp("}") {
                if !pairs.isEmpty { try expectOp(",") }
                if isOp("}") { break }
                let key = try parseExpression()
                try expectOp(":")
                pairs.append((key, try parseExpression()))
            }
            try expectOp("}")
            return .dict(pairs, loc)
        default:
            if case .eof = token.kind { throw fail("unexpected end of template") }
            throw fail("unexpected '\(token.describe)'")
        }
    }

    mutating func parsePostfix(_ start: Expr) throws(JinjaError) -> Expr {
        var node = start
        var links = 0
        defer { depth -= links }
        while true {
            if isOp(".") || isOp("[") || isOp("(") { try link(&links) }
            if isOp(".") || isOp("[") {
                node = try parseSubscript(node)
            } else if isOp("(") {
                node = try parseCall(node)
            } else {
                return node
            }
        }
    }

    mutating func parseFilterExpr(_ start: Expr) throws(JinjaError) -> Expr {
        var node = start
        var links = 0
        defer { depth -= links }
        while true {
            if isOp("|") || isName("is") || isOp("(") { try link(&links) }
            if isOp("|") {
                node = try parseFilter(node)!
            } else if isName("is") {
                node = try parseTest(node)
            } else if isOp("(") {
                node = try parseCall(node)
            } else {
                return node
            }
        }
    }

    mutating func parseSubscript(_ node: Expr) throws(JinjaError) -> Expr {
        let token = advance()
        if isOp(".", token) {
            let attr = current
            _ = advance()
            switch attr.kind {
            case .name(let n): return .getattr(node, n, token.location)
            case .integer(let i): return .getitem(node, .literal(.int(i), attr.location), token.location)
            default: throw fail("expected name or number", attr)
            }
        }
        var args: [Expr] = []
        while !isOp("]") {
            if !args.isEmpty { try expectOp(",") }
            args.append(try parseSubscribed())
        }
        try expectOp("]")
        return .getitem(node, args.count == 1 ? args[0] : .tuple(args, token.location), token.location)
    }

    mutating func parseSubscribed() throws(JinjaError) -> Expr {
        let loc = current.location
        var parts: [Expr?] = []
        if skipOp(":") {
            parts = [nil]
        } else {
            let node = try parseExpression()
            if !isOp(":") { return node }
            _ = advance()
            parts = [node]
        }
        if isOp(":") {
            parts.append(nil)
        } else if !isOp("]") && !isOp(",") {
            parts.append(try parseExpression())
        } else {
            parts.append(nil)
        }
        if skipOp(":") {
            if !isOp("]") && !isOp(",") { parts.append(try parseExpression()) } else { parts.append(nil) }
        } else {
            parts.append(nil)
        }
        return .slice(parts[0], parts[1], parts[2], loc)
    }

    mutating func parseCallArgs() throws(JinjaError) -> Arguments {
        let open = current
        try expectOp("(")
        var args = Arguments()
        var requireComma = false
        while !isOp(")") {
            if requireComma {
                try expectOp(",")
                if isOp(")") { break }
            }
            let invalid = fail("invalid syntax for function call expression", open)
            if skipOp("*") {
                guard args.starArgs == nil, args.starKwargs == nil else { throw invalid }
                args.starArgs = try parseExpression()
            } else if skipOp("**") {
                guard args.starKwargs == nil else { throw invalid }
                args.starKwargs = try parseExpression()
            } else if case .name(let key) = current.kind, isOp("=", look()) {
                guard args.starKwargs == nil else { throw invalid }
                _ = advance()
                _ = advance()
                args.keywords.append((key, try parseExpression()))
            } else {
                guard args.starArgs == nil, args.starKwargs == nil, args.keywords.isEmpty else { throw invalid }
                args.positional.append(try parseExpression())
            }
            requireComma = true
        }
        try expectOp(")")
        return args
    }

    mutating func parseCall(_ node: Expr) throws(JinjaError) -> Expr {
        let loc = current.location
        return .call(node, try parseCallArgs(), loc)
    }

    mutating func parseFilter(_ start: Expr?, startInline: Bool = false) throws(JinjaError) -> Expr? {
        var node = start
        var inline = startInline
        var links = 0
        defer { depth -= links }
        while isOp("|") || inline {
            try link(&links)
            if !inline { _ = advance() }
            let loc = current.location
            var name = try expectName()
            while skipOp(".") { name += "." + (try expectName()) }
            let args = isOp("(") ? try parseCallArgs() : Arguments()
            node = .filter(node, name, args, loc)
            inline = false
        }
        return node
    }

    mutating func parseTest(_ node: Expr) throws(JinjaError) -> Expr {
        let token = advance()
        let negated = skipName("not")
        var name = try expectName()
        while skipOp(".") { name += "." + (try expectName()) }
        var args = Arguments()
        if isOp("(") {
            args = try parseCallArgs()
        } else {
            var startsArg = false
            switch current.kind {
            case .name(let n): startsArg = !["else", "or", "and"].contains(n)
            case .string, .integer, .float: startsArg = true
            case .op(let o): startsArg = o == "(" || o == "[" || o == "{"
            default: break
            }
            if startsArg {
                if isName("is") { throw fail("You cannot chain multiple tests with is") }
                args.positional = [try parsePostfix(try parsePrimary())]
            }
        }
        let test = Expr.test(node, name, args, token.location)
        return negated ? .not(test, token.location) : test
    }
}
