#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NK3Common
import NK3Protocol
import Synchronization

/// The last accepted envelope serial, persisted atomically in the agent's state directory so that replay
/// protection survives restarts (README.md, "How it stays safe": replays are refused also across agent restarts),
/// and, beside it, what the agent answered that envelope.
///
/// `admit` and `accept` check and persist under one lock: two concurrent envelopes can never both pass with the
/// same serial.
///
/// **Re-submission of the last envelope.** The coordinator sends commands on a kept-alive connection, and a kept
/// connection can turn out closed when a command is written on it (the agent restarted, or timed it out idle, just
/// then): the coordinator cannot tell whether the agent took the command. It then sends the *byte-identical*
/// envelope once more on a fresh connection (`HTTPSOneShot`). If the agent had taken it, that envelope's serial is
/// the last accepted one, and `admit` answers with the answer recorded for it (`recordAnswer`) instead of running
/// it again or refusing it: the re-submission is idempotent (RFC 9110 §9.2.2: a method or request is idempotent if
/// repeating it has the same effect on the server as sending it once). What makes a re-submission:
/// - the envelope passes every check of `EnvelopeVerifier` except that its serial equals the last accepted serial
///   (so signature, pinned key, node and validity window are checked again: an expired one is refused as expired);
/// - its bytes have the SHA-256 recorded when that serial was accepted (any other envelope with that serial, or an
///   older one, is refused as `replayed_serial`, as before);
/// - the answer to it is on record. Until it is (the command is still being handled, or the agent stopped before
///   answering), the re-submission is refused as `replayed_serial`: nothing ever runs twice. The answer is recorded
///   in memory, and written to the file, before it is sent; a reboot's is kept in memory only (`AgentServer`: the
///   agent goes down once that answer is out, or after a short delay, and a durable write must not hold it up).
/// Someone who captured the envelope and replays it gains nothing: it must come over mutual TLS with an operator
/// certificate, it runs nothing, it changes nothing on disk, and the answer (serial, command kind, operation id,
/// phase at acceptance) is what `GET /v1/status` already tells any reader. Once a newer envelope is accepted, the old
/// one is refused like any replay.
public final class SerialStore: Sendable {
    /// The file holding the serial (`<stateDir>/last-accepted-serial.json`).
    public let path: String
    private let state: Mutex<State>

    /// What the agent answered an accepted envelope: its receipt, or the engine's refusal.
    public struct Answer: Codable, Sendable, Hashable {
        public var receipt: EnvelopeReceipt?
        public var refusal: WireError?
        public init(receipt: EnvelopeReceipt) {
            self.receipt = receipt
        }
        public init(refusal: WireError) {
            self.refusal = refusal
        }
    }

    /// What `admit` decided about an envelope.
    public enum Admission<T: Sendable>: Sendable {
        /// A new envelope: its serial is persisted; carry it out, then `recordAnswer`.
        case accepted(T)
        /// The envelope last accepted, sent again: answer this, run nothing.
        case answeredBefore(Answer)
    }

    private struct State {
        var last: UInt64?
        /// SHA-256 (hex) of the bytes of the envelope with serial `last`, nil when unknown.
        var envelopeSHA256: String?
        var answer: Answer?
    }

    /// The file's form. Only `lastAcceptedSerial` is required (an agent from before re-submissions wrote only it,
    /// and reads only it: the other fields are ignored by its decoder, so a rollback to it keeps working).
    private struct Stored: Codable { var lastAcceptedSerial: UInt64 }
    private struct StoredAnswer: Codable {
        var lastAcceptedSerial: UInt64
        var lastEnvelopeSHA256: String?
        var lastAnswer: Answer?
    }

    /// Opens (or starts) the store in `stateDirectory`, creating the directory (0700) if needed. A file that
    /// exists but cannot be read is an error: starting from "no serial" would re-open the door to replays.
    public init(stateDirectory: String) throws {
        try SecureFiles.createDirectory(stateDirectory, permissions: 0o700)
        self.path = PathName.appending("last-accepted-serial.json", to: stateDirectory)
        if SecureFiles.exists(path) {
            let data = try SecureFiles.read(path)
            let serial: UInt64
            do {
                serial = try CanonicalJSON.decode(Stored.self, from: data).lastAcceptedSerial
            } catch {
                throw WireError(
                    .internalError,
                    "cannot read the last accepted serial from \(path) (\(StrictJSON.describe(error))); refusing to "
                        + "start without it, since that would allow replays. Restore the file, or remove it only if "
                        + "you know no envelope was ever accepted")
            }
            // The recorded answer is read leniently: without it a re-submission is refused, never run, so a
            // record this agent cannot read (one written by a newer agent, say) only costs the coordinator a retry.
            let answered = try? CanonicalJSON.decode(StoredAnswer.self, from: data)
            state = Mutex(State(last: serial, envelopeSHA256: answered?.lastEnvelopeSHA256, answer: answered?.lastAnswer))
        } else {
            state = Mutex(State())
        }
    }

    /// The last accepted serial (nil: none yet).
    public var current: UInt64? { state.withLock { $0.last } }

    /// Runs `check` with the last accepted serial and, if it returns a serial, persists it before returning.
    /// Nothing is written when `check` throws. (The envelope's bytes are not recorded: it cannot be re-submitted.)
    public func accept<T: Sendable>(_ check: (UInt64?) throws(EnvelopeError) -> (T, serial: UInt64)) throws(WireError) -> T {
        switch try admit(envelopeSHA256: nil, check) {
        case .accepted(let value): return value
        case .answeredBefore: throw WireError(.internalError, "unreachable: a re-submission without a digest")
        }
    }

    /// Like `accept` for an envelope whose bytes hash to `envelopeSHA256` (hex SHA-256), which is recorded with
    /// the serial; or, when `check` refuses the envelope only because its serial is the last accepted one and its
    /// bytes are that envelope's, the answer recorded for it (see the type's documentation).
    public func admit<T: Sendable>(
        envelopeSHA256 digest: String?, _ check: (UInt64?) throws(EnvelopeError) -> (T, serial: UInt64)
    ) throws(WireError) -> Admission<T> {
        try state.withLock { (s: inout State) throws(WireError) -> Admission<T> in
            let checked: Result<(T, serial: UInt64), EnvelopeError> = Result { () throws(EnvelopeError) in try check(s.last) }
            let (value, serial): (T, UInt64)
            switch checked {
            case .success(let ok): (value, serial) = (ok.0, ok.serial)
            case .failure(.replayedSerial(let replayed, let last))
            where replayed == last && digest != nil && s.last == last && s.envelopeSHA256 == digest:
                guard let answer = s.answer else {
                    throw WireError(
                        .replayedSerial,
                        "serial \(replayed) is the envelope accepted last, whose answer is not on record (it is still "
                            + "being carried out, or the agent stopped before answering); it is not run again")
                }
                return .answeredBefore(answer)
            case .failure(let refusal): throw refusal.wireError
            }
            do {
                let data = try CanonicalJSON.encode(StoredAnswer(lastAcceptedSerial: serial, lastEnvelopeSHA256: digest))
                try SecureFiles.writeAtomically(data, to: path, permissions: 0o600)
            } catch {
                throw WireError(.internalError, "cannot persist accepted serial \(serial) to \(path): \(error)")
            }
            s = State(last: serial, envelopeSHA256: digest)
            return .accepted(value)
        }
    }

    /// Records `answer` as what the envelope with `serial` (and bytes hashing to `envelopeSHA256`) was answered,
    /// unless a newer envelope was accepted meanwhile: in memory only (no I/O), so that it never delays the answer;
    /// `persistAnswer` writes it to the file.
    public func recordAnswer(_ answer: Answer, serial: UInt64, envelopeSHA256 digest: String) {
        state.withLock { s in
            guard s.last == serial, s.envelopeSHA256 == digest else { return }
            s.answer = answer
        }
    }

    /// Writes the answer `recordAnswer` recorded for `serial` beside it, so that it survives a restart (unless a
    /// newer envelope was accepted meanwhile: under the lock, so an older serial can never overwrite a newer one).
    /// Until it is written, or when writing fails, a restart loses it: a re-submission after the restart is then
    /// refused instead of answered, and nothing runs twice either way.
    public func persistAnswer(serial: UInt64, envelopeSHA256 digest: String) throws(WireError) {
        try state.withLock { (s: inout State) throws(WireError) in
            guard s.last == serial, s.envelopeSHA256 == digest, let answer = s.answer else { return }
            do {
                let data = try CanonicalJSON.encode(
                    StoredAnswer(lastAcceptedSerial: serial, lastEnvelopeSHA256: digest, lastAnswer: answer))
                try SecureFiles.writeAtomically(data, to: path, permissions: 0o600)
            } catch {
                throw WireError(.internalError, "cannot persist the answer to envelope \(serial) to \(path): \(error)")
            }
        }
    }
}
