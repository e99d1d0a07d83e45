import ClusterCore
import Foundation
import Testing

@Suite struct DataPlanePlanTests {
    static let spec = try! SwitchSpec(vni: 100, gateway: IPv4Interface("10.200.0.1/24")!)

    /// A host before any switch: lo and the underlay eth0 (trimmed `ip -j -d addr show` output).
    static let bareHost = """
    [{"ifindex":1,"ifname":"lo","flags":["LOOPBACK","UP","LOWER_UP"],"mtu":65536,"address":"00:00:00:00:00:00",
      "addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8},{"family":"inet6","local":"::1","prefixlen":128}]},
     {"ifindex":2,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"address":"92:47:04:19:21:ed",
      "linkinfo":{"info_kind":"veth"},"addr_info":[{"family":"inet","local":"10.77.0.11","prefixlen":24}]}]
    """

    /// The same host with switch 100 and one VM tap (vnet0), as the kernel reports it.
    static let withSwitch = """
    [{"ifindex":2,"ifname":"eth0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"address":"92:47:04:19:21:ed",
      "linkinfo":{"info_kind":"veth"},"addr_info":[{"family":"inet","local":"10.77.0.11","prefixlen":24},
      {"family":"inet","local":"10.77.0.200","prefixlen":32}]},
     {"ifindex":3,"ifname":"dz-br100","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1450,"address":"02:d0:7a:00:00:64",
      "linkinfo":{"info_kind":"bridge","info_data":{"stp_state":0}},"addr_info":[{"family":"inet","local":"10.200.0.1","prefixlen":24}]},
     {"ifindex":4,"ifname":"dz-vx100","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1450,"master":"dz-br100",
      "address":"6e:1c:39:1c:2b:aa","linkinfo":{"info_kind":"vxlan","info_data":{"id":100,"group":"239.1.0.100","link":"eth0","port":4789}},
      "addr_info":[]},
     {"ifindex":5,"ifname":"vnet0","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1450,"master":"dz-br100",
      "address":"fe:54:00:c8:00:0a","linkinfo":{"info_kind":"tun"},"addr_info":[]}]
    """

    static func links(_ json: String) throws -> [ObservedLink] { try DataPlanePlan.parseLinks(json: Data(json.utf8)) }

    @Test func namesMACAndGroupComeFromTheVNI() throws {
        #expect(Self.spec.bridge == "dz-br100" && Self.spec.vxlan == "dz-vx100")
        #expect(Self.spec.gatewayMAC.description == "02:d0:7a:00:00:64")
        #expect(Self.spec.multicastGroup.description == "239.1.0.100")
        #expect(DataPlanePlan.gatewayMAC(vni: 0xABCDEF).description == "02:d0:7a:ab:cd:ef")
        #expect(DataPlanePlan.multicastGroup(vni: 0x12345).description == "239.1.35.69")
        #expect(DataPlanePlan.bridgeName(vni: 16_777_215).count <= 15, "Linux interface names are at most 15 characters")
        #expect(DataPlanePlan.vni(ofDevice: "dz-vx4096") == 4096)
        #expect(DataPlanePlan.vni(ofDevice: "dz-br0") == nil && DataPlanePlan.vni(ofDevice: "dz-br01") == nil && DataPlanePlan.vni(ofDevice: "eth0") == nil)
    }

    @Test func specsRejectWhatTheKernelOrDHCPCannotUse() {
        #expect(throws: DozeError.self) { try SwitchSpec(vni: 0, gateway: IPv4Interface("10.0.0.1/24")!) }
        #expect(throws: DozeError.self) { try SwitchSpec(vni: 1 << 24, gateway: IPv4Interface("10.0.0.1/24")!) }
        #expect(throws: DozeError.self) { try SwitchSpec(vni: 5, gateway: IPv4Interface("10.0.0.0/24")!) }
        #expect(throws: DozeError.self) { try SwitchSpec(vni: 5, gateway: IPv4Interface("10.0.0.255/24")!) }
        #expect(throws: DozeError.self) { try SwitchSpec(vni: 5, gateway: IPv4Interface("10.0.0.1/31")!) }
        #expect(IPv4Address("10.0.0.256") == nil && IPv4Address("10.0.0") == nil && IPv4Address("10.00.0.1") == nil)
        #expect(IPv4Interface("10.0.0.1/33") == nil && IPv4Interface("10.0.0.1") == nil)
        #expect(MACAddress("52:54:00:c8:00:0A")?.description == "52:54:00:c8:00:0a" && MACAddress("52:54:00:c8:00") == nil)
        #expect(throws: DozeError.self) { try DHCPLease(mac: MACAddress("01:00:5e:00:00:01")!, ip: IPv4Address("10.0.0.5")!) }
        #expect(throws: DozeError.self) { try DHCPLease(mac: MACAddress("52:54:00:00:00:01")!, ip: IPv4Address("10.0.0.5")!, hostname: "a,b") }
    }

    @Test func aFreshHostGetsBridgeGatewayAndVXLANInOrder() throws {
        let commands = try DataPlanePlan.ensureSwitch(Self.spec, underlay: "eth0", links: Self.links(Self.bareHost))
        #expect(commands.map(\.description) == [
            "ip link add name dz-br100 address 02:d0:7a:00:00:64 mtu 1450 type bridge stp_state 0 forward_delay 0",
            "ip addr add 10.200.0.1/24 dev dz-br100",
            "ip link add name dz-vx100 mtu 1450 type vxlan id 100 group 239.1.0.100 dev eth0 dstport 4789",
            "ip link set dev dz-vx100 master dz-br100 up",
            "ip link set dev dz-br100 up",
        ])
    }

    @Test func ensureSwitchIsIdempotentAndAdoptsWhatExists() throws {
        let links = try Self.links(Self.withSwitch)
        #expect(try DataPlanePlan.ensureSwitch(Self.spec, underlay: "eth0", links: links) == [])
        #expect(DataPlanePlan.existingSwitches(links) == [Self.spec])
        #expect(DataPlanePlan.vmPorts(vni: 100, links: links) == ["vnet0"])
        #expect(DataPlanePlan.vmPorts(vni: 7, links: links) == [])
    }

    @Test func aWrongDeviceIsRepairedNotDuplicated() throws {
        var links = try Self.links(Self.withSwitch)
        let vx = links.firstIndex { $0.name == "dz-vx100" }!
        links[vx].vxlanGroup = IPv4Address("239.9.9.9")
        links[vx].isUp = false
        let br = links.firstIndex { $0.name == "dz-br100" }!
        links[br].addresses = [IPv4Interface("10.9.0.1/24")!]
        #expect(try DataPlanePlan.ensureSwitch(Self.spec, underlay: "eth0", links: links).map(\.description) == [
            "ip addr del 10.9.0.1/24 dev dz-br100",
            "ip addr add 10.200.0.1/24 dev dz-br100",
            "ip link del dev dz-vx100",
            "ip link add name dz-vx100 mtu 1450 type vxlan id 100 group 239.1.0.100 dev eth0 dstport 4789",
            "ip link set dev dz-vx100 master dz-br100 up",
        ])
        #expect(throws: DozeError.self) { try DataPlanePlan.ensureSwitch(Self.spec, underlay: "ens3", links: links) }
    }

    @Test func removingASwitchDeletesOnlyWhatExists() throws {
        #expect(DataPlanePlan.removeSwitch(vni: 100, links: try Self.links(Self.withSwitch)).map(\.description)
                    == ["ip link del dev dz-vx100", "ip link del dev dz-br100"])
        #expect(DataPlanePlan.removeSwitch(vni: 100, links: try Self.links(Self.bareHost)) == [])
    }

    @Test func theBridgeFilterKeepsTheHostOffTheOverlay() {
        let rules = DataPlanePlan.bridgeRuleset
        #expect(rules.hasPrefix("table bridge doze {}\ndelete table bridge doze\n"), "replaced atomically, so applying it twice is fine")
        #expect(rules.contains("type filter hook input priority 0; policy accept;\n\t\tiifname \"dz-vx*\" drop"))
        #expect(rules.contains("type filter hook output priority 0; policy accept;\n\t\toifname \"dz-vx*\" drop"))
        #expect(rules.contains("ether saddr & ff:ff:ff:00:00:00 == 02:d0:7a:00:00:00 drop"))
        #expect(rules.contains("oifname \"dz-vx*\" udp dport { 67, 68 } drop"))
        #expect(DataPlanePlan.natRuleset(underlay: "eth0").contains("oifname \"eth0\" snat to ip saddr map @fip_snat"))
    }

    @Test func bindingAFloatingIPOnAFreshHost() throws {
        let fip = IPv4Address("10.77.0.200")!, vm = IPv4Address("10.200.0.20")!
        let commands = DataPlanePlan.bindFloatingIP(fip, to: vm, underlay: "eth0", links: try Self.links(Self.bareHost), dnat: [:], snat: [:])
        #expect(commands == [
            .init(.ip, ["addr", "replace", "10.77.0.200/32", "dev", "eth0"]),
            .init(.nft, ["-f", "-"], input: "add element ip doze fip_dnat { 10.77.0.200 : 10.200.0.20 }\nadd element ip doze fip_snat { 10.200.0.20 : 10.77.0.200 }\n"),
            .init(.arping, ["-U", "-c", "2", "-I", "eth0", "-s", "10.77.0.200", "10.77.0.200"]),
        ])
    }

    @Test func rebindingIsIdempotentAndReplacesStaleBindings() throws {
        let fip = IPv4Address("10.77.0.200")!, vm = IPv4Address("10.200.0.20")!, other = IPv4Address("10.200.0.30")!
        let links = try Self.links(Self.withSwitch)   // has 10.77.0.200/32 on eth0 already
        // Already bound: only the announcement again.
        #expect(DataPlanePlan.bindFloatingIP(fip, to: vm, underlay: "eth0", links: links, dnat: [fip: vm], snat: [vm: fip]).map(\.tool) == [.arping])
        // The FIP pointed at another VM: both of that VM's entries go.
        let moved = DataPlanePlan.bindFloatingIP(fip, to: vm, underlay: "eth0", links: links, dnat: [fip: other], snat: [other: fip])
        #expect(moved.first?.input == """
            delete element ip doze fip_dnat { 10.77.0.200 }
            delete element ip doze fip_snat { 10.200.0.30 }
            add element ip doze fip_dnat { 10.77.0.200 : 10.200.0.20 }
            add element ip doze fip_snat { 10.200.0.20 : 10.77.0.200 }

            """)
    }

    @Test func aVMGivenAnotherFloatingIPGivesUpTheOldOne() throws {
        let old = IPv4Address("10.77.0.200")!, new = IPv4Address("10.77.0.201")!, vm = IPv4Address("10.200.0.20")!
        let commands = DataPlanePlan.bindFloatingIP(new, to: vm, underlay: "eth0", links: try Self.links(Self.withSwitch),
                                                    dnat: [old: vm], snat: [vm: old])
        #expect(commands.map(\.description) == [
            "ip addr replace 10.77.0.201/32 dev eth0",
            "nft -f - <<EOF\ndelete element ip doze fip_snat { 10.200.0.20 }\ndelete element ip doze fip_dnat { 10.77.0.200 }\n"
                + "add element ip doze fip_dnat { 10.77.0.201 : 10.200.0.20 }\nadd element ip doze fip_snat { 10.200.0.20 : 10.77.0.201 }\nEOF",
            "ip addr del 10.77.0.200/32 dev eth0",
            "arping -U -c 2 -I eth0 -s 10.77.0.201 10.77.0.201",
        ])
    }

    @Test func unbindingUndoesTheBindingAndNothingElse() throws {
        let fip = IPv4Address("10.77.0.200")!, vm = IPv4Address("10.200.0.20")!
        let links = try Self.links(Self.withSwitch)
        let keep = [IPv4Address("10.77.0.201")!: IPv4Address("10.200.0.30")!]
        let commands = DataPlanePlan.unbindFloatingIP(fip, underlay: "eth0", links: links, dnat: keep.merging([fip: vm]) { a, _ in a },
                                                      snat: [vm: fip, IPv4Address("10.200.0.30")!: IPv4Address("10.77.0.201")!])
        #expect(commands == [
            .init(.nft, ["-f", "-"], input: "delete element ip doze fip_dnat { 10.77.0.200 }\ndelete element ip doze fip_snat { 10.200.0.20 }\n"),
            .init(.ip, ["addr", "del", "10.77.0.200/32", "dev", "eth0"]),
        ])
        #expect(DataPlanePlan.unbindFloatingIP(fip, underlay: "eth0", links: try Self.links(Self.bareHost), dnat: [:], snat: [:]) == [],
                "unbinding what is not bound does nothing")
    }

    @Test func nftMapsParse() throws {
        let json = """
        {"nftables": [{"metainfo": {"version": "1.0.6", "json_schema_version": 1}}, {"map": {"family": "ip", "name": "fip_dnat",
         "table": "doze", "type": "ipv4_addr", "handle": 4, "map": "ipv4_addr", "elem": [["10.74.0.200", "10.200.0.20"]]}}]}
        """
        #expect(try DataPlanePlan.parseMap(json: Data(json.utf8)) == [IPv4Address("10.74.0.200")!: IPv4Address("10.200.0.20")!])
        let empty = #"{"nftables": [{"metainfo": {}}, {"map": {"family": "ip", "name": "fip_snat", "table": "doze"}}]}"#
        #expect(try DataPlanePlan.parseMap(json: Data(empty.utf8)) == [:])
        #expect(throws: (any Error).self) { try DataPlanePlan.parseMap(json: Data("[]".utf8)) }
    }

    @Test func dnsmasqServesStaticLeasesOnTheSwitchBridgeOnly() throws {
        let arguments = DataPlanePlan.dnsmasqArguments(Self.spec, mtu: 1450, hostsFile: "/s/dz-br100.hosts", leaseFile: "/s/dz-br100.leases",
                                                       pidFile: "/s/dz-br100.pid", logFile: "/s/dz-br100.log")
        for expected in ["--port=0", "--interface=dz-br100", "--bind-interfaces", "--dhcp-range=10.200.0.0,static,255.255.255.0,1h",
                         "--dhcp-option=option:router,10.200.0.1", "--dhcp-option-force=option:mtu,1450",
                         "--dhcp-hostsfile=/s/dz-br100.hosts", "--pid-file=/s/dz-br100.pid"] {
            #expect(arguments.contains(expected), "\(expected) in \(arguments)")
        }
        let leases = [try DHCPLease(mac: MACAddress("52:54:00:c8:00:0b")!, ip: IPv4Address("10.200.0.20")!, hostname: "gb"),
                      try DHCPLease(mac: MACAddress("52:54:00:c8:00:0a")!, ip: IPv4Address("10.200.0.10")!)]
        let text = DataPlanePlan.hostsFile(leases)
        #expect(text == "52:54:00:c8:00:0a,10.200.0.10\n52:54:00:c8:00:0b,10.200.0.20,gb\n")
        #expect(DataPlanePlan.parseHostsFile(text + "# a comment\n") == leases.reversed())
    }
}
