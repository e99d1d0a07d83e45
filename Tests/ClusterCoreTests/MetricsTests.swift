import ClusterCore
import Foundation
import Testing

@Suite struct HostReadingTests {
    typealias C = HostReading.DomainCounters

    @Test func ratesFromTwoReadings() throws {
        let a = HostReading(monotonicSeconds: 10, domains: ["u1": C(cpuTimeNs: 0, rxBytes: 1000, txBytes: 0)], activeMemoryKiB: 1024)
        let b = HostReading(monotonicSeconds: 20, domains: ["u1": C(cpuTimeNs: 20_000_000_000, rxBytes: 11000, txBytes: 500)],
                            activeMemoryKiB: 2048)
        let s = try #require(HostReading.sample(from: a, to: b, hostCPUs: 4, wallTime: 99))
        #expect(s.cpuPercent == 50)           // 2 CPU-seconds per second on 4 CPUs
        #expect(s.networkInBps == 1000)
        #expect(s.networkOutBps == 50)
        #expect(s.memoryMB == 2)
        #expect(s.time == 99)
    }

    @Test func restartedOrNewDomainsContributeNothingNegative() throws {
        let a = HostReading(monotonicSeconds: 0, domains: ["u1": C(cpuTimeNs: 5_000_000_000, rxBytes: 9, txBytes: 9)], activeMemoryKiB: 0)
        let b = HostReading(monotonicSeconds: 1, domains: ["u1": C(cpuTimeNs: 1, rxBytes: 1, txBytes: 1),
                                                           "u2": C(cpuTimeNs: 9_000_000_000, rxBytes: 9, txBytes: 9)], activeMemoryKiB: 0)
        let s = try #require(HostReading.sample(from: a, to: b, hostCPUs: 1, wallTime: 0))
        #expect(s.cpuPercent == 0)
        #expect(s.networkInBps == 0)
    }

    @Test func noSampleWithoutElapsedTime() {
        let a = HostReading(monotonicSeconds: 5, domains: [:], activeMemoryKiB: 0)
        #expect(HostReading.sample(from: a, to: a, hostCPUs: 1, wallTime: 0) == nil)
    }
}

@Suite struct MetricsReportTests {
    var calendar: Calendar {
        var c = Calendar(identifier: .gregorian)
        c.timeZone = TimeZone(identifier: "UTC")!
        return c
    }

    func date(_ s: String) -> Date {
        let f = ISO8601DateFormatter()
        return f.date(from: s)!
    }

    func sample(_ iso: String, cpu: Double) -> MetricsSample {
        MetricsSample(time: date(iso).timeIntervalSince1970, cpuPercent: cpu, memoryMB: 100, networkInBps: 0, networkOutBps: 0)
    }

    @Test func todayAveragesFiveMinuteBuckets() {
        let samples = [sample("2026-11-23T10:01:00Z", cpu: 10), sample("2026-11-23T10:04:00Z", cpu: 20),
                       sample("2026-11-23T10:05:00Z", cpu: 40), sample("2026-11-22T23:59:00Z", cpu: 99)]
        let r = MetricsReport.build(samples: samples, period: .today, now: date("2026-11-23T12:00:00Z"), calendar: calendar)
        #expect(r.cpu == ["2026-11-23 10:00": 15, "2026-11-23 10:05": 40])
        #expect(r.duration == "today")
    }

    @Test func yesterdayIsTheDayBefore() {
        let samples = [sample("2026-11-22T23:59:00Z", cpu: 99), sample("2026-11-23T00:00:00Z", cpu: 1)]
        let r = MetricsReport.build(samples: samples, period: .yesterday, now: date("2026-11-23T12:00:00Z"), calendar: calendar)
        #expect(r.cpu == ["2026-11-22 23:55": 99])
    }

    @Test func weeksStartOnMondayWithHourlyBuckets() {
        // 2026-11-23 is a Monday.
        let samples = [sample("2026-11-22T10:30:00Z", cpu: 5), sample("2026-11-23T10:30:00Z", cpu: 7)]
        let now = date("2026-11-25T12:00:00Z")
        #expect(MetricsReport.build(samples: samples, period: .thisweek, now: now, calendar: calendar).cpu == ["2026-11-23 10:00": 7])
        #expect(MetricsReport.build(samples: samples, period: .lastweek, now: now, calendar: calendar).cpu == ["2026-11-22 10:00": 5])
    }

    @Test func monthsUseDailyBuckets() {
        let samples = [sample("2026-10-31T10:30:00Z", cpu: 3), sample("2026-11-02T10:30:00Z", cpu: 4), sample("2026-11-02T20:30:00Z", cpu: 6)]
        let now = date("2026-11-25T12:00:00Z")
        #expect(MetricsReport.build(samples: samples, period: .thismonth, now: now, calendar: calendar).cpu == ["2026-11-02 00:00": 5])
        #expect(MetricsReport.build(samples: samples, period: .lastmonth, now: now, calendar: calendar).cpu == ["2026-10-31 00:00": 3])
    }

    @Test func emptyWhenNoSamples() {
        let r = MetricsReport.build(samples: [], period: .today, now: Date(), calendar: calendar)
        #expect(r.cpu.isEmpty && r.memory.isEmpty && r.networkIn.isEmpty && r.networkOut.isEmpty)
    }
}
