import ClusterCore
@testable import ClusterNode
import Testing

@Suite struct HostMetricsSeriesTests {
    static func reading(at seconds: Double, cpuTimeNs: UInt64) -> HostReading {
        HostReading(monotonicSeconds: seconds, domains: ["u1": .init(cpuTimeNs: cpuTimeNs, rxBytes: 0, txBytes: 0)],
                    activeMemoryKiB: 2048)
    }

    @Test func theFirstReadingMakesNoSampleTheSecondDoes() {
        var series = HostMetricsSeries(retentionDays: 7)
        #expect(series.onReading(Self.reading(at: 0, cpuTimeNs: 0), hostCPUs: 2, wallTime: 100_000) == .init())
        let step = series.onReading(Self.reading(at: 10, cpuTimeNs: 5_000_000_000), hostCPUs: 2, wallTime: 100_010)
        #expect(step.sample?.cpuPercent == 25)   // 5 s of CPU over 10 s on 2 CPUs
        #expect(step.sample?.memoryMB == 2)
    }

    @Test func prunesOnTheFirstSampleThenAtMostOnceADay() {
        let day: Double = 86400, start: Double = 1_000_000
        var series = HostMetricsSeries(retentionDays: 7)
        _ = series.onReading(Self.reading(at: 0, cpuTimeNs: 0), hostCPUs: 1, wallTime: start)
        let first = series.onReading(Self.reading(at: 1, cpuTimeNs: 0), hostCPUs: 1, wallTime: start + 1)
        #expect(first.pruneBefore == Optional(start + 1 - 7 * day))
        let sameDay = series.onReading(Self.reading(at: 2, cpuTimeNs: 0), hostCPUs: 1, wallTime: start + 1 + day)
        #expect(sameDay.sample != nil && sameDay.pruneBefore == nil)
        let nextDay = series.onReading(Self.reading(at: 3, cpuTimeNs: 0), hostCPUs: 1, wallTime: start + 2 + day)
        #expect(nextDay.pruneBefore == Optional(start + 2 + day - 7 * day))
    }

    @Test func aReadingThatMakesNoSampleStillBecomesThePreviousOne() {
        var series = HostMetricsSeries(retentionDays: 7)
        _ = series.onReading(Self.reading(at: 5, cpuTimeNs: 0), hostCPUs: 1, wallTime: 100_000)
        // Not later than the one before: no sample, no prune; the next compares with this one.
        #expect(series.onReading(Self.reading(at: 5, cpuTimeNs: 1_000_000_000), hostCPUs: 1, wallTime: 100_001) == .init())
        let step = series.onReading(Self.reading(at: 6, cpuTimeNs: 1_500_000_000), hostCPUs: 1, wallTime: 100_002)
        #expect(step.sample?.cpuPercent == 50)
    }
}
