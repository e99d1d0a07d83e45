import ClusterCore
import Foundation

// JSON shapes of the native network API (`/v1/networks`, `/v1/floating-ips`) and of seed 004's
// `VirtualMachineNetwork` lifecycle (`/VirtualMachineNetwork/{createSwitch|deleteSwitch|bindFip|unbindFip}`).

/// `POST /v1/networks`. `dhcpRange` ("first-last") or `dhcpStart`/`dhcpEnd`; both default to the whole subnet.
public struct NetworkCreateRequest: Sendable, Equatable, Codable {
    public var name: String
    public var subnet: String
    public var gateway: String?
    public var dhcpRange: String?
    public var dhcpStart: String?
    public var dhcpEnd: String?

    public init(name: String, subnet: String, gateway: String? = nil, dhcpRange: String? = nil) {
        self.name = name
        self.subnet = subnet
        self.gateway = gateway
        self.dhcpRange = dhcpRange
    }
}

/// A switch as the API shows it.
public struct SwitchDocument: Sendable, Equatable, Codable {
    public struct Lease: Sendable, Equatable, Codable {
        public var vm: String
        public var ip: String
        public var mac: String
        public var floatingIP: String?
    }
    public var name: String
    public var subnet: String
    public var gateway: String
    public var dhcpStart: String
    public var dhcpEnd: String
    public var vni: Int
    /// The Linux bridge each host makes for it (`dz-br<vni>`).
    public var bridge: String
    public var capacity: Int
    public var free: Int
    public var leases: [Lease]
    /// The tenant that owns it (absent: the default tenant).
    public var tenant: String?

    public init(_ sw: VirtualSwitch, floating: [FloatingIP]) {
        name = sw.name
        tenant = sw.tenant
        subnet = sw.cidr
        gateway = sw.gateway
        dhcpStart = sw.dhcpStart
        dhcpEnd = sw.dhcpEnd
        vni = sw.vni
        bridge = sw.linuxBridge
        capacity = sw.capacity
        free = sw.free
        leases = sw.leases.values.sorted { (IPPool.parse($0.ip) ?? 0) < (IPPool.parse($1.ip) ?? 0) }.map { lease in
            Lease(vm: lease.vm, ip: lease.ip, mac: lease.mac,
                  floatingIP: floating.first { $0.network == sw.name && $0.privateIP == lease.ip }?.address)
        }
    }
}

public struct NetworkList: Sendable, Equatable, Codable {
    public var networks: [SwitchDocument]
    public var floatingRange: String?
    public init(networks: [SwitchDocument], floatingRange: String?) {
        self.networks = networks
        self.floatingRange = floatingRange
    }
}

/// `POST /v1/floating-ips`: a given address of the range, or the lowest free one.
public struct FloatingIPAllocateRequest: Sendable, Equatable, Codable {
    public var address: String?
    public init(address: String? = nil) { self.address = address }
}

/// `POST /v1/floating-ips/{address}/bind`.
public struct FloatingIPBindRequest: Sendable, Equatable, Codable {
    public var vm: String
    public var network: String?
    public init(vm: String, network: String? = nil) {
        self.vm = vm
        self.network = network
    }
}

/// A floating IP as the API shows it: `host` is the local controller that carries its translation, and
/// `dataPlane` what that host did with it (`linux`: a NAT rule and the address on its uplink; `none`: the host
/// keeps the books only, e.g. a libvirt test-driver host).
public struct FloatingIPDocument: Sendable, Equatable, Codable {
    public var address: String
    public var vm: String?
    public var privateIP: String?
    public var network: String?
    public var host: String?
    public var dataPlane: String?
    /// The tenant that allocated it (absent: the default tenant).
    public var tenant: String?
    public init(_ floating: FloatingIP, dataPlane: String? = nil) {
        address = floating.address
        tenant = floating.tenant
        vm = floating.vm
        privateIP = floating.privateIP
        network = floating.network
        host = floating.appliedOn
        self.dataPlane = dataPlane
    }
}

public struct FloatingIPList: Sendable, Equatable, Codable {
    public var floatingIPs: [FloatingIPDocument]
    public var floatingRange: String?
    public var free: Int
    public init(floatingIPs: [FloatingIPDocument], floatingRange: String?, free: Int) {
        self.floatingIPs = floatingIPs
        self.floatingRange = floatingRange
        self.free = free
    }
}

/// What the leader asks a host to do with a floating IP (`POST /v1/host/floating-ips`, `DELETE …/{address}`).
public struct HostFloatingIPRequest: Sendable, Equatable, Codable {
    public var address: String
    public var privateIP: String
    public var vm: String
    public init(address: String, privateIP: String, vm: String) {
        self.address = address
        self.privateIP = privateIP
        self.vm = vm
    }
}

/// A host's answer: whether it changed its data plane (`linux`) or only noted it (`none`, with why).
public struct HostFloatingIPResult: Sendable, Equatable, Codable {
    public var address: String
    public var dataPlane: String
    public var note: String?
    public init(address: String, dataPlane: String, note: String? = nil) {
        self.address = address
        self.dataPlane = dataPlane
        self.note = note
    }
}

// MARK: - Seed 004

/// Seed 004's request: `{"name": …, "nodeName"?: …, "createSwitch": {"subnet": …}, "eventId"?: …}`, with the
/// lifecycle object named after the operation (`bindFip: {vmmac, fip}`, `unbindFip: {vmmac}`, `deleteSwitch: {}`).
public struct SeedNetworkRequest: Sendable, Equatable, Codable {
    public struct CreateSwitch: Sendable, Equatable, Codable { public var subnet: String? }
    public struct BindFip: Sendable, Equatable, Codable { public var vmmac: String?; public var fip: String? }
    public struct UnbindFip: Sendable, Equatable, Codable { public var vmmac: String? }
    public struct Empty: Sendable, Equatable, Codable { public init() {} }
    public var name: String?
    public var nodeName: String?
    public var eventId: String?
    public var createSwitch: CreateSwitch?
    public var deleteSwitch: Empty?
    public var bindFip: BindFip?
    public var unbindFip: UnbindFip?
}

/// Seed 004's answer, the `VirtualMachineNetwork` document, filled from the switch: `switchInfo` lists its
/// ports (one per VM address), `routerInfo.nat` its floating IPs, `gatewayInfo` the distributed gateway.
public struct SeedNetworkDocument: Sendable, Equatable, Codable {
    public struct Metadata: Sendable, Equatable, Codable {
        public var name: String
        public var additionalProperties: [String: String] = [:]
        public var finalizers: [String] = []
        public var ownerReferences: [String] = []
    }
    public struct SwitchPort: Sendable, Equatable, Codable { public var addresses, name, router_port, type: String }
    public struct SwitchInfo: Sendable, Equatable, Codable { public var id, name: String; public var port: [SwitchPort] }
    public struct NAT: Sendable, Equatable, Codable { public var externalIP, gateway, logicalIP, name, type: String }
    public struct RouterPort: Sendable, Equatable, Codable { public var gateway, mac, name, networks: String }
    public struct RouterInfo: Sendable, Equatable, Codable { public var id, name: String; public var nat: [NAT]; public var port: [RouterPort] }
    public struct GatewayInfo: Sendable, Equatable, Codable { public var id, lease_time, router, server_id, server_mac: String }
    public struct DataBlock: Sendable, Equatable, Codable {
        public var gatewayInfo: GatewayInfo
        public var routerInfo: RouterInfo
        public var switchInfo: SwitchInfo
    }
    public struct Lifecycle: Sendable, Equatable, Codable {
        public var bindFip: SeedNetworkRequest.BindFip?
        public var createSwitch: SeedNetworkRequest.CreateSwitch?
        public var deleteSwitch: SeedNetworkRequest.Empty?
        public var unbindFip: SeedNetworkRequest.UnbindFip?
        public init(bindFip: SeedNetworkRequest.BindFip? = nil, createSwitch: SeedNetworkRequest.CreateSwitch? = nil,
                    deleteSwitch: SeedNetworkRequest.Empty? = nil, unbindFip: SeedNetworkRequest.UnbindFip? = nil) {
            self.bindFip = bindFip
            self.createSwitch = createSwitch
            self.deleteSwitch = deleteSwitch
            self.unbindFip = unbindFip
        }
    }
    public struct Spec: Sendable, Equatable, Codable {
        public var additionalPrinterColumns: [String] = []
        public var additionalProperties: [String: String] = [:]
        public var data: DataBlock
        public var lifecycle: Lifecycle
        public var type: String
        public var versions: [String] = []
    }
    public var kind = "VirtualMachineNetwork"
    public var metadata: Metadata
    public var spec: Spec

    public init(_ sw: VirtualSwitch, floating: [FloatingIP], lifecycle: Lifecycle) {
        let gatewayMAC = HostNetworkNames.gatewayMAC(vni: sw.vni)
        metadata = Metadata(name: sw.name)
        let ports = sw.leases.values.sorted { (IPPool.parse($0.ip) ?? 0) < (IPPool.parse($1.ip) ?? 0) }.map {
            SwitchPort(addresses: "\($0.mac) \($0.ip)", name: $0.vm, router_port: "", type: "")
        }
        let routerPort = RouterPort(gateway: sw.gateway, mac: gatewayMAC, name: "rtr-\(sw.name)", networks: sw.gatewayCIDR)
        let nat = floating.filter { $0.network == sw.name }.sorted { $0.address < $1.address }.map {
            NAT(externalIP: $0.address, gateway: sw.gateway, logicalIP: $0.privateIP ?? "", name: $0.vm ?? "", type: "dnat_and_snat")
        }
        spec = Spec(data: DataBlock(
            gatewayInfo: GatewayInfo(id: "gw-\(sw.name)", lease_time: "static", router: sw.gateway, server_id: sw.gateway, server_mac: gatewayMAC),
            routerInfo: RouterInfo(id: "rtr-\(sw.name)", name: "rtr-\(sw.name)", nat: nat, port: [routerPort]),
            switchInfo: SwitchInfo(id: "\(sw.vni)", name: sw.name, port: Array(ports))),
            lifecycle: lifecycle, type: "switch")
    }
}

/// Names every host gives a switch's pieces, so the leader's documents and each host's data plane agree.
public enum HostNetworkNames {
    /// The distributed gateway's MAC, the same on every host (the data plane's `DataPlanePlan.gatewayMAC`).
    public static func gatewayMAC(vni: Int) -> String { DataPlanePlan.gatewayMAC(vni: vni).description }
}
