import ClusterCore
import Foundation

// Snooze's hierarchy descriptions (snooze.md §5.5), as the read APIs answer them, plus the internal join and
// assignment messages (docs/PROTOCOL.md). Credentials never travel: wake-up options are always empty.

public struct ListenSettings: Sendable, Equatable, Codable {
    public var controlDataAddress: NetworkAddress
    public var monitoringDataAddress: NetworkAddress
    public init(controlDataAddress: NetworkAddress, monitoringDataAddress: NetworkAddress) {
        self.controlDataAddress = controlDataAddress
        self.monitoringDataAddress = monitoringDataAddress
    }
}

public struct HypervisorSettings: Sendable, Equatable, Codable {
    public struct Migration: Sendable, Equatable, Codable {
        public var method = "live"
        public var timeout = 60
    }
    public var port = 16509
    public var driver: String
    public var transport: String
    public var migration = Migration()
    public var uri: String
    public init(uri: String) {
        self.uri = uri
        let scheme = uri.split(separator: ":").first.map(String.init) ?? "qemu"
        let parts = scheme.split(separator: "+")
        driver = parts.first.map(String.init) ?? "qemu"
        transport = parts.count > 1 ? String(parts[1]) : "unix"
    }
}

public struct WakeupSettings: Sendable, Equatable, Codable {
    public var driver = "none"
    public var options = ""
    public init() {}
}

public struct LocalControllerLocation: Sendable, Equatable, Codable {
    public var localControllerId: String
    /// nil while the controller has no manager (Snooze writes "UNKNOWN").
    public var groupManagerId: NodeID?
    public var groupManagerControlDataAddress: NetworkAddress?

    enum CodingKeys: String, CodingKey { case localControllerId, groupManagerId, groupManagerControlDataAddress }

    public init(localControllerId: String, manager: ManagerInfo?) {
        self.localControllerId = localControllerId
        self.groupManagerId = manager?.id
        self.groupManagerControlDataAddress = manager.map { NetworkAddress($0.control) }
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        localControllerId = try c.value(.localControllerId, default: "")
        groupManagerId = try c.snoozeID(.groupManagerId)
        groupManagerControlDataAddress = try c.snoozeAddress(.groupManagerControlDataAddress)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(localControllerId, forKey: .localControllerId)
        try c.encodeSnoozeID(groupManagerId, forKey: .groupManagerId)
        try c.encodeSnoozeAddress(groupManagerControlDataAddress, forKey: .groupManagerControlDataAddress)
    }
}

public struct LocalControllerDescription: Sendable, Equatable, Codable {
    public var id: String
    public var hostname: String
    public var status: String
    public var controlDataAddress: NetworkAddress
    public var heartbeatAddress: NetworkAddress
    public var hypervisorSettings: HypervisorSettings?
    public var wakeupSettings: WakeupSettings
    /// `[vcpus, memory KiB, rx, tx]`
    public var totalCapacity: [Double]
    public var usedCapacity: [Double]
    public var requestedCapacity: [Double]
    public var virtualMachineMetaData: [String: VirtualMachineMetaData]
    public var assignedVirtualMachines: [String]
    public var isAssigned: Bool
    public var location: LocalControllerLocation

    public init(_ info: ControllerInfo, manager: ManagerInfo?, hypervisorURI: String? = nil,
                virtualMachines: [VirtualMachineMetaData] = []) {
        id = info.id
        hostname = info.control.host
        status = "ACTIVE"
        controlDataAddress = NetworkAddress(address: info.control.host, port: info.control.port)
        heartbeatAddress = NetworkAddress(address: info.heartbeat.host, port: info.heartbeat.port)
        hypervisorSettings = hypervisorURI.map(HypervisorSettings.init(uri:))
        wakeupSettings = WakeupSettings()
        totalCapacity = info.summary.total.snoozeArray
        usedCapacity = info.summary.used.snoozeArray
        requestedCapacity = info.summary.requested.snoozeArray
        // The controller's own reports, placed here; a VM it lists but did not describe (it did not answer the
        // view's question in time) is still located completely, so a client can act on it.
        var metas: [String: VirtualMachineMetaData] = [:]
        for var vm in virtualMachines {
            vm.locate(on: info, under: manager)
            metas[vm.virtualMachineLocation.virtualMachineId] = vm
        }
        for name in info.vms where metas[name] == nil {
            var vm = VirtualMachineMetaData(location: .init(virtualMachineId: name))
            vm.locate(on: info, under: manager)
            metas[name] = vm
        }
        virtualMachineMetaData = metas
        assignedVirtualMachines = []
        isAssigned = manager != nil
        location = LocalControllerLocation(localControllerId: info.id, manager: manager)
    }
}

public struct GroupManagerSummaryInformation: Sendable, Equatable, Codable {
    public var timeStamp: Int64
    public var activeCapacity: [Double]
    public var passiveCapacity: [Double]
    public var requestedCapacity: [Double]
    public var usedCapacity: [Double]
    public var legacyIpAddresses: [String]
    public var localControllers: [String]

    public init(_ summary: CapacitySummary, controllers: [String], timeStamp: Int64) {
        self.timeStamp = timeStamp
        activeCapacity = summary.total.snoozeArray
        passiveCapacity = ResourceVector.zero.snoozeArray
        requestedCapacity = summary.requested.snoozeArray
        usedCapacity = summary.used.snoozeArray
        legacyIpAddresses = []
        localControllers = controllers
    }
}

public struct GroupManagerDescription: Sendable, Equatable, Codable {
    public var id: String
    public var hostname: String
    public var listenSettings: ListenSettings
    public var heartbeatAddress: NetworkAddress
    public var isAssigned: Bool
    public var virtualMachines: [String]
    public var summaryInformation: [String: GroupManagerSummaryInformation]
    public var localControllers: [String: LocalControllerDescription]
    /// Doze additions: the term this description belongs to, and whether this manager is the leader.
    public var term: Term
    public var isLeader: Bool

    public init(_ info: ManagerInfo, term: Term, isLeader: Bool, controllers: [LocalControllerDescription] = [],
                summary: CapacitySummary? = nil, timeStamp: Int64 = 0) {
        id = info.id
        hostname = info.control.host
        let control = NetworkAddress(address: info.control.host, port: info.control.port)
        listenSettings = ListenSettings(controlDataAddress: control, monitoringDataAddress: control)
        heartbeatAddress = NetworkAddress(address: info.heartbeat.host, port: info.heartbeat.port)
        isAssigned = true
        virtualMachines = controllers.flatMap { $0.virtualMachineMetaData.keys }.sorted()
        var byID: [String: LocalControllerDescription] = [:]
        for controller in controllers { byID[controller.id] = controller }
        localControllers = byID
        summaryInformation = summary.map { ["\(timeStamp)": GroupManagerSummaryInformation($0, controllers: controllers.map(\.id).sorted(), timeStamp: timeStamp)] } ?? [:]
        self.term = term
        self.isLeader = isLeader
    }

    public var managerInfo: ManagerInfo {
        ManagerInfo(id: id, control: Endpoint(host: listenSettings.controlDataAddress.address, port: listenSettings.controlDataAddress.port),
                    heartbeat: Endpoint(host: heartbeatAddress.address, port: heartbeatAddress.port))
    }
}

public struct LocalControllerList: Sendable, Equatable, Codable {
    public var localControllers: [LocalControllerDescription]
    public init(localControllers: [LocalControllerDescription]) { self.localControllers = localControllers }
}

public struct GroupLeaderRepositoryInformation: Sendable, Equatable, Codable {
    public var groupManagerDescriptions: [GroupManagerDescription]
    /// Doze addition: the leader itself, so one document shows the whole tree.
    public var groupLeader: GroupManagerDescription?
    public init(groupManagerDescriptions: [GroupManagerDescription], groupLeader: GroupManagerDescription?) {
        self.groupManagerDescriptions = groupManagerDescriptions
        self.groupLeader = groupLeader
    }
}

public struct GroupManagerRepositoryInformation: Sendable, Equatable, Codable {
    public var localControllerDescriptions: [LocalControllerDescription]
    public init(localControllerDescriptions: [LocalControllerDescription]) { self.localControllerDescriptions = localControllerDescriptions }
}

// MARK: - Internal messages (JSON over HTTP between roles; see docs/PROTOCOL.md)

/// GM → GL `joinGroupLeader`.
public struct JoinLeaderRequest: Sendable, Equatable, Codable {
    public var manager: ManagerInfo
    public var term: Term
    public var controllers: [ControllerInfo]
    public init(manager: ManagerInfo, term: Term, controllers: [ControllerInfo]) {
        self.manager = manager
        self.term = term
        self.controllers = controllers
    }
}

/// LC → GL `assignLocalController`.
public struct AssignRequest: Sendable, Equatable, Codable {
    public var controller: ControllerInfo
    public var previousManager: NodeID?
    public var avoidManager: NodeID?
    public init(controller: ControllerInfo, previousManager: NodeID?, avoidManager: NodeID?) {
        self.controller = controller
        self.previousManager = previousManager
        self.avoidManager = avoidManager
    }
}

/// GL → LC: Snooze's `AssignedGroupManager`.
public struct AssignedGroupManager: Sendable, Equatable, Codable {
    public var localControllerId: String
    public var groupManager: GroupManagerDescription
    /// Doze addition: VMs this controller's host held when it was fenced and that were restarted elsewhere. The
    /// controller destroys (and undefines) its copies before it joins and reports its VMs. Absent: none.
    public var staleVirtualMachines: [String]?
    public init(localControllerId: String, groupManager: GroupManagerDescription, staleVirtualMachines: [String]? = nil) {
        self.localControllerId = localControllerId
        self.groupManager = groupManager
        self.staleVirtualMachines = staleVirtualMachines
    }
}

/// LC → GM `joinGroupManager`: the controller and the VMs it runs.
public struct JoinManagerRequest: Sendable, Equatable, Codable {
    public var controller: ControllerInfo
    public var hypervisorURI: String
    public var virtualMachines: [VirtualMachineMetaData]
    public init(controller: ControllerInfo, hypervisorURI: String, virtualMachines: [VirtualMachineMetaData]) {
        self.controller = controller
        self.hypervisorURI = hypervisorURI
        self.virtualMachines = virtualMachines
    }
}
