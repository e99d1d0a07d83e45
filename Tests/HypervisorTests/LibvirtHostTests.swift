import ClusterTestKit
import Foundation
import Hypervisor
import LibvirtHypervisor
import Testing

/// Every test opens its own `test:///<file>` host: an isolated in-memory hypervisor inside libvirt.
@Suite struct LibvirtHostTests {
    func withHost<T>(cpus: Int = 8, domains: [TestHostFile.Domain] = [],
                     _ body: (LibvirtHost, TemporaryDirectory) async throws -> T) async throws -> T {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let uri = try TestHostFile.write(to: dir.file("host.xml"), cpus: cpus, domains: domains)
        let host = try await LibvirtHost.open(uri: uri)
        defer { Task { await host.close() } }
        return try await body(host, dir)
    }

    @Test func nodeInfoReflectsTheHostFile() async throws {
        try await withHost(cpus: 6) { host, _ in
            let node = try await host.nodeInfo()
            #expect(node.cpus == 6)
            #expect(node.memoryKiB == 16384 * 1024)
        }
    }

    @Test func listsDomainsInEveryState() async throws {
        try await withHost(domains: [.init(name: "on"), .init(name: "off", running: false)]) { host, _ in
            let list = try await host.listDomains().sorted { $0.name < $1.name }
            #expect(list.map(\.name) == ["off", "on"])
            #expect(list.map(\.state) == [.shutOff, .running])
            #expect(list.filter { !$0.persistent }.isEmpty)
        }
    }

    @Test func fullLifecycle() async throws {
        try await withHost { host, _ in
            let defined = try await host.define(xml: TestHostFile.domainXML(name: "vm1", vcpus: 2, memoryMiB: 256))
            #expect(defined.state == .shutOff)
            #expect(defined.vcpus == 2)
            #expect(defined.memoryKiB == 256 * 1024)
            #expect(try await host.start(.name("vm1")).state == .running)
            try await host.suspend(.name("vm1"))
            #expect(try await host.domain(.uuid(defined.uuid)).state == .paused)
            try await host.resume(.name("vm1"))
            try await host.reboot(.name("vm1"))
            #expect(try await host.domain(.name("vm1")).state == .running)
            try await host.shutdown(.name("vm1"))
            #expect(try await host.domain(.name("vm1")).state == .shutOff)
            _ = try await host.start(.name("vm1"))
            try await host.destroy(.name("vm1"))
            try await host.undefine(.name("vm1"))
            await #expect(throws: HypervisorError.self) { try await host.domain(.name("vm1")) }
        }
    }

    @Test func unknownDomainIsNotFoundWithLibvirtsMessage() async throws {
        try await withHost { host, _ in
            do {
                _ = try await host.domain(.name("ghost"))
                Issue.record("found a ghost")
            } catch let error as HypervisorError {
                #expect(error.code == .notFound)
                #expect(error.message.contains("ghost"))
            }
        }
    }

    @Test func malformedXMLIsAnInvalidSpec() async throws {
        try await withHost { host, _ in
            do {
                _ = try await host.define(xml: "<domain type='test'><name>x</name>")
                Issue.record("defined broken XML")
            } catch let error as HypervisorError {
                #expect(error.code == .invalidSpec)
            }
        }
    }

    @Test func wrongStateIsReportedNotCrashed() async throws {
        try await withHost(domains: [.init(name: "off", running: false)]) { host, _ in
            await #expect(throws: HypervisorError.self) { try await host.suspend(.name("off")) }
        }
    }

    @Test func transientDomainsGoAwayWhenDestroyed() async throws {
        try await withHost { host, _ in
            let d = try await host.createTransient(xml: TestHostFile.domainXML(name: "t1"))
            #expect(d.state == .running && !d.persistent)
            try await host.destroy(.name("t1"))
            #expect(try await host.listDomains().isEmpty)
        }
    }

    @Test func resizesLive() async throws {
        try await withHost { host, _ in
            let xml = "<domain type='test'><name>r</name><memory unit='MiB'>512</memory><currentMemory unit='MiB'>256</currentMemory><vcpu current='1'>4</vcpu><os><type>hvm</type></os></domain>"
            _ = try await host.define(xml: xml)
            _ = try await host.start(.name("r"))
            try await host.setVCPUs(.name("r"), count: 3)
            try await host.setMemory(.name("r"), kib: 384 * 1024)
            let d = try await host.domain(.name("r"))
            #expect(d.vcpus == 3)
            #expect(d.memoryKiB == 384 * 1024)
        }
    }

    @Test func statsReadInterfacesFromTheDomainXML() async throws {
        try await withHost(domains: [.init(name: "n")]) { host, _ in
            let s = try await host.stats(.name("n"))
            #expect(s.cpuTimeNs > 0)
            #expect(s.memoryKiB == 256 * 1024)
            #expect(s.rxBytes > 0 && s.txBytes > 0)
        }
    }

    @Test func saveOnOneHostRestoreOnAnother() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let a = try await LibvirtHost.open(uri: try TestHostFile.write(to: dir.file("a.xml"), domains: [.init(name: "mover")]))
        let b = try await LibvirtHost.open(uri: try TestHostFile.write(to: dir.file("b.xml")))
        try await a.save(.name("mover"), to: dir.file("mover.save"))
        #expect(try await a.domain(.name("mover")).state == .shutOff)
        let restored = try await b.restore(from: dir.file("mover.save"))
        #expect(restored.name == "mover" && restored.state == .running)
        await a.close()
        await b.close()
    }

    @Test func snapshotsCreateListRevertDelete() async throws {
        try await withHost(domains: [.init(name: "s")]) { host, _ in
            let snap = try await host.createSnapshot(.name("s"), xml: "<domainsnapshot><name>before</name></domainsnapshot>")
            #expect(snap.name == "before" && snap.isCurrent && snap.state == "running")
            try await host.suspend(.name("s"))
            try await host.revertToSnapshot(.name("s"), snapshot: "before")
            #expect(try await host.domain(.name("s")).state == .running)
            #expect(try await host.listSnapshots(.name("s")).map(\.name) == ["before"])
            try await host.deleteSnapshot(.name("s"), snapshot: "before")
            #expect(try await host.listSnapshots(.name("s")).isEmpty)
            await #expect(throws: HypervisorError.self) { try await host.revertToSnapshot(.name("s"), snapshot: "nope") }
        }
    }

    @Test func directoryPoolsAndVolumes() async throws {
        try await withHost { host, dir in
            let uuid = "0b2254d3-a306-4140-8c9a-40bceadad234"
            let pool = try await host.createDirectoryPool(name: "p1", uuid: uuid, path: dir.file("p1"))
            #expect(pool.uuid == uuid && pool.active && pool.path == dir.file("p1"))
            let vol = try await host.createVolume(pool: "p1", name: "disk1.qcow2", capacityBytes: 1 << 30, format: "qcow2")
            #expect(vol.capacityBytes == 1 << 30)
            #expect(try await host.listVolumes(pool: "p1").map(\.name) == ["disk1.qcow2"])
            try await host.deleteVolume(pool: "p1", name: "disk1.qcow2")
            #expect(try await host.listVolumes(pool: "p1").isEmpty)
            try await host.deleteStoragePool(name: "p1")
            await #expect(throws: HypervisorError.self) { try await host.storagePool(name: "p1") }
        }
    }

    @Test func metadataRoundTrips() async throws {
        try await withHost(domains: [.init(name: "m")]) { host, _ in
            #expect(try await host.metadata(.name("m"), namespace: "urn:doze:vm:1") == nil)
            try await host.setMetadata(.name("m"), xml: "<vm rx='5' tx='6'/>", key: "doze", namespace: "urn:doze:vm:1")
            let meta = try #require(try await host.metadata(.name("m"), namespace: "urn:doze:vm:1"))
            #expect(meta.contains("rx=\"5\"") && meta.contains("tx=\"6\""))
        }
    }

    @Test func kernelBootAndFilesystemDomainsPassThroughUntouched() async throws {
        try await withHost { host, _ in
            let xml = """
                <domain type='kvm'><name>vm_helloworld</name><memory unit='KiB'>2048</memory><vcpu>1</vcpu>
                <os><type>hvm</type><kernel>/var/lib/libvirt/images/hello_qemu-x86_64</kernel></os>
                <devices><filesystem type='mount' accessmode='mapped'><source dir='/var/lib/libvirt/fs/fs0'/><target dir='fs0'/></filesystem></devices></domain>
                """
            _ = try await host.define(xml: xml)
            let dumped = try await host.xml(.name("vm_helloworld"), secure: false)
            #expect(dumped.contains("<kernel>/var/lib/libvirt/images/hello_qemu-x86_64</kernel>"))
            #expect(dumped.contains("<source dir='/var/lib/libvirt/fs/fs0'/>"))
            #expect(dumped.contains("type='kvm'"))
        }
    }

    @Test func eachOpenOfTheSameFileIsAnIsolatedHost() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let uri = try TestHostFile.write(to: dir.file("h.xml"))
        let a = try await LibvirtHost.open(uri: uri)
        let b = try await LibvirtHost.open(uri: uri)
        _ = try await a.define(xml: TestHostFile.domainXML(name: "only-on-a"))
        #expect(try await b.listDomains().isEmpty)
        await a.close()
        await b.close()
    }

    @Test func lifecycleEventsArriveInOrder() async throws {
        try await withHost { host, _ in
            let events = try await host.events()
            _ = try await host.define(xml: TestHostFile.domainXML(name: "ev"))
            _ = try await host.start(.name("ev"))
            try await host.suspend(.name("ev"))
            try await host.resume(.name("ev"))
            try await host.destroy(.name("ev"))
            try await host.undefine(.name("ev"))
            let kinds = try await withTimeout(.seconds(5), "six lifecycle events") {
                var seen: [DomainEvent.Kind] = []
                for await e in events where e.domain == "ev" {
                    seen.append(e.kind)
                    if seen.count == 6 { break }
                }
                return seen
            }
            #expect(kinds == [.defined, .started, .suspended, .resumed, .stopped, .undefined])
        }
    }

    @Test func badURIFailsWithAConnectionError() async {
        do {
            _ = try await LibvirtHost.open(uri: "qemu+unix:///system?socket=/nonexistent/libvirt-sock")
            Issue.record("connected to nothing")
        } catch {
            #expect(error.code == .connection)
        }
    }

    @Test func manyConcurrentCallersAreSerialisedSafely() async throws {
        try await withHost { host, _ in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<40 {
                    group.addTask {
                        _ = try await host.createTransient(xml: TestHostFile.domainXML(name: "c\(i)"))
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await host.listDomains().count == 40)
        }
    }
}

@Suite struct DomainDescriptionTests {
    @Test func readsNameSizeAndPaths() throws {
        let d = try DomainDescription(xml: """
            <domain type='kvm'><name>debian1</name><uuid>0f476e56-67ea-11e1-858e-00216a972a36</uuid><memory>200000</memory>
            <currentMemory unit='MiB'>128</currentMemory><vcpu current='2'>4</vcpu><os><type>hvm</type><kernel>/img/vmlinuz</kernel></os>
            <devices><disk type='file'><source file='/img/d.qcow2'/></disk><interface type='bridge'><mac address='52:54:00:00:00:01'/>
            <target dev='vnet7'/></interface></devices></domain>
            """)
        #expect(d.name == "debian1" && d.type == "kvm" && d.vcpus == 2 && d.memoryKiB == 128 * 1024)
        #expect(d.hostPaths.map(\.path) == ["/img/d.qcow2", "/img/vmlinuz"])
        #expect(d.interfaceTargets == ["vnet7"] && d.macAddresses == ["52:54:00:00:00:01"])
    }

    @Test(arguments: [
        ("<domain", "malformed"),
        ("<vm type='kvm'/>", "root element"),
        ("<domain><name>x</name><memory>1</memory></domain>", "type attribute"),
        ("<domain type='kvm'><memory>1</memory></domain>", "no <name>"),
        ("<domain type='kvm'><name>x</name></domain>", "memory"),
        ("<domain type='kvm'><name>x</name><memory unit='furlongs'>1</memory></domain>", "unit"),
        ("<domain type='kvm'><name>x</name><memory>1</memory><vcpu>zero</vcpu></domain>", "vcpu"),
        // Sizes that used to overflow (a trap, i.e. a crash, on remote input).
        ("<domain type='kvm'><name>x</name><memory unit='TiB'>99999999999</memory></domain>", "overflows"),
        ("<domain type='kvm'><name>x</name><memory>18446744073709551615</memory></domain>", "16 TiB"),
        ("<domain type='kvm'><name>x</name><memory>1</memory><vcpu>9223372036854775807</vcpu></domain>", "from 1 to 4096"),
    ])
    func rejectsWithAReason(_ xml: String, _ fragment: String) {
        do {
            _ = try DomainDescription(xml: xml)
            Issue.record("accepted \(xml)")
        } catch {
            #expect(error.code == .invalidSpec)
            #expect(error.message.contains(fragment), "\(error.message)")
        }
    }
}
