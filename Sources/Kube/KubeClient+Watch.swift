import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1

extension KubeClient {
    // MARK: - watch (docs/UPSTREAM.md#watch)

    /// Watches a collection (e.g. `/api/v1/nodes`): newline-delimited JSON events until the server ends
    /// the stream (`timeoutSeconds`) or the task is cancelled. Pass the list's resourceVersion to get only
    /// later changes; nil replays existing objects as ADDED first.
    public func watch<T: Codable & Sendable>(
        _ path: String, as type: T.Type = T.self, resourceVersion: String? = nil, fieldSelector: String? = nil,
        timeoutSeconds: Int = 300
    ) -> AsyncThrowingStream<WatchEvent<T>, Error> {
        var query: [(String, String)] = [("watch", "true"), ("timeoutSeconds", "\(timeoutSeconds)")]
        if let resourceVersion { query.append(("resourceVersion", resourceVersion)) }
        if let fieldSelector { query.append(("fieldSelector", fieldSelector)) }
        let endpoint = endpoints.current
        let url = endpoint.base + path + Self.queryString(query)
        let http = endpoint.http
        let token = config.token
        let maxLine = options.maxBodyBytes
        let limiter = rateLimiter
        return AsyncThrowingStream { continuation in
            let task = Task {
                do {
                    try await limiter.acquire()
                    var request = HTTPClientRequest(url: url)
                    request.headers.add(name: "Accept", value: "application/json")
                    request.headers.add(name: "User-Agent", value: Self.userAgent)
                    if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
                    let response = try await http.execute(request, timeout: .seconds(Int64(timeoutSeconds) + 30))
                    guard response.status.code == 200 else {
                        let body = try await response.body.collect(upTo: 1 << 20)
                        throw Self.error(status: Int(response.status.code), headers: response.headers, body: body, path: path)
                    }
                    var pending = ByteBuffer()
                    for try await var chunk in response.body {
                        pending.writeBuffer(&chunk)
                        // docs/UPSTREAM.md#watch: split on newlines, not on HTTP chunks.
                        while let nl = pending.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) {
                            let length = nl - pending.readerIndex
                            let line = pending.readSlice(length: length)!
                            pending.moveReaderIndex(forwardBy: 1)
                            if line.readableBytes == 0 { continue }
                            continuation.yield(try Self.decodeEvent(T.self, line))
                        }
                        guard pending.readableBytes <= maxLine else {
                            throw KubeError(.decode, "watch event on \(path) exceeds \(maxLine) bytes")
                        }
                        pending.discardReadBytes()
                    }
                    continuation.finish()
                } catch {
                    continuation.finish(throwing: Self.wrapTransport(error, path: path))
                }
            }
            continuation.onTermination = { _ in task.cancel() }
        }
    }

    private struct EventHead: Decodable { var type: String }
    private struct EventBody<O: Decodable>: Decodable { var object: O }
    private struct EventRV: Decodable { var metadata: ListMeta? }

    static func decodeEvent<T: Codable & Sendable>(_ type: T.Type, _ line: ByteBuffer) throws -> WatchEvent<T> {
        let data = Data(line.readableBytesView)
        let decoder = JSONDecoder()
        do {
            let head = try decoder.decode(EventHead.self, from: data)
            switch head.type {
            case "ADDED": return .added(try decoder.decode(EventBody<T>.self, from: data).object)
            case "MODIFIED": return .modified(try decoder.decode(EventBody<T>.self, from: data).object)
            case "DELETED": return .deleted(try decoder.decode(EventBody<T>.self, from: data).object)
            case "BOOKMARK": return .bookmark(resourceVersion: try decoder.decode(EventBody<EventRV>.self, from: data).object.metadata?.resourceVersion)
            case "ERROR": return .error(try decoder.decode(EventBody<KubeStatus>.self, from: data).object)
            default: throw KubeError(.decode, "unknown watch event type \(head.type)")
            }
        } catch let e as KubeError {
            throw e
        } catch {
            throw KubeError(.decode, "cannot decode a watch event: \(error)")
        }
    }
}
