import NIOCore
import NIOHTTP1

/// What the server does with a request's body, decided from its head and verified client certificate before the
/// body is read (`HTTPSServer.start(upload:)`).
public enum HTTPUploadDecision: Sendable {
    /// Read the whole body within the server's limits and hand the request to the handler, as usual.
    case buffer
    /// Answer this at once, read nothing, and close the connection.
    case refuse(HTTPServerResponse)
    /// Hand the body to `consumer` chunk by chunk, never buffering it: for bodies larger than the server's body
    /// limit. The request needs a `Content-Length` of at most `maxBytes`.
    case stream(maxBytes: Int, consumer: any HTTPBodyConsumer)
}

/// Takes a streamed request body (see `HTTPUploadDecision.stream`).
public protocol HTTPBodyConsumer: Sendable {
    /// The next part of the body; an answer ends the upload with it (the connection is closed).
    func consume(_ chunk: ByteBuffer) async -> HTTPServerResponse?
    /// The whole body arrived (exactly `Content-Length` bytes): the answer.
    func finish() async -> HTTPServerResponse
    /// The upload ended early (the client went away, too many bytes, a refusal): undo what it left.
    func abandon() async
}

extension HTTPSServer {
    /// Streams one request's body into `consumer` and answers; false when the connection must end.
    static func streamBody(
        head: HTTPRequestHead, keepAlive: Bool, maxBytes: Int, consumer: any HTTPBodyConsumer,
        outbound: NIOAsyncChannelOutboundWriter<HTTPServerResponsePart>, channel: Channel,
        iterator: inout NIOAsyncChannelInboundStream<HTTPServerRequestPart>.AsyncIterator
    ) async throws -> Bool {
        guard let length = head.headers.first(name: "content-length").flatMap(Int.init), length >= 0 else {
            await consumer.abandon()
            let response = HTTPServerResponse.json(
                .lengthRequired, ["code": "malformed", "message": "an upload needs a Content-Length header"])
            try await refuseAndClose(response, head: head, discardUpTo: 0, outbound: outbound, channel: channel, iterator: &iterator)
            return false
        }
        guard length <= maxBytes else {
            await consumer.abandon()
            try await refuseTooLarge(head: head, limit: maxBytes, outbound: outbound, channel: channel, iterator: &iterator)
            return false
        }
        if head.headers.first(name: "expect")?.lowercased() == "100-continue" {
            try await outbound.write(.head(HTTPResponseHead(version: head.version, status: .continue)))
        }
        var received = 0
        var complete = false
        do {
            reading: while let part = try await iterator.next() {
                switch part {
                case .body(let chunk):
                    received += chunk.readableBytes
                    if received > length {  // NIO's decoder ends the body at Content-Length; never trusted blindly
                        await consumer.abandon()
                        return false
                    }
                    if let refusal = await consumer.consume(chunk) {
                        await consumer.abandon()
                        try await refuseAndClose(refusal, head: head, discardUpTo: 0, outbound: outbound, channel: channel, iterator: &iterator)
                        return false
                    }
                case .end:
                    complete = true
                    break reading
                case .head:
                    await consumer.abandon()
                    return false
                }
            }
        } catch {
            await consumer.abandon()
            throw error
        }
        guard complete, received == length else {  // the client went away mid-upload
            await consumer.abandon()
            return false
        }
        let response = await consumer.finish()
        try await write(response, for: head, keepAlive: keepAlive, outbound: outbound, channel: channel)
        if !keepAlive {
            try await closeOutputThenWaitForClient(channel: channel, iterator: &iterator) {}
            return false
        }
        return true
    }
}
