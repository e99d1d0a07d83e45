import ClusterAPI
import ClusterCore
import ClusterWire

/// The kvm-apps API on the group leader; plain managers refuse it, naming the leader.
extension GroupManagerNode: KVMAppBackend {
    private func requireApps() throws(DozeError) -> KVMAppCoordinator {
        _ = try leaderState()
        guard let apps else { throw DozeError(.unavailable, "the group leader is still starting its kvm-app service") }
        return apps
    }

    public func createApp(_ app: KVMAppID, _ request: KVMAppCreateRequest) async throws(DozeError) -> KVMAppCreated {
        let spec = try request.spec()
        return KVMAppCreated(id: try await requireApps().create(app, spec))
    }

    public func listApps() async throws(DozeError) -> [KVMAppEntry] {
        try await requireApps().list()
    }

    public func appTasks(_ id: String) async throws(DozeError) -> [KVMAppTaskEntry] {
        try await requireApps().tasks(id)
    }

    public func operateApp(_ id: String, _ operation: KVMAppOperation) async throws(DozeError) -> KVMAppEntry? {
        try await requireApps().perform(operation, on: id)
    }
}
