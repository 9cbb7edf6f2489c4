import Foundation

/// Names the API accepts.
public enum KubeNames {
    /// `text` made into a DNS-1123 subdomain, the rule for most object names, Leases included: at most 253
    /// characters of lowercase `a-z`, `0-9`, `-` and `.`, starting and ending with a letter or digit
    /// (kubernetes/apimachinery pkg/util/validation/validation.go `IsDNS1123Subdomain`). Anything else becomes `-`,
    /// runs of separators collapse, and a name left empty becomes `x`.
    public static func dnsSubdomain(_ text: String) -> String {
        var out = ""
        for ch in text.lowercased().unicodeScalars {
            let ok = ("a"..."z").contains(ch) || ("0"..."9").contains(ch)
            if ok {
                out.unicodeScalars.append(ch)
            } else if !out.isEmpty, out.last != "-", out.last != "." {
                out.append(ch == "." ? "." : "-")
            }
        }
        while let last = out.last, last == "-" || last == "." { out.removeLast() }
        if out.count > 253 {
            out = String(out.prefix(253))
            while let last = out.last, last == "-" || last == "." { out.removeLast() }
        }
        return out.isEmpty ? "x" : out
    }

    /// Whether `name` is a valid DNS-1123 subdomain.
    public static func isDNSSubdomain(_ name: String) -> Bool {
        !name.isEmpty && dnsSubdomain(name) == name
    }
}

/// When another holder's Lease may be taken over, judged as client-go's leader election does: on the local time the
/// record was last SEEN TO CHANGE plus its `leaseDurationSeconds`, never on the `renewTime` the holder wrote with its
/// own clock (kubernetes/client-go tools/leaderelection/leaderelection.go `tryAcquireOrRenew`: `observedTime`).
/// Feed it every read of the Lease; it is a value, the caller keeps it across reads.
public struct LeaseObservation<Instant: InstantProtocol>: Sendable where Instant.Duration == Duration {
    /// The record last seen (holder, renewTime, transitions…).
    public private(set) var record: LeaseSpec?
    /// The local instant `record` was first seen as it is.
    public private(set) var observedAt: Instant?

    /// Nothing observed yet.
    public init() {}

    /// Records a read of the Lease at local time `now`; the observation time moves only when the record changed.
    public mutating func observe(_ spec: LeaseSpec, at now: Instant) {
        if spec != record || observedAt == nil {
            record = spec
            observedAt = now
        }
    }

    /// Whether the holder's claim has run out at `now`: no holder, or the record unchanged for
    /// `leaseDurationSeconds` of local time.
    public func expired(at now: Instant) -> Bool {
        guard let record, let holder = record.holderIdentity, !holder.isEmpty else { return true }
        guard let observedAt else { return false }
        return observedAt.advanced(by: .seconds(record.leaseDurationSeconds ?? 0)) <= now
    }

    /// When the claim runs out if the record does not change again.
    public var expiresAt: Instant? {
        guard let record, let observedAt else { return nil }
        return observedAt.advanced(by: .seconds(record.leaseDurationSeconds ?? 0))
    }
}
