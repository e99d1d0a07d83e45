import ClusterCore
import Foundation

extension Topology {
    /// `etcd:` — an etcd cluster the launcher starts before the nodes, for group managers on several hosts: they
    /// need one election and one record store they all reach. Every group manager gets `--etcd` (every member's
    /// client URL), `--etcd-prefix` and `--lease-ttl`.
    public struct Etcd: Sendable, Codable {
        public struct Member: Sendable, Codable {
            /// The member's etcd name, also its namespace's suffix (`doze-<topology>-<name>`).
            public var name: String
            /// `IPV4:PORT` for clients and for peers; one address, two ports.
            public var client: String
            public var peer: String
        }

        /// The group managers' lease TTL (`--lease-ttl`), seconds; etcd raises anything below 2 to 2.
        public var leaseTTLSeconds: Int?
        /// Key prefix of everything doze keeps in etcd (`--etcd-prefix`); default `/doze/<topology name>`.
        public var prefix: String?
        public var members: [Member]

        enum CodingKeys: String, CodingKey { case leaseTTLSeconds = "lease_ttl_s", prefix, members }
    }

    public var etcdPrefix: String { etcd?.prefix ?? "/doze/\(name)" }

    /// Where each member runs and keeps its files: derived from the file alone, like `NetworkLayout`.
    public func etcdLayout(runDirectory: String) -> EtcdLayout? {
        guard let etcd else { return nil }
        let members = etcd.members.enumerated().map { i, member in
            let dir = "\(runDirectory)/etcd/\(member.name)"
            return EtcdLayout.Member(
                name: member.name, namespace: network == nil ? nil : "doze-\(name)-\(member.name)", hubLink: network == nil ? nil : "etcd\(i + 1)",
                address: Endpoint(member.client)?.host ?? "", clientURL: "http://\(member.client)", peerURL: "http://\(member.peer)",
                directory: dir, dataDirectory: dir + "/data", log: dir + "/etcd.log", commandFile: dir + "/command", pidFile: dir + "/pid")
        }
        return EtcdLayout(prefix: etcdPrefix, leaseTTLSeconds: etcd.leaseTTLSeconds, members: members)
    }

    func validateEtcd(_ path: String) throws {
        guard let etcd else { return }
        guard !etcd.members.isEmpty else { throw LauncherError("\(path): etcd.members needs at least one member (three tolerate the loss of one)") }
        if let ttl = etcd.leaseTTLSeconds, !(2...3600).contains(ttl) {
            throw LauncherError("\(path): etcd.lease_ttl_s must be from 2 to 3600 (etcd raises shorter leases to 2 s), got \(ttl)")
        }
        if let prefix = etcd.prefix, !prefix.hasPrefix("/") || prefix.count < 2 || prefix.contains(where: { $0.isWhitespace || $0 == "," }) {
            throw LauncherError("\(path): etcd.prefix must start with / and hold no spaces or commas, got '\(prefix)'")
        }
        let pool = network.flatMap { try? IPPool(subnet: $0.subnet) }
        // Addresses the nodes already take: a member on one of them would share its namespace.
        var taken = Set((bootstrap + managers + controllers).compactMap { Endpoint($0.listen)?.host })
        var names: Set<String> = ["hub"], sockets = Set((bootstrap + managers + controllers).map(\.listen))
        for (i, controller) in controllers.enumerated() { names.insert(controller.name ?? "lc-\(i + 1)") }
        for member in etcd.members {
            guard Self.safeName(member.name), names.insert(member.name).inserted else {
                throw LauncherError("\(path): etcd member names must be distinct, letters, digits, - or _, and not a controller's name or 'hub'; got '\(member.name)'")
            }
            guard let client = Endpoint(member.client), let peer = Endpoint(member.peer), IPPool.parse(client.host) != nil,
                  client.host == peer.host, client.port != peer.port, client.port > 0, peer.port > 0 else {
                throw LauncherError("\(path): etcd member \(member.name): client and peer must be IPV4:PORT on one address with two ports, got '\(member.client)', '\(member.peer)'")
            }
            if let pool {
                guard Self.hostAddress(client.host, in: pool), taken.insert(client.host).inserted else {
                    throw LauncherError("\(path): with `network:`, etcd member \(member.name) needs an address of \(network!.subnet) of its own"
                                        + " (each member is a namespace of its own), got '\(client.host)'")
                }
            } else {
                // Without namespaces the members run on this machine's loopback, which needs no address added.
                guard client.host.hasPrefix("127.") else {
                    throw LauncherError("\(path): without `network:`, etcd members listen on loopback (127.x.y.z), got '\(member.client)'")
                }
                guard sockets.insert(member.client).inserted, sockets.insert(member.peer).inserted else {
                    throw LauncherError("\(path): etcd member \(member.name): \(member.client) or \(member.peer) is taken by another node or member")
                }
            }
        }
    }
}

/// Names and paths of every etcd member of a topology, for `up`, `down` and `RUN/layout.json`.
public struct EtcdLayout: Sendable {
    public struct Member: Sendable {
        public var name: String
        /// `doze-<topology>-<member>` with `network:`; nil on loopback.
        public var namespace: String?
        /// The hub's end of the member's veth pair (the member's end is `eth0`): set either down to partition it.
        public var hubLink: String?
        public var address: String
        public var clientURL: String
        public var peerURL: String
        /// `RUN/etcd/NAME`: `data/`, `etcd.log`, `command` (one argument per line), `pid`.
        public var directory: String
        public var dataDirectory: String
        public var log: String
        public var commandFile: String
        public var pidFile: String
    }

    public var prefix: String
    public var leaseTTLSeconds: Int?
    public var members: [Member]

    /// `--etcd` for the group managers.
    public var endpoints: String { members.map(\.clientURL).joined(separator: ",") }
}
