import ClusterAPI
import ClusterCore
import ClusterWire
import Logging

// Seed 004's network API: every call goes to the leader's submission coordinator, which owns the network book.
extension GroupManagerNode: NetworkBackend {
    private func networks() async throws(DozeError) -> SubmissionCoordinator { try await leading().networkService }

    public func createNetwork(_ request: NetworkCreateRequest) async throws(DozeError) -> SwitchDocument {
        try await networks().createNetwork(request)
    }
    public func listNetworks() async throws(DozeError) -> NetworkList { try await networks().listNetworks() }
    public func network(_ name: String) async throws(DozeError) -> SwitchDocument { try await networks().network(name) }
    public func deleteNetwork(_ name: String) async throws(DozeError) { try await networks().deleteNetwork(name) }
    public func allocateFloatingIP(_ request: FloatingIPAllocateRequest) async throws(DozeError) -> FloatingIPDocument {
        try await networks().allocateFloatingIP(request, quota: try await quotaOfAskingTenant())
    }

    /// The asking tenant, when its quota bounds anything (admins and nodes: none).
    func quotaOfAskingTenant() async throws(DozeError) -> Tenant? {
        guard let scope = RequestPrincipal.current.scope, let tenant = try await leading().auth.tenant(scope),
              tenant.quota != .unlimited else { return nil }
        return tenant
    }
    public func listFloatingIPs() async throws(DozeError) -> FloatingIPList { try await networks().floatingIPList() }
    public func floatingIP(_ address: String) async throws(DozeError) -> FloatingIPDocument { try await networks().floatingIP(address) }
    public func bindFloatingIP(_ address: String, _ request: FloatingIPBindRequest) async throws(DozeError) -> FloatingIPDocument {
        try await networks().bindFloatingIP(address, request)
    }
    public func unbindFloatingIP(_ address: String) async throws(DozeError) -> FloatingIPDocument {
        try await networks().unbindFloatingIP(address)
    }
    public func releaseFloatingIP(_ address: String) async throws(DozeError) -> FloatingIPDocument {
        try await networks().releaseFloatingIP(address)
    }

    /// Seed 004 names the switch by `name` and a VM by the MAC of its NIC on it; a `bindFip` of an address not yet
    /// allocated allocates it first (the seed has no separate allocation).
    public func seedNetworkLifecycle(_ operation: String, _ request: SeedNetworkRequest) async throws(DozeError) -> SeedNetworkDocument {
        let service = try await networks()
        guard let name = request.name, !name.isEmpty else { throw DozeError(.badRequest, "name (the switch) is required") }
        var lifecycle = SeedNetworkDocument.Lifecycle()
        switch operation {
        case "createSwitch":
            guard let subnet = request.createSwitch?.subnet else { throw DozeError(.badRequest, "createSwitch.subnet is required, e.g. 192.168.5.1/24") }
            _ = try await service.createNetwork(NetworkCreateRequest(name: name, subnet: subnet))
            lifecycle.createSwitch = request.createSwitch
        case "deleteSwitch":
            let document = try await service.seedDocument(name, lifecycle: SeedNetworkDocument.Lifecycle(deleteSwitch: .init()))
            try await service.deleteNetwork(name)
            return document
        case "bindFip":
            guard let mac = request.bindFip?.vmmac, let fip = request.bindFip?.fip else {
                throw DozeError(.badRequest, "bindFip.vmmac and bindFip.fip are required")
            }
            let vm = try await service.vm(withMAC: mac)
            if (try? await service.floatingIP(fip)) == nil {
                _ = try await service.allocateFloatingIP(FloatingIPAllocateRequest(address: fip), quota: try await quotaOfAskingTenant())
            }
            _ = try await service.bindFloatingIP(fip, FloatingIPBindRequest(vm: vm, network: name))
            lifecycle.bindFip = request.bindFip
        case "unbindFip":
            guard let mac = request.unbindFip?.vmmac else { throw DozeError(.badRequest, "unbindFip.vmmac is required") }
            let vm = try await service.vm(withMAC: mac)
            guard let bound = try await service.floatingIPList().floatingIPs.first(where: { $0.vm == vm && $0.network == name }) else {
                throw DozeError(.conflict, "VM '\(vm)' (\(mac)) has no floating IP bound on network '\(name)'")
            }
            _ = try await service.unbindFloatingIP(bound.address)
            lifecycle.unbindFip = request.unbindFip
        default:
            throw DozeError(.notFound, "unknown VirtualMachineNetwork operation '\(operation)'")
        }
        return try await service.seedDocument(name, lifecycle: lifecycle)
    }
}
