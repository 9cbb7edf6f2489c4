import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import NIOWebSocket
import NK3Common
import NK3Kube
import Synchronization

// The `pods/{name}/exec` subresource of the fake Kubernetes API — a SIMULATION, served over a real WebSocket
// upgrade (swift-nio's NIOWebSocketServerUpgrader on the fake's `HTTPSServer`, `HTTPUpgradeHook`) and answering as
// kube-apiserver does, in this order:
// 1. 401 without credentials (as every request);
// 2. 403 Forbidden when the client may not `create` `pods/exec` (`FakeKubeState.setExecForbidden`): an RBAC
//    refusal (apiserver pkg/endpoints/filters/authorization.go, message from
//    pkg/endpoints/handlers/responsewriters/errors.go `ForbiddenStatusError`);
// 3. 404 for a missing pod; 400 for a pod without a node ("pod X does not have a host assigned") or an unknown /
//    missing container name (kubernetes pkg/registry/core/pod/strategy.go `streamLocation`, `validateContainer`) —
//    all before any upgrade;
// 4. 400 "Upgrade request required" for a plain GET (apimachinery pkg/util/proxy/upgradeaware.go, handler made
//    with upgradeRequired);
// 5. 403 with an empty body for a WebSocket request none of whose subprotocols is served: wsstream's
//    `handshake` (apimachinery pkg/util/httpstream/wsstream/conn.go) refuses it and golang.org/x/net/websocket's
//    server answers a refused handshake with a bare `HTTP/1.1 403 Forbidden` (server.go `newServerConn`). A v5
//    request goes to the apiserver's StreamTranslator (apiserver pkg/util/proxy/streamtranslator.go), others to the
//    kubelet; both negotiate with that same handshake. The fake serves v5.channel.k8s.io and v4.channel.k8s.io
//    only: the kubelet also serves the pre-v4 `channel.k8s.io`/`base64.channel.k8s.io` (and no subprotocol), which
//    nk3 never asks for; the fake refuses those with the same 403 (stricter, never more lenient);
// 6. after the 101: a pod that is not Running has no running container on its kubelet; the StreamTranslator's
//    SPDY dial to the kubelet fails (kubelet `findContainer` → `container not found ("name")`) and it reports
//    an InternalError Status on the error channel (streamtranslator.go `apierrors.NewInternalError`);
// 7. otherwise the command "runs": stdout on channel 1, stderr on 2, then the exit Status on channel 3 (Success, or
//    Failure/NonZeroExitCode with an ExitCode cause: streamtranslator.go `codeExitToStatusError`), then a close.
//
// Simulated commands: `ceph status -f json` (or `--format json`) in a pod labelled `app=rook-ceph-tools` prints
// Ceph's simulated view (`FakeKubeState.cephStatusNow`); anything else exits 127 with a "SIMULATION: command not
// found" message.

/// What an exec request gets.
enum FakeExecOutcome: Sendable {
    /// Refused before any upgrade, with this HTTP answer.
    case refuse(HTTPServerResponse)
    /// Upgraded with `subprotocol`; then these binary messages (channel byte first), then a close.
    case accept(subprotocol: String, messages: [[UInt8]])
}

extension FakeKubeRouter {
    /// The subprotocols the fake serves, in its order of preference.
    static let execProtocols = [KubeExecProtocol.v5, KubeExecProtocol.v4]

    /// Decides an exec request (see the list at the top of this file). `pod` is the `{name}` of the path.
    func execOutcome(_ request: HTTPServerRequest, namespace: String, pod name: String) -> FakeExecOutcome {
        guard isAuthenticated(request) else { return .refuse(Self.status(401, reason: "Unauthorized", message: "Unauthorized")) }
        if state.store.withLock({ $0.execForbidden }) {
            let user = Self.userName(request)
            return .refuse(
                Self.status(
                    403, reason: "Forbidden",
                    message: "pods \"\(name)\" is forbidden: User \"\(user)\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"\(namespace)\"",
                    details: KubeStatusDetails(name: name, kind: "pods")))
        }
        guard let pod = state.pod(namespace: namespace, name: name) else {
            return .refuse(notFound(.pods, name))
        }
        let containers = (pod.spec?.containers ?? []).compactMap { c -> String? in
            if case .string(let n)? = c["name"] { return n }
            return nil
        }
        let container: String
        if let asked = request.query["container"], !asked.isEmpty {
            guard containers.contains(asked) else {
                return .refuse(Self.status(400, reason: "BadRequest", message: "container \(asked) is not valid for pod \(name)"))
            }
            container = asked
        } else if containers.count == 1 {
            container = containers[0]
        } else {
            return .refuse(
                Self.status(
                    400, reason: "BadRequest",
                    message: "a container name must be specified for pod \(name), choose one of: [\(containers.joined(separator: " "))]"))
        }
        guard let node = pod.spec?.nodeName, !node.isEmpty else {
            return .refuse(Self.status(400, reason: "BadRequest", message: "pod \(name) does not have a host assigned"))
        }
        guard Self.isWebSocketRequest(request.headers) else {
            return .refuse(Self.status(400, reason: "BadRequest", message: "Upgrade request required"))
        }
        let offered = request.headers[canonicalForm: "Sec-WebSocket-Protocol"].map { String($0).trimmingCharacters(in: .whitespaces) }
        guard let chosen = offered.first(where: { Self.execProtocols.contains($0) }) else {
            // x/net/websocket: a bare 403, no body.
            return .refuse(HTTPServerResponse(status: .forbidden))
        }
        let commands = Self.repeatedQuery(request.uri, "command")
        var messages: [[UInt8]] = []
        let exit: KubeStatus
        if pod.status?.phase != "Running" {
            exit = KubeStatus(
                status: "Failure",
                message: "Internal error occurred: unable to upgrade connection: container not found (\"\(container)\")",
                reason: "InternalError",
                details: KubeStatusDetails(causes: [KubeStatusCause(message: "unable to upgrade connection: container not found (\"\(container)\")")]),
                code: 500)
        } else {
            let (code, out, err) = run(commands, in: pod)
            if !out.isEmpty { messages.append([KubeExecProtocol.stdout] + out) }
            if !err.isEmpty { messages.append([KubeExecProtocol.stderr] + err) }
            exit =
                code == 0
                ? KubeStatus(status: "Success", reason: nil, code: nil)
                : KubeStatus(
                    status: "Failure", message: "command terminated with non-zero exit code: exit status \(code)",
                    reason: "NonZeroExitCode",
                    details: KubeStatusDetails(causes: [KubeStatusCause(reason: "ExitCode", message: "\(code)")]))
        }
        var status = exit
        status.kind = nil
        status.apiVersion = nil
        messages.append([KubeExecProtocol.error] + Array((try? JSONEncoder().encode(status)) ?? Data()))
        return .accept(subprotocol: chosen, messages: messages)
    }

    /// Runs a simulated command: (exit code, stdout, stderr).
    private func run(_ command: [String], in pod: Pod) -> (Int, [UInt8], [UInt8]) {
        let isToolbox = pod.metadata.labels?["app"] == "rook-ceph-tools"
        let cephStatusJSON = command == ["ceph", "status", "-f", "json"] || command == ["ceph", "status", "--format", "json"]
        guard isToolbox, cephStatusJSON else {
            return (127, [], Array("SIMULATION: command not found: \(command.joined(separator: " "))\n".utf8))
        }
        guard let report = state.cephStatusNow(namespace: pod.namespace) else {
            // `ceph` cannot reach the monitors: it times out and exits non-zero (ceph's CLI, src/ceph.in).
            return (1, [], Array("SIMULATION: [errno 110] RADOS timed out (error connecting to the cluster)\n".utf8))
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (0, Array((try? encoder.encode(report)) ?? Data()) + [0x0a], [])
    }

    /// Whether the client is known (a verified client certificate or a known bearer token).
    func isAuthenticated(_ request: HTTPServerRequest) -> Bool {
        guard requireAuthentication else { return true }
        if request.clientCertificate != nil { return true }
        guard let auth = request.headers.first(name: "Authorization"), auth.hasPrefix("Bearer ") else { return false }
        let token = String(auth.dropFirst("Bearer ".count))
        return state.store.withLock { $0.tokens.contains(token) }
    }

    /// The user the API would name: the client certificate's CN, or a token's service account stand-in.
    static func userName(_ request: HTTPServerRequest) -> String {
        if let subject = request.clientCertificate?.subject.description,
            let cn = subject.split(separator: ",").first(where: { $0.hasPrefix("CN=") })
        {
            return String(cn.dropFirst(3))
        }
        return "system:serviceaccount:default:nk3"
    }

    /// apimachinery wsstream `IsWebSocketRequest`: `Upgrade: websocket` and a `Connection` header naming upgrade.
    static func isWebSocketRequest(_ headers: HTTPHeaders) -> Bool {
        guard headers.first(name: "Upgrade")?.lowercased() == "websocket" else { return false }
        return headers[canonicalForm: "Connection"].contains { $0.lowercased() == "upgrade" }
    }

    /// Every value of a repeated query parameter, in order (`command=ceph&command=status`).
    static func repeatedQuery(_ uri: String, _ name: String) -> [String] {
        guard let q = uri.firstIndex(of: "?") else { return [] }
        return uri[uri.index(after: q)...].split(separator: "&").compactMap { pair in
            let kv = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            guard kv.count == 2, kv[0] == name else { return nil }
            return String(kv[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding
        }
    }

    // MARK: - the WebSocket upgrade

    /// The fake's `HTTPUpgradeHook`: a WebSocket upgrade for `GET …/pods/{name}/exec` that `execOutcome` accepts.
    /// Everything it declines goes on as a plain request and is answered by `handle` (which gives the refusal).
    static func upgradeHook(_ router: FakeKubeRouter) -> HTTPUpgradeHook {
        HTTPUpgradeHook(
            upgraders: { channel, anchor in
                let pending = NIOLoopBoundBox<[[UInt8]]?>(nil, eventLoop: channel.eventLoop)
                let anchorBox = NIOLoopBound(anchor, eventLoop: channel.eventLoop)
                let upgrader = NIOWebSocketServerUpgrader(
                    maxFrameSize: 1 << 16, automaticErrorHandling: false,
                    shouldUpgrade: { channel, head in
                        guard head.method == .GET, let route = Route(path: HTTPServerRequest.split(uri: head.uri).path),
                            route.resource == .pods, route.subresource == "exec", let ns = route.namespace, let name = route.name
                        else { return channel.eventLoop.makeSucceededFuture(nil) }
                        return channel.nioSSL_peerCertificate().map { nio in
                            let cert = nio.flatMap { try? TLSConfigs.certificate(from: $0) }
                            let request = HTTPServerRequest(method: head.method, uri: head.uri, headers: head.headers, clientCertificate: cert)
                            guard case .accept(let proto, let messages) = router.execOutcome(request, namespace: ns, pod: name) else {
                                return nil
                            }
                            pending.value = messages
                            var headers = HTTPHeaders()
                            headers.add(name: "Sec-WebSocket-Protocol", value: proto)
                            return headers
                        }
                    },
                    upgradePipelineHandler: { channel, _ in
                        channel.eventLoop.makeCompletedFuture {
                            let messages = pending.value ?? []
                            let sync = channel.pipeline.syncOperations
                            // Ahead of the HTTP server's async channel handler (see `HTTPUpgradeHook`).
                            let encoder = WebSocketFrameEncoder()
                            let decoder = ByteToMessageHandler(WebSocketFrameDecoder(maxFrameSize: 1 << 16))
                            try sync.addHandler(encoder, position: .after(anchorBox.value))
                            try sync.addHandler(decoder, position: .after(encoder))
                            // Last: it writes its messages as soon as it is in place.
                            try sync.addHandler(FakeExecSessionHandler(messages: messages), position: .after(decoder))
                        }
                    })
                return [upgrader]
            },
            isRefusal: { error in
                (error as? NIOWebSocketUpgradeError) == .unsupportedWebSocketTarget
            })
    }
}

/// Writes an accepted session's messages as binary frames, then a normal close; answers pings; ends the
/// connection when the client's close arrives (RFC 6455 5.5.1).
private final class FakeExecSessionHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = WebSocketFrame
    typealias OutboundOut = WebSocketFrame
    private let messages: [[UInt8]]

    init(messages: [[UInt8]]) { self.messages = messages }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { send(context) }
    }

    private func send(_ context: ChannelHandlerContext) {
        for m in messages {
            let frame = WebSocketFrame(fin: true, opcode: .binary, data: context.channel.allocator.buffer(bytes: m))
            context.write(Self.wrapOutboundOut(frame), promise: nil)
        }
        var code = context.channel.allocator.buffer(capacity: 2)
        code.write(webSocketErrorCode: .normalClosure)
        context.writeAndFlush(Self.wrapOutboundOut(WebSocketFrame(fin: true, opcode: .connectionClose, data: code)), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let frame = Self.unwrapInboundIn(data)
        switch frame.opcode {
        case .connectionClose:
            context.close(promise: nil)
        case .ping:
            let pong = WebSocketFrame(fin: true, opcode: .pong, data: frame.unmaskedData)
            context.writeAndFlush(Self.wrapOutboundOut(pong), promise: nil)
        default:
            break  // stdin is not offered
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}
