import ClusterCore
import Foundation
import Testing

@Suite struct IPPoolTests {
    @Test func handsOutEachAddressOnceSkippingNetworkGatewayAndBroadcast() throws {
        var pool = try IPPool(subnet: "192.168.122.0/29")   // 8 addresses: .0 network, .1 gateway, .7 broadcast
        #expect(pool.capacity == 5)
        let got = try (1...5).map { try pool.allocate(for: "vm\($0)") }
        #expect(got == ["192.168.122.2", "192.168.122.3", "192.168.122.4", "192.168.122.5", "192.168.122.6"])
        #expect(throws: IPPool.Failure.exhausted(subnet: "192.168.122.0/29")) { try pool.allocate(for: "vm6") }
        #expect(try pool.allocate(for: "vm3") == "192.168.122.4")   // the same VM keeps its address
    }

    @Test func releasedAddressesComeBackLater() throws {
        var pool = try IPPool(subnet: "10.0.0.0/29")
        let a = try pool.allocate(for: "a")
        _ = try pool.allocate(for: "b")
        pool.release(vm: "a")
        #expect(try pool.allocate(for: "c") != a)   // not reused at once
        #expect(pool.free == 3)
        pool.reserve("10.0.0.6", for: "survivor")   // reported by a manager after failover
        #expect(try pool.allocate(for: "d") == "10.0.0.5")
        #expect(try pool.allocate(for: "e") == a)     // wrapped around to the released one
    }

    @Test(arguments: ["10.0.0.0", "10.0.0.0/33", "10.0.0.0/31", "300.1.1.1/24", "a.b.c.d/24", "10.0.0/24"])
    func rejectsBadSubnets(_ subnet: String) {
        #expect(throws: IPPool.Failure.invalidSubnet(subnet)) { try IPPool(subnet: subnet) }
    }

    @Test func macsAreZeroPadded() {
        #expect(IPPool.mac(for: "192.168.122.6") == "54:56:c0:a8:7a:06")   // Snooze wrote 54:56:c0:a8:7a:6
        #expect(IPPool.mac(for: "10.0.0.1") == "54:56:0a:00:00:01")
        #expect(IPPool.mac(for: "nope") == nil)
    }
}

/// Places in order and returns the chosen ids (or the failure's description), so #expect sees plain values.
func run(_ p: inout Placement, _ requests: [(String, HostUsage)], among hosts: [PlacementCandidate], pinned: NodeID? = nil) -> [String] {
    requests.map { key, demand in
        switch p.place(key, demand: demand, among: hosts, pinned: pinned) {
        case .success(let id): return id
        case .failure(let f): return "\(f)"
        }
    }
}

@Suite struct PlacementTests {
    let hosts = [PlacementCandidate(id: "a", free: HostUsage(vcpus: 4, memoryMiB: 4096)),
                 PlacementCandidate(id: "b", free: HostUsage(vcpus: 8, memoryMiB: 16384)),
                 PlacementCandidate(id: "c", free: HostUsage(vcpus: 2, memoryMiB: 1024))]
    let small = HostUsage(vcpus: 1, memoryMiB: 512)

    @Test func firstFitPacksInOrder() {
        var p = Placement(policy: .firstFit)
        let picks = run(&p, (0..<5).map { ("v\($0)", small) }, among: hosts)
        #expect(picks == ["a", "a", "a", "a", "b"])   // a is full of reservations after four
    }

    @Test func roundRobinRotatesAcrossCalls() {
        var p = Placement(policy: .roundRobin)
        let picks = run(&p, (0..<4).map { ("v\($0)", small) }, among: hosts)
        #expect(picks == ["a", "b", "c", "a"])
    }

    @Test func leastLoadedSpreads() {
        var p = Placement(policy: .leastLoaded)
        let picks = run(&p, [("v0", HostUsage(vcpus: 1, memoryMiB: 8192)), ("v1", HostUsage(vcpus: 1, memoryMiB: 4096)),
                             ("v2", HostUsage(vcpus: 1, memoryMiB: 4096)), ("v3", HostUsage(vcpus: 1, memoryMiB: 1024))], among: hosts)
        // v2: b and a both have 4096 MiB left, b more free vCPUs (6 vs 4); v3: b is now the fullest.
        #expect(picks == ["b", "b", "b", "a"])
    }

    @Test func reservationsPreventOvercommitUntilSettled() {
        var p = Placement(policy: .firstFit)
        let big = HostUsage(vcpus: 8, memoryMiB: 16384)
        let first = run(&p, [("x", big)], among: hosts)
        let second = p.place("y", demand: big, among: hosts)
        #expect(first == ["b"])
        #expect(second == .failure(.notEnoughCapacity(demand: big, largestFree: HostUsage(vcpus: 4, memoryMiB: 4096))))
        p.settle("x")   // x failed, or its usage now shows in b's report, which the caller passes in
        let third = run(&p, [("y", big)], among: hosts)
        #expect(third == ["b"])
    }

    @Test func pinnedHostMustExistHaveRoomAndBeSchedulable() {
        var p = Placement(policy: .roundRobin)
        let ok = run(&p, [("v", small)], among: hosts, pinned: "c")
        let unknown = p.place("w", demand: small, among: hosts, pinned: "zz")
        let full = p.place("x", demand: HostUsage(vcpus: 3, memoryMiB: 1), among: hosts, pinned: "c")
        #expect(ok == ["c"])
        #expect(unknown == .failure(.unknownHost("zz")))
        #expect(full == .failure(.notEnoughCapacity(demand: HostUsage(vcpus: 3, memoryMiB: 1), largestFree: HostUsage(vcpus: 1, memoryMiB: 512))))
        var drained = hosts
        drained[1].schedulable = false
        let refused = p.place("y", demand: small, among: drained, pinned: "b")
        #expect(refused == .failure(.hostUnschedulable("b")))
        var q = Placement(policy: .firstFit)
        let elsewhere = run(&q, [("z", HostUsage(vcpus: 4, memoryMiB: 1))], among: drained)
        #expect(elsewhere == ["a"])
    }
}

@Suite struct TemplateAdaptationTests {
    let kvm = "<domain type='kvm'><name>debian1</name><memory>200000</memory><os><type>hvm</type><kernel>/k</kernel></os></domain>"

    @Test func adaptsOnlyTheDomainTypeAndSaysSo() {
        let (xml, change) = TemplateAdaptation.adapt(kvm, supported: ["test"])
        #expect(xml == kvm.replacingOccurrences(of: "type='kvm'", with: "type='test'"))
        #expect(change == TemplateAdaptation.Change(from: "kvm", to: "test"))
        #expect(change?.description == "domain type 'kvm' adapted to 'test' for this host")
    }

    @Test func leavesSupportedTypesAlone() {
        #expect(TemplateAdaptation.adapt(kvm, supported: ["kvm", "qemu"]).change == nil)
        let qemu = "<?xml version=\"1.0\"?><domain type=\"qemu\" id=\"3\"><name>x</name></domain>"
        let untouched = TemplateAdaptation.adapt(qemu, supported: ["kvm", "qemu"])
        #expect(untouched.xml == qemu && untouched.change == nil)
        let tcg = TemplateAdaptation.adapt(kvm, supported: ["qemu"])
        #expect(tcg.xml.hasPrefix("<domain type='qemu'>") && tcg.change == TemplateAdaptation.Change(from: "kvm", to: "qemu"))
    }

    @Test func nothingToAdaptInBrokenInput() {
        #expect(TemplateAdaptation.adapt("not xml", supported: ["test"]).change == nil)
        #expect(TemplateAdaptation.adapt("<domain><name>x</name></domain>", supported: ["test"]).change == nil)
    }
}

extension Result where Success == NodeID, Failure == Placement.Failure {
    static func == (l: Self, r: Self) -> Bool {
        switch (l, r) {
        case (.success(let a), .success(let b)): return a == b
        case (.failure(let a), .failure(let b)): return a == b
        default: return false
        }
    }
}

@Suite struct TemplateMACTests {
    @Test func replacesAnExistingMACInTheFirstInterfaceOnly() {
        let xml = "<domain><devices><interface type='network'><mac address='52:54:00:00:00:01'/><source network='a'/></interface>"
            + "<interface type='network'><mac address='52:54:00:00:00:02'/></interface></devices></domain>"
        let out = TemplateAdaptation.settingMAC("54:56:0a:00:00:05", in: xml)
        #expect(out.contains("<mac address='54:56:0a:00:00:05'/><source network='a'/>"))
        #expect(out.contains("52:54:00:00:00:02"))   // the second NIC keeps its own
        #expect(!out.contains("52:54:00:00:00:01"))
    }

    @Test func insertsAMACWhereThereIsNone() {
        let xml = "<domain><devices><interface type='bridge'><source bridge='br0'/></interface></devices></domain>"
        #expect(TemplateAdaptation.settingMAC("54:56:0a:00:00:05", in: xml)
            == "<domain><devices><interface type='bridge'><mac address='54:56:0a:00:00:05'/><source bridge='br0'/></interface></devices></domain>")
    }

    @Test func expandsASelfClosingInterfaceAndLeavesNICLessTemplatesAlone() {
        let selfClosing = "<domain><devices><interface type='user'/></devices></domain>"
        #expect(TemplateAdaptation.settingMAC("54:56:0a:00:00:05", in: selfClosing)
            == "<domain><devices><interface type='user'><mac address='54:56:0a:00:00:05'/></interface></devices></domain>")
        let none = "<domain><name>x</name></domain>"
        #expect(TemplateAdaptation.settingMAC("54:56:0a:00:00:05", in: none) == none)
    }

    @Test func imageDomainsEscapeNamesAndPathsAndPickTheBootDevice() {
        let disk = TemplateAdaptation.domainXML(name: "a&b", type: "kvm", vcpus: 2, memoryKiB: 262_144, imagePath: "/p/i'1.qcow2",
                                                format: "qcow2", mac: "54:56:0a:00:00:05")
        #expect(disk.hasPrefix("<domain type='kvm'><name>a&amp;b</name><memory unit='KiB'>262144</memory><vcpu>2</vcpu>"))
        #expect(disk.contains("<source file='/p/i&apos;1.qcow2'/>") && disk.contains("<boot dev='hd'/>") && disk.contains("type='qcow2'"))
        #expect(disk.contains("<mac address='54:56:0a:00:00:05'/>"))
        let iso = TemplateAdaptation.domainXML(name: "c", type: "test", vcpus: 1, memoryKiB: 1024, imagePath: "/p/c.iso", format: "iso", mac: nil)
        #expect(iso.contains("device='cdrom'") && iso.contains("<boot dev='cdrom'/>") && !iso.contains("<interface"))
    }
}
