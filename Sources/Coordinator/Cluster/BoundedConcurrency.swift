/// Runs work over many agents at once, never more than a limit in flight.
enum BoundedConcurrency {
    /// `body` applied to every item, at most `limit` at a time; the results in the items' order.
    static func map<T: Sendable, R: Sendable>(
        _ items: [T], limit: Int, _ body: @escaping @Sendable (T) async -> R
    ) async -> [R] {
        // The group returns its results rather than writing into an array captured from outside: that shape
        // (`results[i] = r` in the `for await` loop) trapped in release builds (Swift 6.3, -O) in
        // Array.subscript.modify on every call — found by `nk3 bench`.
        let collected = await withTaskGroup(of: (Int, R).self, returning: [(Int, R)].self) { group in
            var next = 0
            func add(_ i: Int) {
                let item = items[i]
                group.addTask { (i, await body(item)) }
            }
            while next < items.count && next < max(1, limit) {
                add(next)
                next += 1
            }
            var out: [(Int, R)] = []
            out.reserveCapacity(items.count)
            for await item in group {
                out.append(item)
                if next < items.count {
                    add(next)
                    next += 1
                }
            }
            return out
        }
        return collected.sorted { $0.0 < $1.0 }.map(\.1)
    }
}
