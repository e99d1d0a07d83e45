import ClusterCore

/// What a host does for seed 004's networks: set up a switch's pieces for a VM about to run here (bridge, tunnel,
/// DHCP lease), take them down when the last VM leaves, and translate floating IPs. `LinuxDataPlane` does it with
/// bridges, VXLAN and nftables; a host without one (a libvirt test-driver host, `--data-plane none`) keeps the
/// books only and says so.
public protocol HostNetworkPlane: Sendable {
    /// `linux`, or `none`.
    var kind: String { get }
    func prepare(_ attachments: [NetworkAttachment], vm: String) async throws(DozeError)
    /// The VM left this host (destroyed or migrated away); `inUse` are the VNIs other VMs here still use.
    func release(_ attachments: [NetworkAttachment], vm: String, inUse: Set<Int>) async
    func bindFloatingIP(_ address: String, to privateIP: String) async throws(DozeError)
    func unbindFloatingIP(_ address: String) async throws(DozeError)
}
