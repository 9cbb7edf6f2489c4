import Foundation

/// The Kubernetes remote-command WebSocket subprotocols and their channel framing, as kubectl speaks them
/// (kubernetes staging/src/k8s.io/client-go/tools/remotecommand/websocket.go; the names in
/// staging/src/k8s.io/apimachinery/pkg/util/remotecommand/constants.go).
///
/// Every binary message starts with one byte naming its stream: 0 stdin, 1 stdout, 2 stderr, 3 error (a
/// `metav1.Status` JSON once the command ended), 4 resize; in v5 also 255 = "close", whose one-byte payload names
/// the stream the peer closed. nk3 sends no stdin, so it never writes a channel message.
public enum KubeExecProtocol {
    /// `v5.channel.k8s.io`: v4 plus the close channel (255).
    public static let v5 = "v5.channel.k8s.io"
    /// `v4.channel.k8s.io`: the error channel carries a JSON `Status` with the exit code.
    public static let v4 = "v4.channel.k8s.io"
    /// What nk3 offers, most preferred first, as kubectl does.
    public static let offered = [v5, v4]

    /// Stream numbers (remotecommand/constants.go: StreamStdIn … StreamResize; wsstream channel numbering).
    public static let stdin: UInt8 = 0
    public static let stdout: UInt8 = 1
    public static let stderr: UInt8 = 2
    public static let error: UInt8 = 3
    public static let resize: UInt8 = 4
    /// v5's close signal (client-go remotecommand/websocket.go `remotecommand.StreamClose`).
    public static let close: UInt8 = 255

    /// The `?command=…&stdout=true&stderr=true[&container=…]` query of `pods/{name}/exec`, one `command` per
    /// argument (kubectl's PodExecOptions encoding).
    public static func query(command: [String], container: String?) -> [(String, String)] {
        var q = command.map { ("command", $0) }
        if let container { q.append(("container", container)) }
        q += [("stdout", "true"), ("stderr", "true")]
        return q
    }
}

/// What a command run through `pods/{name}/exec` produced.
public struct KubeExecResult: Sendable, Hashable {
    /// Its standard output.
    public var stdout: Data
    /// Its standard error.
    public var stderr: Data
    /// Its exit code: 0 for a `Success` Status, the `ExitCode` cause of a `NonZeroExitCode` Failure.
    public var exitCode: Int
    /// The subprotocol the server chose (nil when it did not say).
    public var negotiatedProtocol: String?

    /// Makes a result.
    public init(stdout: Data, stderr: Data, exitCode: Int, negotiatedProtocol: String? = nil) {
        self.stdout = stdout
        self.stderr = stderr
        self.exitCode = exitCode
        self.negotiatedProtocol = negotiatedProtocol
    }
}

/// Decodes the channel messages of one exec session, bounded: output past `maxOutputBytes` (stdout and stderr
/// together) or an error Status past 64 KiB is refused instead of buffered.
public struct KubeExecDecoder: Sendable {
    /// Largest stdout + stderr kept.
    public let maxOutputBytes: Int
    /// Standard output so far.
    public private(set) var stdout = Data()
    /// Standard error so far.
    public private(set) var stderr = Data()
    /// The error channel's bytes so far (one Status JSON).
    public private(set) var errorChannel = Data()
    /// Streams the server closed (v5 channel 255).
    public private(set) var closed: Set<UInt8> = []

    /// Makes a decoder.
    public init(maxOutputBytes: Int = 1 << 20) { self.maxOutputBytes = maxOutputBytes }

    /// Takes one binary message. Messages for stdin or resize (never sent by a server), unknown streams and empty
    /// messages are ignored, as wsstream's reader does with channels it does not know (wsstream/conn.go `handle`).
    public mutating func consume(_ message: some Collection<UInt8>) throws {
        guard let stream = message.first else { return }
        let payload = message.dropFirst()
        switch stream {
        case KubeExecProtocol.stdout, KubeExecProtocol.stderr:
            guard stdout.count + stderr.count + payload.count <= maxOutputBytes else {
                throw KubeError(.invalid, "the command's output exceeds \(maxOutputBytes) bytes; nk3 stopped reading it")
            }
            if stream == KubeExecProtocol.stdout { stdout.append(contentsOf: payload) } else { stderr.append(contentsOf: payload) }
        case KubeExecProtocol.error:
            guard errorChannel.count + payload.count <= 64 * 1024 else {
                throw KubeError(.invalid, "the exec error channel exceeds 64 KiB")
            }
            errorChannel.append(contentsOf: payload)
        case KubeExecProtocol.close:
            if let which = payload.first { closed.insert(which) }
        default:
            break
        }
    }

    /// The result once the server closed the connection. The error channel's Status decides the exit code
    /// (client-go remotecommand/v4.go `errorDecoderV4`): `Success` is 0; a `Failure` with reason `NonZeroExitCode`
    /// carries the code as the `ExitCode` cause's message; any other Failure (the command could not be started) and
    /// a session that ended without any Status throw.
    public func result(negotiatedProtocol: String? = nil) throws -> KubeExecResult {
        guard !errorChannel.isEmpty else {
            throw KubeError(.server, "the exec session ended without the command's exit status")
        }
        let status: KubeStatus
        do { status = try JSONDecoder().decode(KubeStatus.self, from: errorChannel) } catch {
            throw KubeError(.decode, "the exec error channel is not a Status: \(String(decoding: errorChannel.prefix(200), as: UTF8.self))")
        }
        if status.status == "Success" {
            return KubeExecResult(stdout: stdout, stderr: stderr, exitCode: 0, negotiatedProtocol: negotiatedProtocol)
        }
        if status.reason == "NonZeroExitCode",
            let code = status.details?.causes?.first(where: { $0.reason == "ExitCode" })?.message.flatMap({ Int($0) })
        {
            return KubeExecResult(stdout: stdout, stderr: stderr, exitCode: code, negotiatedProtocol: negotiatedProtocol)
        }
        throw KubeError(.server, "the command could not be run: \(status.message ?? status.reason ?? "unknown failure")", status: status)
    }
}
