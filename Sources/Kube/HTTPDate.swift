import Foundation
import Synchronization

/// The HTTP `Date` header's IMF-fixdate (RFC 9110 §5.6.7: `Sun, 06 Nov 1994 08:49:37 GMT`), which kube-apiserver
/// sends on every answer (Go net/http `Server` sets it, net/http/server.go; layout `http.TimeFormat`).
public enum HTTPDate {
    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    private static let days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
    private static var gmt: Calendar {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = TimeZone(identifier: "GMT")!
        return c
    }

    /// The instant an IMF-fixdate names (whole seconds), nil for anything else.
    public static func parse(_ text: String) -> Date? {
        let p = text.split(separator: " ")
        guard p.count == 6, p[0].hasSuffix(","), p[5] == "GMT", let day = Int(p[1]), let year = Int(p[3]),
            let month = months.firstIndex(of: String(p[2]))
        else { return nil }
        let hms = p[4].split(separator: ":").compactMap { Int($0) }
        guard hms.count == 3 else { return nil }
        return gmt.date(
            from: DateComponents(year: year, month: month + 1, day: day, hour: hms[0], minute: hms[1], second: hms[2]))
    }

    /// `date` as an IMF-fixdate (its second, truncated).
    public static func format(_ date: Date) -> String {
        let c = gmt.dateComponents([.year, .month, .day, .hour, .minute, .second, .weekday], from: date)
        func two(_ n: Int?) -> String { String(format: "%02d", n ?? 0) }
        return "\(days[(c.weekday ?? 1) - 1]), \(two(c.day)) \(months[(c.month ?? 1) - 1]) \(c.year ?? 1970) "
            + "\(two(c.hour)):\(two(c.minute)):\(two(c.second)) GMT"
    }
}

/// The API server's clock as seen through the `Date` headers of its answers: the offset to the local clock from the
/// latest one. The header has whole seconds, so when the answer arrives the server's time lies in `[D, D+1)` (plus
/// its time on the wire): the offset taken is the smallest one that fits — 0 when the local time of arrival lies
/// in that second, so clocks that agree to the header's resolution are not shifted by it.
final class ServerClock: Sendable {
    private let offset = Mutex<TimeInterval?>(nil)

    /// Records the `Date` header of an answer received at `receivedAt` (local).
    func observe(dateHeader: String?, receivedAt: Date) {
        guard let dateHeader, let server = HTTPDate.parse(dateHeader) else { return }
        let low = server.timeIntervalSince(receivedAt)  // the server's second began this long after (−: before) arrival
        let o: TimeInterval = low > 0 ? low : (low + 1 < 0 ? low + 1 : 0)
        offset.withLock { $0 = o }
    }

    /// The server's time at the local instant `local`; `local` itself until an answer carried a `Date`.
    func serverTime(at local: Date) -> Date {
        offset.withLock { $0 }.map { local.addingTimeInterval($0) } ?? local
    }
}
