/// Jinja2's default globals: `range`, `dict`, `namespace`, `cycler`, `joiner` (`lipsum` is refused).
enum Globals {
    static let maxRange = 1_000_000

    /// A Python `range` object: iterable, sized, subscriptable, prints as `range(a, b)`.
    static func makeRange(_ start: Int, _ stop: Int, _ step: Int, count: Int) -> JinjaValue {
        .object(
            JinjaObject(
                typeName: "range",
                attributes: [
                    "__iter__": .list((0..<count).map { .int(start + $0 * step) }), "__len__": .int(count),
                    "__getitem__": .bool(true), "start": .int(start), "stop": .int(stop), "step": .int(step),
                ],
                reprText: step == 1 ? "range(\(start), \(stop))" : "range(\(start), \(stop), \(step))"))
    }

    /// The global named `name` (a fresh value each time: values are not `Sendable`).
    static func lookup(_ name: String) -> JinjaValue? { make[name]?() }

    static let make: [String: @Sendable () -> JinjaValue] = [
        "range": { .callable(JinjaCallable(name: "range", typeName: "type") { args, kwargs, _ throws(JinjaError) in
            if !kwargs.isEmpty { throw JinjaError(.type, "range() takes no keyword arguments") }
            var ints: [Int] = []
            for a in args {
                guard let i = a.intValue else {
                    if case .undefined(let hint) = a { throw JinjaError(.undefined, hint) }
                    throw JinjaError(.type, "'\(a.typeName)' object cannot be interpreted as an integer")
                }
                ints.append(i)
            }
            let (start, stop, step): (Int, Int, Int)
            switch ints.count {
            case 1: (start, stop, step) = (0, ints[0], 1)
            case 2: (start, stop, step) = (ints[0], ints[1], 1)
            case 3: (start, stop, step) = (ints[0], ints[1], ints[2])
            default: throw JinjaError(.type, "range expected at most 3 arguments, got \(ints.count)")
            }
            guard step != 0 else { throw JinjaError(.value, "range() arg 3 must not be zero") }
            let count = step > 0
                ? (stop > start ? (stop.subtractingReportingOverflow(start).partialValue - 1) / step + 1 : 0)
                : (start > stop ? (start.subtractingReportingOverflow(stop).partialValue - 1) / -step + 1 : 0)
            if count < 0 || count > maxRange {
                throw JinjaError(.unsupported, "range() of more than \(maxRange) items (nk3's engine materialises ranges)")
            }
            return makeRange(start, stop, step, count: count)
        }) },
        "dict": { .callable(JinjaCallable(name: "dict", typeName: "type") { args, kwargs, ev throws(JinjaError) in
            guard args.count <= 1 else { throw JinjaError(.type, "dict expected at most 1 argument, got \(args.count)") }
            var d = PyDict()
            if let first = args.first {
                if case .dict(let src) = first {
                    d = src
                } else {
                    for item in try ev.iterate(first) {
                        let pair = try ev.iterate(item)
                        guard pair.count == 2 else {
                            throw JinjaError(.value, "dictionary update sequence element has length \(pair.count); 2 is required")
                        }
                        try d.set(pair[0], pair[1])
                    }
                }
            }
            for (k, v) in kwargs { try d.set(.string(k), v) }
            return .dict(d)
        }) },
        "namespace": { .callable(JinjaCallable(name: "namespace", typeName: "type") { args, kwargs, ev throws(JinjaError) in
            var attrs: [String: JinjaValue] = [:]
            for a in args {
                guard case .dict(let d) = a else { throw JinjaError(.type, "namespace() takes mappings") }
                for (k, v) in zip(d.keys, d.values) {
                    guard let key = k.stringValue else { throw JinjaError(.type, "keywords must be strings") }
                    attrs[key] = v
                }
            }
            for (k, v) in kwargs { attrs[k] = v }
            return .object(JinjaObject(typeName: "Namespace", attributes: attrs, assignable: true))
        }) },
        "cycler": { .callable(JinjaCallable(name: "cycler", typeName: "type") { args, kwargs, _ throws(JinjaError) in
            guard kwargs.isEmpty else { throw JinjaError(.type, "cycler() takes no keyword arguments") }
            guard !args.isEmpty else { throw JinjaError(.runtime, "at least one item has to be provided") }
            return .object(Cycler(args).object)
        }) },
        "joiner": { .callable(JinjaCallable(name: "joiner", typeName: "type") { args, kwargs, _ throws(JinjaError) in
            let p = try Binder.bind("joiner", args, kwargs, ["sep"])
            let sep = p[0] ?? .string(", ")
            final class Used { var used = false }
            let used = Used()
            return .object(
                JinjaObject(
                    typeName: "Joiner",
                    attributes: [
                        "__call__": .callable(JinjaCallable(name: "joiner") { _, _, _ throws(JinjaError) in
                            if used.used { return sep }
                            used.used = true
                            return .string("")
                        })
                    ]))
        }) },
        "lipsum": { .callable(JinjaCallable(name: "lipsum") { _, _, _ throws(JinjaError) in
            throw JinjaError(.unsupported, "lipsum() (random text) is not implemented by nk3's engine")
        }) },
    ]
}

/// Jinja2's `cycler`: `next()`, `reset()`, `current`.
final class Cycler {
    let object: JinjaObject

    init(_ items: [JinjaValue]) {
        final class State {
            var pos = 0
        }
        let state = State()
        let object = JinjaObject(typeName: "Cycler", attributes: [:])
        weak let weakObject = object
        object.attributes["current"] = items[0]
        object.attributes["next"] = .callable(JinjaCallable(name: "next") { _, _, _ throws(JinjaError) in
            let v = items[state.pos]
            state.pos = (state.pos + 1) % items.count
            weakObject?.attributes["current"] = items[state.pos]
            return v
        })
        object.attributes["reset"] = .callable(JinjaCallable(name: "reset") { _, _, _ throws(JinjaError) in
            state.pos = 0
            weakObject?.attributes["current"] = items[0]
            return .none
        })
        self.object = object
    }
}
