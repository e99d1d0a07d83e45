import ClusterCore
import ClusterWire

// Issue 12: the manager keeps the window of every managed controller's VM use; the leader's rebalancer and the
// usage views ask it (`GET /v1/manager/usage`).
extension ManagerRole {
    /// Takes the usage sample out of a controller's heartbeat (or join) into the windows; the rest of the info,
    /// without it, goes to the books and on to the leader, so summaries stay small.
    func takeUsage(from reported: ControllerInfo) -> ControllerInfo {
        var info = reported
        if let usage = info.usage { usageWindows.record(host: info.id, usage, now: now) }
        info.usage = nil
        return info
    }

    func usageDocument() throws(DozeError) -> ManagerUsageDocument {
        let controllers = try following().controllerList
        usageWindows.keepOnly(hosts: Set(controllers.map(\.id)))
        let estimator = usageWindows.estimator.description
        let now = self.now
        return ManagerUsageDocument(hosts: controllers.sorted { $0.id < $1.id }.map { controller in
            let vms = usageWindows.estimates(host: controller.id, now: now).map { ClusterVMUsage($0, host: controller.id) }
            let total = controller.summary.total
            return ClusterHostUsage(host: controller.id, manager: id, estimator: estimator,
                                    capacity: .init(cpus: Int(total.vcpus), memoryMiB: Int(total.memoryKiB / 1024)), vms: vms)
        })
    }
}
