#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// An error as it crosses the wire: a stable machine-readable code and a human message.
///
/// Callers match on `code`, never on the message text.
public struct WireError: Codable, Sendable, Hashable, Error, CustomStringConvertible {
    /// Stable error codes. New codes may be added; unknown codes decode as `.unknown`.
    public enum Code: String, Codable, Sendable, Hashable, CaseIterable {
        case badSignature = "bad_signature"
        case unknownKey = "unknown_key"
        case wrongNode = "wrong_node"
        case expired = "expired"
        case notYetValid = "not_yet_valid"
        case replayedSerial = "replayed_serial"
        case serialOutOfRange = "serial_out_of_range"
        case malformed = "malformed"
        case unsupportedVersion = "unsupported_version"
        case bodyTooLarge = "body_too_large"
        case forbidden = "forbidden"
        case notFound = "not_found"
        case methodNotAllowed = "method_not_allowed"
        case busy = "busy"
        case invalidState = "invalid_state"
        case internalError = "internal_error"
        case unknown = "unknown"

        public init(from decoder: Decoder) throws {
            let raw = try decoder.singleValueContainer().decode(String.self)
            self = Code(rawValue: raw) ?? .unknown
        }
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }

    /// The HTTP status an agent answers with for this error.
    public var httpStatus: Int {
        switch code {
        case .badSignature, .unknownKey, .wrongNode, .expired, .notYetValid, .replayedSerial, .serialOutOfRange: return 403
        case .forbidden: return 403
        case .malformed, .unsupportedVersion: return 400
        case .bodyTooLarge: return 413
        case .notFound: return 404
        case .methodNotAllowed: return 405
        case .busy, .invalidState: return 409
        case .internalError, .unknown: return 500
        }
    }
}
