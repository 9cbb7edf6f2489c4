import Foundation

/// A problem with the inventory file: names the file, line, column and key, and says how to fix it.
public struct InventoryError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of problem.
    public enum Code: String, Sendable, Hashable {
        /// The file could not be read.
        case unreadable
        /// The YAML itself does not parse.
        case syntax
        /// A top-level key nk3 does not know (and that is not a known template extra).
        case unknownKey
        /// The same key twice in one mapping (YAML parsers keep the last one silently; nk3 refuses).
        case duplicateKey
        /// The same node address twice under `nodes:`.
        case duplicateNode
        /// A node key that is not an IPv4/IPv6 address or a hostname.
        case badAddress
        /// A value of the wrong YAML type.
        case wrongType
        /// A required key is absent.
        case missingKey
        /// A value of the right type but not allowed (out of range, names no node, ...).
        case invalidValue
    }

    /// The kind of problem.
    public var code: Code
    /// What is wrong and how to fix it (without the location prefix).
    public var message: String
    /// The inventory file as given.
    public var file: String
    /// 1-based line (0 when unknown).
    public var line: Int
    /// 1-based column, counted in Unicode scalars (0 when unknown).
    public var column: Int
    /// The key path concerned, e.g. `nodes["172.30.190.3"].boot_device` (empty when none).
    public var key: String

    /// Makes an error.
    public init(code: Code, message: String, file: String, line: Int, column: Int, key: String) {
        self.code = code
        self.message = message
        self.file = file
        self.line = line
        self.column = column
        self.key = key
    }

    /// `file:line:column: message`, the way compilers print it.
    public var description: String { "\(file):\(line):\(column): \(message)" }
}
