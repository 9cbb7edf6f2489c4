#if canImport(FoundationEssentials)
import FoundationEssentials
#else
import Foundation
#endif

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Why a file operation on state or key files failed.
public struct SecureFileError: Error, Sendable, Hashable, CustomStringConvertible {
    /// Stable error codes.
    public enum Code: String, Sendable, Hashable {
        /// The file does not exist.
        case notFound = "not_found"
        /// A private key file can be read by group or others.
        case permissionsTooOpen = "permissions_too_open"
        /// The file already exists and overwriting was not allowed.
        case alreadyExists = "already_exists"
        /// Any other system call failure.
        case io = "io"
    }

    /// What went wrong.
    public var code: Code
    /// The file concerned.
    public var path: String
    /// A message that says what went wrong and how to fix it.
    public var message: String

    /// Makes an error.
    public init(_ code: Code, path: String, _ message: String) {
        self.code = code
        self.path = path
        self.message = message
    }

    public var description: String { message }

    static func errno(_ what: String, path: String, _ err: Int32 = Glibc.errno) -> SecureFileError {
        let reason = String(cString: strerror(err))
        if err == ENOENT { return SecureFileError(.notFound, path: path, "\(what) \(path): \(reason)") }
        if err == EEXIST { return SecureFileError(.alreadyExists, path: path, "\(what) \(path): \(reason)") }
        return SecureFileError(.io, path: path, "\(what) \(path): \(reason)")
    }
}

/// Atomic, durable file writes and permission-checked private key reads.
///
/// Writes go to a temporary file in the same directory, are fsynced, renamed over the target and the
/// directory is fsynced, so that a crash leaves either the whole old or the whole new file.
public enum SecureFiles {
    /// Permission bits for private key files.
    public static let privateKeyMode: mode_t = 0o600

    /// Writes `data` to `path` atomically (temp file + fsync + rename + fsync of the directory), with
    /// exactly `permissions` (the umask does not apply). With `overwrite: false`, refuses an existing file.
    public static func writeAtomically(
        _ data: Data, to path: String, permissions: mode_t = 0o644, overwrite: Bool = true
    ) throws(SecureFileError) {
        let url = URL(fileURLWithPath: path)
        let dir = url.deletingLastPathComponent().path
        if !overwrite, access(path, F_OK) == 0 {
            throw SecureFileError(
                .alreadyExists, path: path, "\(path) already exists; refusing to overwrite it (move it away first)")
        }
        let tmp = "\(dir)/.\(url.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, permissions)
        guard fd >= 0 else { throw .errno("cannot create", path: tmp) }
        var ok = false
        defer {
            if !ok { unlink(tmp) }
        }
        do {
            defer { close(fd) }
            guard fchmod(fd, permissions) == 0 else { throw SecureFileError.errno("cannot chmod", path: tmp) }
            let failedErrno: Int32? = data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) -> Int32? in
                var offset = 0
                while offset < raw.count {
                    let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                    if n < 0 {
                        if errno == EINTR { continue }
                        return errno
                    }
                    offset += n
                }
                return nil
            }
            if let failedErrno { throw SecureFileError.errno("cannot write", path: tmp, failedErrno) }
            guard fsync(fd) == 0 else { throw SecureFileError.errno("cannot fsync", path: tmp) }
        }
        if !overwrite {
            // link(2) fails if the target appeared meanwhile: no race between the check above and here.
            guard link(tmp, path) == 0 else { throw .errno("cannot create", path: path) }
            unlink(tmp)
        } else {
            guard rename(tmp, path) == 0 else { throw .errno("cannot rename into place", path: path) }
        }
        ok = true
        try syncDirectory(dir)
    }

    /// Writes a string atomically; see `writeAtomically(_:to:permissions:overwrite:)`.
    public static func writeAtomically(
        _ text: String, to path: String, permissions: mode_t = 0o644, overwrite: Bool = true
    ) throws(SecureFileError) {
        try writeAtomically(Data(text.utf8), to: path, permissions: permissions, overwrite: overwrite)
    }

    /// Writes a private key atomically with mode 0600.
    public static func writePrivateKey(_ pem: String, to path: String, overwrite: Bool = false) throws(SecureFileError) {
        try writeAtomically(Data(pem.utf8), to: path, permissions: privateKeyMode, overwrite: overwrite)
    }

    /// Reads a whole file.
    public static func read(_ path: String) throws(SecureFileError) -> Data {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .errno("cannot open", path: path) }
        defer { close(fd) }
        return try readAll(fd, path: path)
    }

    /// Reads a whole file as UTF-8 text.
    public static func readText(_ path: String) throws(SecureFileError) -> String {
        let data = try read(path)
        guard let text = String(data: data, encoding: .utf8) else {
            throw SecureFileError(.io, path: path, "\(path) is not UTF-8 text")
        }
        return text
    }

    /// Reads a private key file, refusing it if group or others have any permission on it (like ssh does):
    /// a key others can read must be considered leaked.
    public static func readPrivateKey(_ path: String) throws(SecureFileError) -> String {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .errno("cannot open private key", path: path) }
        defer { close(fd) }
        var st = stat()
        guard fstat(fd, &st) == 0 else { throw .errno("cannot stat", path: path) }
        let mode = st.st_mode & 0o777
        if mode & 0o077 != 0 {
            throw SecureFileError(
                .permissionsTooOpen, path: path,
                "private key \(path) has permissions \(String(mode, radix: 8)), readable by group or others; "
                    + "refusing to use it. Run `chmod 600 \(path)` (and consider the key leaked if others could read it)")
        }
        let data = try readAll(fd, path: path)
        guard let text = String(data: data, encoding: .utf8) else {
            throw SecureFileError(.io, path: path, "private key \(path) is not PEM text")
        }
        return text
    }

    /// Creates a directory (and parents) with `permissions` if it does not exist.
    public static func createDirectory(_ path: String, permissions: mode_t = 0o755) throws(SecureFileError) {
        var st = stat()
        if stat(path, &st) == 0 {
            guard st.st_mode & S_IFMT == S_IFDIR else {
                throw SecureFileError(.alreadyExists, path: path, "\(path) exists and is not a directory")
            }
            return
        }
        // mkdir -p: each missing component in turn, with exactly `permissions` (the umask does not apply).
        var prefix = path.hasPrefix("/") ? "" : "."
        for component in path.split(separator: "/") {
            prefix += "/" + component
            if mkdir(prefix, permissions) == 0 {
                guard chmod(prefix, permissions) == 0 else { throw .errno("cannot create directory", path: prefix) }
            } else if errno != EEXIST {
                throw .errno("cannot create directory", path: prefix)
            }
        }
        guard stat(path, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
            throw SecureFileError(.alreadyExists, path: path, "\(path) exists and is not a directory")
        }
    }

    /// Whether a file exists at `path`.
    public static func exists(_ path: String) -> Bool { access(path, F_OK) == 0 }

    /// fsyncs a directory so that a rename inside it is durable.
    public static func syncDirectory(_ dir: String) throws(SecureFileError) {
        let fd = open(dir.isEmpty ? "." : dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw .errno("cannot open directory", path: dir) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw .errno("cannot fsync directory", path: dir) }
    }

    /// Everything `fd` yields until end of file, retrying reads a signal interrupted (EINTR). Foundation's
    /// `FileHandle.readDataToEndOfFile()` traps on EINTR instead (swift-corelibs-foundation FileHandle.swift wraps
    /// `readToEnd()` in `try!`), which a process that runs children can meet on any thread.
    public static func readAll(_ fd: Int32, path: String) throws(SecureFileError) -> Data {
        var out = Data()
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress!, $0.count) }
            if n < 0 {
                if errno == EINTR { continue }
                throw .errno("cannot read", path: path)
            }
            if n == 0 { break }
            out.append(contentsOf: buffer[0..<n])
        }
        return out
    }
}
