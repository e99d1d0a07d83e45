import ClusterCore
import Foundation
import Logging

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
    func applyFloatingIP(_ address: String, to privateIP: String) async throws(DozeError)
    func removeFloatingIP(_ address: String) async throws(DozeError)
}

/// The Linux data plane as a host's network plane: a switch's bridge, tunnel and DHCP server made for the first
/// VM that needs it here, its lease per VM, the switch taken down with the last VM.
extension HostDataPlane: HostNetworkPlane {
    public nonisolated var kind: String { "linux" }

    public func prepare(_ attachments: [NetworkAttachment], vm: String) async throws(DozeError) {
        for nic in attachments {
            do {
                try await ensureSwitch(vni: nic.vni, gateway: "\(nic.gateway)/\(nic.prefixLength)")
                try await addLease(vni: nic.vni, mac: nic.mac, ip: nic.ip, hostname: Self.hostname(vm))
            } catch {
                throw DozeError(.hypervisor, "cannot set up network '\(nic.network)' (VXLAN \(nic.vni)) on this host: \(error)")
            }
        }
    }

    public func release(_ attachments: [NetworkAttachment], vm: String, inUse: Set<Int>) async {
        for nic in attachments {
            do {
                try await removeLease(vni: nic.vni, mac: nic.mac)
                if !inUse.contains(nic.vni) { try await removeSwitchIfUnused(vni: nic.vni) }
            } catch {
                settings.logger.warning("cannot take down a VM's network here", metadata: ["doze/vm": "\(vm)", "doze/vni": "\(nic.vni)", "error": "\(error)"])
            }
        }
    }

    public func applyFloatingIP(_ address: String, to privateIP: String) async throws(DozeError) {
        do { try await bindFloatingIP(address, to: privateIP) } catch {
            throw DozeError(.hypervisor, "cannot bind floating IP \(address) on this host: \(error)")
        }
    }

    public func removeFloatingIP(_ address: String) async throws(DozeError) {
        do { try await unbindFloatingIP(address) } catch {
            throw DozeError(.hypervisor, "cannot unbind floating IP \(address) on this host: \(error)")
        }
    }

    /// A DHCP host name: the VM name's letters, digits and '-' (dnsmasq refuses others).
    static func hostname(_ vm: String) -> String {
        String(vm.map { $0.isLetter || $0.isNumber || $0 == "-" ? $0 : "-" }.prefix(63))
    }

    /// The interface that holds `address` (the controller's listen address), from `ip -o -4 addr show`.
    public static func interface(holding address: String) -> String? {
        guard let ip = find("ip") else { return nil }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: ip)
        process.arguments = ["-o", "-4", "addr", "show"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        for line in output.split(separator: "\n") {
            let fields = line.split(separator: " ")
            guard fields.count > 3, let inet = fields.firstIndex(of: "inet"), inet + 1 < fields.count,
                  fields[inet + 1].split(separator: "/").first.map(String.init) == address else { continue }
            return String(fields[1]).split(separator: "@").first.map(String.init)
        }
        return nil
    }
}
