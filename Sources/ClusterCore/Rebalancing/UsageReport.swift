/// What a local controller's heartbeat says of its VMs' use: each running VM's last sample, the rates of one
/// `--usage-interval` (not smoothed: the group manager keeps the window, `UsageWindows`). Short keys: it travels in
/// every heartbeat datagram.
public struct ControllerUsageReport: Sendable, Equatable, Codable {
    /// Unix milliseconds of the newest reading: a manager takes a report into its windows once.
    public var at: Int64
    public var vms: [String: UsageSample]

    public init(at: Int64, vms: [String: UsageSample]) {
        self.at = at
        self.vms = vms
    }
}

/// One VM's use over one sampling interval.
public struct UsageSample: Sendable, Equatable, Codable {
    /// vCPUs busy (CPU-time delta over wall-time delta), or the declared synthetic load.
    public var cpu: Double
    /// The VM's vCPUs.
    public var vcpus: Int
    /// Memory in use, MiB.
    public var mem: Double
    /// Memory the VM was given, MiB: a target must have room for all of it.
    public var memMax: Int
    public var rx: Double
    public var tx: Double
    /// Declared load (test-driver hosts) stands in for a measurement.
    public var synthetic: Bool?
    /// Paused or suspended: not moved by the rebalancer.
    public var paused: Bool?

    public init(cpu: Double, vcpus: Int, mem: Double, memMax: Int, rx: Double = 0, tx: Double = 0,
                synthetic: Bool? = nil, paused: Bool? = nil) {
        self.cpu = cpu
        self.vcpus = vcpus
        self.mem = mem
        self.memMax = memMax
        self.rx = rx
        self.tx = tx
        self.synthetic = synthetic
        self.paused = paused
    }
}

/// A group manager's short window of samples per host and VM (issue 12: "managers keep a short window per host
/// and VM, with the estimator configurable"). Pure: `now` is the manager's monotonic time when a heartbeat came.
/// A controller's heartbeats repeat its last report until it samples again; a report is taken in once (by `at`).
public struct UsageWindows: Sendable {
    public struct Estimate: Sendable, Equatable {
        public var vm: String
        public var usage: VMUsage
        public var memoryMaxMiB: Int
        public var paused: Bool
    }

    struct Series: Sendable {
        var cpu, memory, rx, tx: UsageEstimator
        var latest: UsageSample
        var at: Int64
    }

    public let estimator: UsageEstimator
    private var lastReport: [NodeID: Int64] = [:]
    private var series: [NodeID: [String: Series]] = [:]

    public init(estimator: UsageEstimator) {
        self.estimator = estimator
    }

    /// Takes in a controller's report if it is newer than the last one taken from that host. VMs the report
    /// no longer lists (stopped, moved away) are forgotten: their windows start afresh if they come back.
    public mutating func record(host: NodeID, _ report: ControllerUsageReport, now: MonotonicTime) {
        if let last = lastReport[host], report.at <= last { return }
        lastReport[host] = report.at
        var vms = series[host] ?? [:]
        vms = vms.filter { report.vms[$0.key] != nil }
        for (name, sample) in report.vms {
            var entry = vms[name] ?? Series(cpu: estimator, memory: estimator, rx: estimator, tx: estimator, latest: sample, at: report.at)
            // Declared load switched on or off: a new series, so measured and declared values are not averaged.
            if (entry.latest.synthetic ?? false) != (sample.synthetic ?? false) {
                entry = Series(cpu: estimator, memory: estimator, rx: estimator, tx: estimator, latest: sample, at: report.at)
            }
            entry.cpu.record(sample.cpu, now: now)
            entry.memory.record(sample.mem, now: now)
            entry.rx.record(sample.rx, now: now)
            entry.tx.record(sample.tx, now: now)
            entry.latest = sample
            entry.at = report.at
            vms[name] = entry
        }
        series[host] = vms
    }

    /// The host went down or left this manager.
    public mutating func forget(host: NodeID) {
        series[host] = nil
        lastReport[host] = nil
    }

    /// Keeps only these hosts (the ones this manager manages now).
    public mutating func keepOnly(hosts: Set<NodeID>) {
        series = series.filter { hosts.contains($0.key) }
        lastReport = lastReport.filter { hosts.contains($0.key) }
    }

    public var hosts: [NodeID] { series.keys.sorted() }

    /// Each VM's smoothed use on `host`, by name; evaluated at `now`. A VM whose samples all fell out of the
    /// window (its controller went silent) has no estimate rather than a stale one.
    public func estimates(host: NodeID, now: MonotonicTime) -> [Estimate] {
        (series[host] ?? [:]).sorted { $0.key < $1.key }.compactMap { name, entry in
            guard let cpu = entry.cpu.estimate(now: now) else { return nil }
            let usage = VMUsage(vcpusInUse: cpu, vcpus: entry.latest.vcpus, memoryUsedMiB: entry.memory.estimate(now: now) ?? entry.latest.mem,
                                rxBytesPerSecond: entry.rx.estimate(now: now) ?? 0, txBytesPerSecond: entry.tx.estimate(now: now) ?? 0,
                                synthetic: entry.latest.synthetic ?? false, sampledAtMs: entry.at)
            return Estimate(vm: name, usage: usage, memoryMaxMiB: entry.latest.memMax, paused: entry.latest.paused ?? false)
        }
    }
}
