import Foundation

// The per-host data plane of seed 004's VM networks, as pure computation: from the desired state (switches, DHCP
// leases, floating IPs) and what a host was observed to have (`ip -j -d addr show`, `nft -j list map …`), the exact
// command lines that bring the host there. No IO: `HostDataPlane` (ClusterNode) runs them.
//
// A switch is a VXLAN segment with id VNI. On each host with a VM on it:
//   dz-br<VNI>  a Linux bridge holding the switch's gateway address, the same address and the same MAC (derived from
//               the VNI) on every host: a distributed anycast gateway, so a VM keeps its gateway's ARP entry across a
//               live migration;
//   dz-vx<VNI>  a VXLAN device (UDP 4789, multicast group 239.1.x.y derived from the VNI, over the host's underlay
//               interface: no peer list) enslaved to the bridge;
//   a dnsmasq   on the bridge, static leases only, for the VMs of this host.
// Since every host owns the gateway, the host's own stack never talks over the overlay (nftables `bridge doze`):
// frames from or to the host itself are dropped at dz-vx*, which keeps each host's ARP replies for the gateway and
// its DHCP answers to its own VMs; DHCP between VMs across the overlay and frames from any gateway MAC arriving
// from it are dropped too. A floating IP is a /32 on the underlay interface of the VM's host plus DNAT/SNAT
// (nftables `ip doze`, maps fip_dnat / fip_snat), announced by gratuitous ARP so the underlay learns its new MAC.

/// An IPv4 address.
public struct IPv4Address: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var value: UInt32

    public init(_ value: UInt32) { self.value = value }

    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 4 else { return nil }
        var value: UInt32 = 0
        for part in parts {
            guard (1...3).contains(part.count), part.allSatisfy(\.isASCII), let byte = UInt8(part),
                  part.count == 1 || part.first != "0" else { return nil }
            value = value << 8 | UInt32(byte)
        }
        self.value = value
    }

    public var description: String { "\(value >> 24).\(value >> 16 & 0xff).\(value >> 8 & 0xff).\(value & 0xff)" }
    public static func < (a: Self, b: Self) -> Bool { a.value < b.value }
}

/// An address with its prefix length: `10.200.0.1/24`.
public struct IPv4Interface: Sendable, Hashable, CustomStringConvertible {
    public var address: IPv4Address
    public var prefixLength: Int

    public init?(address: IPv4Address, prefixLength: Int) {
        guard (1...32).contains(prefixLength) else { return nil }
        self.address = address
        self.prefixLength = prefixLength
    }

    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: "/", omittingEmptySubsequences: false)
        guard parts.count == 2, let address = IPv4Address(parts[0]), parts[1].allSatisfy(\.isASCII),
              let prefix = Int(parts[1]) else { return nil }
        self.init(address: address, prefixLength: prefix)
    }

    public var netmask: IPv4Address { IPv4Address(prefixLength == 0 ? 0 : UInt32.max << (32 - prefixLength)) }
    public var network: IPv4Address { IPv4Address(address.value & netmask.value) }
    public func contains(_ other: IPv4Address) -> Bool { other.value & netmask.value == network.value }
    public var description: String { "\(address)/\(prefixLength)" }
}

/// An Ethernet address, printed lower-case with colons.
public struct MACAddress: Sendable, Hashable, Comparable, CustomStringConvertible {
    public var bytes: [UInt8]

    public init?(bytes: [UInt8]) {
        guard bytes.count == 6 else { return nil }
        self.bytes = bytes
    }

    public init?(_ text: some StringProtocol) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 6 else { return nil }
        var bytes: [UInt8] = []
        for part in parts {
            guard part.count == 2, let byte = UInt8(part, radix: 16) else { return nil }
            bytes.append(byte)
        }
        self.bytes = bytes
    }

    /// Neither multicast nor all-zero: usable as a NIC's address.
    public var isUnicast: Bool { bytes[0] & 1 == 0 && bytes != [0, 0, 0, 0, 0, 0] }
    public var description: String { bytes.map { String(format: "%02x", $0) }.joined(separator: ":") }
    public static func < (a: Self, b: Self) -> Bool { a.bytes.lexicographicallyPrecedes(b.bytes) }
}

/// One switch as a host's data plane sees it: its VNI and its gateway (address/prefix).
public struct SwitchSpec: Sendable, Hashable {
    public var vni: Int
    public var gateway: IPv4Interface

    /// VXLAN ids are 24 bits; 0 is not used.
    public static let vniRange = 1...0xFF_FFFF

    public init(vni: Int, gateway: IPv4Interface) throws {
        guard Self.vniRange.contains(vni) else { throw DozeError(.badRequest, "VNI \(vni) is outside \(Self.vniRange)") }
        guard gateway.prefixLength <= 30 else { throw DozeError(.badRequest, "switch subnet \(gateway) is too small (at most /30)") }
        guard gateway.address != gateway.network, gateway.address.value != gateway.network.value | ~gateway.netmask.value else {
            throw DozeError(.badRequest, "gateway \(gateway) is the subnet's network or broadcast address")
        }
        self.vni = vni
        self.gateway = gateway
    }

    public var bridge: String { DataPlanePlan.bridgeName(vni: vni) }
    public var vxlan: String { DataPlanePlan.vxlanName(vni: vni) }
    public var gatewayMAC: MACAddress { DataPlanePlan.gatewayMAC(vni: vni) }
    public var multicastGroup: IPv4Address { DataPlanePlan.multicastGroup(vni: vni) }
}

/// A static DHCP lease: the VM's NIC MAC gets `ip`.
public struct DHCPLease: Sendable, Hashable {
    public var mac: MACAddress
    public var ip: IPv4Address
    /// Letters, digits and '-' only (it goes into dnsmasq's hosts file); may be empty.
    public var hostname: String

    public init(mac: MACAddress, ip: IPv4Address, hostname: String = "") throws {
        guard mac.isUnicast else { throw DozeError(.badRequest, "MAC \(mac) is not a unicast address") }
        guard hostname.count <= 63, hostname.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) else {
            throw DozeError(.badRequest, "hostname '\(hostname)' must be at most 63 letters, digits and '-'")
        }
        self.mac = mac
        self.ip = ip
        self.hostname = hostname
    }
}

/// What a host was seen to have, from `ip -j -d addr show` (only the fields the plan needs).
public struct ObservedLink: Sendable, Hashable {
    public var name: String
    public var kind: String?
    public var mac: MACAddress?
    public var master: String?
    public var isUp: Bool
    public var mtu: Int
    public var addresses: [IPv4Interface]
    /// VXLAN devices only.
    public var vxlanID: Int?
    public var vxlanGroup: IPv4Address?
    public var vxlanPort: Int?
    public var vxlanUnderlay: String?

    public init(name: String, kind: String? = nil, mac: MACAddress? = nil, master: String? = nil, isUp: Bool = true, mtu: Int = 1500,
                addresses: [IPv4Interface] = [], vxlanID: Int? = nil, vxlanGroup: IPv4Address? = nil, vxlanPort: Int? = nil,
                vxlanUnderlay: String? = nil) {
        self.name = name
        self.kind = kind
        self.mac = mac
        self.master = master
        self.isUp = isUp
        self.mtu = mtu
        self.addresses = addresses
        self.vxlanID = vxlanID
        self.vxlanGroup = vxlanGroup
        self.vxlanPort = vxlanPort
        self.vxlanUnderlay = vxlanUnderlay
    }
}

/// The commands that bring a host's data plane to a desired state, computed from what was observed.
public enum DataPlanePlan {
    /// A program of the data plane; the runner resolves it to a path (`arping` may be busybox's applet).
    public enum Tool: String, Sendable, Hashable {
        case ip, nft, arping
    }

    /// One command line; `input` goes to its standard input (an `nft -f -` script).
    public struct Command: Sendable, Hashable, CustomStringConvertible {
        public var tool: Tool
        public var arguments: [String]
        public var input: String?

        public init(_ tool: Tool, _ arguments: [String], input: String? = nil) {
            self.tool = tool
            self.arguments = arguments
            self.input = input
        }

        public var description: String {
            ([tool.rawValue] + arguments).joined(separator: " ") + (input.map { " <<EOF\n\($0)EOF" } ?? "")
        }
    }

    public static let vxlanPort = 4789
    /// VXLAN over IPv4 adds 50 bytes (outer Ethernet 14 + IPv4 20 + UDP 8 + VXLAN 8): the VMs' MTU, by DHCP.
    public static let vxlanOverhead = 50
    public static let bridgePrefix = "dz-br"
    public static let vxlanPrefix = "dz-vx"
    /// Gateway MACs are 02:d0:7a + the 24-bit VNI: locally administered, unicast, the same on every host.
    public static let gatewayMACPrefix: [UInt8] = [0x02, 0xd0, 0x7a]

    public static func bridgeName(vni: Int) -> String { bridgePrefix + String(vni) }
    public static func vxlanName(vni: Int) -> String { vxlanPrefix + String(vni) }

    public static func gatewayMAC(vni: Int) -> MACAddress {
        MACAddress(bytes: gatewayMACPrefix + [UInt8(vni >> 16 & 0xff), UInt8(vni >> 8 & 0xff), UInt8(vni & 0xff)])!
    }

    /// 239.1.x.y from the VNI's low 16 bits (administratively scoped). Two VNIs 65536 apart share a group: that only
    /// floods one segment's broadcasts to the other's hosts, which the VNI then discards.
    public static func multicastGroup(vni: Int) -> IPv4Address {
        IPv4Address(239 << 24 | 1 << 16 | UInt32(vni & 0xffff))
    }

    /// The VNI of a data-plane device name (`dz-br100` → 100), nil for any other name.
    public static func vni(ofDevice name: String) -> Int? {
        for prefix in [bridgePrefix, vxlanPrefix] where name.hasPrefix(prefix) {
            let digits = name.dropFirst(prefix.count)
            guard !digits.isEmpty, digits.allSatisfy(\.isASCII), digits.first != "0", let vni = Int(digits),
                  SwitchSpec.vniRange.contains(vni) else { return nil }
            return vni
        }
        return nil
    }

    // MARK: - Switches

    /// The commands that make switch `spec` exist on this host over `underlay`, given the host's links: nothing for
    /// what is already right, so running it twice, or after a restart, changes nothing.
    public static func ensureSwitch(_ spec: SwitchSpec, underlay: String, links: [ObservedLink]) throws -> [Command] {
        let byName = Dictionary(links.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        guard let under = byName[underlay] else { throw DozeError(.notFound, "underlay interface \(underlay) does not exist") }
        let mtu = under.mtu - vxlanOverhead
        let bridge = spec.bridge, vxlan = spec.vxlan
        var commands: [Command] = []

        if let existing = byName[bridge], existing.kind != "bridge" {
            commands.append(Command(.ip, ["link", "del", "dev", bridge]))
        }
        let bridgeNow = byName[bridge].flatMap { $0.kind == "bridge" ? $0 : nil }
        if bridgeNow == nil {
            commands.append(Command(.ip, ["link", "add", "name", bridge, "address", spec.gatewayMAC.description, "mtu", String(mtu),
                                          "type", "bridge", "stp_state", "0", "forward_delay", "0"]))
        } else if let bridgeNow {
            if bridgeNow.mac != spec.gatewayMAC { commands.append(Command(.ip, ["link", "set", "dev", bridge, "address", spec.gatewayMAC.description])) }
            if bridgeNow.mtu != mtu { commands.append(Command(.ip, ["link", "set", "dev", bridge, "mtu", String(mtu)])) }
        }
        let present = bridgeNow?.addresses ?? []
        for stale in present where stale != spec.gateway {
            commands.append(Command(.ip, ["addr", "del", stale.description, "dev", bridge]))
        }
        if !present.contains(spec.gateway) {
            commands.append(Command(.ip, ["addr", "add", spec.gateway.description, "dev", bridge]))
        }

        let vxlanNow = byName[vxlan]
        let vxlanRight = vxlanNow.map {
            $0.kind == "vxlan" && $0.vxlanID == spec.vni && $0.vxlanGroup == spec.multicastGroup && $0.vxlanPort == vxlanPort
                && $0.vxlanUnderlay == underlay
        } ?? false
        if vxlanNow != nil && !vxlanRight { commands.append(Command(.ip, ["link", "del", "dev", vxlan])) }
        if !vxlanRight {
            commands.append(Command(.ip, ["link", "add", "name", vxlan, "mtu", String(mtu), "type", "vxlan", "id", String(spec.vni),
                                          "group", spec.multicastGroup.description, "dev", underlay, "dstport", String(vxlanPort)]))
        } else if let vxlanNow, vxlanNow.mtu != mtu {
            commands.append(Command(.ip, ["link", "set", "dev", vxlan, "mtu", String(mtu)]))
        }
        if !vxlanRight || vxlanNow?.master != bridge || vxlanNow?.isUp != true {
            commands.append(Command(.ip, ["link", "set", "dev", vxlan, "master", bridge, "up"]))
        }
        if bridgeNow?.isUp != true { commands.append(Command(.ip, ["link", "set", "dev", bridge, "up"])) }
        return commands
    }

    /// The commands that remove switch `vni`'s devices, those that exist (the VMs' taps go with their domains).
    public static func removeSwitch(vni: Int, links: [ObservedLink]) -> [Command] {
        [vxlanName(vni: vni), bridgeName(vni: vni)].filter { name in links.contains { $0.name == name } }
            .map { Command(.ip, ["link", "del", "dev", $0]) }
    }

    /// The switches this host has (a `dz-br<VNI>` bridge), with the gateway each bridge holds: what an LC adopts
    /// after a restart.
    public static func existingSwitches(_ links: [ObservedLink]) -> [SwitchSpec] {
        links.compactMap { link in
            guard link.kind == "bridge", link.name.hasPrefix(bridgePrefix), let vni = vni(ofDevice: link.name),
                  let gateway = link.addresses.first else { return nil }
            return try? SwitchSpec(vni: vni, gateway: gateway)
        }.sorted { $0.vni < $1.vni }
    }

    /// Ports of switch `vni`'s bridge other than its VXLAN device: the VMs' taps. A switch with none is unused here.
    public static func vmPorts(vni: Int, links: [ObservedLink]) -> [String] {
        links.filter { $0.master == bridgeName(vni: vni) && $0.name != vxlanName(vni: vni) }.map(\.name).sorted()
    }

    // MARK: - nftables

    /// The bridge-family table, the same for every switch (it matches dz-vx*), replaced atomically: the host's own
    /// stack (gateway, ARP, DHCP server) never talks over the overlay, VMs do not exchange DHCP across it, and no
    /// frame from a gateway MAC is let in from it.
    public static var bridgeRuleset: String {
        let prefix = gatewayMACPrefix.map { String(format: "%02x", $0) }.joined(separator: ":") + ":00:00:00"
        return """
        table bridge doze {}
        delete table bridge doze
        table bridge doze {
        \tchain input {
        \t\ttype filter hook input priority 0; policy accept;
        \t\tiifname "\(vxlanPrefix)*" drop
        \t}
        \tchain output {
        \t\ttype filter hook output priority 0; policy accept;
        \t\toifname "\(vxlanPrefix)*" drop
        \t}
        \tchain forward {
        \t\ttype filter hook forward priority 0; policy accept;
        \t\tiifname "\(vxlanPrefix)*" ether saddr & ff:ff:ff:00:00:00 == \(prefix) drop
        \t\toifname "\(vxlanPrefix)*" udp dport { 67, 68 } drop
        \t\tiifname "\(vxlanPrefix)*" udp dport { 67, 68 } drop
        \t}
        }

        """
    }

    /// The ip-family NAT table for floating IPs, created once when missing (its maps hold the bindings, so it is never
    /// replaced while it exists). Locally generated traffic to a floating IP is translated too (`output`).
    public static func natRuleset(underlay: String) -> String {
        """
        table ip doze {
        \tmap fip_dnat {
        \t\ttype ipv4_addr : ipv4_addr
        \t}
        \tmap fip_snat {
        \t\ttype ipv4_addr : ipv4_addr
        \t}
        \tchain prerouting {
        \t\ttype nat hook prerouting priority dstnat; policy accept;
        \t\tdnat to ip daddr map @fip_dnat
        \t}
        \tchain output {
        \t\ttype nat hook output priority -100; policy accept;
        \t\tdnat to ip daddr map @fip_dnat
        \t}
        \tchain postrouting {
        \t\ttype nat hook postrouting priority srcnat; policy accept;
        \t\toifname "\(underlay)" snat to ip saddr map @fip_snat
        \t}
        }

        """
    }

    /// A map's elements from `nft -j list map ip doze NAME`.
    public static func parseMap(json: Data) throws -> [IPv4Address: IPv4Address] {
        guard let root = try JSONSerialization.jsonObject(with: json) as? [String: Any],
              let items = root["nftables"] as? [[String: Any]] else { throw DozeError(.badRequest, "not nft JSON output") }
        var result: [IPv4Address: IPv4Address] = [:]
        for item in items {
            guard let map = item["map"] as? [String: Any] else { continue }
            for element in map["elem"] as? [Any] ?? [] {
                guard let pair = element as? [Any], pair.count == 2, let key = (pair[0] as? String).flatMap(IPv4Address.init),
                      let value = (pair[1] as? String).flatMap(IPv4Address.init) else {
                    throw DozeError(.badRequest, "unexpected element \(element) in an nft map")
                }
                result[key] = value
            }
        }
        return result
    }

    // MARK: - Floating IPs

    /// The commands that make `floating` reach `privateIP` through this host: the /32 on the underlay, DNAT/SNAT map
    /// entries (replacing any other binding of either address), and a gratuitous ARP, which is always sent so the
    /// underlay relearns the address after a move. `dnat`/`snat` are the maps' current contents.
    public static func bindFloatingIP(_ floating: IPv4Address, to privateIP: IPv4Address, underlay: String, links: [ObservedLink],
                                      dnat: [IPv4Address: IPv4Address], snat: [IPv4Address: IPv4Address]) -> [Command] {
        var commands: [Command] = []
        let host = IPv4Interface(address: floating, prefixLength: 32)!
        let underlayAddresses = links.first { $0.name == underlay }?.addresses ?? []
        if !underlayAddresses.contains(host) {
            commands.append(Command(.ip, ["addr", "replace", host.description, "dev", underlay]))
        }
        if dnat[floating] != privateIP || snat[privateIP] != floating {
            var script = ""
            if dnat[floating] != nil { script += "delete element ip doze fip_dnat { \(floating) }\n" }
            if snat[privateIP] != nil { script += "delete element ip doze fip_snat { \(privateIP) }\n" }
            // The other ends of stale bindings: a floating IP that pointed elsewhere, a private IP with another one.
            if let old = dnat[floating], snat[old] == floating, old != privateIP { script += "delete element ip doze fip_snat { \(old) }\n" }
            if let old = snat[privateIP], dnat[old] == privateIP, old != floating { script += "delete element ip doze fip_dnat { \(old) }\n" }
            script += "add element ip doze fip_dnat { \(floating) : \(privateIP) }\n"
            script += "add element ip doze fip_snat { \(privateIP) : \(floating) }\n"
            commands.append(Command(.nft, ["-f", "-"], input: script))
            // A floating IP this VM had before is no longer bound here: its /32 goes too, or the host would answer it.
            if let old = snat[privateIP], old != floating,
               let displaced = IPv4Interface(address: old, prefixLength: 32), underlayAddresses.contains(displaced) {
                commands.append(Command(.ip, ["addr", "del", displaced.description, "dev", underlay]))
            }
        }
        commands.append(gratuitousARP(floating, underlay: underlay))
        return commands
    }

    /// The commands that undo `bindFloatingIP` for `floating`: nothing for what is already gone.
    public static func unbindFloatingIP(_ floating: IPv4Address, underlay: String, links: [ObservedLink],
                                        dnat: [IPv4Address: IPv4Address], snat: [IPv4Address: IPv4Address]) -> [Command] {
        var commands: [Command] = []
        var script = ""
        if let privateIP = dnat[floating] {
            script += "delete element ip doze fip_dnat { \(floating) }\n"
            if snat[privateIP] == floating { script += "delete element ip doze fip_snat { \(privateIP) }\n" }
        }
        for (privateIP, fip) in snat.sorted(by: { $0.key < $1.key }) where fip == floating && dnat[floating] != privateIP {
            script += "delete element ip doze fip_snat { \(privateIP) }\n"
        }
        if !script.isEmpty { commands.append(Command(.nft, ["-f", "-"], input: script)) }
        let host = IPv4Interface(address: floating, prefixLength: 32)!
        if links.first(where: { $0.name == underlay })?.addresses.contains(host) ?? false {
            commands.append(Command(.ip, ["addr", "del", host.description, "dev", underlay]))
        }
        return commands
    }

    /// Two unsolicited ARP replies for `address` (busybox and iputils arping take the same options).
    public static func gratuitousARP(_ address: IPv4Address, underlay: String) -> Command {
        Command(.arping, ["-U", "-c", "2", "-I", underlay, "-s", address.description, address.description])
    }

    // MARK: - DHCP

    /// dnsmasq for one switch on this host: DHCP only (no DNS), on the switch's bridge alone, static leases from
    /// `hostsFile` (re-read on SIGHUP), the gateway as router, the overlay's MTU; it daemonizes and writes `pidFile`.
    public static func dnsmasqArguments(_ spec: SwitchSpec, mtu: Int, hostsFile: String, leaseFile: String, pidFile: String,
                                        logFile: String) -> [String] {
        [
            "--conf-file=/dev/null", "--port=0", "--interface=\(spec.bridge)", "--bind-interfaces", "--except-interface=lo",
            "--dhcp-range=\(spec.gateway.network),static,\(spec.gateway.netmask),1h",
            "--dhcp-option=option:router,\(spec.gateway.address)",
            "--dhcp-option-force=option:mtu,\(mtu)",
            "--dhcp-authoritative", "--dhcp-hostsfile=\(hostsFile)", "--dhcp-leasefile=\(leaseFile)",
            "--pid-file=\(pidFile)", "--log-dhcp", "--log-facility=\(logFile)",
        ]
    }

    /// dnsmasq's `--dhcp-hostsfile`: `MAC,IP[,hostname]` per lease, sorted by address.
    public static func hostsFile(_ leases: [DHCPLease]) -> String {
        leases.sorted { ($0.ip, $0.mac) < ($1.ip, $1.mac) }
            .map { [$0.mac.description, $0.ip.description] + ($0.hostname.isEmpty ? [] : [$0.hostname]) }
            .map { $0.joined(separator: ",") + "\n" }.joined()
    }

    /// The leases of a hosts file this plan wrote (other lines are skipped).
    public static func parseHostsFile(_ text: String) -> [DHCPLease] {
        text.split(separator: "\n").compactMap { line in
            let fields = line.split(separator: ",", omittingEmptySubsequences: false)
            guard (2...3).contains(fields.count), let mac = MACAddress(fields[0]), let ip = IPv4Address(fields[1]) else { return nil }
            return try? DHCPLease(mac: mac, ip: ip, hostname: fields.count == 3 ? String(fields[2]) : "")
        }
    }

    // MARK: - Observation

    /// The links of `ip -j -d addr show` (IPv4 addresses only).
    public static func parseLinks(json: Data) throws -> [ObservedLink] {
        guard let items = try JSONSerialization.jsonObject(with: json) as? [[String: Any]] else {
            throw DozeError(.badRequest, "not `ip -j addr` output")
        }
        return items.compactMap { item in
            guard let name = item["ifname"] as? String else { return nil }
            let info = item["linkinfo"] as? [String: Any]
            let data = info?["info_data"] as? [String: Any]
            let kind = info?["info_kind"] as? String
            let addresses = (item["addr_info"] as? [[String: Any]] ?? []).compactMap { address -> IPv4Interface? in
                guard address["family"] as? String == "inet", let local = (address["local"] as? String).flatMap(IPv4Address.init),
                      let prefix = address["prefixlen"] as? Int else { return nil }
                return IPv4Interface(address: local, prefixLength: prefix)
            }
            let flags = item["flags"] as? [String] ?? []
            return ObservedLink(
                name: name, kind: kind, mac: (item["address"] as? String).flatMap(MACAddress.init), master: item["master"] as? String,
                isUp: flags.contains("UP"), mtu: item["mtu"] as? Int ?? 1500, addresses: addresses,
                vxlanID: kind == "vxlan" ? data?["id"] as? Int : nil,
                vxlanGroup: kind == "vxlan" ? (data?["group"] as? String).flatMap(IPv4Address.init) : nil,
                vxlanPort: kind == "vxlan" ? data?["port"] as? Int : nil,
                vxlanUnderlay: kind == "vxlan" ? data?["link"] as? String : nil)
        }
    }
}
