/// A volume pool of seed 001: a named directory with a size limit, backed by a libvirt `dir` storage pool.
public struct VolumePool: Sendable, Equatable, Codable {
    public var uuid: String
    public var name: String
    public var path: String
    public var maxGB: Int
    public var createdAt: String

    public init(uuid: String, name: String, path: String, maxGB: Int, createdAt: String) {
        self.uuid = uuid
        self.name = name
        self.path = path
        self.maxGB = maxGB
        self.createdAt = createdAt
    }

    /// Seed 001's rules for `PUT /hypervisor/pools/{uuid}`: the path never changes, the name and the limit may,
    /// and the limit never drops below what the pool already uses.
    public func updated(name: String?, path: String?, maxGB: Int?, usedGB: Int) throws(DozeError) -> VolumePool {
        var next = self
        if let path, path != self.path {
            throw DozeError(.conflict, "the path of pool '\(self.name)' cannot change (\(self.path))")
        }
        if let name {
            try Validation.poolName(name)
            next.name = name
        }
        if let maxGB {
            guard maxGB > 0 else { throw DozeError(.badRequest, "max_gb must be > 0, got \(maxGB)") }
            guard maxGB >= usedGB else {
                throw DozeError(.conflict, "max_gb \(maxGB) is below the \(usedGB) GB pool '\(self.name)' already uses")
            }
            next.maxGB = maxGB
        }
        return next
    }
}
