import ClusterCore
import Foundation
import Testing

/// Seed 004's switches and floating IPs as the leader keeps them: what is refused, and that nothing is half-made.
@Suite struct NetworkBookTests {
    func book(floating: String? = "10.77.0.200-10.77.0.202") throws -> NetworkBook {
        try NetworkBook(floatingRange: floating)
    }

    @Test func aSwitchGetsItsGatewayRangeAndVNIFromTheSubnet() throws {
        var networks = try book()
        let made = try networks.createSwitch(name: "blue", subnet: "192.168.5.1/24")   // the seed's example, host bits set
        #expect(made.cidr == "192.168.5.0/24")
        #expect(made.gateway == "192.168.5.1")
        #expect(made.dhcpStart == "192.168.5.1" && made.dhcpEnd == "192.168.5.254")
        #expect(made.capacity == 253, "every host address but the gateway")
        #expect(made.vni == 100 && made.linuxBridge == "dz-br100")
        #expect(try networks.createSwitch(name: "red", subnet: "10.1.0.0/16").vni == 101)
    }

    @Test func badSwitchesAreRefusedWithTheReason() throws {
        var networks = try book()
        try networks.createSwitch(name: "blue", subnet: "10.200.0.0/24")
        func refusal(_ kind: DozeError.Kind, _ make: (inout NetworkBook) throws -> Void) -> String {
            do { try make(&networks); return "accepted" } catch {
                let refused = error as? DozeError
                #expect(refused?.kind == kind, "\(error)")
                return refused?.message ?? "\(error)"
            }
        }
        do { let said = refusal(.conflict) { _ = try $0.createSwitch(name: "wide", subnet: "10.200.0.0/16") }; #expect(said.contains("overlaps network 'blue'"), "\(said)") }
        do { let said = refusal(.conflict) { _ = try $0.createSwitch(name: "blue", subnet: "10.9.0.0/24") }; #expect(said.contains("already exists"), "\(said)") }
        do { let said = refusal(.badRequest) { _ = try $0.createSwitch(name: "g", subnet: "10.9.0.0/24", gateway: "10.8.0.1") }; #expect(said.contains("not a host address"), "\(said)") }
        do { let said = refusal(.badRequest) { _ = try $0.createSwitch(name: "g", subnet: "10.9.0.0/24", gateway: "10.9.0.255") }; #expect(said.contains("not a host address"), "\(said)") }
        do { let said = refusal(.badRequest) { _ = try $0.createSwitch(name: "p", subnet: "10.9.0.0/31") }; #expect(said.contains("prefix length"), "\(said)") }
        do { let said = refusal(.badRequest) { _ = try $0.createSwitch(name: "p", subnet: "10.9.0/24") }; #expect(said.contains("a.b.c.d/len"), "\(said)") }
        do { let said = refusal(.badRequest) { _ = try $0.createSwitch(name: "Bad_Name", subnet: "10.9.0.0/24") }; #expect(said.contains("lowercase"), "\(said)") }
        do { let said = refusal(.badRequest) { _ = try $0.createSwitch(name: "r", subnet: "10.9.0.0/24", dhcpStart: "10.9.0.50", dhcpEnd: "10.9.0.10") }; #expect(said.contains("empty"), "\(said)") }
        do { let said = refusal(.badRequest) { _ = try $0.createSwitch(name: "r", subnet: "10.9.0.0/24", dhcpStart: "10.9.1.5") }; #expect(said.contains("DHCP range start"), "\(said)") }
        do { let said = refusal(.conflict) { _ = try $0.createSwitch(name: "f", subnet: "10.77.0.0/24") }; #expect(said.contains("floating IP range"), "\(said)") }
        do { let said = refusal(.conflict) { _ = try $0.createSwitch(name: "d", subnet: "10.80.0.0/24", reserved: ["default": "10.80.0.0/16"]) }; #expect(said.contains("default"), "\(said)") }
        #expect(networks.switches.keys.sorted() == ["blue"], "nothing half-made")
    }

    @Test func addressesAreHandedOutOnceAndAllOrNothing() throws {
        var networks = try book()
        try networks.createSwitch(name: "a", subnet: "10.1.0.0/29", dhcpStart: "10.1.0.1", dhcpEnd: "10.1.0.3")   // gateway .1: room for 2
        try networks.createSwitch(name: "b", subnet: "10.2.0.0/24")
        let first = try networks.attach(vm: "vm1", to: ["a", "b"])
        #expect(first.map(\.ip) == ["10.1.0.2", "10.2.0.2"])
        #expect(first[0].mac == "0a:56:0a:01:00:02" && first[0].gateway == "10.1.0.1" && first[0].prefixLength == 29)
        #expect(try networks.attach(vm: "vm1", to: ["a"]).map(\.ip) == ["10.1.0.2"], "a VM keeps its address")
        #expect(try networks.attach(vm: "vm2", to: ["a"]).map(\.ip) == ["10.1.0.3"])
        let before = networks
        #expect(throws: DozeError.self) { try networks.attach(vm: "vm3", to: ["b", "a"]) }
        #expect(networks == before, "an exhausted pool leaves no address taken on the other network")
        do { _ = try networks.attach(vm: "vm3", to: ["nope"]); Issue.record("accepted") } catch { #expect(error.kind == .notFound) }
        do { _ = try networks.attach(vm: "vm3", to: ["b", "b"]); Issue.record("accepted") } catch { #expect(error.kind == .badRequest) }
        do { try networks.deleteSwitch("a"); Issue.record("accepted") } catch {
            #expect(error.kind == .conflict && error.message.contains("vm1") && error.message.contains("vm2"))
        }
        let released = networks.release(vm: "vm1") && networks.release(vm: "vm2")
        #expect(released)
        try networks.deleteSwitch("a")
        #expect(networks.switches["a"] == nil)
        #expect(try networks.attach(vm: "vm4", to: ["b"]).map(\.ip) == ["10.2.0.2"], "a released address is free again")
    }

    @Test func floatingIPsBindOnceUnbindOnceAndFollowTheirVMsBooks() throws {
        var networks = try book()
        try networks.createSwitch(name: "blue", subnet: "10.200.0.0/24")
        _ = try networks.attach(vm: "web", to: ["blue"])
        let fip = try networks.allocateFloatingIP()
        #expect(fip.address == "10.77.0.200")
        #expect(try networks.allocateFloatingIP("10.77.0.202").address == "10.77.0.202")
        do { _ = try networks.allocateFloatingIP("10.77.0.202"); Issue.record("twice") } catch { #expect(error.kind == .conflict) }
        do { _ = try networks.allocateFloatingIP("10.77.0.9"); Issue.record("outside") } catch { #expect(error.kind == .badRequest) }
        #expect(try networks.allocateFloatingIP().address == "10.77.0.201")
        do { _ = try networks.allocateFloatingIP(); Issue.record("exhausted") } catch { #expect(error.message.contains("exhausted")) }

        do { _ = try networks.unbind(fip.address); Issue.record("unbound") } catch { #expect(error.kind == .conflict && error.message.contains("not bound")) }
        do { _ = try networks.bind(fip.address, to: "nowhere"); Issue.record("no network") } catch { #expect(error.kind == .conflict) }
        let bound = try networks.bind(fip.address, to: "web")
        #expect(bound.privateIP == "10.200.0.2" && bound.network == "blue")
        do { _ = try networks.bind(fip.address, to: "web"); Issue.record("twice") } catch { #expect(error.message.contains("already bound")) }
        do { _ = try networks.bind("10.77.0.201", to: "web"); Issue.record("second on one NIC") } catch { #expect(error.kind == .conflict) }
        networks.markApplied(fip.address, on: "lc-1")
        #expect(networks.floatingIP(forPrivate: "10.200.0.2")?.appliedOn == "lc-1")
        let before = try networks.unbind(fip.address)
        #expect(before.vm == "web" && before.appliedOn == "lc-1", "the host to clean up is returned")
        #expect(try networks.requireFloatingIP(fip.address).isBound == false)

        _ = try networks.bind(fip.address, to: "web")
        let ended = networks.release(vm: "web")
        #expect(ended)
        #expect(try networks.requireFloatingIP(fip.address).vm == nil, "an ended VM's floating IP stays allocated, unbound")
        #expect(try networks.releaseFloatingIP(fip.address).address == fip.address)
        do { _ = try networks.requireFloatingIP(fip.address); Issue.record("still there") } catch { #expect(error.kind == .notFound) }
    }

    @Test func withoutARangeNothingIsAllocatedAndTheBookRoundTrips() throws {
        var networks = try book(floating: nil)
        do { _ = try networks.allocateFloatingIP(); Issue.record("allocated") } catch { #expect(error.message.contains("--floating-range")) }
        #expect(throws: DozeError.self) { try NetworkBook(floatingRange: "10.0.0.9-10.0.0.1") }
        try networks.createSwitch(name: "blue", subnet: "10.200.0.0/24")
        _ = try networks.attach(vm: "x", to: ["blue"])
        let copy = try JSONDecoder().decode(NetworkBook.self, from: JSONEncoder().encode(networks))
        #expect(copy == networks)
        var next = copy
        #expect(try next.createSwitch(name: "red", subnet: "10.201.0.0/24").vni == 101, "the VNI counter survives a failover")
    }
}
