import ClusterAPI
import ClusterCore
import ClusterWire
import Foundation
import Hypervisor
import Logging

// Seed 001's host API: usage, quota, network, image pool, volume pools, metrics.
extension LocalController {
    public func usages() async throws(DozeError) -> UsagesDocument {
        let quota = effectiveQuota, used = usage
        return UsagesDocument(usages: .init(instances: vms.count, memoryUsedMB: used.memoryMiB,
                                            memoryTotalMB: quota.memoryMaxMiB, cpuUsed: used.vcpus, cpuTotal: quota.cpuMax))
    }

    public func quota() async throws(DozeError) -> QuotaDocument {
        let quota = effectiveQuota
        return QuotaDocument(quota: .init(cpuMax: quota.cpuMax, memoryMaxMB: quota.memoryMaxMiB))
    }

    public func updateQuota(_ body: QuotaDocument) async throws(DozeError) -> QuotaDocument {
        guard body.quota.cpuMax != nil || body.quota.memoryMaxMB != nil else {
            throw DozeError(.badRequest, "give cpu_max, memory_max_mb or both inside \"quota\"")
        }
        let ceiling = HostQuota.Ceiling(hostCPUs: node.cpus, hostMemoryMiB: HostUsage.memoryMiB(fromKiB: node.memoryKiB),
                                        cpuOvercommit: settings.cpuOvercommit, memoryOvercommit: settings.memoryOvercommit)
        let next = try effectiveQuota.updated(cpuMax: body.quota.cpuMax, memoryMaxMiB: body.quota.memoryMaxMB, inUse: usage,
                                              ceiling: ceiling)
        try updateConfig { $0.quota = next }
        log.info("quota changed", metadata: ["doze/cpu_max": "\(next.cpuMax)", "doze/memory_max_mb": "\(next.memoryMaxMiB)"])
        return try await quota()
    }

    public func network() async throws(DozeError) -> NetworkDocument {
        let network = config.network
        return NetworkDocument(network: .init(bridge: network.bridge, bridgeInterface: network.bridgeInterface))
    }

    public func updateNetwork(_ body: NetworkDocument) async throws(DozeError) -> NetworkDocument {
        guard body.network.bridge != nil || body.network.bridgeInterface != nil else {
            throw DozeError(.badRequest, "give bridge, bridge_interface or both inside \"network\"")
        }
        for (what, value) in [("bridge", body.network.bridge), ("bridge_interface", body.network.bridgeInterface)] {
            if let value { try Self.checkInterfaceName(value, what: what) }
        }
        try updateConfig { config in
            if let bridge = body.network.bridge { config.network.bridge = bridge }
            if let bridgeInterface = body.network.bridgeInterface { config.network.bridgeInterface = bridgeInterface }
        }
        return try await network()
    }

    /// Linux interface names: 1–15 bytes, no '/', whitespace or ':'.
    static func checkInterfaceName(_ name: String, what: String) throws(DozeError) {
        let bad = name.isEmpty || name.utf8.count > 15 || name == "." || name == ".."
            || name.contains(where: { $0 == "/" || $0 == ":" || $0.isWhitespace })
        if bad { throw DozeError(.badRequest, "\(what) '\(name)' is not a valid interface name (1-15 characters, no '/', ':' or spaces)") }
    }

    public func imagePool() async throws(DozeError) -> ImagePoolDocument {
        let imagePool = config.imagePool
        return ImagePoolDocument(imagePool: .init(path: imagePool.path, maxGB: imagePool.maxGB, usedGB: Self.usedGB(imagePool.path)))
    }

    public func updateImagePool(_ body: ImagePoolDocument) async throws(DozeError) -> ImagePoolDocument {
        let change = body.imagePool
        guard change.path != nil || change.maxGB != nil else {
            throw DozeError(.badRequest, "give path, max_gb or both inside \"image-pool\"")
        }
        var path = config.imagePool.path
        if let requested = change.path {
            guard requested.hasPrefix("/") else { throw DozeError(.badRequest, "image-pool path '\(requested)' must be absolute") }
            path = Self.resolved(requested)
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue else {
                throw DozeError(.badRequest, "image-pool path '\(requested)' does not exist or is not a directory")
            }
            if path != Self.resolved(config.imagePool.path) {
                try storagePolicy.checkPool(path, what: "image-pool path",
                                            others: config.pools.map { ("pool '\($0.name)'", Self.resolved($0.path)) })
            }
        }
        let maxGB = change.maxGB ?? config.imagePool.maxGB
        guard maxGB > 0 else { throw DozeError(.badRequest, "max_gb must be > 0, got \(maxGB)") }
        let used = Self.usedGB(path)
        guard maxGB >= used else { throw DozeError(.conflict, "max_gb \(maxGB) is below the \(used) GB the images already use") }
        try updateConfig { $0.imagePool = .init(path: path, maxGB: maxGB) }
        return try await imagePool()
    }

    // MARK: Volume pools

    func poolBody(_ pool: VolumePool) -> PoolBody {
        PoolBody(name: pool.name, uuid: pool.uuid, path: pool.path, maxGB: pool.maxGB, usedGB: Self.usedGB(pool.path),
                 createdAt: pool.createdAt)
    }

    public func pools() async throws(DozeError) -> PoolsDocument {
        PoolsDocument(pools: config.pools.map(poolBody))
    }

    public func createPool(_ body: PoolDocument) async throws(DozeError) -> PoolDocument {
        guard let name = body.pool.name else { throw DozeError(.badRequest, "pool.name is required") }
        guard let rawPath = body.pool.path else { throw DozeError(.badRequest, "pool.path is required") }
        guard let maxGB = body.pool.maxGB else { throw DozeError(.badRequest, "pool.max_gb is required") }
        try Validation.poolName(name)
        guard rawPath.hasPrefix("/") else { throw DozeError(.badRequest, "pool path '\(rawPath)' must be absolute") }
        guard maxGB > 0 else { throw DozeError(.badRequest, "max_gb must be > 0, got \(maxGB)") }
        guard !rawPath.contains("\0") else { throw DozeError(.badRequest, "pool path must not contain NUL") }
        // Symlinks resolved first: a link to /etc is /etc. The pool keeps the resolved path.
        let path = Self.resolved(rawPath)
        if config.pools.contains(where: { $0.name == name }) { throw DozeError(.conflict, "a pool named '\(name)' exists") }
        let others = config.pools.map { ("pool '\($0.name)'", Self.resolved($0.path)) }
            + [("the image pool", Self.resolved(config.imagePool.path))]
        try storagePolicy.checkPool(path, what: "pool path", others: others)
        do {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            throw DozeError(.badRequest, "cannot create pool directory '\(path)': \(error.localizedDescription)")
        }
        let uuid = UUID().uuidString.lowercased()
        do {
            _ = try await hypervisor.createDirectoryPool(name: Self.libvirtPoolName(uuid), uuid: uuid, path: path)
        } catch {
            throw Self.map(error, doing: "hypervisor refused pool '\(name)'")
        }
        let pool = VolumePool(uuid: uuid, name: name, path: path, maxGB: maxGB, createdAt: Self.timestamp(Date()))
        do {
            try updateConfig { $0.pools.append(pool) }
        } catch {
            try? await hypervisor.deleteStoragePool(name: Self.libvirtPoolName(uuid))
            throw error
        }
        log.info("created pool", metadata: ["doze/pool": "\(name)", "doze/path": "\(path)"])
        return PoolDocument(pool: poolBody(pool))
    }

    func pool(_ uuid: String) throws(DozeError) -> (index: Int, pool: VolumePool) {
        guard let index = config.pools.firstIndex(where: { $0.uuid == uuid.lowercased() }) else {
            throw DozeError(.notFound, "unknown pool '\(uuid)'")
        }
        return (index, config.pools[index])
    }

    public func updatePool(uuid: String, _ body: PoolDocument) async throws(DozeError) -> PoolDocument {
        let (index, current) = try pool(uuid)
        if let name = body.pool.name, name != current.name, config.pools.contains(where: { $0.name == name }) {
            throw DozeError(.conflict, "a pool named '\(name)' exists")
        }
        let next = try current.updated(name: body.pool.name, path: body.pool.path.map(PathPolicy.normalize),
                                       maxGB: body.pool.maxGB, usedGB: Self.usedGB(current.path))
        try updateConfig { $0.pools[index] = next }
        return PoolDocument(pool: poolBody(next))
    }

    /// The VMs of this host whose definitions use `pool`: a disk (or any path) inside its directory, or one of its
    /// volumes by name. Files Doze did not put there do not make a pool "in use".
    func vmsUsing(_ pool: VolumePool) async -> [String] {
        let directory = Self.resolved(pool.path)
        let libvirtName = Self.libvirtPoolName(pool.uuid)
        var users: [String] = []
        for name in vms.keys.sorted() {
            guard let xml = try? await hypervisor.xml(.name(name), secure: false),
                  let description = try? await Self.describe(xml) else { continue }
            let byPath = description.hostPaths.contains { StoragePolicy.contains(directory, Self.resolved($0.path)) }
            let byVolume = description.volumes.contains { $0.pool == libvirtName }
            if byPath || byVolume { users.append(name) }
        }
        return users
    }

    public func deletePool(uuid: String) async throws(DozeError) -> PoolDocument {
        let (_, current) = try pool(uuid)
        let users = await vmsUsing(current)
        guard users.isEmpty else {
            throw DozeError(.conflict, "pool '\(current.name)' is in use by \(users.count) VM(s): \(users.prefix(5).joined(separator: ", ")); delete or move them first")
        }
        do {
            try await hypervisor.deleteStoragePool(name: Self.libvirtPoolName(current.uuid))
        } catch {
            if error.code != .notFound { throw Self.map(error, doing: "delete pool '\(current.name)'") }
        }
        try updateConfig { $0.pools.removeAll { $0.uuid == current.uuid } }
        log.info("deleted pool", metadata: ["doze/pool": "\(current.name)"])
        return PoolDocument(pool: PoolBody(uuid: current.uuid))
    }

    /// Disk space the files under `path` take, in GB (GiB), rounded up so a non-empty directory never shows 0.
    static func usedGB(_ path: String) -> Int {
        guard let walker = FileManager.default.enumerator(atPath: path) else { return 0 }
        var bytes: UInt64 = 0
        for case let name as String in walker {
            guard let attributes = try? FileManager.default.attributesOfItem(atPath: path + "/" + name),
                  attributes[.type] as? FileAttributeType == .typeRegular else { continue }
            bytes += (attributes[.size] as? NSNumber)?.uint64Value ?? 0
        }
        let gib: UInt64 = 1 << 30
        return Int((bytes + gib - 1) / gib)
    }

    static func timestamp(_ date: Date) -> String {
        let parts = Calendar.current.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(format: "%04d-%02d-%02d %02d:%02d:%02d", parts.year ?? 0, parts.month ?? 0, parts.day ?? 0,
                      parts.hour ?? 0, parts.minute ?? 0, parts.second ?? 0)
    }

    // MARK: Metrics

    public func metrics(_ period: MetricsPeriod) async throws(DozeError) -> MetricsDocument {
        let now = Date()
        let calendar = Calendar.current
        let window = period.window(now: now, calendar: calendar)
        let samples = metrics.samples(from: window.start.timeIntervalSince1970, to: window.end.timeIntervalSince1970)
        return MetricsDocument(MetricsReport.build(samples: samples, period: period, now: now, calendar: calendar))
    }
}
