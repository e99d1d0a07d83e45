/// A domain's run state, as libvirt reports it.
public enum DomainState: String, Sendable, Codable, Equatable {
    case running, blocked, paused, shuttingDown, shutOff, crashed, suspendedToMemory, noState

    /// Holds CPU and memory on the host.
    public var isActive: Bool {
        switch self {
        case .running, .blocked, .paused, .shuttingDown, .suspendedToMemory: return true
        case .shutOff, .crashed, .noState: return false
        }
    }
}

public struct NodeInfo: Sendable, Equatable {
    public var cpus: Int
    public var memoryKiB: UInt64
    public var model: String
    public var mhz: Int
    public init(cpus: Int, memoryKiB: UInt64, model: String, mhz: Int) {
        self.cpus = cpus
        self.memoryKiB = memoryKiB
        self.model = model
        self.mhz = mhz
    }
}

public struct DomainInfo: Sendable, Equatable {
    public var name: String
    public var uuid: String
    public var state: DomainState
    public var vcpus: Int
    public var memoryKiB: UInt64        // current
    public var maxMemoryKiB: UInt64
    public var cpuTimeNs: UInt64
    public var persistent: Bool
    public init(name: String, uuid: String, state: DomainState, vcpus: Int, memoryKiB: UInt64,
                maxMemoryKiB: UInt64, cpuTimeNs: UInt64, persistent: Bool) {
        self.name = name
        self.uuid = uuid
        self.state = state
        self.vcpus = vcpus
        self.memoryKiB = memoryKiB
        self.maxMemoryKiB = maxMemoryKiB
        self.cpuTimeNs = cpuTimeNs
        self.persistent = persistent
    }
}

public struct DomainStats: Sendable, Equatable {
    public var cpuTimeNs: UInt64
    public var memoryKiB: UInt64
    public var rxBytes: UInt64
    public var txBytes: UInt64
    /// vCPUs the domain has at the time of the reading (CPU time is spread over these).
    public var vcpus: Int
    public init(cpuTimeNs: UInt64, memoryKiB: UInt64, rxBytes: UInt64, txBytes: UInt64, vcpus: Int = 0) {
        self.cpuTimeNs = cpuTimeNs
        self.memoryKiB = memoryKiB
        self.rxBytes = rxBytes
        self.txBytes = txBytes
        self.vcpus = vcpus
    }
}

public struct SnapshotInfo: Sendable, Equatable {
    public var name: String
    public var createdAt: Int64          // unix seconds, as libvirt records it
    public var state: String             // the domain state captured
    public var isCurrent: Bool
    public init(name: String, createdAt: Int64, state: String, isCurrent: Bool) {
        self.name = name
        self.createdAt = createdAt
        self.state = state
        self.isCurrent = isCurrent
    }
}

public struct StoragePoolInfo: Sendable, Equatable {
    public var name: String
    public var uuid: String
    public var path: String
    public var active: Bool
    public var capacityBytes: UInt64
    public var allocationBytes: UInt64
    public init(name: String, uuid: String, path: String, active: Bool, capacityBytes: UInt64, allocationBytes: UInt64) {
        self.name = name
        self.uuid = uuid
        self.path = path
        self.active = active
        self.capacityBytes = capacityBytes
        self.allocationBytes = allocationBytes
    }
}

public struct StorageVolumeInfo: Sendable, Equatable {
    public var name: String
    public var path: String
    public var capacityBytes: UInt64
    public var allocationBytes: UInt64
    public init(name: String, path: String, capacityBytes: UInt64, allocationBytes: UInt64) {
        self.name = name
        self.path = path
        self.capacityBytes = capacityBytes
        self.allocationBytes = allocationBytes
    }
}

/// A domain lifecycle event (libvirt's `VIR_DOMAIN_EVENT_*`).
public struct DomainEvent: Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
        case defined, undefined, started, suspended, resumed, stopped, shutdown, pmsuspended, crashed, other
    }
    public var domain: String
    public var uuid: String
    public var kind: Kind
    public var detail: Int32
    public init(domain: String, uuid: String, kind: Kind, detail: Int32) {
        self.domain = domain
        self.uuid = uuid
        self.kind = kind
        self.detail = detail
    }
}

/// How a domain is looked up.
public enum DomainRef: Sendable, Equatable, CustomStringConvertible {
    case name(String)
    case uuid(String)
    public var description: String {
        switch self {
        case .name(let name): return name
        case .uuid(let uuid): return uuid
        }
    }
}

/// A peer-to-peer live migration as `virsh migrate --live --p2p --persistent --undefinesource` runs it, plus the
/// settings Doze exposes.
public struct LiveMigrationParameters: Sendable, Equatable {
    /// The destination daemon as the *source daemon* dials it (e.g. `qemu+tcp://10.77.0.12/system`).
    public var destinationURI: String
    /// Where QEMU sends its stream (`VIR_MIGRATE_PARAM_URI`); nil: the destination daemon's `migration_host`.
    public var migrateURI: String?
    /// MiB/s; 0: unlimited.
    public var bandwidthMiBs: UInt64 = 0
    public var maxDowntimeMs: UInt64?
    public var autoConverge = true
    public var postCopy = false
    /// Copy the disks as well (`VIR_MIGRATE_NON_SHARED_DISK`).
    public var copyStorage = false
    /// With `copyStorage`: copy only each disk's top image (`VIR_MIGRATE_NON_SHARED_INC`), for overlays whose
    /// backing image the destination has (a disk without a backing file is copied whole either way).
    public var incrementalStorage = false
    /// The domain as the destination defines it (`VIR_MIGRATE_PARAM_DEST_XML`): the same guest with its disks
    /// at the destination's paths. nil: the source's definition.
    public var destinationXML: String?

    public init(destinationURI: String) {
        self.destinationURI = destinationURI
    }
}

/// A domain's job statistics (`virDomainGetJobStats`); bytes and milliseconds.
public struct JobStats: Sendable, Equatable {
    public var elapsedMs: UInt64 = 0
    public var dataTotal: UInt64 = 0
    public var dataProcessed: UInt64 = 0
    public var dataRemaining: UInt64 = 0
    public var memoryBytesPerSecond: UInt64 = 0
    public var iteration: UInt64 = 0
    /// Expected downtime while a migration runs; the measured one in a completed job's statistics.
    public var downtimeMs: UInt64?
    public init() {}
}
