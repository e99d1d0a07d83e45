import ClusterCore
import Foundation

// Live migration (docs/PROTOCOL.md §6). Snooze's forms are accepted as Snooze clients send them; the native
// form is a tracked migration with progress, abort and a recorded outcome.

extension VirtualMachineMetaData {
    /// What the VM asks of a host, in the units placement and quotas count (at least 1 vCPU and 1 MiB).
    public var demand: HostUsage {
        HostUsage(vcpus: max(1, Int(requested.vcpus)), memoryMiB: max(1, Int((requested.memoryKiB + 1023) / 1024)))
    }
}

/// Snooze's `MigrationRequest` (leader `migrateVirtualMachine`). Only the VM id, the source controller (optional:
/// the leader finds the VM) and the destination controller's id are used; the rest is Snooze's own bookkeeping.
public struct SnoozeMigrationRequest: Sendable, Equatable, Codable {
    public var sourceVirtualMachineLocation: VirtualMachineLocation
    public var destinationVirtualMachineLocation: VirtualMachineLocation
    public var migrated: Bool

    public init(source: VirtualMachineLocation, destination: VirtualMachineLocation) {
        sourceVirtualMachineLocation = source
        destinationVirtualMachineLocation = destination
        migrated = false
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        sourceVirtualMachineLocation = try c.decode(VirtualMachineLocation.self, forKey: .sourceVirtualMachineLocation)
        destinationVirtualMachineLocation = try c.decode(VirtualMachineLocation.self, forKey: .destinationVirtualMachineLocation)
        migrated = try c.value(.migrated, default: false)
    }
}

/// The bootstrap's form (`{"virtualMachineId","localControllerId"}`), which Snooze served only with Cassandra.
public struct BootstrapMigrationRequest: Sendable, Equatable, Codable {
    public var virtualMachineId: String
    public var localControllerId: String
    public init(virtualMachineId: String, localControllerId: String) {
        self.virtualMachineId = virtualMachineId
        self.localControllerId = localControllerId
    }
}

/// How a migration converges when the guest dirties memory faster than it can be sent. Snooze instead paused
/// the guest after a timeout and never resumed it.
public enum MigrationConvergence: String, Sendable, Codable, CaseIterable {
    /// QEMU throttles the guest's vCPUs step by step until the remaining memory fits the downtime.
    case autoConverge = "auto-converge"
    /// Switch to post-copy after `postCopyAfterSeconds`: the guest runs on the destination and pulls what is missing.
    case postCopy = "post-copy"
    case none
}

/// What a caller may tune; every field is optional and defaults on the controller.
public struct MigrationOptions: Sendable, Equatable, Codable {
    /// `auto`: live where the hypervisor can, otherwise offline (save and restore); `live`: live or refuse; `offline`.
    public var mode: String?
    /// MiB/s; 0 or absent: unlimited.
    public var bandwidthMiBs: UInt64?
    /// The longest pause the guest may see at the switch-over, in milliseconds.
    public var maxDowntimeMs: UInt64?
    public var convergence: MigrationConvergence?
    public var postCopyAfterSeconds: Double?
    /// Copy the disks too (`VIR_MIGRATE_NON_SHARED_DISK`), for hosts that share no storage; the destination must
    /// have the disk files (or their pool). Absent: false, the hosts share the VM's storage.
    public var copyStorage: Bool?

    public init(mode: String? = nil, bandwidthMiBs: UInt64? = nil, maxDowntimeMs: UInt64? = nil,
                convergence: MigrationConvergence? = nil, postCopyAfterSeconds: Double? = nil, copyStorage: Bool? = nil) {
        self.mode = mode
        self.bandwidthMiBs = bandwidthMiBs
        self.maxDowntimeMs = maxDowntimeMs
        self.convergence = convergence
        self.postCopyAfterSeconds = postCopyAfterSeconds
        self.copyStorage = copyStorage
    }

    public static let modes = ["auto", "live", "offline"]
}

/// `POST /v1/migrations`.
public struct MigrationSubmission: Sendable, Equatable, Codable {
    public var vm: String
    /// The destination local controller's id.
    public var to: String
    public var options: MigrationOptions?
    public init(vm: String, to: String, options: MigrationOptions? = nil) {
        self.vm = vm
        self.to = to
        self.options = options
    }
}

public enum MigrationState: String, Sendable, Codable, CaseIterable {
    /// Waiting for a free migration slot on one of its hosts (drains queue; single requests are refused instead).
    case queued
    case running, completed, failed, aborted
    public var isFinal: Bool { self != .running && self != .queued }
}

/// Progress as libvirt's job statistics report it (bytes, milliseconds).
public struct MigrationProgress: Sendable, Equatable, Codable {
    public var elapsedMs: UInt64
    public var dataTotal: UInt64
    public var dataProcessed: UInt64
    public var dataRemaining: UInt64
    public var memoryBytesPerSecond: UInt64
    public var iteration: UInt64
    /// While running: what QEMU expects; once completed: the measured pause.
    public var downtimeMs: UInt64?
    public init(elapsedMs: UInt64 = 0, dataTotal: UInt64 = 0, dataProcessed: UInt64 = 0, dataRemaining: UInt64 = 0,
                memoryBytesPerSecond: UInt64 = 0, iteration: UInt64 = 0, downtimeMs: UInt64? = nil) {
        self.elapsedMs = elapsedMs
        self.dataTotal = dataTotal
        self.dataProcessed = dataProcessed
        self.dataRemaining = dataRemaining
        self.memoryBytesPerSecond = memoryBytesPerSecond
        self.iteration = iteration
        self.downtimeMs = downtimeMs
    }
}

/// One end of a migration.
public struct MigrationEndpoint: Sendable, Equatable, Codable {
    public var localControllerId: String
    public var address: NetworkAddress
    /// nil when its manager is not known.
    public var groupManagerId: NodeID?
    public init(localControllerId: String, address: NetworkAddress, groupManagerId: NodeID? = nil) {
        self.localControllerId = localControllerId
        self.address = address
        self.groupManagerId = groupManagerId
    }
}

/// A migration as the cluster tracks it (`GET /v1/migrations/{id}`).
public struct MigrationRecord: Sendable, Equatable, Codable {
    public var id: String
    public var vm: String
    public var source: MigrationEndpoint
    public var destination: MigrationEndpoint
    /// `live` (libvirt peer-to-peer migration) or `offline` (save on the source, restore on the destination).
    public var mode: String
    public var state: MigrationState
    /// Unix milliseconds.
    public var startedAt: Int64
    public var finishedAt: Int64?
    /// Wall time from acceptance to the final state.
    public var durationMs: UInt64?
    public var progress: MigrationProgress?
    public var error: String?
    /// A drain that asked for this migration.
    public var drain: String?
    /// Why the rebalancer asked for it (`overload`, `underload`, `consolidation`); nil when a person asked.
    public var reason: String?
    public var options: MigrationOptions

    public init(id: String, vm: String, source: MigrationEndpoint, destination: MigrationEndpoint, mode: String,
                state: MigrationState = .running, startedAt: Int64, options: MigrationOptions, drain: String? = nil) {
        self.id = id
        self.vm = vm
        self.source = source
        self.destination = destination
        self.mode = mode
        self.state = state
        self.startedAt = startedAt
        self.options = options
        self.drain = drain
    }
}

public struct MigrationList: Sendable, Equatable, Codable {
    public var migrations: [MigrationRecord]
    public init(migrations: [MigrationRecord]) { self.migrations = migrations }
}

// MARK: - Between controllers (internal)

/// Leader → source controller: run this migration.
public struct LocalMigrationCommand: Sendable, Equatable, Codable {
    public var id: String
    public var vm: String
    public var destinationId: String
    public var destination: NetworkAddress
    public var options: MigrationOptions
    public init(id: String, vm: String, destinationId: String, destination: NetworkAddress, options: MigrationOptions) {
        self.id = id
        self.vm = vm
        self.destinationId = destinationId
        self.destination = destination
        self.options = options
    }
}

/// Source → destination controller: hold room for an incoming VM; the answer says how to reach this host's hypervisor.
public struct IncomingMigration: Sendable, Equatable, Codable {
    public var id: String
    public var vm: String
    public var vcpus: Int
    public var memoryMiB: Int
    /// The VM's NICs on seed-004 switches: the destination sets up their bridges before the VM arrives.
    public var networks: [NetworkAttachment]?
    /// The VM's Doze volumes (`VMVolume.encoded`: overlay and data volumes), which the destination creates
    /// before the move so libvirt can copy the disks into them. Absent: none.
    public var volumes: [String]?
    public init(id: String, vm: String, vcpus: Int, memoryMiB: Int, networks: [NetworkAttachment]? = nil, volumes: [String]? = nil) {
        self.id = id
        self.vm = vm
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
        self.networks = networks
        self.volumes = volumes
    }
}

public struct IncomingMigrationAnswer: Sendable, Equatable, Codable {
    /// The libvirt URI the source's daemon dials (`--migration-uri`); nil where none was configured.
    public var migrationURI: String?
    /// The destination's libvirt driver (`test`, `qemu`, …): the test driver cannot migrate live.
    public var driver: String
    /// Where the VM's volumes and their backing images are on the destination, by file name: the source points
    /// the destination's domain XML at these. Absent: the VM has no Doze volumes.
    public var volumePaths: [String: String]?
    public init(migrationURI: String?, driver: String, volumePaths: [String: String]? = nil) {
        self.migrationURI = migrationURI
        self.driver = driver
        self.volumePaths = volumePaths
    }
}

/// A controller's view of a migration it runs (source side), long-polled by the leader.
public struct LocalMigrationStatus: Sendable, Equatable, Codable {
    public var id: String
    public var vm: String
    public var mode: String
    public var state: MigrationState
    public var progress: MigrationProgress?
    public var error: String?
    public init(id: String, vm: String, mode: String, state: MigrationState, progress: MigrationProgress? = nil, error: String? = nil) {
        self.id = id
        self.vm = vm
        self.mode = mode
        self.state = state
        self.progress = progress
        self.error = error
    }
}

/// Source → destination, offline mode: the saved image of a VM.
public struct OfflineMigrationImage: Sendable, Codable {
    public var id: String
    public var vm: String
    public var image: Data
    public init(id: String, vm: String, image: Data) {
        self.id = id
        self.vm = vm
        self.image = image
    }
}

/// Leader → group managers: a VM moved; update the books now rather than at the next heartbeats.
public struct VirtualMachineMove: Sendable, Equatable, Codable {
    public var vm: String
    public var from: String
    public var to: String
    /// What the VM asks for, moved from one host's requested capacity to the other's.
    public var vcpus: Int
    public var memoryMiB: Int
    public init(vm: String, from: String, to: String, vcpus: Int, memoryMiB: Int) {
        self.vm = vm
        self.from = from
        self.to = to
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
    }
}

// MARK: - Hosts

/// `GET /v1/hosts`: every local controller, its load and whether it takes new VMs.
public struct HostEntry: Sendable, Equatable, Codable {
    public var id: String
    public var address: NetworkAddress
    public var groupManagerId: String
    public var draining: Bool
    public var vms: [String]
    public var vcpus: Double
    public var vcpusRequested: Double
    public var memoryMiB: Double
    public var memoryMiBRequested: Double
    public var migrations: Int
    /// Use as the managers' windows estimate it (issue 12); nil while the host's manager has no window of it.
    public var vcpusInUse: Double?
    public var memoryUsedMiB: Double?
    /// Shares of capacity: what the rebalancer's thresholds are compared with.
    public var cpuFraction: Double?
    public var memoryFraction: Double?
    /// Energy saving: `on`, `powering-off`, `sleeping` or `waking` (a sleeping host's controller is not heard, so
    /// only the leader's energy saver lists it); nil from a leader without energy saving.
    public var power: String?
    /// Why the last power-off or wake of this host failed.
    public var powerError: String?
    public init(id: String, address: NetworkAddress, groupManagerId: String, draining: Bool, vms: [String],
                vcpus: Double, vcpusRequested: Double, memoryMiB: Double, memoryMiBRequested: Double, migrations: Int) {
        self.id = id
        self.address = address
        self.groupManagerId = groupManagerId
        self.draining = draining
        self.vms = vms
        self.vcpus = vcpus
        self.vcpusRequested = vcpusRequested
        self.memoryMiB = memoryMiB
        self.memoryMiBRequested = memoryMiBRequested
        self.migrations = migrations
    }
}

public struct HostList: Sendable, Equatable, Codable {
    public var hosts: [HostEntry]
    public init(hosts: [HostEntry]) { self.hosts = hosts }
}

/// `POST /v1/hosts/{id}/drain`: the migrations started, and the VMs no other host has room for.
public struct DrainReport: Sendable, Equatable, Codable {
    public var host: String
    public var draining: Bool
    public var migrations: [MigrationRecord]
    public var unplaced: [String: String]
    public init(host: String, draining: Bool, migrations: [MigrationRecord], unplaced: [String: String]) {
        self.host = host
        self.draining = draining
        self.migrations = migrations
        self.unplaced = unplaced
    }
}
