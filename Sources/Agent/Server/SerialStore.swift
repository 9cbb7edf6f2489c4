#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NK3Common
import NK3Protocol
import Synchronization

/// The last accepted envelope serial, persisted atomically in the agent's state directory so that replay
/// protection survives restarts (README.md, "How it stays safe": replays are refused also across agent restarts).
///
/// `accept` checks and persists under one lock: two concurrent envelopes can never both pass with the same
/// serial.
public final class SerialStore: Sendable {
    /// The file holding the serial (`<stateDir>/last-accepted-serial.json`).
    public let path: String
    private let state: Mutex<UInt64?>

    private struct Stored: Codable { var lastAcceptedSerial: UInt64 }

    /// Opens (or starts) the store in `stateDirectory`, creating the directory (0700) if needed. A file that
    /// exists but cannot be read is an error: starting from "no serial" would re-open the door to replays.
    public init(stateDirectory: String) throws {
        try SecureFiles.createDirectory(stateDirectory, permissions: 0o700)
        self.path = PathName.appending("last-accepted-serial.json", to: stateDirectory)
        if SecureFiles.exists(path) {
            let data = try SecureFiles.read(path)
            do {
                state = Mutex(try CanonicalJSON.decode(Stored.self, from: data).lastAcceptedSerial)
            } catch {
                throw WireError(
                    .internalError,
                    "cannot read the last accepted serial from \(path) (\(StrictJSON.describe(error))); refusing to "
                        + "start without it, since that would allow replays. Restore the file, or remove it only if "
                        + "you know no envelope was ever accepted")
            }
        } else {
            state = Mutex(nil)
        }
    }

    /// The last accepted serial (nil: none yet).
    public var current: UInt64? { state.withLock { $0 } }

    /// Runs `check` with the last accepted serial and, if it returns a serial, persists it before returning.
    /// Nothing is written when `check` throws.
    public func accept<T: Sendable>(_ check: (UInt64?) throws(EnvelopeError) -> (T, serial: UInt64)) throws(WireError) -> T {
        try state.withLock { (last: inout UInt64?) throws(WireError) -> T in
            let checked: Result<(T, serial: UInt64), EnvelopeError> = Result { () throws(EnvelopeError) in try check(last) }
            let (value, serial): (T, UInt64)
            switch checked {
            case .success(let ok): (value, serial) = (ok.0, ok.serial)
            case .failure(let refusal): throw refusal.wireError
            }
            do {
                let data = try CanonicalJSON.encode(Stored(lastAcceptedSerial: serial))
                try SecureFiles.writeAtomically(data, to: path, permissions: 0o600)
            } catch {
                throw WireError(.internalError, "cannot persist accepted serial \(serial) to \(path): \(error)")
            }
            last = serial
            return value
        }
    }
}
