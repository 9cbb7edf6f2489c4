import NK3Jinja

/// Inventory values as the Python tool handed them to Jinja2 (what PyYAML loads): strings, ints, floats,
/// booleans, `None`, lists, and insertion-ordered dicts.
enum PythonValues {
    /// The template value for an inventory value.
    static func value(_ v: InventoryValue) -> JinjaValue {
        switch v {
        case .string(let s): .string(s)
        case .int(let i): .int(i)
        case .float(let d): .float(d)
        case .bool(let b): .bool(b)
        case .null: .none
        case .list(let items): .list(items.map(value))
        case .map(let entries): .dict(PyDict(entries.map { ($0.key, value($0.value)) }))
        }
    }

    /// An ordered dict of inventory entries.
    static func dict(_ entries: [InventoryEntry]) -> JinjaValue {
        .dict(PyDict(entries.map { ($0.key, value($0.value)) }))
    }
}
