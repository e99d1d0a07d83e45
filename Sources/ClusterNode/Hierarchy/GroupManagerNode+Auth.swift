import ClusterAPI
import ClusterCore
import ClusterWire

// Tokens and tenants are the leader's (`AuthCoordinator`); plain managers refuse, naming the leader.
extension GroupManagerNode: AuthBackend {
    public func whoAmI() async throws(DozeError) -> WhoAmI {
        switch RequestPrincipal.current {
        case .admin: WhoAmI(role: "admin", tenant: nil, tokenId: RequestPrincipal.tokenID)
        case .tenant(let name): WhoAmI(role: "tenant", tenant: name, tokenId: RequestPrincipal.tokenID)
        case .node: WhoAmI(role: "node", tenant: nil, tokenId: nil)
        }
    }

    public func createToken(_ request: TokenCreateRequest) async throws(DozeError) -> TokenDocument {
        try await leading().auth.createToken(request, by: RequestPrincipal.current)
    }

    public func tokenList() async throws(DozeError) -> TokenList {
        try await leading().auth.tokenList(for: RequestPrincipal.current)
    }

    public func revokeToken(_ id: String) async throws(DozeError) -> TokenDocument {
        try await leading().auth.revoke(id, by: RequestPrincipal.current)
    }

    public func createTenant(_ request: TenantCreateRequest) async throws(DozeError) -> TenantDocument {
        try RequestPrincipal.requireAdmin("creating a tenant")
        let tenant = try await leading().auth.createTenant(request)
        return TenantDocument(tenant, usage: TenantUsage())
    }

    public func tenantList() async throws(DozeError) -> TenantList {
        try RequestPrincipal.requireAdmin("listing tenants")
        let leader = try await leading()
        let usage = await leader.tenantUsage()
        return TenantList(tenants: try await leader.auth.current().allTenants.map { TenantDocument($0, usage: usage[$0.name] ?? TenantUsage()) })
    }

    public func tenant(_ name: String) async throws(DozeError) -> TenantDocument {
        let principal = RequestPrincipal.current
        guard principal.sees(name) else { throw DozeError(.notFound, "no tenant '\(name)'") }
        let leader = try await leading()
        guard let tenant = try await leader.auth.tenant(name) else { throw DozeError(.notFound, "no tenant '\(name)'") }
        return TenantDocument(tenant, usage: await leader.tenantUsage()[name] ?? TenantUsage())
    }

    public func setTenantQuota(_ name: String, _ quota: TenantQuota) async throws(DozeError) -> TenantDocument {
        try RequestPrincipal.requireAdmin("setting a quota")
        let leader = try await leading()
        let tenant = try await leader.auth.setQuota(name, quota)
        return TenantDocument(tenant, usage: await leader.tenantUsage()[name] ?? TenantUsage())
    }

    public func deleteTenant(_ name: String) async throws(DozeError) -> TenantDocument {
        try RequestPrincipal.requireAdmin("deleting a tenant")
        let leader = try await leading()
        let tenant = try await leader.auth.deleteTenant(name, holdings: await leader.holdings(of: name))
        return TenantDocument(tenant, usage: TenantUsage())
    }

    /// A tenant is told a VM of another tenant does not exist, exactly as for one that does not.
    func requireVisible(_ vm: String, on manager: ManagerRole) async throws(DozeError) {
        let principal = RequestPrincipal.current
        guard principal.scope != nil else { return }
        let meta = try? await manager.virtualMachineMetaData(VirtualMachineMetaDataRequest(virtualMachineLocation: VirtualMachineLocation(virtualMachineId: vm)))
        guard let meta, principal.sees(meta.tenant) else { throw DozeError(.notFound, "no VM '\(vm)' in this cluster") }
    }
}
