import ClusterCore

/// One VM's use as its group manager's window estimates it (`GET /v1/vms/{id}/usage` on the leader or bootstrap).
public struct ClusterVMUsage: Codable, Sendable, Equatable {
    public var vm: String
    public var localControllerId: String
    public var vcpusInUse: Double
    public var vcpus: Int
    public var memoryUsedMiB: Double
    /// Memory the VM was given.
    public var memoryMiB: Int
    public var rxBytesPerSecond: Double
    public var txBytesPerSecond: Double
    public var synthetic: Bool
    public var paused: Bool
    /// Unix milliseconds of the newest sample in the window.
    public var sampledAt: Int64

    public init(_ estimate: UsageWindows.Estimate, host: String) {
        vm = estimate.vm
        localControllerId = host
        vcpusInUse = estimate.usage.vcpusInUse
        vcpus = estimate.usage.vcpus
        memoryUsedMiB = estimate.usage.memoryUsedMiB
        memoryMiB = estimate.memoryMaxMiB
        rxBytesPerSecond = estimate.usage.rxBytesPerSecond
        txBytesPerSecond = estimate.usage.txBytesPerSecond
        synthetic = estimate.usage.synthetic
        paused = estimate.paused
        sampledAt = estimate.usage.sampledAtMs
    }
}

/// One host's use, the sum of its VMs' estimates, and its share of capacity (`GET /v1/hosts/{id}/usage`).
public struct ClusterHostUsage: Codable, Sendable, Equatable {
    public var localControllerId: String
    public var groupManagerId: String
    /// How the manager smooths samples (`average:30`, `ewma:0.3`).
    public var estimator: String
    public var vcpusInUse: Double
    public var memoryUsedMiB: Double
    public var rxBytesPerSecond: Double
    public var txBytesPerSecond: Double
    /// What the host may give (its quota): the base of the fractions.
    public var capacity: HostUsageDocument.Capacity
    /// vcpusInUse / capacity.cpus, memoryUsedMiB / capacity.memoryMiB.
    public var cpuFraction: Double
    public var memoryFraction: Double
    /// Every VM with an estimate; VMs just started have none until their second sample.
    public var virtualMachines: [ClusterVMUsage]
    public var sampledAt: Int64?

    public init(host: String, manager: String, estimator: String, capacity: HostUsageDocument.Capacity, vms: [ClusterVMUsage]) {
        localControllerId = host
        groupManagerId = manager
        self.estimator = estimator
        self.capacity = capacity
        virtualMachines = vms
        vcpusInUse = vms.reduce(0) { $0 + $1.vcpusInUse }
        memoryUsedMiB = vms.reduce(0) { $0 + $1.memoryUsedMiB }
        rxBytesPerSecond = vms.reduce(0) { $0 + $1.rxBytesPerSecond }
        txBytesPerSecond = vms.reduce(0) { $0 + $1.txBytesPerSecond }
        cpuFraction = capacity.cpus > 0 ? vcpusInUse / Double(capacity.cpus) : 0
        memoryFraction = capacity.memoryMiB > 0 ? memoryUsedMiB / Double(capacity.memoryMiB) : 0
        sampledAt = vms.map(\.sampledAt).max()
    }
}

/// `GET /v1/manager/usage` on a group manager: its windows, one entry per controller it manages.
public struct ManagerUsageDocument: Codable, Sendable, Equatable {
    public var hosts: [ClusterHostUsage]
    public init(hosts: [ClusterHostUsage]) { self.hosts = hosts }
}

/// `GET /v1/rebalancing`: how the leader's rebalancer is set, what it saw and planned last, and what it moved.
public struct RebalancingStatus: Codable, Sendable, Equatable {
    public struct Thresholds: Codable, Sendable, Equatable {
        public var low: Double
        public var high: Double
        public init(low: Double, high: Double) {
            self.low = low
            self.high = high
        }
    }

    public struct Settings: Codable, Sendable, Equatable {
        public var intervalSeconds: Double
        public var cpu: Thresholds
        public var memory: Thresholds
        public var hysteresis: Double
        public var dwellSeconds: Double
        public var cooldownSeconds: Double
        /// nil: consolidation is off.
        public var consolidationIntervalSeconds: Double?
        public var migrationBudget: Int
        public var estimator: String
        public init(intervalSeconds: Double, cpu: Thresholds, memory: Thresholds, hysteresis: Double, dwellSeconds: Double,
                    cooldownSeconds: Double, consolidationIntervalSeconds: Double?, migrationBudget: Int, estimator: String) {
            self.intervalSeconds = intervalSeconds
            self.cpu = cpu
            self.memory = memory
            self.hysteresis = hysteresis
            self.dwellSeconds = dwellSeconds
            self.cooldownSeconds = cooldownSeconds
            self.consolidationIntervalSeconds = consolidationIntervalSeconds
            self.migrationBudget = migrationBudget
            self.estimator = estimator
        }
    }

    public struct Host: Codable, Sendable, Equatable {
        public var id: String
        /// overloaded, underloaded, normal, empty, idle (empty for the dwell time: a candidate for sleep).
        public var condition: String
        public var cpuFraction: Double
        public var memoryFraction: Double
        public var vcpusInUse: Double
        public var memoryUsedMiB: Double
        public var vms: Int
        public var draining: Bool
        public init(id: String, condition: String, cpuFraction: Double, memoryFraction: Double, vcpusInUse: Double,
                    memoryUsedMiB: Double, vms: Int, draining: Bool) {
            self.id = id
            self.condition = condition
            self.cpuFraction = cpuFraction
            self.memoryFraction = memoryFraction
            self.vcpusInUse = vcpusInUse
            self.memoryUsedMiB = memoryUsedMiB
            self.vms = vms
            self.draining = draining
        }
    }

    public struct PlannedMove: Codable, Sendable, Equatable {
        public var vm: String
        public var from: String
        public var to: String
        public var reason: String
        public init(vm: String, from: String, to: String, reason: String) {
            self.vm = vm
            self.from = from
            self.to = to
            self.reason = reason
        }
    }

    public struct Refusal: Codable, Sendable, Equatable {
        /// `host` or `vm`.
        public var kind: String
        public var id: String
        public var reason: String
        public init(kind: String, id: String, reason: String) {
            self.kind = kind
            self.id = id
            self.reason = reason
        }
    }

    public struct Round: Codable, Sendable, Equatable {
        /// Unix milliseconds.
        public var at: Int64
        public var dryRun: Bool
        public var plan: [PlannedMove]
        public var refused: [Refusal]
        public var idle: [String]
        public init(at: Int64, dryRun: Bool, plan: [PlannedMove], refused: [Refusal], idle: [String]) {
            self.at = at
            self.dryRun = dryRun
            self.plan = plan
            self.refused = refused
            self.idle = idle
        }
    }

    /// A move the rebalancer started, with the migration that carries it.
    public struct Move: Codable, Sendable, Equatable {
        public var vm: String
        public var from: String
        public var to: String
        public var reason: String
        /// nil when the migration was refused before it started (`error` says why).
        public var migrationId: String?
        /// running, completed, failed, aborted, refused.
        public var state: String
        public var startedAt: Int64
        public var finishedAt: Int64?
        public var error: String?
        /// The source host's share of CPU and memory when the move was planned.
        public var sourceCPUFraction: Double
        public var sourceMemoryFraction: Double
        public init(vm: String, from: String, to: String, reason: String, migrationId: String?, state: String, startedAt: Int64,
                    sourceCPUFraction: Double, sourceMemoryFraction: Double) {
            self.vm = vm
            self.from = from
            self.to = to
            self.reason = reason
            self.migrationId = migrationId
            self.state = state
            self.startedAt = startedAt
            self.sourceCPUFraction = sourceCPUFraction
            self.sourceMemoryFraction = sourceMemoryFraction
        }
    }

    /// on, off (never plans) or dry-run (plans, never moves).
    public var mode: String
    /// `doze rebalance pause`: no rounds until resumed.
    public var paused: Bool
    public var settings: Settings
    public var rounds: Int
    public var lastRound: Round?
    public var hosts: [Host]
    /// The most recent moves, newest last (at most 200 are kept).
    public var moves: [Move]

    public init(mode: String, paused: Bool, settings: Settings, rounds: Int, lastRound: Round?, hosts: [Host], moves: [Move]) {
        self.mode = mode
        self.paused = paused
        self.settings = settings
        self.rounds = rounds
        self.lastRound = lastRound
        self.hosts = hosts
        self.moves = moves
    }
}
