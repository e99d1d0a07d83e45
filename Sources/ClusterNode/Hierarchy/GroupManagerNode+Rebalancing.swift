import ClusterAPI
import ClusterCore
import ClusterWire

// Issue 12's HTTP surface: the cluster-wide calls go to the leader role, `/v1/manager/usage` to the manager role.
extension GroupManagerNode: RebalancingBackend {
    public func rebalancingStatus() async throws(DozeError) -> RebalancingStatus {
        try await leading().rebalancing.status()
    }

    public func rebalancingControl(_ operation: RebalancingOperation, dryRun: Bool) async throws(DozeError) -> RebalancingStatus {
        let rebalancing = try await leading().rebalancing
        switch operation {
        case .runNow: return try await rebalancing.runNow(dryRun: dryRun)
        case .pause: return await rebalancing.pause()
        case .resume: return await rebalancing.resume()
        }
    }

    public func clusterHostUsage(_ id: String) async throws(DozeError) -> ClusterHostUsage {
        try await leading().hostUsage(id)
    }

    public func clusterVMUsage(_ id: String) async throws(DozeError) -> ClusterVMUsage {
        try await leading().vmUsage(id)
    }

    public func declareLoad(vm: String, _ request: SyntheticLoadRequest) async throws(DozeError) -> SyntheticLoadDocument {
        try await leading().declareLoad(vm: vm, body: request)
    }

    public func managerUsage() async throws(DozeError) -> ManagerUsageDocument {
        try await manager.usageDocument()
    }
}
