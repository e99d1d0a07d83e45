import ClusterCore
import Foundation

// Snooze's JSON shapes (snooze.md §5.5). Property names are Jackson's getter names; every property may be
// missing on input and is always present on output, as Snooze wrote them.

public struct NetworkAddress: Sendable, Equatable, Codable {
    public var address: String
    public var port: Int

    public init(address: String, port: Int) {
        self.address = address
        self.port = port
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        address = try c.value(.address, default: Self.unknown.address)
        port = try c.value(.port, default: Self.unknown.port)
    }

    /// What Snooze writes for an address nobody knows; in Swift that is a nil `NetworkAddress?`.
    public static let unknown = NetworkAddress(address: "UNKNOWN", port: -1)
    var isUnknown: Bool { address.isEmpty || address == Self.unknown.address || port < 0 }
}

/// Snooze's wire spells "not known" as `"UNKNOWN"` (ids) and `{"address":"UNKNOWN","port":-1}` (addresses). Doze's
/// types say it with nil; these read and write Snooze's spelling at the edge, so no sentinel travels inside.
extension KeyedDecodingContainer {
    func snoozeID(_ key: Key) throws -> String? {
        guard let id = try decodeIfPresent(String.self, forKey: key), !id.isEmpty, id != "UNKNOWN" else { return nil }
        return id
    }

    func snoozeAddress(_ key: Key) throws -> NetworkAddress? {
        guard let address = try decodeIfPresent(NetworkAddress.self, forKey: key), !address.isUnknown else { return nil }
        return address
    }
}

extension KeyedEncodingContainer {
    mutating func encodeSnoozeID(_ id: String?, forKey key: Key) throws { try encode(id ?? "UNKNOWN", forKey: key) }
    mutating func encodeSnoozeAddress(_ address: NetworkAddress?, forKey key: Key) throws {
        try encode(address ?? .unknown, forKey: key)
    }
}

/// Where a VM is in the hierarchy; a part not known yet (not placed, no manager) is nil.
public struct VirtualMachineLocation: Sendable, Equatable, Codable {
    public var virtualMachineId: String
    public var localControllerId: NodeID?
    public var localControllerControlDataAddress: NetworkAddress?
    public var groupManagerId: NodeID?
    public var groupManagerControlDataAddress: NetworkAddress?

    enum CodingKeys: String, CodingKey {
        case virtualMachineId, localControllerId, localControllerControlDataAddress, groupManagerId, groupManagerControlDataAddress
    }

    public init(virtualMachineId: String, localControllerId: NodeID? = nil, localControllerControlDataAddress: NetworkAddress? = nil,
                groupManagerId: NodeID? = nil, groupManagerControlDataAddress: NetworkAddress? = nil) {
        self.virtualMachineId = virtualMachineId
        self.localControllerId = localControllerId
        self.localControllerControlDataAddress = localControllerControlDataAddress
        self.groupManagerId = groupManagerId
        self.groupManagerControlDataAddress = groupManagerControlDataAddress
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        virtualMachineId = try c.value(.virtualMachineId, default: "")
        localControllerId = try c.snoozeID(.localControllerId)
        localControllerControlDataAddress = try c.snoozeAddress(.localControllerControlDataAddress)
        groupManagerId = try c.snoozeID(.groupManagerId)
        groupManagerControlDataAddress = try c.snoozeAddress(.groupManagerControlDataAddress)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(virtualMachineId, forKey: .virtualMachineId)
        try c.encodeSnoozeID(localControllerId, forKey: .localControllerId)
        try c.encodeSnoozeAddress(localControllerControlDataAddress, forKey: .localControllerControlDataAddress)
        try c.encodeSnoozeID(groupManagerId, forKey: .groupManagerId)
        try c.encodeSnoozeAddress(groupManagerControlDataAddress, forKey: .groupManagerControlDataAddress)
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
    /// Snooze's copy of `virtualMachineLocation.groupManagerControlDataAddress`.
    public var groupManagerControlDataAddress: NetworkAddress?
    /// Doze addition: a human-readable reason when `status` is `ERROR` or an operation failed.
    public var errorMessage: String?
    /// Doze addition: the image-pool entry a template without XML is built from (Snooze's `imageId`).
    public var imageId: String?
    /// Doze addition: what the host changed in the template to run it (e.g. the domain type), never silent.
    public var adaptations: [String]?
    /// Doze addition: an image-based VM gets a VNC console with this password (kvm-apps' `vnc.password`).
    public var vncPassword: String?
    /// Doze addition: the VM is restarted elsewhere when its host dies and is fenced (absent: not).
    public var ha: Bool?
    /// Doze addition (seed 004): the VM's NICs on switches, each with its address and MAC, and the floating IPs
    /// bound to them (absent: none).
    public var networks: [NetworkAttachment]?
    public var floatingIPs: [String]?
    /// Doze addition, image-based VMs only: the data volumes (GiB each) the controller creates for it.
    public var disks: [Int]?
    /// Doze addition: where the VM's VNC console listens (`host:port`), once the host has assigned the port.
    public var vncAddr: String?
    /// Doze addition: the tenant that owns the VM (absent: made before tenants, so the default tenant's).
    public var tenant: String?

    enum CodingKeys: String, CodingKey {
        case virtualMachineLocation, status, errorCode, ipAddress, xmlRepresentation, requestedCapacity, usedCapacity, isAssigned,
             groupManagerControlDataAddress, errorMessage, imageId, adaptations, vncPassword, ha, networks, floatingIPs, disks, vncAddr, tenant
    }

    public init(location: VirtualMachineLocation, status: VMStatus = .unknown, errorCode: VMErrorCode = .none,
                ipAddress: String = "", xmlRepresentation: String = "", requestedCapacity: ResourceVector = .zero,
                usedCapacity: [String: VirtualMachineMonitoringData] = [:], isAssigned: Bool = false,
                errorMessage: String? = nil, imageId: String? = nil, adaptations: [String]? = nil) {
        self.virtualMachineLocation = location
        self.status = status
        self.errorCode = errorCode
        self.ipAddress = ipAddress
        self.xmlRepresentation = xmlRepresentation
        self.requestedCapacity = requestedCapacity.snoozeArray
        self.usedCapacity = usedCapacity
        self.isAssigned = isAssigned
        self.groupManagerControlDataAddress = location.groupManagerControlDataAddress
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
        groupManagerControlDataAddress = try c.snoozeAddress(.groupManagerControlDataAddress)
        errorMessage = try c.decodeIfPresent(String.self, forKey: .errorMessage)
        imageId = try c.decodeIfPresent(String.self, forKey: .imageId)
        adaptations = try c.decodeIfPresent([String].self, forKey: .adaptations)
        vncPassword = try c.decodeIfPresent(String.self, forKey: .vncPassword)
        ha = try c.decodeIfPresent(Bool.self, forKey: .ha)
        networks = try c.decodeIfPresent([NetworkAttachment].self, forKey: .networks)
        floatingIPs = try c.decodeIfPresent([String].self, forKey: .floatingIPs)
        disks = try c.decodeIfPresent([Int].self, forKey: .disks)
        vncAddr = try c.decodeIfPresent(String.self, forKey: .vncAddr)
        tenant = try c.decodeIfPresent(String.self, forKey: .tenant)
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(virtualMachineLocation, forKey: .virtualMachineLocation)
        try c.encode(status, forKey: .status)
        try c.encode(errorCode, forKey: .errorCode)
        try c.encode(ipAddress, forKey: .ipAddress)
        try c.encode(xmlRepresentation, forKey: .xmlRepresentation)
        try c.encode(requestedCapacity, forKey: .requestedCapacity)
        try c.encode(usedCapacity, forKey: .usedCapacity)
        try c.encode(isAssigned, forKey: .isAssigned)
        try c.encodeSnoozeAddress(groupManagerControlDataAddress, forKey: .groupManagerControlDataAddress)
        // Doze's additions are absent when empty.
        try c.encodeIfPresent(errorMessage, forKey: .errorMessage)
        try c.encodeIfPresent(imageId, forKey: .imageId)
        try c.encodeIfPresent(adaptations, forKey: .adaptations)
        try c.encodeIfPresent(vncPassword, forKey: .vncPassword)
        try c.encodeIfPresent(ha, forKey: .ha)
        try c.encodeIfPresent(networks, forKey: .networks)
        try c.encodeIfPresent(floatingIPs, forKey: .floatingIPs)
        try c.encodeIfPresent(disks, forKey: .disks)
        try c.encodeIfPresent(vncAddr, forKey: .vncAddr)
        try c.encodeIfPresent(tenant, forKey: .tenant)
    }

    public var requested: ResourceVector { ResourceVector(snoozeArray: requestedCapacity) }
}

// The one place a VM's place in the hierarchy is written: the controller's half by the controller that runs it
// (or the pin that names it), the manager's half by the manager (or the leader dispatching to it), both at once
// by views built from heartbeats. What the VM is (status, IP, capacity, XML) stays as the controller reported it.
extension VirtualMachineMetaData {
    public mutating func locate(on controller: ControllerInfo, under manager: ManagerInfo?) {
        locate(onController: controller.id, at: NetworkAddress(controller.control))
        locate(under: manager)
        isAssigned = true
    }

    public mutating func locate(onController id: NodeID?, at address: NetworkAddress?) {
        virtualMachineLocation.localControllerId = id
        virtualMachineLocation.localControllerControlDataAddress = address
    }

    public mutating func locate(under manager: ManagerInfo?) {
        locate(underManager: manager?.id, at: manager.map { NetworkAddress($0.control) })
    }

    /// The manager's half, with Snooze's copy of its address at the top level.
    public mutating func locate(underManager id: NodeID?, at address: NetworkAddress?) {
        virtualMachineLocation.groupManagerId = id
        virtualMachineLocation.groupManagerControlDataAddress = address
        groupManagerControlDataAddress = address
    }

    /// Moves the VM to `location` as a whole (after a migration).
    public mutating func relocate(to location: VirtualMachineLocation) {
        virtualMachineLocation = location
        groupManagerControlDataAddress = location.groupManagerControlDataAddress
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
