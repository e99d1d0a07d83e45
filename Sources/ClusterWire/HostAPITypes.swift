import ClusterCore

// Bodies of seed 001's host API (`/hypervisor/…`), with its snake_case names and wrapper objects.

public struct UsagesDocument: Sendable, Equatable, Codable {
    public struct Usages: Sendable, Equatable, Codable {
        public var instances: Int
        public var memoryUsedMB: Int
        public var memoryTotalMB: Int
        public var cpuUsed: Int
        public var cpuTotal: Int
        enum CodingKeys: String, CodingKey {
            case instances, memoryUsedMB = "memory_used_mb", memoryTotalMB = "memory_total_mb"
            case cpuUsed = "cpu_used", cpuTotal = "cpu_total"
        }
        public init(instances: Int, memoryUsedMB: Int, memoryTotalMB: Int, cpuUsed: Int, cpuTotal: Int) {
            self.instances = instances
            self.memoryUsedMB = memoryUsedMB
            self.memoryTotalMB = memoryTotalMB
            self.cpuUsed = cpuUsed
            self.cpuTotal = cpuTotal
        }
    }
    public var usages: Usages
    public init(usages: Usages) { self.usages = usages }
}

public struct QuotaDocument: Sendable, Equatable, Codable {
    public struct Quota: Sendable, Equatable, Codable {
        public var cpuMax: Int?
        public var memoryMaxMB: Int?
        enum CodingKeys: String, CodingKey { case cpuMax = "cpu_max", memoryMaxMB = "memory_max_mb" }
        public init(cpuMax: Int?, memoryMaxMB: Int?) {
            self.cpuMax = cpuMax
            self.memoryMaxMB = memoryMaxMB
        }
    }
    public var quota: Quota
    public init(quota: Quota) { self.quota = quota }
}

public struct NetworkDocument: Sendable, Equatable, Codable {
    public struct Network: Sendable, Equatable, Codable {
        public var bridge: String?
        public var bridgeInterface: String?
        enum CodingKeys: String, CodingKey { case bridge, bridgeInterface = "bridge_interface" }
        public init(bridge: String?, bridgeInterface: String?) {
            self.bridge = bridge
            self.bridgeInterface = bridgeInterface
        }
    }
    public var network: Network
    public init(network: Network) { self.network = network }
}

public struct ImagePoolDocument: Sendable, Equatable, Codable {
    public struct ImagePool: Sendable, Equatable, Codable {
        public var path: String?
        public var maxGB: Int?
        public var usedGB: Int?
        enum CodingKeys: String, CodingKey { case path, maxGB = "max_gb", usedGB = "used_gb" }
        public init(path: String?, maxGB: Int?, usedGB: Int?) {
            self.path = path
            self.maxGB = maxGB
            self.usedGB = usedGB
        }
    }
    public var imagePool: ImagePool
    enum CodingKeys: String, CodingKey { case imagePool = "image-pool" }
    public init(imagePool: ImagePool) { self.imagePool = imagePool }
}

public struct PoolBody: Sendable, Equatable, Codable {
    public var name: String?
    public var uuid: String?
    public var path: String?
    public var maxGB: Int?
    public var usedGB: Int?
    public var createdAt: String?
    enum CodingKeys: String, CodingKey {
        case name, uuid, path, maxGB = "max_gb", usedGB = "used_gb", createdAt = "created_at"
    }
    public init(name: String? = nil, uuid: String? = nil, path: String? = nil, maxGB: Int? = nil, usedGB: Int? = nil,
                createdAt: String? = nil) {
        self.name = name
        self.uuid = uuid
        self.path = path
        self.maxGB = maxGB
        self.usedGB = usedGB
        self.createdAt = createdAt
    }
}

public struct PoolDocument: Sendable, Equatable, Codable {
    public var pool: PoolBody
    public init(pool: PoolBody) { self.pool = pool }
}

public struct PoolsDocument: Sendable, Equatable, Codable {
    public var pools: [PoolBody]
    public init(pools: [PoolBody]) { self.pools = pools }
}

public struct MetricsDocument: Sendable, Equatable, Codable {
    public struct Series: Sendable, Equatable, Codable {
        public var unit: String
        public var datas: [String: Double]
        public init(unit: String, datas: [String: Double]) {
            self.unit = unit
            self.datas = datas
        }
    }
    public struct Metrics: Sendable, Equatable, Codable {
        public var duration: String
        public var cpu: Series
        public var memory: Series
        public var networkIn: Series
        public var networkOut: Series
        enum CodingKeys: String, CodingKey { case duration, cpu, memory, networkIn = "network_in", networkOut = "network_out" }
    }
    public var metrics: Metrics

    public init(_ report: MetricsReport) {
        metrics = Metrics(duration: report.duration, cpu: .init(unit: "%", datas: report.cpu),
                          memory: .init(unit: "MB", datas: report.memory),
                          networkIn: .init(unit: "B/s", datas: report.networkIn),
                          networkOut: .init(unit: "B/s", datas: report.networkOut))
    }
}

// MARK: - Seed 003: the single-host VM API

public struct VMSummary: Sendable, Equatable, Codable {
    public var name: String
    public var uuid: String
    /// libvirt's state (`running`, `paused`, `shutOff`, …).
    public var state: String
    /// Snooze's status for the same VM.
    public var status: VMStatus
    public var vcpus: Int
    public var memoryMB: Int
    public var persistent: Bool
    enum CodingKeys: String, CodingKey { case name, uuid, state, status, vcpus, memoryMB = "memory_mb", persistent }
    public init(name: String, uuid: String, state: String, status: VMStatus, vcpus: Int, memoryMB: Int, persistent: Bool) {
        self.name = name
        self.uuid = uuid
        self.state = state
        self.status = status
        self.vcpus = vcpus
        self.memoryMB = memoryMB
        self.persistent = persistent
    }
}

public struct VMListDocument: Sendable, Equatable, Codable {
    public var vms: [VMSummary]
    public init(vms: [VMSummary]) { self.vms = vms }
}

public struct SnapshotSummary: Sendable, Equatable, Codable {
    public var name: String
    public var createdAt: Int64
    public var state: String
    public var current: Bool
    enum CodingKeys: String, CodingKey { case name, createdAt = "created_at", state, current }
    public init(name: String, createdAt: Int64, state: String, current: Bool) {
        self.name = name
        self.createdAt = createdAt
        self.state = state
        self.current = current
    }
}

public struct SnapshotListDocument: Sendable, Equatable, Codable {
    public var vm: String
    public var snapshots: [SnapshotSummary]
    public init(vm: String, snapshots: [SnapshotSummary]) {
        self.vm = vm
        self.snapshots = snapshots
    }
}
