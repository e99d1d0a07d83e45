import ClusterAPI
import ClusterCore
import ClusterWire
import Hypervisor

// Tenants on the leader: whose a submission's VMs are, whether they fit the tenant's quota, what each tenant holds.
extension LeaderRole {
    /// What each tenant holds now: its listed VMs and its floating IPs. What was made before tenants counts as the
    /// default tenant's.
    func tenantUsage() async -> [String: TenantUsage] {
        var usage: [String: TenantUsage] = [:]
        for vm in await virtualMachineDescriptions().virtualMachines where vm.status != .offline {
            let demand = vm.requested
            usage[vm.tenant ?? Tenant.defaultName, default: TenantUsage()] = usage[vm.tenant ?? Tenant.defaultName, default: TenantUsage()]
                + TenantUsage(vms: 1, vcpus: Int(demand.vcpus.rounded()), memoryMiB: Int((demand.memoryKiB / 1024).rounded()))
        }
        for (tenant, count) in await networkService.floatingIPCountByTenant() { usage[tenant, default: TenantUsage()].floatingIPs = count }
        return usage
    }

    /// The submission with every VM given its tenant: the asking tenant's own, or for an admin the one each
    /// template names (default: `default`). Refused when the tenant does not exist or its quota would be exceeded.
    func admitToTenant(_ request: VirtualClusterSubmissionRequest, by principal: Principal) async throws(DozeError) -> VirtualClusterSubmissionRequest {
        var request = request
        var asked: [String: TenantUsage] = [:]
        for index in request.virtualMachineTemplates.indices {
            let named = request.virtualMachineTemplates[index].tenant
            if let scope = principal.scope, let named, named != scope {
                throw DozeError(.forbidden, "virtualMachineTemplates[\(index)] names tenant '\(named)'; a token of tenant '\(scope)' submits for '\(scope)' only")
            }
            let tenant = principal.scope ?? named ?? Tenant.defaultName
            request.virtualMachineTemplates[index].tenant = tenant
            let template = request.virtualMachineTemplates[index]
            var vcpus = template.vcpus ?? 1, memoryKiB = template.memory ?? 0
            if let xml = template.libVirtTemplate, let described = try? DomainDescription(xml: xml) {
                vcpus = described.vcpus
                memoryKiB = Int(described.memoryKiB)
            }
            asked[tenant, default: TenantUsage()] = asked[tenant, default: TenantUsage()]
                + TenantUsage(vms: 1, vcpus: vcpus, memoryMiB: (memoryKiB + 1023) / 1024)
        }
        var usage: [String: TenantUsage]?
        for (name, adding) in asked.sorted(by: { $0.key < $1.key }) {
            guard let tenant = try await auth.tenant(name) else {
                throw DozeError(.notFound, "no tenant '\(name)' (doze tenant create \(name))")
            }
            guard tenant.quota != .unlimited else { continue }
            if usage == nil { usage = await tenantUsage() }
            try tenant.admit(adding, to: usage?[name] ?? TenantUsage())
        }
        return request
    }

    /// Whether the VM is the principal's to see: its tenant as its host reports it.
    func visible(_ vm: String, to principal: Principal) async -> Bool {
        guard principal.scope != nil else { return true }
        let listed = await virtualMachineDescriptions().virtualMachines.first { $0.virtualMachineLocation.virtualMachineId == vm }
        return listed.map { principal.sees($0.tenant) } ?? false
    }

    /// What a tenant still holds, in words, for refusing its deletion.
    func holdings(of tenant: String) async -> [String] {
        let usage = await tenantUsage()[tenant] ?? TenantUsage()
        var held: [String] = []
        if usage.vms > 0 { held.append("\(usage.vms) VM\(usage.vms == 1 ? "" : "s")") }
        if usage.floatingIPs > 0 { held.append("\(usage.floatingIPs) floating IP\(usage.floatingIPs == 1 ? "" : "s")") }
        let switches = try? await networkService.listNetworks().networks.filter { ($0.tenant ?? Tenant.defaultName) == tenant }.count
        if let switches, switches > 0 { held.append("\(switches) network\(switches == 1 ? "" : "s")") }
        return held
    }
}
