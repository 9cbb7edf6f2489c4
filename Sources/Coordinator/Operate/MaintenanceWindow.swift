import Foundation

/// The inventory's `window: {days, start, end, timezone}`: when nodes may start. A node starts only while the
/// window is open; one already in flight finishes. `start`/`end` are local wall-clock times (`HH:MM`) in an
/// IANA time zone (Foundation's `TimeZone(identifier:)`, the tz database); an `end` at or before `start` means
/// the window runs past midnight (`22:00`–`04:00`) and belongs to the day it opens on. `days` are the days it
/// opens on (default every day). Pure: every answer is a function of the instant asked about.
public struct MaintenanceWindow: Sendable, Hashable {
    /// Weekdays the window opens on, 1 = Sunday … 7 = Saturday (Foundation's `Calendar` numbering).
    public var days: Set<Int>
    /// Opening and closing time, in minutes after local midnight.
    public var start: Int
    public var end: Int
    /// The zone the times are in.
    public var timeZone: TimeZone
    /// The zone's name as the operator wrote it (Foundation may report `UTC` as `GMT`).
    public var zoneName: String

    /// Day names as written in the inventory (`mon`, `Monday`, …), case-insensitive.
    public static let dayNames: [String: Int] = [
        "sun": 1, "sunday": 1, "mon": 2, "monday": 2, "tue": 3, "tuesday": 3, "wed": 4, "wednesday": 4,
        "thu": 5, "thursday": 5, "fri": 6, "friday": 6, "sat": 7, "saturday": 7,
    ]

    /// A window; `start != end`.
    public init(days: Set<Int> = Set(1...7), start: Int, end: Int, timeZone: TimeZone, zoneName: String? = nil) {
        self.zoneName = zoneName ?? timeZone.identifier
        self.days = days
        self.start = start
        self.end = end
        self.timeZone = timeZone
    }

    /// Parses `HH:MM` (00:00–23:59) into minutes after midnight.
    public static func minutes(_ text: String) -> Int? {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 2, parts[0].count == 2, parts[1].count == 2, let h = Int(parts[0]), let m = Int(parts[1]),
            (0...23).contains(h), (0...59).contains(m)
        else { return nil }
        return h * 60 + m
    }

    private var calendar: Calendar {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = timeZone
        return c
    }

    private var overnight: Bool { end <= start }

    /// Whether a node may start at `date`.
    public func contains(_ date: Date) -> Bool {
        let c = calendar
        let parts = c.dateComponents([.weekday, .hour, .minute], from: date)
        let minute = parts.hour! * 60 + parts.minute!
        let weekday = parts.weekday!
        if !overnight { return days.contains(weekday) && minute >= start && minute < end }
        let yesterday = weekday == 1 ? 7 : weekday - 1
        return (days.contains(weekday) && minute >= start) || (days.contains(yesterday) && minute < end)
    }

    /// The next time the window opens strictly after `date` (nil only for a window with no days).
    public func nextOpening(after date: Date) -> Date? {
        let c = calendar
        let today = c.startOfDay(for: date)
        for offset in 0...8 {
            guard let day = c.date(byAdding: .day, value: offset, to: today) else { continue }
            let weekday = c.component(.weekday, from: day)
            guard days.contains(weekday) else { continue }
            var parts = c.dateComponents([.year, .month, .day], from: day)
            parts.hour = start / 60
            parts.minute = start % 60
            // A start time skipped by a DST change resolves to the first instant after the gap.
            guard let open = c.date(from: parts), open > date else { continue }
            return open
        }
        return nil
    }

    /// The window as the operator wrote it, e.g. `mon,tue 22:00–04:00 Europe/Berlin`.
    public var description: String {
        let names = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
        let d = days.count == 7 ? "daily" : days.sorted().map { names[$0 - 1] }.joined(separator: ",")
        return "\(d) \(Self.clock(start))–\(Self.clock(end)) \(zoneName)"
    }

    /// `date` as local wall-clock time in the window's zone, e.g. `Mon 22:00 Europe/Berlin`.
    public func local(_ date: Date) -> String {
        let c = calendar
        let p = c.dateComponents([.weekday, .hour, .minute, .year, .month, .day], from: date)
        let names = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
        return String(format: "%@ %04d-%02d-%02d %02d:%02d %@", names[p.weekday! - 1], p.year!, p.month!, p.day!, p.hour!, p.minute!, zoneName)
    }

    static func clock(_ minutes: Int) -> String { String(format: "%02d:%02d", minutes / 60, minutes % 60) }
}
