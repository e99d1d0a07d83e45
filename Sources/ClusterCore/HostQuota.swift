/// The per-host quota of seed 001: how many vCPUs and how much memory the VMs of this host may take.
public struct HostQuota: Sendable, Equatable, Codable {
    public var cpuMax: Int
    public var memoryMaxMiB: Int

    public init(cpuMax: Int, memoryMaxMiB: Int) {
        self.cpuMax = cpuMax
        self.memoryMaxMiB = memoryMaxMiB
    }

    /// Applies a partial update (seed 001: either limit may be changed alone).
    /// A limit below what running VMs already use is refused: it would make the host over quota at once.
    /// `ceiling`: the most the host can give (its size times any overcommit ratio the operator set); a limit
    /// above it would promise what the host does not have.
    public func updated(cpuMax: Int?, memoryMaxMiB: Int?, inUse: HostUsage,
                        ceiling: Ceiling? = nil) throws(DozeError) -> HostQuota {
        var next = self
        if let cpuMax {
            guard cpuMax >= 0 else { throw DozeError(.badRequest, "cpu_max must be >= 0, got \(cpuMax)") }
            if let ceiling, cpuMax > ceiling.quota.cpuMax {
                throw DozeError(.badRequest, "cpu_max \(cpuMax) is above the \(ceiling.quota.cpuMax) vCPUs this host can give "
                    + (ceiling.cpuOvercommitted ? "at its overcommit ratio" : "(its CPUs; start the controller with --cpu-overcommit RATIO for more)"))
            }
            guard cpuMax >= inUse.vcpus else {
                throw DozeError(.conflict, "cpu_max \(cpuMax) is below the \(inUse.vcpus) vCPUs already in use")
            }
            next.cpuMax = cpuMax
        }
        if let memoryMaxMiB {
            guard memoryMaxMiB >= 0 else { throw DozeError(.badRequest, "memory_max_mb must be >= 0, got \(memoryMaxMiB)") }
            if let ceiling, memoryMaxMiB > ceiling.quota.memoryMaxMiB {
                throw DozeError(.badRequest, "memory_max_mb \(memoryMaxMiB) is above the \(ceiling.quota.memoryMaxMiB) MB this host can give "
                    + (ceiling.memoryOvercommitted ? "at its overcommit ratio" : "(its memory; start the controller with --memory-overcommit RATIO for more)"))
            }
            guard memoryMaxMiB >= inUse.memoryMiB else {
                throw DozeError(.conflict, "memory_max_mb \(memoryMaxMiB) is below the \(inUse.memoryMiB) MB already in use")
            }
            next.memoryMaxMiB = memoryMaxMiB
        }
        return next
    }

    /// The largest quota a host allows: its own size, times the operator's overcommit ratios.
    public struct Ceiling: Sendable, Equatable {
        public var quota: HostQuota
        public var cpuOvercommitted: Bool
        public var memoryOvercommitted: Bool

        public init(hostCPUs: Int, hostMemoryMiB: Int, cpuOvercommit: Double?, memoryOvercommit: Double?) {
            quota = HostQuota(cpuMax: Int((Double(hostCPUs) * (cpuOvercommit ?? 1)).rounded(.down)),
                              memoryMaxMiB: Int((Double(hostMemoryMiB) * (memoryOvercommit ?? 1)).rounded(.down)))
            cpuOvercommitted = (cpuOvercommit ?? 1) > 1
            memoryOvercommitted = (memoryOvercommit ?? 1) > 1
        }
    }

    /// Admission control for starting a VM (or growing one): refused with a message naming the limit.
    public func admit(_ demand: HostUsage, onTopOf used: HostUsage) throws(DozeError) {
        if used.vcpus + demand.vcpus > cpuMax {
            throw DozeError(.quotaExceeded,
                "quota exceeded: \(demand.vcpus) vCPU requested, \(used.vcpus) of cpu_max \(cpuMax) in use")
        }
        if used.memoryMiB + demand.memoryMiB > memoryMaxMiB {
            throw DozeError(.quotaExceeded,
                "quota exceeded: \(demand.memoryMiB) MB requested, \(used.memoryMiB) of memory_max_mb \(memoryMaxMiB) in use")
        }
    }
}

/// What VMs hold on a host: vCPUs and memory of active (running or paused) domains.
public struct HostUsage: Sendable, Equatable {
    public var vcpus: Int
    public var memoryMiB: Int

    public init(vcpus: Int = 0, memoryMiB: Int = 0) {
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
    }

    public static func + (l: Self, r: Self) -> Self { .init(vcpus: l.vcpus + r.vcpus, memoryMiB: l.memoryMiB + r.memoryMiB) }
    public static func - (l: Self, r: Self) -> Self { .init(vcpus: l.vcpus - r.vcpus, memoryMiB: l.memoryMiB - r.memoryMiB) }
}

extension HostUsage {
    /// Memory in KiB rounded up to whole MiB, so a 1 KiB VM still counts.
    public static func memoryMiB(fromKiB kib: UInt64) -> Int { Int((kib + 1023) / 1024) }
}
