import Foundation
import Synchronization

/// A client-side token bucket in front of every request, as client-go puts one in front of each REST client:
/// `qps` tokens a second, at most `burst` saved up (defaults 5 and 10: kubernetes/client-go rest/config.go
/// `DefaultQPS`, `DefaultBurst`; `flowcontrol.NewTokenBucketRateLimiter`). A request waits for a token, so a
/// burst of requests is spread out instead of piling onto the API server.
public final class KubeRateLimiter: Sendable {
    /// Tokens per second.
    public let qps: Double
    /// Bucket size.
    public let burst: Int
    private struct Bucket {
        var tokens: Double
        var last: ContinuousClock.Instant?
    }
    private let bucket: Mutex<Bucket>

    /// Makes a limiter with a full bucket. `qps` ≤ 0 disables it.
    public init(qps: Double = 5, burst: Int = 10) {
        self.qps = qps
        self.burst = max(1, burst)
        self.bucket = Mutex(Bucket(tokens: Double(max(1, burst)), last: nil))
    }

    /// Takes a token at `now` and returns how long the caller must wait before using it (zero when one was
    /// saved up). Tokens are taken in order, so waits grow by 1/qps per caller beyond the burst.
    public func reserve(now: ContinuousClock.Instant) -> Duration {
        guard qps > 0 else { return .zero }
        return bucket.withLock { b in
            if let last = b.last, now > last {
                let elapsed = last.duration(to: now)
                let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
                b.tokens = min(Double(burst), b.tokens + seconds * qps)
            }
            if b.last == nil || now > b.last! { b.last = now }
            b.tokens -= 1
            guard b.tokens < 0 else { return .zero }
            return .seconds(-b.tokens / qps)
        }
    }

    /// Waits for a token.
    public func acquire() async throws {
        let wait = reserve(now: .now)
        if wait > .zero { try await Task.sleep(for: wait) }
    }
}
