import ClusterCore
import NIOHTTP1
import ClusterTransport
import ClusterWire
import Foundation

// Issue 12 on the leader: the cluster's usage (each manager's windows, asked in parallel), the rebalancer's
// controls, and declared load passed to the VM's controller.
extension LeaderRole {
    /// Every host's use, as its manager's window estimates it; a manager that does not answer within 2 s is left out.
    func clusterUsage() async -> [ClusterHostUsage] {
        let managers = managers().values.map(\.info)
        let peers = context.peers
        let answers = await askEach(managers, id: \.id) { manager in
            try? await peers.call(.GET, manager.control, "/v1/manager/usage", as: ManagerUsageDocument.self, timeout: .seconds(2))
        }
        return answers.values.flatMap(\.hosts).sorted { $0.localControllerId < $1.localControllerId }
    }

    func hostUsage(_ id: String) async throws(DozeError) -> ClusterHostUsage {
        guard controller(id) != nil else { throw DozeError(.notFound, "no local controller '\(id)' in the cluster (see doze host list)") }
        guard let usage = await clusterUsage().first(where: { $0.localControllerId == id }) else {
            throw DozeError(.unavailable, "the group manager of local controller \(id) did not answer with its usage; retry in a moment")
        }
        return usage
    }

    func vmUsage(_ vm: String) async throws(DozeError) -> ClusterVMUsage {
        let usage = try await hostUsage(try await discoverVirtualMachine(vm).localControllerId)
        guard let found = usage.virtualMachines.first(where: { $0.vm == vm }) else {
            throw DozeError(.unavailable, "no usage of VM '\(vm)' yet: it is not running, or its controller has not sampled it twice "
                + "since it started or arrived")
        }
        return found
    }

    /// `POST /v1/vms/{id}/load`: to the controller that runs the VM (test-driver hosts only; it refuses otherwise).
    func declareLoad(vm: String, body: SyntheticLoadRequest) async throws(DozeError) -> SyntheticLoadDocument {
        // Through discovery, which also finds a VM started or moved a moment ago that the summaries do not list yet.
        let found = try await discoverVirtualMachine(vm)
        let control = Endpoint(host: found.localControllerAddress.address, port: found.localControllerAddress.port)
        let escaped = vm.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? vm
        let load = LoadBody(vcpus: body.load.vcpus, memoryMiB: body.load.memoryMiB)
        do {
            return try await context.peers.call(.POST, control, "/v1/vms/\(escaped)/load", body: load, as: SyntheticLoadDocument.self,
                                                timeout: .seconds(10))
        } catch {
            throw remoteError(error, "local controller \(found.localControllerId) did not answer")
        }
    }

    private struct LoadBody: Encodable, Sendable {
        var vcpus: Double?
        var memoryMiB: Double?
    }

    private func controller(_ id: String) -> ControllerInfo? {
        managers().values.lazy.flatMap(\.controllers).first { $0.id == id }
    }
}
