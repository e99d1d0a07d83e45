import ClusterCore
import Foundation

// Snooze's JSON shapes (snooze.md §5.5). Property names are Jackson's getter names; every property may be
// missing on input and is always present on output, as Snooze wrote them.

public struct NetworkAddress: Sendable, Equatable, Codable {
    public var address: String
    public var port: Int

    public init(address: String = "UNKNOWN", port: Int = -1) {
        self.address = address
        self.port = port
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        address = try c.value(.address, default: "UNKNOWN")
        port = try c.value(.port, default: -1)
    }
}

public struct VirtualMachineLocation: Sendable, Equatable, Codable {
    public var virtualMachineId: String
    public var localControllerId: String
    public var localControllerControlDataAddress: NetworkAddress
    public var groupManagerId: String
    public var groupManagerControlDataAddress: NetworkAddress

    public init(virtualMachineId: String, localControllerId: String = "UNKNOWN",
                localControllerControlDataAddress: NetworkAddress = .init(), groupManagerId: String = "UNKNOWN",
                groupManagerControlDataAddress: NetworkAddress = .init()) {
        self.virtualMachineId = virtualMachineId
        self.localControllerId = localControllerId
        self.localControllerControlDataAddress = localControllerControlDataAddress
        self.groupManagerId = groupManagerId
        self.groupManagerControlDataAddress = groupManagerControlDataAddress
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        virtualMachineId = try c.value(.virtualMachineId, default: "")
        localControllerId = try c.value(.localControllerId, default: "UNKNOWN")
        localControllerControlDataAddress = try c.value(.localControllerControlDataAddress, default: .init())
        groupManagerId = try c.value(.groupManagerId, default: "UNKNOWN")
        groupManagerControlDataAddress = try c.value(.groupManagerControlDataAddress, default: .init())
    }
}

/// One monitoring entry of `usedCapacity` (Snooze's `VirtualMachineMonitoringData`).
public struct VirtualMachineMonitoringData: Sendable, Equatable, Codable {
    public var timeStamp: Int64
    public var usedCapacity: [Double]
    public init(timeStamp: Int64, usedCapacity: [Double]) {
        self.timeStamp = timeStamp
        self.usedCapacity = usedCapacity
    }
}

public struct VirtualMachineMetaData: Sendable, Equatable, Codable {
    public var virtualMachineLocation: VirtualMachineLocation
    public var status: VMStatus
    public var errorCode: VMErrorCode
    public var ipAddress: String
    public var xmlRepresentation: String
    /// `[vcpus, memory KiB, rx bytes, tx bytes]`.
    public var requestedCapacity: [Double]
    /// Monitoring entries keyed by their timestamp (ms), as Snooze's LRU map serialised.
    public var usedCapacity: [String: VirtualMachineMonitoringData]
    public var isAssigned: Bool
    public var groupManagerControlDataAddress: NetworkAddress
    /// Doze addition: a human-readable reason when `status` is `ERROR` or an operation failed.
    public var errorMessage: String?
    /// Doze addition: the image-pool entry a template without XML is built from (Snooze's `imageId`).
    public var imageId: String?
    /// Doze addition: what the host changed in the template to run it (e.g. the domain type), never silent.
    public var adaptations: [String]?
    /// Doze addition: an image-based VM gets a VNC console with this password (kvm-apps' `vnc.password`).
    public var vncPassword: String?

    public init(location: VirtualMachineLocation, status: VMStatus = .unknown, errorCode: VMErrorCode = .none,
                ipAddress: String = "", xmlRepresentation: String = "", requestedCapacity: ResourceVector = .zero,
                usedCapacity: [String: VirtualMachineMonitoringData] = [:], isAssigned: Bool = false,
                groupManagerControlDataAddress: NetworkAddress = .init(), errorMessage: String? = nil,
                imageId: String? = nil, adaptations: [String]? = nil) {
        self.virtualMachineLocation = location
        self.status = status
        self.errorCode = errorCode
        self.ipAddress = ipAddress
        self.xmlRepresentation = xmlRepresentation
        self.requestedCapacity = requestedCapacity.snoozeArray
        self.usedCapacity = usedCapacity
        self.isAssigned = isAssigned
        self.groupManagerControlDataAddress = groupManagerControlDataAddress
        self.errorMessage = errorMessage
        self.imageId = imageId
        self.adaptations = adaptations
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        virtualMachineLocation = try c.value(.virtualMachineLocation, default: .init(virtualMachineId: ""))
        status = (try? c.decodeIfPresent(VMStatus.self, forKey: .status)) ?? .unknown
        errorCode = (try? c.decodeIfPresent(VMErrorCode.self, forKey: .errorCode)) ?? .none
        ipAddress = try c.value(.ipAddress, default: "")
        xmlRepresentation = try c.value(.xmlRepresentation, default: "")
        requestedCapacity = try c.value(.requestedCapacity, default: [])
        usedCapacity = (try? c.decodeIfPresent([String: VirtualMachineMonitoringData].self, forKey: .usedCapacity)) ?? [:]
        isAssigned = try c.value(.isAssigned, default: false)
        groupManagerControlDataAddress = try c.value(.groupManagerControlDataAddress, default: .init())
        errorMessage = try c.decodeIfPresent(String.self, forKey: .errorMessage)
        imageId = try c.decodeIfPresent(String.self, forKey: .imageId)
        adaptations = try c.decodeIfPresent([String].self, forKey: .adaptations)
        vncPassword = try c.decodeIfPresent(String.self, forKey: .vncPassword)
    }

    public var requested: ResourceVector { ResourceVector(snoozeArray: requestedCapacity) }

    /// The one place a VM's place in the hierarchy is written: the controller and manager ids and control
    /// addresses, the assignment flag and Snooze's duplicate of the manager's address. What the VM is (status, IP,
    /// capacity, XML) stays as the controller reported it.
    public mutating func locate(on controller: ControllerInfo, under manager: ManagerInfo?) {
        virtualMachineLocation = VirtualMachineLocation(virtualMachineId: virtualMachineLocation.virtualMachineId,
                                                        controller: controller, manager: manager)
        groupManagerControlDataAddress = virtualMachineLocation.groupManagerControlDataAddress
        isAssigned = true
    }
}

extension VirtualMachineLocation {
    /// Where `vm` runs: every id and address a client needs to act on it through either role.
    public init(virtualMachineId vm: String, controller: ControllerInfo, manager: ManagerInfo?) {
        self.init(virtualMachineId: vm, localControllerId: controller.id,
                  localControllerControlDataAddress: NetworkAddress(controller.control),
                  groupManagerId: manager?.id ?? "UNKNOWN",
                  groupManagerControlDataAddress: manager.map { NetworkAddress($0.control) } ?? .init())
    }
}

extension NetworkAddress {
    public init(_ endpoint: Endpoint) { self.init(address: endpoint.host, port: endpoint.port) }
}

/// `VirtualMachineSubmissionRequest` and `…Response` share this shape.
public struct VirtualMachineSubmission: Sendable, Equatable, Codable {
    public var virtualMachineMetaData: [VirtualMachineMetaData]
    public init(virtualMachineMetaData: [VirtualMachineMetaData]) { self.virtualMachineMetaData = virtualMachineMetaData }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        virtualMachineMetaData = try c.value(.virtualMachineMetaData, default: [])
    }
}

public struct ResizeRequest: Sendable, Equatable, Codable {
    public var virtualMachineLocation: VirtualMachineLocation
    /// `[vcpus, memory KiB, rx, tx]`; a value <= 0 keeps the current one.
    public var resizedCapacity: [Double]
    public init(virtualMachineLocation: VirtualMachineLocation, resizedCapacity: [Double]) {
        self.virtualMachineLocation = virtualMachineLocation
        self.resizedCapacity = resizedCapacity
    }
}
