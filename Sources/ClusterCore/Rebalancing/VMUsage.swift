/// One raw reading of a VM's cumulative counters, as the hypervisor reports them at one instant.
public struct VMReading: Sendable, Equatable {
    public var cpuTimeNs: UInt64
    public var vcpus: Int
    public var memoryKiB: UInt64
    public var rxBytes: UInt64
    public var txBytes: UInt64

    public init(cpuTimeNs: UInt64, vcpus: Int, memoryKiB: UInt64, rxBytes: UInt64, txBytes: UInt64) {
        self.cpuTimeNs = cpuTimeNs
        self.vcpus = vcpus
        self.memoryKiB = memoryKiB
        self.rxBytes = rxBytes
        self.txBytes = txBytes
    }
}

/// Load declared for a VM on a test-driver host, which measures none: it stands in for the measured vCPUs
/// (and memory, when given) so the rebalancing policies have something to act on.
public struct SyntheticLoad: Sendable, Equatable, Codable {
    public var vcpus: Double?
    public var memoryMiB: Double?

    public init(vcpus: Double? = nil, memoryMiB: Double? = nil) {
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
    }

    public var isEmpty: Bool { vcpus == nil && memoryMiB == nil }

    public static let testDriverOnly = "synthetic load is for test-driver hosts only; this host measures real load"

    /// Refuses declared load on a host that measures real load (any hypervisor but libvirt's `test` driver),
    /// and values the VM could not have: negative, non-finite, more vCPUs or memory than it has.
    public func validated(hypervisorURI: String, vmVCPUs: Int, vmMemoryMiB: Int) throws(DozeError) -> SyntheticLoad {
        guard HypervisorURI.isTestDriver(hypervisorURI) else { throw DozeError(.conflict, Self.testDriverOnly) }
        if let vcpus {
            guard vcpus.isFinite, vcpus >= 0 else { throw DozeError(.badRequest, "vcpus must be a number >= 0, got \(vcpus)") }
            guard vcpus <= Double(vmVCPUs) else {
                throw DozeError(.badRequest, "vcpus \(vcpus) is more than the VM's \(vmVCPUs) vCPU(s)")
            }
        }
        if let memoryMiB {
            guard memoryMiB.isFinite, memoryMiB >= 0 else {
                throw DozeError(.badRequest, "memoryMiB must be a number >= 0, got \(memoryMiB)")
            }
            guard memoryMiB <= Double(vmMemoryMiB) else {
                throw DozeError(.badRequest, "memoryMiB \(memoryMiB) is more than the VM's \(vmMemoryMiB) MiB")
            }
        }
        return self
    }
}

/// What one VM uses, smoothed.
public struct VMUsage: Sendable, Equatable {
    public var vcpusInUse: Double
    public var vcpus: Int
    public var memoryUsedMiB: Double
    public var rxBytesPerSecond: Double
    public var txBytesPerSecond: Double
    /// Declared load stands in for a measured value.
    public var synthetic: Bool
    /// Unix milliseconds of the newest reading.
    public var sampledAtMs: Int64

    public init(vcpusInUse: Double, vcpus: Int, memoryUsedMiB: Double, rxBytesPerSecond: Double,
                txBytesPerSecond: Double, synthetic: Bool, sampledAtMs: Int64) {
        self.vcpusInUse = vcpusInUse
        self.vcpus = vcpus
        self.memoryUsedMiB = memoryUsedMiB
        self.rxBytesPerSecond = rxBytesPerSecond
        self.txBytesPerSecond = txBytesPerSecond
        self.synthetic = synthetic
        self.sampledAtMs = sampledAtMs
    }
}

/// Turns successive raw readings per VM into smoothed use: vCPUs in use (CPU-time delta over wall-time delta),
/// memory, and network rates, each through its own copy of `estimator`. Pure: `now` is monotonic time passed in,
/// `wallClockMs` only labels the reading. A counter that went backwards (the VM restarted) gives no rate that
/// round rather than a negative one.
public struct VMUsageSampler: Sendable {
    struct Series: Sendable {
        var previous: (reading: VMReading, at: MonotonicTime)?
        var cpu, memory, rx, tx: UsageEstimator
        var vcpus = 0
        var sampledAtMs: Int64 = 0
        /// Which source fed the CPU and memory estimators last: a switch restarts them, so declared load is
        /// not averaged with measured load (and clearing it does not linger).
        var syntheticCPU = false, syntheticMemory = false
        /// The last interval's raw figures (what heartbeats carry up to the manager's own window).
        var lastCPU: Double?
        var lastMemory = 0.0, lastRx = 0.0, lastTx = 0.0
    }

    public let estimator: UsageEstimator
    private var series: [String: Series] = [:]

    public init(estimator: UsageEstimator) {
        self.estimator = estimator
    }

    public mutating func record(vm: String, _ reading: VMReading, synthetic: SyntheticLoad?, now: MonotonicTime, wallClockMs: Int64) {
        var entry = series[vm] ?? Series(cpu: estimator, memory: estimator, rx: estimator, tx: estimator)
        let syntheticCPU = synthetic?.vcpus != nil, syntheticMemory = synthetic?.memoryMiB != nil
        if syntheticCPU != entry.syntheticCPU { entry.cpu = estimator; entry.syntheticCPU = syntheticCPU; entry.lastCPU = nil }
        if syntheticMemory != entry.syntheticMemory { entry.memory = estimator; entry.syntheticMemory = syntheticMemory }

        if let declared = synthetic?.vcpus {
            entry.cpu.record(declared, now: now)
            entry.lastCPU = declared
        }
        entry.lastMemory = synthetic?.memoryMiB ?? Double(reading.memoryKiB) / 1024
        entry.memory.record(entry.lastMemory, now: now)
        if let previous = entry.previous, now > previous.at {
            let seconds = (now - previous.at) / .seconds(1)
            if synthetic?.vcpus == nil, reading.cpuTimeNs >= previous.reading.cpuTimeNs {
                let busy = Double(reading.cpuTimeNs - previous.reading.cpuTimeNs) / 1e9 / seconds
                entry.lastCPU = min(busy, Double(reading.vcpus))
                entry.cpu.record(entry.lastCPU!, now: now)
            }
            if reading.rxBytes >= previous.reading.rxBytes {
                entry.lastRx = Double(reading.rxBytes - previous.reading.rxBytes) / seconds
                entry.rx.record(entry.lastRx, now: now)
            }
            if reading.txBytes >= previous.reading.txBytes {
                entry.lastTx = Double(reading.txBytes - previous.reading.txBytes) / seconds
                entry.tx.record(entry.lastTx, now: now)
            }
        }
        entry.previous = (reading, now)
        entry.vcpus = reading.vcpus
        entry.sampledAtMs = wallClockMs
        series[vm] = entry
    }

    /// The VM's smoothed use; nil until its vCPUs in use are known (two readings, or one with declared vCPUs).
    /// Network rates read 0 until there are two readings.
    /// Evaluated at the VM's newest reading: what the controller last saw, whenever it is asked.
    public func usage(of vm: String) -> VMUsage? {
        guard let entry = series[vm], let now = entry.previous?.at, let cpu = entry.cpu.estimate(now: now) else { return nil }
        return VMUsage(vcpusInUse: cpu, vcpus: entry.vcpus, memoryUsedMiB: entry.memory.estimate(now: now) ?? 0,
                       rxBytesPerSecond: entry.rx.estimate(now: now) ?? 0, txBytesPerSecond: entry.tx.estimate(now: now) ?? 0,
                       synthetic: entry.syntheticCPU || entry.syntheticMemory, sampledAtMs: entry.sampledAtMs)
    }

    public var vms: [String] { series.keys.sorted() }

    /// The VM's figures over the last interval, unsmoothed (the heartbeat's `UsageSample`, less what the
    /// controller adds: memory given, paused); nil until its vCPUs in use are known.
    public func lastSample(of vm: String) -> (cpu: Double, vcpus: Int, memoryMiB: Double, rx: Double, tx: Double, synthetic: Bool, atMs: Int64)? {
        guard let entry = series[vm], let cpu = entry.lastCPU else { return nil }
        return (cpu, entry.vcpus, entry.lastMemory, entry.lastRx, entry.lastTx, entry.syntheticCPU || entry.syntheticMemory, entry.sampledAtMs)
    }

    /// Drops the series of VMs no longer running here (stopped, deleted, migrated away).
    public mutating func keepOnly(_ running: Set<String>) {
        series = series.filter { running.contains($0.key) }
    }
}
