import ClusterCore

/// `GET /v1/vms/{name}/usage`: what one VM uses, smoothed by the controller's estimator.
public struct VMUsageDocument: Codable, Sendable, Equatable {
    public var vm: String
    public var vcpusInUse: Double
    public var vcpus: Int
    public var memoryUsedMiB: Double
    public var rxBytesPerSecond: Double
    public var txBytesPerSecond: Double
    public var synthetic: Bool
    /// Unix milliseconds of the reading the values end with.
    public var sampledAt: Int64

    public init(vm: String, usage: VMUsage) {
        self.vm = vm
        self.vcpusInUse = usage.vcpusInUse
        self.vcpus = usage.vcpus
        self.memoryUsedMiB = usage.memoryUsedMiB
        self.rxBytesPerSecond = usage.rxBytesPerSecond
        self.txBytesPerSecond = usage.txBytesPerSecond
        self.synthetic = usage.synthetic
        self.sampledAt = usage.sampledAtMs
    }
}

/// `GET /v1/hosts/self/usage`: the sum over the VMs sampled here, and what the host has.
public struct HostUsageDocument: Codable, Sendable, Equatable {
    public struct Capacity: Codable, Sendable, Equatable {
        public var cpus: Int
        public var memoryMiB: Int
        public init(cpus: Int, memoryMiB: Int) {
            self.cpus = cpus
            self.memoryMiB = memoryMiB
        }
    }

    public var host: String
    /// How many VMs the sums cover (running VMs with a sample).
    public var vms: Int
    public var vcpusInUse: Double
    /// vCPUs those VMs have.
    public var vcpus: Int
    public var memoryUsedMiB: Double
    public var rxBytesPerSecond: Double
    public var txBytesPerSecond: Double
    public var capacity: Capacity
    /// Unix milliseconds of the newest reading; nil before any.
    public var sampledAt: Int64?

    public init(host: String, usages: [VMUsage], capacity: Capacity) {
        self.host = host
        self.vms = usages.count
        self.vcpusInUse = usages.reduce(0) { $0 + $1.vcpusInUse }
        self.vcpus = usages.reduce(0) { $0 + $1.vcpus }
        self.memoryUsedMiB = usages.reduce(0) { $0 + $1.memoryUsedMiB }
        self.rxBytesPerSecond = usages.reduce(0) { $0 + $1.rxBytesPerSecond }
        self.txBytesPerSecond = usages.reduce(0) { $0 + $1.txBytesPerSecond }
        self.capacity = capacity
        self.sampledAt = usages.map(\.sampledAtMs).max()
    }
}

/// `POST /v1/vms/{name}/load`'s body, `{"vcpus": 1.5, "memoryMiB": 512}`, either optional; `{}` clears.
/// Unknown keys are refused: a misspelt `"cpus"` must not quietly clear the load.
public struct SyntheticLoadRequest: Decodable, Sendable, Equatable {
    public var load: SyntheticLoad

    public init(load: SyntheticLoad) {
        self.load = load
    }

    private struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }
        init(stringValue: String) { self.stringValue = stringValue }
        init?(intValue: Int) { nil }
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        let known = ["vcpus", "memoryMiB"]
        if let unknown = container.allKeys.first(where: { !known.contains($0.stringValue) }) {
            throw DecodingError.dataCorruptedError(forKey: unknown, in: container,
                debugDescription: "unknown key '\(unknown.stringValue)'; a load has vcpus and memoryMiB")
        }
        load = SyntheticLoad(vcpus: try container.decodeIfPresent(Double.self, forKey: Key(stringValue: "vcpus")),
                             memoryMiB: try container.decodeIfPresent(Double.self, forKey: Key(stringValue: "memoryMiB")))
    }
}

/// What `POST /v1/vms/{name}/load` answers: the load now declared (no keys when cleared).
public struct SyntheticLoadDocument: Codable, Sendable, Equatable {
    public var vm: String
    public var vcpus: Double?
    public var memoryMiB: Double?

    public init(vm: String, load: SyntheticLoad) {
        self.vm = vm
        self.vcpus = load.vcpus
        self.memoryMiB = load.memoryMiB
    }
}
