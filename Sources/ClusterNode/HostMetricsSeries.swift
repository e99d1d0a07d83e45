import ClusterCore

/// Turns the host's successive counter readings into the samples the metrics store keeps: a sample needs two
/// readings, and samples older than the retention are pruned at most once a day. The controller reads the
/// counters and writes the store; this decides what to write.
struct HostMetricsSeries {
    var retentionDays: Int
    private var lastReading: HostReading?
    private var lastPrune: Double = 0

    init(retentionDays: Int) { self.retentionDays = retentionDays }

    struct Step: Equatable {
        var sample: MetricsSample?
        /// Prune the samples taken before this wall time.
        var pruneBefore: Double?
    }

    mutating func onReading(_ reading: HostReading, hostCPUs: Int, wallTime: Double) -> Step {
        defer { lastReading = reading }
        guard let previous = lastReading,
              let sample = HostReading.sample(from: previous, to: reading, hostCPUs: hostCPUs, wallTime: wallTime)
        else { return Step() }
        guard wallTime - lastPrune > 86400 else { return Step(sample: sample) }
        lastPrune = wallTime
        return Step(sample: sample, pruneBefore: wallTime - Double(retentionDays) * 86400)
    }
}
