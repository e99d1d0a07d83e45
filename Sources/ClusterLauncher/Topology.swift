import ClusterCore
import Foundation
import Yams

/// A cluster description to launch on this machine (`topology/*.yaml`; documented in the README).
public struct Topology: Sendable, Codable {
    public struct Heartbeat: Sendable, Codable {
        public var intervalMs: Int?
        public var controllerTimeoutMs: Int?
        public var managerTimeoutMs: Int?
        public var leaderManagerTimeoutMs: Int?
        public var leaderTimeoutMs: Int?
        enum CodingKeys: String, CodingKey {
            case intervalMs = "interval_ms", controllerTimeoutMs = "controller_timeout_ms", managerTimeoutMs = "manager_timeout_ms"
            case leaderManagerTimeoutMs = "leader_manager_timeout_ms", leaderTimeoutMs = "leader_timeout_ms"
        }
    }
    public struct Node: Sendable, Codable {
        public var name: String?
        public var listen: String
        /// Local controllers: a libvirt URI, or `host:` a test-driver host file relative to the topology file.
        public var hypervisor: String?
        public var host: String?
        /// Network-namespace topologies: give this controller's namespace its own hand-started libvirtd.
        public var libvirtd: Bool?
        /// Local controllers: `auto`, `kvm` or `tcg` (`doze lc --accelerator`).
        public var accelerator: String?
    }
    /// `network:` makes every controller a host of its own: a network namespace joined to a hub namespace (which
    /// holds the bootstrap and group managers) through a bridge. Nothing is added to the root namespace but a
    /// forwarder listening on `client_listen`, relaying to the first bootstrap.
    public struct Network: Sendable, Codable {
        public var subnet: String
        public var clientListen: String
        enum CodingKeys: String, CodingKey { case subnet, clientListen = "client_listen" }
    }

    public var name: String
    public var secret: String?
    public var secretFile: String?
    public var runDir: String?
    public var assignment: String?
    public var multicast: String?
    /// Submissions: the VM subnet, dispatch (leader → managers) and placement (manager → controllers) policies.
    public var vmSubnet: String?
    /// Seed 004: the public range floating IPs come from, `FIRST-LAST`.
    public var floatingRange: String?
    public var dispatch: String?
    public var placement: String?
    public var resultTTLSeconds: Int?
    /// Running live migrations one host may take part in at a time.
    public var migrationsPerHost: Int?
    /// VM high availability: the program group managers run to fence a dead host (`--fence-command`), relative to
    /// the file. Absent: `--fence none` (HA VMs are never restarted elsewhere).
    public var fenceCommand: String?
    public var heartbeat: Heartbeat?
    public var network: Network?
    /// Group-manager election and records on an etcd cluster the launcher runs (Topology+Etcd.swift).
    public var etcd: Etcd?
    /// Extra directories every local controller lets VMs use (kernels, initrds, disks), relative to the file.
    public var diskDirs: [String]?
    /// The leader's rebalancing and the usage sampling it rests on (Topology+Rebalance.swift).
    public var rebalance: Rebalance?
    /// Putting idle hosts to sleep through power agents (Topology+Rebalance.swift).
    public var energy: Energy?
    /// Who may call the APIs: `auth: open|tokens`, `snooze_compat: open|token-in-query|off` (absent: the nodes'
    /// defaults for their addresses) and the admin token's file (absent: `DozeConfig.defaultTokenFile`).
    public var auth: String?
    public var snoozeCompat: String?
    public var adminTokenFile: String?
    /// Every node's HTTP API over TLS: one certificate and key for all nodes (its names cover their addresses)
    /// and the CA they are checked against, relative to the file.
    public var tls: TLS?
    public struct TLS: Codable, Sendable {
        public var certFile: String
        public var keyFile: String
        public var caFile: String
        enum CodingKeys: String, CodingKey { case certFile = "cert_file", keyFile = "key_file", caFile = "ca_file" }
    }
    public var bootstrap: [Node]
    public var managers: [Node]
    public var controllers: [Node]

    enum CodingKeys: String, CodingKey {
        case name, secret, secretFile = "secret_file", runDir = "run_dir", assignment, multicast
        case vmSubnet = "vm_subnet", floatingRange = "floating_range", dispatch, placement, resultTTLSeconds = "result_ttl_s", migrationsPerHost = "migrations_per_host"
        case fenceCommand = "fence_command"
        case heartbeat, network, etcd, diskDirs = "disk_dirs", rebalance, energy, bootstrap, managers, controllers
        case auth, snoozeCompat = "snooze_compat", adminTokenFile = "admin_token_file", tls
    }

    /// Loads and checks a topology file; errors name the file and the problem.
    public static func load(_ path: String) throws -> (Topology, directory: String) {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw LauncherError("cannot read topology file \(path)")
        }
        let topology: Topology
        do { topology = try YAMLDecoder().decode(Topology.self, from: text) } catch {
            throw LauncherError("\(path): \(error)")
        }
        try topology.validate(path)
        return (topology, URL(fileURLWithPath: path).deletingLastPathComponent().path)
    }

    func validate(_ path: String) throws {
        guard !bootstrap.isEmpty else { throw LauncherError("\(path): at least one bootstrap is needed") }
        guard !managers.isEmpty else { throw LauncherError("\(path): at least one group manager is needed") }
        var seen = Set<String>()
        for node in bootstrap + managers + controllers {
            guard Endpoint(node.listen) != nil else { throw LauncherError("\(path): listen must be HOST:PORT, got '\(node.listen)'") }
            guard seen.insert(node.listen).inserted else { throw LauncherError("\(path): two nodes listen on \(node.listen)") }
        }
        for controller in controllers where controller.hypervisor == nil && controller.host == nil && controller.libvirtd != true {
            throw LauncherError("\(path): controller \(controller.listen) needs `hypervisor:` (a libvirt URI), `host:` (a test-driver host file)"
                                + " or, with `network:`, `libvirtd: true`")
        }
        for controller in controllers {
            if let accelerator = controller.accelerator, !["auto", "kvm", "tcg"].contains(accelerator) {
                throw LauncherError("\(path): controller \(controller.listen): accelerator must be auto, kvm or tcg")
            }
        }
        if network != nil { try validateNetwork(path) } else if controllers.contains(where: { $0.libvirtd == true }) {
            throw LauncherError("\(path): `libvirtd: true` needs `network:` (each such controller gets a namespace of its own)")
        }
        if etcd != nil { try validateEtcd(path) }
        if let assignment, GroupLeaderState.AssignmentPolicy(rawValue: assignment) == nil {
            throw LauncherError("\(path): assignment must be round-robin or least-loaded")
        }
        if let floatingRange, (try? NetworkBook.parseRange(floatingRange)) == nil {
            throw LauncherError("\(path): floating_range must be FIRST-LAST IPv4 addresses, got '\(floatingRange)'")
        }
        if let vmSubnet, (try? IPPool(subnet: vmSubnet)) == nil {
            throw LauncherError("\(path): vm_subnet must be an IPv4 CIDR with a prefix from /8 to /30, got '\(vmSubnet)'")
        }
        if let dispatch, PlacementPolicy(rawValue: dispatch) == nil || dispatch == "least-loaded" {
            throw LauncherError("\(path): dispatch must be round-robin or first-fit")
        }
        if let perHost = migrationsPerHost, !(1...64).contains(perHost) {
            throw LauncherError("\(path): migrations_per_host must be from 1 to 64, got \(perHost)")
        }
        if let placement, PlacementPolicy(rawValue: placement) == nil {
            throw LauncherError("\(path): placement must be least-loaded, first-fit or round-robin")
        }
        if let auth, !["open", "tokens"].contains(auth) { throw LauncherError("\(path): auth must be open or tokens, got '\(auth)'") }
        if let snoozeCompat, !["open", "token-in-query", "off"].contains(snoozeCompat) {
            throw LauncherError("\(path): snooze_compat must be open, token-in-query or off, got '\(snoozeCompat)'")
        }
        guard secret != nil || secretFile != nil else { throw LauncherError("\(path): give `secret:` or `secret_file:`") }
    }
}

public struct LauncherError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
