// Seed 004's VM networks as the group leader keeps them: switches (an IPv4 subnet, its gateway and DHCP range,
// carried between hosts as one VXLAN segment) and floating IPs (public addresses bound to a VM's switch address).
// Pure value types: the leader's shell persists the book with the other cluster records, so a new leader
// (etcd-backed clusters included) hands out no address twice.

/// An IPv4 prefix, parsed once: `10.200.0.0/24`.
public struct IPv4Subnet: Sendable, Hashable, Codable, CustomStringConvertible {
    public let network: UInt32
    public let prefixLength: Int

    /// `text` is `a.b.c.d/len` with len 8…29 (the seed names 8, 16 and 24; anything between works). Host bits
    /// set (`192.168.5.1/24`, as the seed's example writes it) are accepted and cleared.
    public init(_ text: String) throws(DozeError) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let prefix = Int(parts[1]), let base = IPPool.parse(String(parts[0])) else {
            throw DozeError(.badRequest, "subnet '\(text)' is not of the form a.b.c.d/len")
        }
        guard (8...29).contains(prefix) else {
            throw DozeError(.badRequest, "subnet '\(text)': the prefix length must be 8 to 29 (a switch needs room for a gateway and VMs)")
        }
        self.prefixLength = prefix
        self.network = base & Self.mask(prefix)
    }

    static func mask(_ prefix: Int) -> UInt32 { ~UInt32(0) << (32 - prefix) }
    public var mask: UInt32 { Self.mask(prefixLength) }
    public var broadcast: UInt32 { network | ~mask }
    public var description: String { "\(IPPool.format(network))/\(prefixLength)" }

    /// True for an address strictly between the network and broadcast addresses.
    public func containsHost(_ address: UInt32) -> Bool { address & mask == network && address != network && address != broadcast }
    public func overlaps(_ other: IPv4Subnet) -> Bool {
        let shorter = min(prefixLength, other.prefixLength)
        return network & Self.mask(shorter) == other.network & Self.mask(shorter)
    }
}

/// One address on a switch, held by a VM.
public struct SwitchLease: Sendable, Equatable, Codable {
    public var vm: String
    public var ip: String
    public var mac: String
}

/// A switch: one L2 segment, the same on every host (a Linux bridge per host joined by VXLAN `vni`), with a
/// distributed gateway and the addresses handed out on it.
public struct VirtualSwitch: Sendable, Equatable, Codable {
    public var name: String
    public var subnet: IPv4Subnet
    public var gateway: String
    public var dhcpStart: String
    public var dhcpEnd: String
    public var vni: Int
    /// Leases by address, in address order when listed.
    public var leases: [String: SwitchLease] = [:]
    /// The tenant that made it (nil: the default tenant's); only its VMs attach to it.
    public var tenant: String?

    public var cidr: String { subnet.description }
    public var gatewayCIDR: String { "\(gateway)/\(subnet.prefixLength)" }
    var range: ClosedRange<UInt32> { IPPool.parse(dhcpStart)!...IPPool.parse(dhcpEnd)! }
    public var capacity: Int { range.count - (range.contains(IPPool.parse(gateway)!) ? 1 : 0) }
    public var free: Int { capacity - leases.count }
    public var linuxBridge: String { "dz-br\(vni)" }
}

/// A floating IP: allocated from the cluster's public range, optionally bound to one VM's address on a switch.
public struct FloatingIP: Sendable, Equatable, Codable {
    public var address: String
    public var vm: String?
    /// The VM's switch address the floating IP is translated to, and that switch.
    public var privateIP: String?
    public var network: String?
    /// The host (local controller id) that carries the translation now; nil until it is applied there. The shell
    /// moves it when the VM runs elsewhere (a migration, an HA restart).
    public var appliedOn: String?
    /// The tenant that allocated it (nil: the default tenant's).
    public var tenant: String?

    public var isBound: Bool { vm != nil }

    public init(address: String, vm: String? = nil, privateIP: String? = nil, network: String? = nil, appliedOn: String? = nil) {
        self.address = address
        self.vm = vm
        self.privateIP = privateIP
        self.network = network
        self.appliedOn = appliedOn
    }
}

/// A NIC the leader asks a host to give a VM: the switch, its segment id and gateway, the VM's address and MAC.
public struct NetworkAttachment: Sendable, Equatable, Codable {
    public var network: String
    public var vni: Int
    public var bridge: String
    public var ip: String
    public var prefixLength: Int
    public var gateway: String
    public var mac: String

    public init(network: String, vni: Int, bridge: String, ip: String, prefixLength: Int, gateway: String, mac: String) {
        self.network = network
        self.vni = vni
        self.bridge = bridge
        self.ip = ip
        self.prefixLength = prefixLength
        self.gateway = gateway
        self.mac = mac
    }
}

public struct NetworkBook: Sendable, Equatable, Codable {
    public private(set) var switches: [String: VirtualSwitch] = [:]
    public private(set) var floatingIPs: [String: FloatingIP] = [:]
    /// The public range floating IPs come from (`first...last`); nil when the cluster has none.
    public private(set) var floatingRange: String?
    /// The VNI the next switch gets (VXLAN ids 1…16777215; Doze starts at 100).
    private var nextVNI = 100

    public init() {}

    public init(floatingRange: String?) throws(DozeError) {
        if let floatingRange { _ = try Self.parseRange(floatingRange) }
        self.floatingRange = floatingRange
    }

    /// Switch names follow seed 004: lowercase letters, digits, '-' and '.', starting with a letter or digit.
    public static func checkName(_ name: String) throws(DozeError) {
        guard (1...32).contains(name.utf8.count) else { throw DozeError(.badRequest, "network name '\(name)' must be 1 to 32 characters") }
        let ok = name.unicodeScalars.allSatisfy { ($0 >= "a" && $0 <= "z") || ($0 >= "0" && $0 <= "9") || $0 == "-" || $0 == "." }
        guard ok, let first = name.unicodeScalars.first, first != "-", first != "." else {
            throw DozeError(.badRequest, "network name '\(name)' is invalid: use lowercase letters, digits, '-' and '.', starting with a letter or digit")
        }
    }

    public static func parseRange(_ text: String) throws(DozeError) -> ClosedRange<UInt32> {
        let parts = text.split(separator: "-", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        guard parts.count == 2, let first = IPPool.parse(parts[0]), let last = IPPool.parse(parts[1]), first <= last else {
            throw DozeError(.badRequest, "address range '\(text)' is not of the form a.b.c.d-e.f.g.h (first ≤ last)")
        }
        guard last - first < 65_536 else { throw DozeError(.badRequest, "address range '\(text)' is larger than 65536 addresses") }
        return first...last
    }

    /// Replaces the floating range (a leader started with a new setting); addresses already allocated stay.
    public mutating func setFloatingRange(_ range: String?) throws(DozeError) {
        if let range { _ = try Self.parseRange(range) }
        floatingRange = range
    }

    // MARK: - Switches

    /// Creates a switch. The gateway defaults to the subnet's first host, the DHCP range to every other host.
    /// `reserved` are subnets the switch must not overlap (the cluster's own networks).
    @discardableResult
    public mutating func createSwitch(name: String, subnet text: String, gateway: String? = nil, dhcpStart: String? = nil,
                                      dhcpEnd: String? = nil, reserved: [String: String] = [:]) throws(DozeError) -> VirtualSwitch {
        try Self.checkName(name)
        guard switches[name] == nil else { throw DozeError(.conflict, "network '\(name)' already exists") }
        let subnet = try IPv4Subnet(text)
        for other in switches.values.sorted(by: { $0.name < $1.name }) where other.subnet.overlaps(subnet) {
            throw DozeError(.conflict, "subnet \(subnet) overlaps network '\(other.name)' (\(other.subnet))")
        }
        for (what, cidr) in reserved.sorted(by: { $0.key < $1.key }) {
            if let other = try? IPv4Subnet(cidr), other.overlaps(subnet) {
                throw DozeError(.conflict, "subnet \(subnet) overlaps the \(what) (\(other))")
            }
        }
        if let range = floatingRange.flatMap({ try? Self.parseRange($0) }),
           range.contains(where: { subnet.containsHost($0) || $0 == subnet.network || $0 == subnet.broadcast }) {
            throw DozeError(.conflict, "subnet \(subnet) overlaps the floating IP range \(floatingRange!)")
        }
        let gatewayText = gateway ?? IPPool.format(subnet.network + 1)
        guard let gatewayValue = IPPool.parse(gatewayText), subnet.containsHost(gatewayValue) else {
            throw DozeError(.badRequest, "gateway \(gatewayText) is not a host address of subnet \(subnet)")
        }
        let first = try dhcpStart.map { (text) throws(DozeError) in try Self.hostAddress(text, in: subnet, what: "DHCP range start") }
            ?? subnet.network + 1
        let last = try dhcpEnd.map { (text) throws(DozeError) in try Self.hostAddress(text, in: subnet, what: "DHCP range end") }
            ?? subnet.broadcast - 1
        guard first <= last else {
            throw DozeError(.badRequest, "DHCP range \(IPPool.format(first))-\(IPPool.format(last)) is empty (start after end)")
        }
        guard (first...last).count > ((first...last).contains(gatewayValue) ? 1 : 0) else {
            throw DozeError(.badRequest, "DHCP range \(IPPool.format(first))-\(IPPool.format(last)) holds only the gateway")
        }
        let created = VirtualSwitch(name: name, subnet: subnet, gateway: gatewayText, dhcpStart: IPPool.format(first),
                                    dhcpEnd: IPPool.format(last), vni: nextVNI)
        nextVNI += 1
        switches[name] = created
        return created
    }

    static func hostAddress(_ text: String, in subnet: IPv4Subnet, what: String) throws(DozeError) -> UInt32 {
        guard let value = IPPool.parse(text), subnet.containsHost(value) else {
            throw DozeError(.badRequest, "\(what) \(text) is not a host address of subnet \(subnet)")
        }
        return value
    }

    /// Deletes an unused switch; one with VMs on it is a conflict naming them.
    public mutating func deleteSwitch(_ name: String) throws(DozeError) {
        guard let existing = switches[name] else { throw DozeError(.notFound, "no network '\(name)'") }
        let users = Set(existing.leases.values.map(\.vm)).sorted()
        guard users.isEmpty else {
            throw DozeError(.conflict, "network '\(name)' is in use by \(users.count) VM(s): \(users.prefix(5).joined(separator: ", "))"
                + (users.count > 5 ? ", …" : "") + "; destroy them first")
        }
        switches[name] = nil
    }

    public func requireSwitch(_ name: String) throws(DozeError) -> VirtualSwitch {
        guard let found = switches[name] else {
            let known = switches.keys.sorted()
            throw DozeError(.notFound, "no network '\(name)'" + (known.isEmpty ? " (none is defined: doze network create)" : " (known: \(known.joined(separator: ", ")))"))
        }
        return found
    }

    // MARK: - Addresses

    /// The MAC of a switch address: locally administered `0a:56` and the address's four octets. Switch subnets
    /// never overlap, so the address (and the MAC) is unique in the cluster.
    public static func mac(for address: String) -> String {
        let value = IPPool.parse(address) ?? 0
        return ([0x0a, 0x56, value >> 24, value >> 16 & 0xFF, value >> 8 & 0xFF, value & 0xFF] as [UInt32])
            .map { $0 < 16 ? "0" + String($0, radix: 16) : String($0, radix: 16) }.joined(separator: ":")
    }

    /// Attaches `vm` to each network (in order; a network named twice is refused), all or nothing. A VM that
    /// already holds an address on a network keeps it (a resubmitted or restarted VM).
    public mutating func attach(vm: String, to networks: [String]) throws(DozeError) -> [NetworkAttachment] {
        guard Set(networks).count == networks.count else { throw DozeError(.badRequest, "VM '\(vm)' names a network twice: \(networks)") }
        var draft = self
        var attachments: [NetworkAttachment] = []
        for name in networks {
            var target = try draft.requireSwitch(name)
            let lease: SwitchLease
            if let held = target.leases.values.first(where: { $0.vm == vm }) {
                lease = held
            } else {
                let gateway = IPPool.parse(target.gateway)!
                guard let free = target.range.first(where: { $0 != gateway && target.leases[IPPool.format($0)] == nil }) else {
                    throw DozeError(.conflict, "network '\(name)' has no free address (all \(target.capacity) of \(target.dhcpStart)-\(target.dhcpEnd) are in use)")
                }
                let ip = IPPool.format(free)
                lease = SwitchLease(vm: vm, ip: ip, mac: Self.mac(for: ip))
                target.leases[ip] = lease
                draft.switches[name] = target
            }
            attachments.append(NetworkAttachment(network: name, vni: target.vni, bridge: target.linuxBridge, ip: lease.ip,
                                                 prefixLength: target.subnet.prefixLength, gateway: target.gateway, mac: lease.mac))
        }
        self = draft
        return attachments
    }

    /// The attachments `vm` holds now, in network-name order.
    public func attachments(of vm: String) -> [NetworkAttachment] {
        switches.values.sorted { $0.name < $1.name }.compactMap { target in
            target.leases.values.first { $0.vm == vm }.map {
                NetworkAttachment(network: target.name, vni: target.vni, bridge: target.linuxBridge, ip: $0.ip,
                                  prefixLength: target.subnet.prefixLength, gateway: target.gateway, mac: $0.mac)
            }
        }
    }

    /// A VM that ended: its switch addresses go back, its floating IPs are unbound (they stay allocated). True
    /// when anything changed.
    @discardableResult
    public mutating func release(vm: String) -> Bool {
        var changed = false
        for (name, var target) in switches where target.leases.values.contains(where: { $0.vm == vm }) {
            target.leases = target.leases.filter { $0.value.vm != vm }
            switches[name] = target
            changed = true
        }
        for (address, var floating) in floatingIPs where floating.vm == vm {
            floating.vm = nil; floating.privateIP = nil; floating.network = nil
            floatingIPs[address] = floating
            changed = true
        }
        return changed
    }

    /// Every VM holding a switch address.
    public var attachedVMs: Set<String> { Set(switches.values.flatMap { $0.leases.values.map(\.vm) }) }

    // MARK: - Floating IPs

    /// Allocates a floating IP: `requested` if given (it must be in the range and free), else the lowest free one.
    /// Gives a switch or a floating IP to a tenant (made by the leader for the asking token's tenant).
    public mutating func setOwner(ofSwitch name: String, _ tenant: String?) { switches[name]?.tenant = tenant }
    public mutating func setOwner(ofFloatingIP address: String, _ tenant: String?) { floatingIPs[address]?.tenant = tenant }

    public mutating func allocateFloatingIP(_ requested: String? = nil) throws(DozeError) -> FloatingIP {
        guard let text = floatingRange else {
            throw DozeError(.conflict, "this cluster has no floating IP range (start the group managers with --floating-range FIRST-LAST)")
        }
        let range = try Self.parseRange(text)
        let address: UInt32
        if let requested {
            guard let value = IPPool.parse(requested), range.contains(value) else {
                throw DozeError(.badRequest, "floating IP \(requested) is not in the floating range \(text)")
            }
            guard floatingIPs[IPPool.format(value)] == nil else { throw DozeError(.conflict, "floating IP \(requested) is already allocated") }
            address = value
        } else {
            guard let free = range.first(where: { floatingIPs[IPPool.format($0)] == nil }) else {
                throw DozeError(.conflict, "the floating IP range \(text) is exhausted (all \(range.count) allocated)")
            }
            address = free
        }
        let floating = FloatingIP(address: IPPool.format(address))
        floatingIPs[floating.address] = floating
        return floating
    }

    public func requireFloatingIP(_ address: String) throws(DozeError) -> FloatingIP {
        guard let found = floatingIPs[address] else { throw DozeError(.notFound, "floating IP \(address) is not allocated") }
        return found
    }

    /// Binds an allocated floating IP to `vm`'s address on `network` (or its only network).
    public mutating func bind(_ address: String, to vm: String, network: String? = nil) throws(DozeError) -> FloatingIP {
        var floating = try requireFloatingIP(address)
        if let bound = floating.vm {
            throw DozeError(.conflict, "floating IP \(address) is already bound to VM '\(bound)'; unbind it first")
        }
        let held = attachments(of: vm)
        guard !held.isEmpty else {
            throw DozeError(.conflict, "VM '\(vm)' is on no network: a floating IP translates to a switch address (submit it with networks: [...])")
        }
        let attachment: NetworkAttachment
        if let network {
            guard let found = held.first(where: { $0.network == network }) else {
                throw DozeError(.conflict, "VM '\(vm)' is not on network '\(network)' (it is on \(held.map(\.network).joined(separator: ", ")))")
            }
            attachment = found
        } else {
            guard held.count == 1 else {
                throw DozeError(.badRequest, "VM '\(vm)' is on \(held.count) networks (\(held.map(\.network).joined(separator: ", "))): say which")
            }
            attachment = held[0]
        }
        if let other = floatingIPs.values.first(where: { $0.vm == vm && $0.privateIP == attachment.ip }) {
            throw DozeError(.conflict, "VM '\(vm)' already has floating IP \(other.address) on \(attachment.ip)")
        }
        floating.vm = vm
        floating.privateIP = attachment.ip
        floating.network = attachment.network
        floatingIPs[address] = floating
        return floating
    }

    /// Unbinds a bound floating IP; the host that carried it is returned so the shell removes the translation.
    public mutating func unbind(_ address: String) throws(DozeError) -> FloatingIP {
        var floating = try requireFloatingIP(address)
        guard floating.isBound else { throw DozeError(.conflict, "floating IP \(address) is not bound") }
        let before = floating
        floating.vm = nil; floating.privateIP = nil; floating.network = nil
        floatingIPs[address] = floating
        return before
    }

    /// Releases a floating IP (unbinding it first if bound); returns what it was.
    public mutating func releaseFloatingIP(_ address: String) throws(DozeError) -> FloatingIP {
        let floating = try requireFloatingIP(address)
        floatingIPs[address] = nil
        return floating
    }

    /// Records which host carries a floating IP's translation (nil: none).
    public mutating func markApplied(_ address: String, on host: String?) {
        floatingIPs[address]?.appliedOn = host
    }

    /// The floating IP that translates to `ip`, if any.
    public func floatingIP(forPrivate ip: String) -> FloatingIP? { floatingIPs.values.first { $0.privateIP == ip } }
}

import Foundation
