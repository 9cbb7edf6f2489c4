import Crypto
#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif
import NIOCore
import NIOHTTP1
import NK3Common
import NK3Protocol
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The agent binaries uploaded to this node (`PUT /v1/agent-binary/SHA256`), each named by its SHA-256 in the
/// state directory's `bin/` — where `nk3 bootstrap` puts the first one (`/var/lib/nk3-agent/bin`). An upload
/// changes nothing by itself: the node runs a binary only once a signed bundle's `nk3-agent.nix` names it with
/// its digest (`builtins.path` with `sha256` refuses any other file: Nix manual, "Built-in functions"), through
/// the usual apply with its rollback.
public struct AgentBinaryStore: Sendable {
    /// The directory (created 0755 on the first upload).
    public let directory: String
    /// How many uploaded binaries are kept (the newest by modification time): the one the node runs and the one
    /// a restored /etc/nixos names must stay evaluable.
    public static let kept = 3

    public init(directory: String) { self.directory = directory }

    /// Where the binary with `sha256` lives.
    public func path(sha256: String) -> String { "\(directory)/nk3-agent-\(sha256)" }

    /// Whether that binary is here.
    public func has(sha256: String) -> Bool {
        var st = stat()
        return lstat(path(sha256: sha256), &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
    }

    /// Starts an upload of `command`'s binary into a temporary file next to its final place.
    func begin(_ command: StageAgentBinaryCommand) throws(WireError) -> AgentBinaryUpload {
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o755])
        } catch {
            throw WireError(.internalError, "cannot create \(directory): \(error)")
        }
        let temp = "\(directory)/.upload-\(command.sha256.prefix(16))-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else {
            throw WireError(.internalError, "cannot create \(temp): \(String(cString: strerror(errno)))")
        }
        return AgentBinaryUpload(store: self, command: command, temp: temp, fd: fd)
    }

    /// Removes all but the `kept` newest uploaded binaries (never `keep`).
    func prune(keeping keep: String) {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        var found: [(path: String, mtime: Int)] = []
        for name in names where name.hasPrefix("nk3-agent-") {
            let p = "\(directory)/\(name)"
            var st = stat()
            guard lstat(p, &st) == 0, (st.st_mode & S_IFMT) == S_IFREG else { continue }
            found.append((p, Int(st.st_mtim.tv_sec) * 1_000_000_000 + Int(st.st_mtim.tv_nsec)))
        }
        let old = found.sorted { $0.mtime > $1.mtime }.dropFirst(Self.kept)
        for f in old where f.path != keep { unlink(f.path) }
    }
}

/// One upload in progress: bytes go to a temporary file and into SHA-256 as they arrive; at the end the size and
/// digest must be exactly what the signed envelope named, else nothing is kept.
final class AgentBinaryUpload: HTTPBodyConsumer {
    private let store: AgentBinaryStore
    private let command: StageAgentBinaryCommand
    private let temp: String
    private let state: Mutex<(fd: Int32, hasher: SHA256, written: Int)>

    init(store: AgentBinaryStore, command: StageAgentBinaryCommand, temp: String, fd: Int32) {
        self.store = store
        self.command = command
        self.temp = temp
        self.state = Mutex((fd, SHA256(), 0))
    }

    func consume(_ chunk: ByteBuffer) async -> HTTPServerResponse? {
        let failed: Int32? = state.withLock { s in
            guard s.written + chunk.readableBytes <= command.size else { return EFBIG }
            let e: Int32? = chunk.withUnsafeReadableBytes { raw in
                s.hasher.update(bufferPointer: raw)
                var offset = 0
                while offset < raw.count {
                    let n = write(s.fd, raw.baseAddress! + offset, raw.count - offset)
                    if n < 0 {
                        if errno == EINTR { continue }
                        return errno
                    }
                    offset += n
                }
                return nil
            }
            if e == nil { s.written += chunk.readableBytes }
            return e
        }
        guard let failed else { return nil }
        if failed == EFBIG {
            return Self.refusal(WireError(.malformed, "the upload is longer than the \(command.size) bytes its envelope names"))
        }
        return Self.refusal(WireError(.internalError, "cannot write the agent binary: \(String(cString: strerror(failed)))"))
    }

    func finish() async -> HTTPServerResponse {
        let (fd, digest, written) = state.withLock { s in (s.fd, Hex.lowercase(s.hasher.finalize()), s.written) }
        guard written == command.size, digest == command.sha256 else {
            await abandon()
            return Self.refusal(
                WireError(
                    .malformed,
                    "the upload's SHA-256 is \(digest) (\(written) bytes), not the \(command.sha256) (\(command.size) bytes) "
                        + "its envelope names; nothing was kept"))
        }
        let final = store.path(sha256: command.sha256)
        guard fchmod(fd, 0o755) == 0, fsync(fd) == 0 else {
            let e = errno
            await abandon()
            return Self.refusal(WireError(.internalError, "cannot keep the agent binary: \(String(cString: strerror(e)))"))
        }
        close(fd)
        state.withLock { $0.fd = -1 }
        guard rename(temp, final) == 0 else {
            let e = errno
            unlink(temp)
            return Self.refusal(WireError(.internalError, "cannot place \(final): \(String(cString: strerror(e)))"))
        }
        try? SecureFiles.syncDirectory(store.directory)
        store.prune(keeping: final)
        return .json(.ok, AgentBinaryPresence(sha256: command.sha256, present: true, path: final), encoder: CanonicalJSON.encoder())
    }

    func abandon() async {
        let fd = state.withLock { s -> Int32 in
            defer { s.fd = -1 }
            return s.fd
        }
        if fd >= 0 { close(fd) }
        unlink(temp)
    }

    static func refusal(_ error: WireError) -> HTTPServerResponse {
        .json(HTTPResponseStatus(statusCode: error.httpStatus), error, encoder: CanonicalJSON.encoder())
    }
}
