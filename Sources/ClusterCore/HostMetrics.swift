import Foundation

/// One host sample the local controller takes itself (seed 001 `GET /hypervisor/metrics`).
public struct MetricsSample: Sendable, Equatable, Codable {
    /// Unix time in seconds.
    public var time: Double
    /// CPU time used by all domains over the interval, as a percentage of the host's CPUs.
    public var cpuPercent: Double
    /// Memory held by active domains, MiB.
    public var memoryMB: Double
    /// Bytes per second received and sent by all domain interfaces over the interval.
    public var networkInBps: Double
    public var networkOutBps: Double

    public init(time: Double, cpuPercent: Double, memoryMB: Double, networkInBps: Double, networkOutBps: Double) {
        self.time = time
        self.cpuPercent = cpuPercent
        self.memoryMB = memoryMB
        self.networkInBps = networkInBps
        self.networkOutBps = networkOutBps
    }
}

/// Raw cumulative counters read from the hypervisor at one instant.
public struct HostReading: Sendable, Equatable {
    public struct DomainCounters: Sendable, Equatable {
        public var cpuTimeNs: UInt64
        public var rxBytes: UInt64
        public var txBytes: UInt64
        public init(cpuTimeNs: UInt64, rxBytes: UInt64, txBytes: UInt64) {
            self.cpuTimeNs = cpuTimeNs
            self.rxBytes = rxBytes
            self.txBytes = txBytes
        }
    }

    /// Monotonic seconds (never wall clock: the interval must not jump).
    public var monotonicSeconds: Double
    public var domains: [String: DomainCounters]   // by UUID
    public var activeMemoryKiB: UInt64

    public init(monotonicSeconds: Double, domains: [String: DomainCounters], activeMemoryKiB: UInt64) {
        self.monotonicSeconds = monotonicSeconds
        self.domains = domains
        self.activeMemoryKiB = activeMemoryKiB
    }

    /// The sample between two readings. Only domains present in both count, and a counter that went
    /// backwards (a domain restarted) contributes nothing rather than a negative rate.
    public static func sample(from previous: HostReading, to current: HostReading, hostCPUs: Int,
                              wallTime: Double) -> MetricsSample? {
        let interval = current.monotonicSeconds - previous.monotonicSeconds
        guard interval > 0, hostCPUs > 0 else { return nil }
        var cpuNs: Double = 0, rx: Double = 0, tx: Double = 0
        for (uuid, now) in current.domains {
            guard let before = previous.domains[uuid] else { continue }
            if now.cpuTimeNs >= before.cpuTimeNs { cpuNs += Double(now.cpuTimeNs - before.cpuTimeNs) }
            if now.rxBytes >= before.rxBytes { rx += Double(now.rxBytes - before.rxBytes) }
            if now.txBytes >= before.txBytes { tx += Double(now.txBytes - before.txBytes) }
        }
        let cpu = min(100, cpuNs / 1e9 / interval / Double(hostCPUs) * 100)
        return MetricsSample(time: wallTime, cpuPercent: cpu, memoryMB: Double(current.activeMemoryKiB) / 1024,
                             networkInBps: rx / interval, networkOutBps: tx / interval)
    }
}

/// The `q=` durations of seed 001 and how they are bucketed.
public enum MetricsPeriod: String, Sendable, CaseIterable {
    case today, yesterday, thisweek, lastweek, thismonth, lastmonth

    /// The time window and bucket width for this period, in the calendar's time zone. Weeks start on Monday.
    public func window(now: Date, calendar: Calendar) -> (start: Date, end: Date, bucketSeconds: Int) {
        var cal = calendar
        cal.firstWeekday = 2
        func interval(_ unit: Calendar.Component, _ date: Date) -> DateInterval {
            cal.dateInterval(of: unit, for: date) ?? DateInterval(start: date, duration: 86400)
        }
        switch self {
        case .today:
            return (interval(.day, now).start, interval(.day, now).end, 300)
        case .yesterday:
            let today = interval(.day, now).start
            return (interval(.day, today.addingTimeInterval(-1)).start, today, 300)
        case .thisweek:
            let week = interval(.weekOfYear, now); return (week.start, week.end, 3600)
        case .lastweek:
            let week = interval(.weekOfYear, interval(.weekOfYear, now).start.addingTimeInterval(-1)); return (week.start, week.end, 3600)
        case .thismonth:
            let month = interval(.month, now); return (month.start, month.end, 86400)
        case .lastmonth:
            let month = interval(.month, interval(.month, now).start.addingTimeInterval(-1)); return (month.start, month.end, 86400)
        }
    }
}

/// Seed 001's metrics document: per series, bucket label → average of the samples in that bucket.
public struct MetricsReport: Sendable, Equatable {
    public var duration: String
    public var cpu: [String: Double]
    public var memory: [String: Double]
    public var networkIn: [String: Double]
    public var networkOut: [String: Double]

    /// Averages the samples inside the period's window into buckets labelled `yyyy-MM-dd HH:mm`.
    /// Buckets without samples are left out: nothing is invented.
    public static func build(samples: [MetricsSample], period: MetricsPeriod, now: Date, calendar: Calendar) -> MetricsReport {
        let (start, end, width) = period.window(now: now, calendar: calendar)
        let lo = start.timeIntervalSince1970, hi = end.timeIntervalSince1970
        var sums: [Double: (count: Double, cpu: Double, mem: Double, rx: Double, tx: Double)] = [:]
        for sample in samples where sample.time >= lo && sample.time < hi {
            let bucket = lo + (((sample.time - lo) / Double(width)).rounded(.down) * Double(width))
            var acc = sums[bucket] ?? (0, 0, 0, 0, 0)
            acc.count += 1; acc.cpu += sample.cpuPercent; acc.mem += sample.memoryMB; acc.rx += sample.networkInBps; acc.tx += sample.networkOutBps
            sums[bucket] = acc
        }
        var report = MetricsReport(duration: period.rawValue, cpu: [:], memory: [:], networkIn: [:], networkOut: [:])
        for (bucket, acc) in sums {
            let label = Self.label(Date(timeIntervalSince1970: bucket), calendar: calendar)
            report.cpu[label] = (acc.cpu / acc.count * 100).rounded() / 100
            report.memory[label] = (acc.mem / acc.count).rounded()
            report.networkIn[label] = (acc.rx / acc.count).rounded()
            report.networkOut[label] = (acc.tx / acc.count).rounded()
        }
        return report
    }

    public static func label(_ date: Date, calendar: Calendar) -> String {
        let components = calendar.dateComponents([.year, .month, .day, .hour, .minute], from: date)
        func two(_ field: Int?) -> String { let value = field ?? 0; return value < 10 ? "0\(value)" : "\(value)" }
        return "\(components.year ?? 0)-\(two(components.month))-\(two(components.day)) \(two(components.hour)):\(two(components.minute))"
    }
}
