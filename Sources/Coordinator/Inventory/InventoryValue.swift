import Foundation

/// A YAML value from the inventory, with mapping order kept (templates iterate maps in written order,
/// as Jinja2 does over PyYAML's insertion-ordered dicts).
public indirect enum InventoryValue: Sendable, Hashable {
    case string(String)
    case int(Int)
    case float(Double)
    case bool(Bool)
    case null
    case list([InventoryValue])
    case map([InventoryEntry])

    /// The string, if this is a string scalar.
    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    /// The value under `key`, if this is a map.
    public subscript(key: String) -> InventoryValue? {
        if case .map(let entries) = self { return entries.first { $0.key == key }?.value }
        return nil
    }

    /// A short type name for error messages ("string", "integer", "map", ...).
    public var typeName: String {
        switch self {
        case .string: "string"
        case .int: "integer"
        case .float: "number"
        case .bool: "boolean"
        case .null: "null"
        case .list: "list"
        case .map: "map"
        }
    }
}

/// One key of an ordered inventory map.
public struct InventoryEntry: Sendable, Hashable {
    /// The key as written.
    public var key: String
    /// The value.
    public var value: InventoryValue

    /// Makes an entry.
    public init(key: String, value: InventoryValue) {
        self.key = key
        self.value = value
    }
}
