#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

/// Why an envelope was refused. Each case maps to its own wire error code.
public enum EnvelopeError: Error, Sendable, Hashable, CustomStringConvertible {
    case malformed(String)
    case unsupportedVersion(Int)
    case unknownKey(String)
    case badSignature
    case wrongNode(expected: String, got: String)
    case expired(expiresAt: Date, now: Date)
    case notYetValid(issuedAt: Date, now: Date)
    case replayedSerial(serial: UInt64, lastAccepted: UInt64)
    /// The serial is further ahead of the agent's clock than `EnvelopeVerifier.serialLimit` allows.
    case serialOutOfRange(serial: UInt64, limit: UInt64)

    public var wireError: WireError {
        switch self {
        case .malformed(let why): return WireError(.malformed, "malformed envelope: \(why)")
        case .unsupportedVersion(let v):
            return WireError(.unsupportedVersion, "envelope version \(v) is not supported (this agent speaks \(NK3Wire.version))")
        case .unknownKey(let id):
            return WireError(.unknownKey, "envelope signed by key \(id), which is not among this agent's pinned signing keys")
        case .badSignature: return WireError(.badSignature, "envelope signature does not verify")
        case .wrongNode(let expected, let got):
            return WireError(.wrongNode, "envelope is for node '\(got)', this is '\(expected)'")
        case .expired(let exp, let now):
            return WireError(.expired, "envelope expired at \(exp.formatted(.iso8601)) (now \(now.formatted(.iso8601)))")
        case .notYetValid(let iat, let now):
            return WireError(.notYetValid, "envelope issued at \(iat.formatted(.iso8601)), in the future (now \(now.formatted(.iso8601))); check clocks")
        case .replayedSerial(let s, let last):
            return WireError(.replayedSerial, "serial \(s) is not newer than the last accepted serial \(last)")
        case .serialOutOfRange(let s, let limit):
            return WireError(
                .serialOutOfRange,
                "serial \(s) is beyond \(limit) (this agent's time in milliseconds plus the margin); serials follow the "
                    + "coordinator's clock: check it")
        }
    }

    public var description: String { wireError.description }
}
