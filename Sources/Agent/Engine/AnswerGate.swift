import Synchronization

/// Opens once: when the answer to a reboot command has been written, or when its time limit passes.
final class AnswerGate: Sendable {
    private let state = Mutex<(open: Bool, waiter: CheckedContinuation<Void, Never>?)>((false, nil))

    func open() {
        let waiter = state.withLock { s -> CheckedContinuation<Void, Never>? in
            s.open = true
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume()
    }

    /// Returns when the gate opens, or after `limit`.
    func wait(atMost limit: Duration) async {
        let timer = Task {
            try? await Task.sleep(for: limit)
            self.open()
        }
        await withCheckedContinuation { (c: CheckedContinuation<Void, Never>) in
            let already = state.withLock { s -> Bool in
                if s.open { return true }
                s.waiter = c
                return false
            }
            if already { c.resume() }
        }
        timer.cancel()
    }
}
