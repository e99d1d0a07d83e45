import ClusterCore
import Foundation

/// Where everything of a network-namespace topology lives: derived from the file alone, so that `down` finds the
/// same names and paths as the `up` that made them.
public struct NetworkLayout: Sendable {
    public struct Host: Sendable {
        /// The controller's name in the topology (`host-a`), also its hostname inside the namespace.
        public var name: String
        /// `doze-<topology>-<name>`.
        public var namespace: String
        /// This host's address on the bridge (the controller's listen address).
        public var address: String
        /// The hub's end of this host's veth pair (the host's end is `eth0`).
        public var hubLink: String
        /// The daemon's private tree (`etc run lib log cache`), when the host has a libvirtd.
        public var daemonDirectory: String?

        /// How anything on this machine reaches the daemon, whatever its namespace.
        public var socketURI: String? { daemonDirectory.map { "qemu+unix:///system?socket=\($0)/run/libvirt-sock" } }
        /// How other hosts' daemons reach this one (peer-to-peer migration).
        public var migrationURI: String? { daemonDirectory == nil ? nil : "qemu+tcp://\(address)/system" }
    }

    public var hubNamespace: String
    public var hubAddress: String
    public var prefixLength: Int
    public var clientListen: String
    /// Controller hosts, in the topology's order.
    public var hosts: [Host]
    /// Managers listening on an address of their own: each a namespace of its own on the bridge (`vgmN` in the hub),
    /// so that a partition can cut one off. Managers on the hub's address run in the hub.
    public var managerHosts: [Host] = []

    /// Every namespace joined to the bridge by a veth pair.
    public var bridged: [Host] { hosts + managerHosts }
}

extension Topology {
    /// The namespace of every node: the hub for bootstraps and managers, its own for each controller.
    public func layout(runDirectory: String) -> NetworkLayout? {
        guard let network, let pool = try? IPPool(subnet: network.subnet) else { return nil }
        let hosts = controllers.enumerated().map { i, controller in
            let name = controller.name ?? "lc-\(i + 1)"
            return NetworkLayout.Host(
                name: name, namespace: "doze-\(self.name)-\(name)", address: Endpoint(controller.listen)?.host ?? "",
                hubLink: "veth\(i + 1)", daemonDirectory: controller.libvirtd == true ? "\(runDirectory)/hosts/\(name)" : nil)
        }
        let hub = Endpoint(bootstrap[0].listen)?.host ?? ""
        let managerHosts = managers.enumerated().compactMap { i, manager -> NetworkLayout.Host? in
            guard let address = Endpoint(manager.listen)?.host, address != hub else { return nil }
            let name = manager.name ?? "gm-\(i + 1)"
            return NetworkLayout.Host(name: name, namespace: "doze-\(self.name)-\(name)", address: address, hubLink: "vgm\(i + 1)",
                                      daemonDirectory: nil)
        }
        var layout = NetworkLayout(hubNamespace: "doze-\(name)-hub", hubAddress: hub,
                                   prefixLength: pool.prefixLength, clientListen: network.clientListen, hosts: hosts)
        layout.managerHosts = managerHosts
        return layout
    }

    func validateNetwork(_ path: String) throws {
        guard let network else { return }
        guard let pool = try? IPPool(subnet: network.subnet) else {
            throw LauncherError("\(path): network.subnet must be an IPv4 CIDR with a prefix from /8 to /30, got '\(network.subnet)'")
        }
        guard let client = Endpoint(network.clientListen), IPPool.parse(client.host) != nil else {
            throw LauncherError("\(path): network.client_listen must be IPV4:PORT (e.g. 127.0.0.1:5100), got '\(network.clientListen)'")
        }
        let safe = Self.safeName, inSubnet = { (host: String) in Self.hostAddress(host, in: pool) }
        guard safe(name) else { throw LauncherError("\(path): with `network:`, name must be letters, digits, - or _ (it names the namespaces)") }
        let hub = Endpoint(bootstrap[0].listen)!.host
        for node in bootstrap {
            guard Endpoint(node.listen)!.host == hub, inSubnet(hub) else {
                throw LauncherError("\(path): with `network:`, every bootstrap listens on one address of \(network.subnet) (the hub's), got '\(node.listen)'")
            }
        }
        var addresses: Set<String> = [hub], names = Set<String>()
        // A manager on the hub's address runs in the hub; one on an address of its own gets a namespace of its own.
        for (i, manager) in managers.enumerated() {
            let host = Endpoint(manager.listen)!.host, name = manager.name ?? "gm-\(i + 1)"
            guard host != hub else { continue }
            guard inSubnet(host), addresses.insert(host).inserted else {
                throw LauncherError("\(path): manager \(name) listens on the hub's address or on one of \(network.subnet) of its own, got '\(manager.listen)'")
            }
            guard safe(name), name != "hub", names.insert(name).inserted else {
                throw LauncherError("\(path): manager names must be distinct, letters, digits, - or _, and not 'hub'; got '\(name)'")
            }
        }
        for (i, controller) in controllers.enumerated() {
            let host = Endpoint(controller.listen)!.host, name = controller.name ?? "lc-\(i + 1)"
            guard inSubnet(host), addresses.insert(host).inserted else {
                throw LauncherError("\(path): controller \(name) needs an address of \(network.subnet) of its own (not the hub's), got '\(controller.listen)'")
            }
            guard safe(name), name != "hub", names.insert(name).inserted else {
                throw LauncherError("\(path): controller names must be distinct, letters, digits, - or _, and not 'hub'; got '\(name)'")
            }
        }
    }

    /// Names become namespace names (doze-NAME-hub); keep them to what `ip netns` and file names take.
    static func safeName(_ name: String) -> Bool {
        !name.isEmpty && name.count <= 40 && name.allSatisfy { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }
    }

    /// An address of the subnet that a host may take (neither the network nor the broadcast address).
    static func hostAddress(_ host: String, in pool: IPPool) -> Bool {
        let mask: UInt32 = pool.prefixLength == 0 ? 0 : ~UInt32(0) << (32 - pool.prefixLength)
        return IPPool.parse(host).map { $0 & mask == pool.network && $0 != pool.network && $0 != pool.network | ~mask } ?? false
    }
}
