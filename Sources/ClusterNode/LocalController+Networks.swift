import ClusterAPI
import ClusterCore
import ClusterWire
import Hypervisor
import Logging

// Seed 004 on a host: a VM's NICs are set up on the host's data plane before the VM starts (and before one
// arrives by migration), taken down when the last VM of a switch leaves, and the leader asks for floating IPs
// here (`/v1/host/floating-ips`). Without a data plane the host keeps the books and answers `dataPlane: none`.
extension LocalController: HostNetworkBackend {
    var dataPlaneKind: String { settings.dataPlane?.kind ?? "none" }

    /// Before a VM with switch NICs is defined here.
    func prepareNetworks(_ attachments: [NetworkAttachment], vm: String) async throws(DozeError) {
        guard !attachments.isEmpty, let plane = settings.dataPlane else { return }
        try await plane.prepare(attachments, vm: vm)
    }

    /// After a VM left (destroyed, or migrated away): the switches no VM here uses any more go.
    func releaseNetworks(_ attachments: [NetworkAttachment], vm: String) async {
        guard !attachments.isEmpty, let plane = settings.dataPlane else { return }
        let inUse = Set(vms.values.filter { $0.info.name != vm }.flatMap { $0.metadata.networks.map(\.vni) })
        await plane.release(attachments, vm: vm, inUse: inUse)
    }

    public func applyFloatingIP(_ request: HostFloatingIPRequest, bind: Bool) async throws(DozeError) -> HostFloatingIPResult {
        guard IPPool.parse(request.address) != nil else { throw DozeError(.badRequest, "'\(request.address)' is not an IPv4 address") }
        if bind {
            guard IPPool.parse(request.privateIP) != nil else { throw DozeError(.badRequest, "privateIP '\(request.privateIP)' is not an IPv4 address") }
            guard let record = vms[request.vm] else { throw DozeError(.notFound, "VM '\(request.vm)' is not on this host") }
            guard record.metadata.networks.contains(where: { $0.ip == request.privateIP }) else {
                throw DozeError(.conflict, "VM '\(request.vm)' has no NIC with address \(request.privateIP) on this host")
            }
        }
        guard let plane = settings.dataPlane else {
            floatingIPs[request.address] = bind ? request.privateIP : nil
            return HostFloatingIPResult(address: request.address, dataPlane: "none",
                                        note: "this host has no data plane (\(settings.hypervisorURI.hasPrefix("test:") ? "libvirt test driver" : "--data-plane none")): kept in the books only")
        }
        if bind {
            try await plane.applyFloatingIP(request.address, to: request.privateIP)
        } else {
            try await plane.removeFloatingIP(request.address)
        }
        floatingIPs[request.address] = bind ? request.privateIP : nil
        log.info(bind ? "floating IP bound here" : "floating IP removed here",
                 metadata: ["doze/fip": "\(request.address)", "doze/ip": "\(request.privateIP)", "doze/vm": "\(request.vm)"])
        return HostFloatingIPResult(address: request.address, dataPlane: plane.kind)
    }
}
