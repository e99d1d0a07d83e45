import ClusterCore
import Foundation

// Snooze's virtual-cluster submission shapes (snooze.md §5.5, §6) and Doze's task document around them.

/// `networkCapacityDemand`: bytes per second the VM is expected to receive and send.
public struct NetworkDemand: Sendable, Equatable, Codable {
    public var rxBytes: Double
    public var txBytes: Double
    public init(rxBytes: Double = 0, txBytes: Double = 0) {
        self.rxBytes = rxBytes
        self.txBytes = txBytes
    }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        rxBytes = try c.value(.rxBytes, default: 0)
        txBytes = try c.value(.txBytes, default: 0)
    }
}

/// One VM of a submission: a libvirt template, or `name` + `imageId` (+ `vcpus`, `memory` KiB) for a VM built
/// from an image of the chosen host's image pool. `hostId` pins it to a group manager or local controller.
public struct VirtualMachineTemplate: Sendable, Equatable, Codable {
    public var libVirtTemplate: String?
    public var networkCapacityDemand: NetworkDemand
    public var vcpus: Int?
    /// KiB, as in Snooze.
    public var memory: Int?
    public var imageId: String?
    public var name: String?
    public var hostId: String?
    /// Doze addition, image-based VMs only: a VNC console with this password.
    public var vncPassword: String?
    /// Doze addition: restart this VM on another host when its host dies (after the host is fenced).
    /// Older clients omit it: off.
    public var ha: Bool?
    /// Doze addition (seed 004): the switches the VM gets a NIC on, in order (`doze network create`). Absent:
    /// none, the VM stays on the cluster's default network as Snooze templates always did.
    public var networks: [String]?
    /// Doze addition, image-based VMs only: one data volume (qcow2) of each size, in GiB, created on the VM's
    /// host and deleted with the VM (kvm-apps' `disks`). Absent: none.
    public var disks: [Int]?
    /// Doze addition: the tenant the VM belongs to. The leader sets it from the submitter's token; only an admin
    /// may name another tenant here.
    public var tenant: String?

    public init(libVirtTemplate: String? = nil, networkCapacityDemand: NetworkDemand = .init(), vcpus: Int? = nil,
                memory: Int? = nil, imageId: String? = nil, name: String? = nil, hostId: String? = nil) {
        self.libVirtTemplate = libVirtTemplate
        self.networkCapacityDemand = networkCapacityDemand
        self.vcpus = vcpus
        self.memory = memory
        self.imageId = imageId
        self.name = name
        self.hostId = hostId
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        libVirtTemplate = try c.decodeIfPresent(String.self, forKey: .libVirtTemplate)
        networkCapacityDemand = try c.value(.networkCapacityDemand, default: .init())
        vcpus = try c.decodeIfPresent(Int.self, forKey: .vcpus)
        memory = try c.decodeIfPresent(Int.self, forKey: .memory)
        imageId = try c.decodeIfPresent(String.self, forKey: .imageId)
        name = try c.decodeIfPresent(String.self, forKey: .name)
        hostId = try c.decodeIfPresent(String.self, forKey: .hostId)
        vncPassword = try c.decodeIfPresent(String.self, forKey: .vncPassword)
        ha = try c.decodeIfPresent(Bool.self, forKey: .ha)
        networks = try c.decodeIfPresent([String].self, forKey: .networks)
        disks = try c.decodeIfPresent([Int].self, forKey: .disks)
        tenant = try c.decodeIfPresent(String.self, forKey: .tenant)
    }

    /// Whether the VM is highly available (`ha: true`).
    public var isHighlyAvailable: Bool { ha == true }

    /// Snooze's "no pin" value.
    public var pinnedHost: String? {
        guard let hostId, !hostId.isEmpty, hostId != "UNKNOWN" else { return nil }
        return hostId
    }
}

public struct VirtualClusterSubmissionRequest: Sendable, Equatable, Codable {
    public var virtualMachineTemplates: [VirtualMachineTemplate]
    public init(virtualMachineTemplates: [VirtualMachineTemplate]) { self.virtualMachineTemplates = virtualMachineTemplates }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        virtualMachineTemplates = try c.value(.virtualMachineTemplates, default: [])
    }
}

/// Snooze's cluster-level error codes (`errorCode` null means none).
public enum VirtualClusterErrorCode: String, Sendable, Codable {
    case generalException = "GENERAL_EXCEPTION"
    case groupManagersMissing = "GROUP_MANAGERS_MISSING"
}

public struct VirtualClusterSubmissionResponse: Sendable, Equatable, Codable {
    public var errorCode: VirtualClusterErrorCode?
    public var virtualMachineMetaData: [VirtualMachineMetaData]
    public init(errorCode: VirtualClusterErrorCode? = nil, virtualMachineMetaData: [VirtualMachineMetaData]) {
        self.errorCode = errorCode
        self.virtualMachineMetaData = virtualMachineMetaData
    }
    enum CodingKeys: String, CodingKey { case errorCode, virtualMachineMetaData }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(errorCode, forKey: .errorCode)   // Snooze writes `"errorCode":null`
        try c.encode(virtualMachineMetaData, forKey: .virtualMachineMetaData)
    }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        errorCode = try c.decodeIfPresent(VirtualClusterErrorCode.self, forKey: .errorCode)
        virtualMachineMetaData = try c.value(.virtualMachineMetaData, default: [])
    }
}

/// Doze's view of one submission: the Snooze response plus where it stands. Read as often as wanted until it expires.
public struct VirtualClusterTaskDocument: Sendable, Equatable, Codable {
    public enum State: String, Sendable, Codable {
        /// Some VMs are still being placed or started.
        case pending
        /// Every VM is RUNNING or ERROR; nothing changes any more.
        case done
    }
    public struct Counts: Sendable, Equatable, Codable {
        public var total = 0
        public var pending = 0
        public var running = 0
        public var failed = 0
        public init() {}
    }
    public var taskId: String
    public var state: State
    public var counts: Counts
    /// Wall-clock milliseconds.
    public var createdAt: Int64
    public var finishedAt: Int64?
    public var expiresAt: Int64?
    public var response: VirtualClusterSubmissionResponse

    public init(taskId: String, state: State, counts: Counts, createdAt: Int64, finishedAt: Int64?, expiresAt: Int64?,
                response: VirtualClusterSubmissionResponse) {
        self.taskId = taskId
        self.state = state
        self.counts = counts
        self.createdAt = createdAt
        self.finishedAt = finishedAt
        self.expiresAt = expiresAt
        self.response = response
    }
}

/// The leader's answer to `discoverVirtualMachine`: where the VM runs, every part known (the leader answers
/// only once it knows them all).
public struct VirtualMachineDiscoveryResponse: Sendable, Equatable, Codable {
    public var localControllerId: NodeID
    public var groupManagerAddress: NetworkAddress
    // Doze additions, so a caller needs no second lookup.
    public var groupManagerId: NodeID
    public var localControllerAddress: NetworkAddress

    public init(controller: ControllerInfo, manager: ManagerInfo) {
        localControllerId = controller.id
        localControllerAddress = NetworkAddress(controller.control)
        groupManagerId = manager.id
        groupManagerAddress = NetworkAddress(manager.control)
    }

    public var groupManagerEndpoint: Endpoint { Endpoint(host: groupManagerAddress.address, port: groupManagerAddress.port) }

    public func location(vm: String) -> VirtualMachineLocation {
        VirtualMachineLocation(virtualMachineId: vm, localControllerId: localControllerId,
                               localControllerControlDataAddress: localControllerAddress, groupManagerId: groupManagerId,
                               groupManagerControlDataAddress: groupManagerAddress)
    }
}

/// `getVirtualMachineMetaData`'s body on a group manager.
public struct VirtualMachineMetaDataRequest: Sendable, Equatable, Codable {
    public var virtualMachineLocation: VirtualMachineLocation
    public var numberOfMonitoringEntries: Int
    public init(virtualMachineLocation: VirtualMachineLocation, numberOfMonitoringEntries: Int = 0) {
        self.virtualMachineLocation = virtualMachineLocation
        self.numberOfMonitoringEntries = numberOfMonitoringEntries
    }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        virtualMachineLocation = try c.value(.virtualMachineLocation, default: .init(virtualMachineId: ""))
        numberOfMonitoringEntries = try c.value(.numberOfMonitoringEntries, default: 0)
    }
}

/// `{"virtualMachines":[…]}`: every VM of the cluster (`getVirtualMachineDescriptions`).
public struct VirtualMachineList: Sendable, Equatable, Codable {
    public var virtualMachines: [VirtualMachineMetaData]
    public init(virtualMachines: [VirtualMachineMetaData]) { self.virtualMachines = virtualMachines }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        virtualMachines = try c.value(.virtualMachines, default: [])
    }
}

/// The VM operations a group manager (by location) and the bootstrap (by VM id) forward to the VM's controller.
/// `start` (a shut-off VM) is a Doze addition: Snooze could not start a VM again.
public enum VMControl: String, Sendable, CaseIterable {
    case suspend, resume, shutdown, reboot, destroy, start

    /// Snooze's group-manager and bootstrap operation name (`suspendVirtualMachine`, …).
    public var snoozeOperation: String { rawValue + "VirtualMachine" }

    /// The local controller's operation (Snooze named suspend differently there).
    public var localControllerOperation: String { self == .suspend ? "suspendVirtualMachineOnRequest" : snoozeOperation }

    public init?(snoozeOperation op: String) {
        guard let match = Self.allCases.first(where: { $0.snoozeOperation == op }) else { return nil }
        self = match
    }
}
