import Synchronization

/// Bounded per-operation log tails, appended from process reader threads.
final class OperationLogs: Sendable {
    private struct Log {
        var lines: [String] = []
        var bytes = 0
        var dropped = 0
    }

    private let logs = Mutex<(order: [String], byID: [String: Log])>(([], [:]))
    let maxOperations: Int
    let maxBytes: Int

    init(maxOperations: Int = 16, maxBytes: Int = 32 * 1024) {
        self.maxOperations = maxOperations
        self.maxBytes = maxBytes
    }

    func append(_ id: String, _ line: String) {
        logs.withLock { l in
            if l.byID[id] == nil {
                l.order.append(id)
                l.byID[id] = Log()
                if l.order.count > maxOperations { l.byID[l.order.removeFirst()] = nil }
            }
            var log = l.byID[id]!
            let clipped = line.count > 4096 ? String(line.prefix(4096)) + "…" : line
            log.lines.append(clipped)
            log.bytes += clipped.utf8.count + 1
            while log.bytes > maxBytes, !log.lines.isEmpty {
                log.bytes -= log.lines.removeFirst().utf8.count + 1
                log.dropped += 1
            }
            l.byID[id] = log
        }
    }

    func tail(_ id: String) -> String? {
        logs.withLock { l in
            guard let log = l.byID[id] else { return nil }
            let head = log.dropped > 0 ? "… [\(log.dropped) earlier lines omitted]\n" : ""
            return head + log.lines.joined(separator: "\n")
        }
    }
}
