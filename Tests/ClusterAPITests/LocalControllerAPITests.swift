import ClusterAPI
import ClusterCore
import ClusterNode
import ClusterTestKit
import ClusterWire
import Foundation
import Hummingbird
import HummingbirdTesting
import LibvirtHypervisor
import Testing

/// Drives the local controller's real router (no sockets) on a fresh test-driver host per test.
struct APIFixture {
    let dir: TemporaryDirectory
    let controller: LocalController
    let app: Application<RouterResponder<BasicRequestContext>>

    static func make(cpus: Int = 8, memoryMiB: Int = 16384, domains: [TestHostFile.Domain] = [],
                     configure: (inout LocalControllerSettings) -> Void = { _ in }) async throws -> APIFixture {
        let dir = try TemporaryDirectory()
        let uri = try TestHostFile.write(to: dir.file("host.xml"), cpus: cpus, memoryMiB: memoryMiB, domains: domains)
        var settings = LocalControllerSettings(hypervisorURI: uri, stateDirectory: dir.file("state"), openHypervisor: LibvirtHost.factory)
        settings.maxBodyBytes = 64 * 1024
        configure(&settings)
        let controller = try await LocalController.start(settings: settings)
        let router = LocalControllerRuntime.makeRouter(controller: controller, settings: settings)
        return APIFixture(dir: dir, controller: controller, app: Application(router: router))
    }

    func run(_ body: @escaping @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        defer { dir.remove() }
        try await app.test(.router) { client in try await body(client) }
    }
}

extension TestClientProtocol {
    @discardableResult
    func call(_ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil, status: HTTPResponse.Status = .ok,
              sourceLocation: SourceLocation = #_sourceLocation) async throws -> String {
        try await execute(uri: uri, method: method, body: body.map { ByteBuffer(string: $0) }) { response in
            let text = String(buffer: response.body)
            #expect(response.status == status, "\(method) \(uri) → \(text)", sourceLocation: sourceLocation)
            return text
        }
    }

    func json<T: Decodable>(_ type: T.Type, _ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil,
                            status: HTTPResponse.Status = .ok, sourceLocation: SourceLocation = #_sourceLocation) async throws -> T {
        let text = try await call(method, uri, body, status: status, sourceLocation: sourceLocation)
        return try JSONDecoder().decode(T.self, from: Data(text.utf8))
    }

    /// Asserts a JSON error with the given status whose message contains `fragment`.
    func expectError(_ method: HTTPRequest.Method, _ uri: String, _ body: String? = nil, status: HTTPResponse.Status,
                     _ fragment: String, sourceLocation: SourceLocation = #_sourceLocation) async throws {
        let text = try await call(method, uri, body, status: status, sourceLocation: sourceLocation)
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        let message = (object?["error"] as? [String: Any])?["message"] as? String ?? ""
        #expect(message.contains(fragment), "message '\(message)' lacks '\(fragment)'", sourceLocation: sourceLocation)
    }
}

func xml(_ name: String, vcpus: Int = 1, memoryMiB: Int = 128, devices: String = "") -> String {
    TestHostFile.domainXML(name: name, type: "kvm", vcpus: vcpus, memoryMiB: memoryMiB, devices: devices)
}

func submission(_ vms: [(String, String)], rx: Double = 0, tx: Double = 0) -> String {
    let metas = vms.map { id, xml in
        VirtualMachineMetaData(location: .init(virtualMachineId: id), xmlRepresentation: xml,
                               requestedCapacity: ResourceVector(vcpus: 1, memoryKiB: 1, rxBytes: rx, txBytes: tx))
    }
    return String(decoding: try! JSONEncoder().encode(VirtualMachineSubmission(virtualMachineMetaData: metas)), as: UTF8.self)
}

@Suite struct SnoozeLocalControllerTests {
    @Test func startVirtualMachinesThenControlByRawID() async throws {
        try await APIFixture.make().run { client in
            let started = try await client.json(VirtualMachineSubmission.self, .post, "/localcontroller?startVirtualMachines",
                                                submission([("vm1", xml("vm1", vcpus: 2))], rx: 12800, tx: 6400))
            let vm = try #require(started.virtualMachineMetaData.first)
            #expect(vm.status == .running && vm.errorCode == .none)
            #expect(vm.virtualMachineLocation.localControllerId != "UNKNOWN")
            // Each direction from its own field: Snooze once swapped them.
            #expect(vm.requestedCapacity == [2, 131072, 12800, 6400])

            #expect(try await client.call(.post, "/localcontroller?suspendVirtualMachineOnRequest", "vm1") == "true")
            #expect(try await client.call(.post, "/localcontroller?resumeVirtualMachine", "\"vm1\"") == "true")
            #expect(try await client.call(.post, "/localcontroller?rebootVirtualMachine", "vm1\n") == "true")
            let resized = try await client.json(VirtualMachineMetaData.self, .post, "/localcontroller?resizeVirtualMachine",
                #"{"virtualMachineLocation":{"virtualMachineId":"vm1"},"resizedCapacity":[1,65536,-1,-1]}"#)
            #expect(resized.requestedCapacity == [1, 65536, 12800, 6400])
            #expect(try await client.call(.post, "/localcontroller?shutdownVirtualMachine", "vm1") == "true")
            let all = try await client.json([VirtualMachineMetaData].self, .post, "/localcontroller?getVirtualMachines", "0")
            #expect(all.map(\.status) == [.offline])
            #expect(all.first?.requested.rxBytes == 12800)
            #expect(try await client.call(.post, "/localcontroller?destroyVirtualMachine", "vm1") == "true")
            #expect(try await client.json([VirtualMachineMetaData].self, .post, "/localcontroller?getVirtualMachines", "0").isEmpty)
        }
    }

    @Test func partialBatchReportsPerVMAndAllFailedIsAnError() async throws {
        try await APIFixture.make(cpus: 2).run { client in
            let mixed = try await client.json(VirtualMachineSubmission.self, .post, "/localcontroller?startVirtualMachines",
                                              submission([("ok", xml("ok")), ("big", xml("big", vcpus: 4))]))
            #expect(mixed.virtualMachineMetaData.map(\.status) == [.running, .error])
            #expect(mixed.virtualMachineMetaData[1].errorCode == .quotaExceeded)
            #expect(mixed.virtualMachineMetaData[1].errorMessage?.contains("cpu_max 2") == true)
            try await client.expectError(.post, "/localcontroller?startVirtualMachines",
                                         submission([("big2", xml("big2", vcpus: 4))]), status: .conflict, "quota exceeded")
            try await client.expectError(.post, "/localcontroller?startVirtualMachines",
                                         submission([("x", xml("y"))]), status: .badRequest, "does not match")
        }
    }

    @Test func badSnoozeRequests() async throws {
        try await APIFixture.make().run { client in
            try await client.expectError(.post, "/localcontroller?startVirtualMachines", "{not json", status: .badRequest, "malformed JSON")
            try await client.expectError(.post, "/localcontroller?startVirtualMachines", #"{"virtualMachineMetaData":[]}"#,
                                         status: .badRequest, "nothing to start")
            try await client.expectError(.post, "/localcontroller?resumeVirtualMachine", "nosuchvm", status: .notFound, "unknown VM 'nosuchvm'")
            try await client.expectError(.post, "/localcontroller?suspendVirtualMachineOnRequest", "", status: .badRequest, "VM id")
            try await client.expectError(.post, "/localcontroller?launchMissiles", "x", status: .notFound, "unknown local controller operation")
            try await client.expectError(.post, "/localcontroller", "x", status: .badRequest, "no operation")
            try await client.expectError(.post, "/localcontroller?resizeVirtualMachine",
                #"{"virtualMachineLocation":{"virtualMachineId":"ghost"},"resizedCapacity":[2]}"#, status: .notFound, "unknown VM")
        }
    }

    @Test func hugeResizesAndHostileMetadataAreRefusedOrEscapedNotCrashes() async throws {
        try await APIFixture.make().run { client in
            try await client.call(.post, "/vm", xml("vm1"), status: .created)
            for capacity in ["[1e19,-1,-1,-1]", "[-1,1e20,-1,-1]", "[2.5,-1,-1,-1]"] {
                try await client.expectError(.post, "/localcontroller?resizeVirtualMachine",
                    #"{"virtualMachineLocation":{"virtualMachineId":"vm1"},"resizedCapacity":\#(capacity)}"#, status: .badRequest, "must be")
            }
            var meta = VirtualMachineMetaData(location: .init(virtualMachineId: "q1"), xmlRepresentation: xml("q1"),
                                              requestedCapacity: ResourceVector(vcpus: 1, memoryKiB: 1, rxBytes: 5, txBytes: 6))
            meta.ipAddress = "10.0.0.1' evil='<x>"
            let body = String(decoding: try JSONEncoder().encode(VirtualMachineSubmission(virtualMachineMetaData: [meta])), as: UTF8.self)
            let started = try await client.json(VirtualMachineSubmission.self, .post, "/localcontroller?startVirtualMachines", body)
            #expect(started.virtualMachineMetaData.first?.status == .running)
            #expect(started.virtualMachineMetaData.first?.ipAddress == "10.0.0.1' evil='<x>")
        }
    }

    @Test func existingDomainsAreAdopted() async throws {
        try await APIFixture.make(domains: [.init(name: "web1", vcpus: 2), .init(name: "db1", running: false)]).run { client in
            let all = try await client.json([VirtualMachineMetaData].self, .post, "/localcontroller?getVirtualMachines", "0")
            #expect(all.map(\.virtualMachineLocation.virtualMachineId) == ["db1", "web1"])
            #expect(all.map(\.status) == [.offline, .running])
            let usage = try await client.json(UsagesDocument.self, .get, "/hypervisor/usages")
            #expect(usage.usages == .init(instances: 2, memoryUsedMB: 256, memoryTotalMB: 16384, cpuUsed: 2, cpuTotal: 8))
        }
    }
}

@Suite struct HostAPITests {
    @Test func quotaIsEnforcedOnStartAndResize() async throws {
        try await APIFixture.make().run { client in
            let q = try await client.json(QuotaDocument.self, .put, "/hypervisor/quota", #"{"quota":{"cpu_max":3}}"#)
            #expect(q.quota == .init(cpuMax: 3, memoryMaxMB: 16384))
            try await client.call(.post, "/vm", xml("a", vcpus: 2), status: .created)
            try await client.expectError(.post, "/vm", xml("b", vcpus: 2), status: .conflict, "cpu_max 3")
            try await client.call(.put, "/hypervisor/quota", #"{"quota":{"memory_max_mb":200}}"#)
            try await client.expectError(.post, "/vm", xml("c", memoryMiB: 100), status: .conflict, "memory_max_mb 200")
            try await client.expectError(.post, "/localcontroller?resizeVirtualMachine",
                #"{"virtualMachineLocation":{"virtualMachineId":"a"},"resizedCapacity":[4,-1,-1,-1]}"#, status: .conflict, "quota")
            try await client.expectError(.put, "/hypervisor/quota", #"{"quota":{"cpu_max":1}}"#, status: .conflict, "already in use")
            try await client.expectError(.put, "/hypervisor/quota", #"{"quota":{}}"#, status: .badRequest, "cpu_max")
            // A shut-off VM holds nothing: after shutdown the room is back.
            try await client.call(.post, "/vm/shutdown?name=a")
            try await client.call(.post, "/vm", xml("b", vcpus: 2), status: .created)
            try await client.expectError(.post, "/vm/start?name=a", status: .conflict, "cpu_max 3")
        }
    }

    @Test func concurrentStartsNeverOvercommit() async throws {
        try await APIFixture.make(cpus: 4).run { client in
            try await withThrowingTaskGroup(of: Int.self) { group in
                for i in 0..<12 {
                    group.addTask {
                        try await client.execute(uri: "/vm", method: .post, body: ByteBuffer(string: xml("c\(i)"))) { $0.status.code }
                    }
                }
                var codes: [Int] = []
                for try await code in group { codes.append(code) }
                #expect(codes.filter { $0 == 201 }.count == 4)
                #expect(codes.filter { $0 == 409 }.count == 8)
            }
            let usage = try await client.json(UsagesDocument.self, .get, "/hypervisor/usages")
            #expect(usage.usages.cpuUsed == 4 && usage.usages.instances == 4)
        }
    }

    @Test func network() async throws {
        try await APIFixture.make().run { client in
            let n = try await client.json(NetworkDocument.self, .get, "/hypervisor/network")
            #expect(n.network == .init(bridge: "br100", bridgeInterface: "eth0"))
            let changed = try await client.json(NetworkDocument.self, .put, "/hypervisor/network", #"{"network":{"bridge_interface":"bond0"}}"#)
            #expect(changed.network == .init(bridge: "br100", bridgeInterface: "bond0"))
            try await client.expectError(.put, "/hypervisor/network", #"{"network":{"bridge":"a/b"}}"#, status: .badRequest, "interface name")
        }
    }

    @Test func imagePoolPathMustExist() async throws {
        let fixture = try await APIFixture.make()
        let images = fixture.dir.file("images")
        try FileManager.default.createDirectory(atPath: images, withIntermediateDirectories: true)
        FileManager.default.createFile(atPath: images + "/base.img", contents: Data(repeating: 1, count: 8192))
        try await fixture.run { client in
            let p = try await client.json(ImagePoolDocument.self, .put, "/hypervisor/image-pool", #"{"image-pool":{"path":"\#(images)","max_gb":50}}"#)
            #expect(p.imagePool == .init(path: images, maxGB: 50, usedGB: 1))
            try await client.expectError(.put, "/hypervisor/image-pool", #"{"image-pool":{"path":"/no/such/dir"}}"#, status: .badRequest, "does not exist")
            try await client.expectError(.put, "/hypervisor/image-pool", #"{"image-pool":{"max_gb":0}}"#, status: .badRequest, "max_gb")
            // Disks inside the image pool are allowed; elsewhere they are not.
            let inside = "<disk type='file' device='disk'><source file='\(images)/base.img'/><target dev='vda'/></disk>"
            try await client.call(.post, "/vm", xml("d1", devices: inside), status: .created)
            let outside = "<disk type='file' device='disk'><source file='\(images)/../../../etc/passwd'/><target dev='vda'/></disk>"
            try await client.expectError(.post, "/vm", xml("d2", devices: outside), status: .forbidden, "outside the allowed directories")
        }
    }

    @Test func poolRulesFromTheSeed() async throws {
        let fixture = try await APIFixture.make()
        let path = fixture.dir.file("pools/p1")
        try await fixture.run { client in
            let created = try await client.json(PoolDocument.self, .post, "/hypervisor/pools",
                                                #"{"pool":{"name":"pool1","path":"\#(path)","max_gb":30}}"#)
            let uuid = try #require(created.pool.uuid)
            #expect(created.pool.usedGB == 0 && created.pool.maxGB == 30 && created.pool.createdAt != nil)
            let listed = try await client.json(PoolsDocument.self, .get, "/hypervisor/pools")
            #expect(listed.pools.map(\.name) == ["pool1"])
            try await client.expectError(.post, "/hypervisor/pools", #"{"pool":{"name":"pool1","path":"/tmp/x","max_gb":1}}"#, status: .conflict, "exists")
            try await client.expectError(.post, "/hypervisor/pools", #"{"pool":{"name":"p2","path":"\#(path)/sub","max_gb":1}}"#, status: .conflict, "overlaps")
            try await client.expectError(.post, "/hypervisor/pools", #"{"pool":{"name":"p3","path":"rel","max_gb":1}}"#, status: .badRequest, "absolute")
            // The path never changes; the name and limit may.
            try await client.expectError(.put, "/hypervisor/pools/\(uuid)", #"{"pool":{"path":"/elsewhere"}}"#, status: .conflict, "cannot change")
            let renamed = try await client.json(PoolDocument.self, .put, "/hypervisor/pools/\(uuid)", #"{"pool":{"name":"pool2","max_gb":50}}"#)
            #expect(renamed.pool.name == "pool2" && renamed.pool.maxGB == 50 && renamed.pool.path == path)
            // Never below what it uses; a pool a VM uses cannot be deleted, a file nobody uses does not hold it.
            FileManager.default.createFile(atPath: path + "/disk.img", contents: Data(repeating: 7, count: 4096))
            FileManager.default.createFile(atPath: path + "/stray.txt", contents: Data("left by someone".utf8))
            try await client.expectError(.put, "/hypervisor/pools/\(uuid)", #"{"pool":{"max_gb":0}}"#, status: .badRequest, "max_gb")
            let disk = "<disk type='file' device='disk'><source file='\(path)/disk.img'/><target dev='vda'/></disk>"
            try await client.call(.post, "/vm", xml("user", devices: disk), status: .created)
            try await client.expectError(.delete, "/hypervisor/pools/\(uuid)", "{}", status: .conflict, "in use by 1 VM(s): user")
            try await client.call(.delete, "/vm?name=user")
            let deleted = try await client.json(PoolDocument.self, .delete, "/hypervisor/pools/\(uuid)", "{}")
            #expect(deleted.pool.uuid == uuid)
            try await client.expectError(.delete, "/hypervisor/pools/\(uuid)", "{}", status: .notFound, "unknown pool")
        }
    }

    @Test func metricsComeFromSamplesTheControllerTook() async throws {
        let fixture = try await APIFixture.make(domains: [.init(name: "busy")])
        // The server answers for its own "today": keep the day from changing between the samples and the query,
        // and put both samples in one 5-minute bucket (every time zone's offset is a multiple of 5 minutes).
        try await awayFromLocalMidnight(margin: .seconds(10))
        let bucketStart = (Date().timeIntervalSince1970 / 300).rounded(.down) * 300
        await fixture.controller.takeSample(monotonicSeconds: 0, wallTime: bucketStart)
        await fixture.controller.takeSample(monotonicSeconds: 2, wallTime: bucketStart + 2)
        try await fixture.run { client in
            let m = try await client.json(MetricsDocument.self, .get, "/hypervisor/metrics?q=today")
            #expect(m.metrics.duration == "today")
            #expect(m.metrics.memory.unit == "MB" && m.metrics.cpu.unit == "%")
            #expect(m.metrics.memory.datas.values.first == 256)
            #expect(m.metrics.networkIn.datas.count == 1)
            let default_ = try await client.json(MetricsDocument.self, .get, "/hypervisor/metrics")
            #expect(default_.metrics.duration == "today")
            #expect(try await client.json(MetricsDocument.self, .get, "/hypervisor/metrics?q=lastmonth").metrics.cpu.datas.isEmpty)
            try await client.expectError(.get, "/hypervisor/metrics?q=forever", status: .badRequest, "q must be one of")
        }
    }
}

@Suite struct VMAPITests {
    @Test func createFromBodyFileOrQuery() async throws {
        let xmlDir = try TemporaryDirectory(prefix: "doze-xml")
        defer { xmlDir.remove() }
        try xml("fromfile").write(toFile: xmlDir.file("demo.xml"), atomically: true, encoding: .utf8)
        try await APIFixture.make().run { client in
            let a = try await client.json(VMSummary.self, .post, "/vm", xml("frombody"), status: .created)
            #expect(a.status == .running && a.state == "running")
            try await client.expectError(.post, "/vm?xmlName=demo.xml", status: .badRequest, "no XML directory")
        }
        try await APIFixture.make { $0.xmlDirectory = xmlDir.path }.run { client in
            // The seed quotes its parameters: ?xmlName='demo.xml'.
            let b = try await client.json(VMSummary.self, .post, "/vm?xmlName='demo.xml'", status: .created)
            #expect(b.name == "fromfile")
            let encoded = xml("fromquery").addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
            let c = try await client.json(VMSummary.self, .post, "/vm?xmlContent=\(encoded)", status: .created)
            #expect(c.name == "fromquery")
            try await client.expectError(.post, "/vm?xmlName=../host.xml", status: .forbidden, "plain file name")
            try await client.expectError(.post, "/vm?xmlName=missing.xml", status: .notFound, "no XML file")
            let list = try await client.json(VMListDocument.self, .get, "/vms")
            #expect(list.vms.map(\.name) == ["fromfile", "fromquery"])
        }
    }

    @Test func suspendResumeDelete() async throws {
        try await APIFixture.make().run { client in
            try await client.call(.post, "/vm", xml("vm1"), status: .created)
            #expect(try await client.json(VMSummary.self, .post, "/vm/suspend?name=vm1").status == .paused)
            try await client.expectError(.post, "/suspend?name=vm1", status: .conflict, "already paused")
            #expect(try await client.json(VMSummary.self, .post, "/resume?name=vm1").status == .running)
            try await client.expectError(.post, "/vm/resume?name=vm1", status: .conflict, "already running")
            #expect(try await client.json(VMSummary.self, .delete, "/vm?name=vm1").state == "deleted")
            try await client.expectError(.delete, "/vm?name=vm1", status: .notFound, "unknown VM")
            try await client.expectError(.post, "/vm/suspend", status: .badRequest, "missing query parameter 'name'")
        }
    }

    @Test func snapshotsCreateListRevert() async throws {
        try await APIFixture.make().run { client in
            try await client.call(.post, "/vm", xml("vm1"), status: .created)
            let s = try await client.json(SnapshotSummary.self, .post, "/vm/snapshot?name=vm1&snapshot=clean", status: .created)
            #expect(s.name == "clean" && s.current)
            let fromXML = try await client.json(SnapshotSummary.self, .post, "/vm/snapshot?name=vm1",
                                                "<domainsnapshot><name>second</name><description>x</description></domainsnapshot>", status: .created)
            #expect(fromXML.name == "second")
            try await client.call(.post, "/vm/suspend?name=vm1")
            let reverted = try await client.json(VMSummary.self, .post, "/vm/snapshot/revert?name=vm1&snapshot=clean")
            #expect(reverted.status == .running)
            let list = try await client.json(SnapshotListDocument.self, .get, "/vm/snapshots?name=vm1")
            #expect(Set(list.snapshots.map(\.name)) == ["clean", "second"])
            try await client.call(.delete, "/vm/snapshot?name=vm1&snapshot=second")
            try await client.expectError(.post, "/vm/snapshot/revert?name=vm1&snapshot=nope", status: .notFound, "nope")
            try await client.expectError(.post, "/vm/snapshot?name=vm1", "<domainsnapshot>", status: .badRequest, "Premature end")
            try await client.expectError(.post, "/vm/snapshot?name=vm1&snapshot=../x", status: .badRequest, "snapshot name")
        }
    }

    @Test func badInputGetsAClearError() async throws {
        try await APIFixture.make().run { client in
            try await client.expectError(.post, "/vm", "<domain", status: .badRequest, "malformed XML")
            try await client.expectError(.post, "/vm", "", status: .badRequest, "domain XML")
            try await client.expectError(.post, "/vm", xml("bad name"), status: .badRequest, "VM name 'bad name' is invalid")
            try await client.expectError(.post, "/vm", xml("../../etc"), status: .badRequest, "is invalid")
            try await client.expectError(.post, "/vm", "<domain type='kvm'><name>x</name><memory>64</memory><vcpu>1</vcpu><os><type>hvm</type></os><devices><filesystem type='mount'><source dir='/etc'/><target dir='e'/></filesystem></devices></domain>",
                                         status: .forbidden, "filesystem source '/etc'")
            try await client.expectError(.post, "/vm", String(repeating: "x", count: 70 * 1024), status: .contentTooLarge, "exceeds")
            try await client.call(.post, "/vm", xml("dup"), status: .created)
            // A retry of the same create finds the VM it made (200); another definition under the name is a conflict.
            try await client.call(.post, "/vm", xml("dup"), status: .ok)
            try await client.expectError(.post, "/vm", xml("dup", vcpus: 2), status: .conflict, "already exists on this host with a different definition")
            try await client.expectError(.get, "/vm?name=ghost", status: .notFound, "unknown VM 'ghost'")
            // Nothing half-created: the refused VMs left no trace.
            #expect(try await client.json(VMListDocument.self, .get, "/vms").vms.map(\.name) == ["dup"])
        }
    }

    @Test func unknownPathsAndFormEncodedQueries() async throws {
        try await APIFixture.make().run { client in
            try await client.expectError(.get, "/nothing/here", status: .notFound, "no such endpoint: GET /nothing/here")
            // curl --data-urlencode sends spaces as '+'; a literal '+' arrives as %2B.
            let form = "<domain+type='kvm'><name>plus</name><memory>65536</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>"
                .replacingOccurrences(of: "<", with: "%3C").replacingOccurrences(of: ">", with: "%3E")
            let vm = try await client.json(VMSummary.self, .post, "/vm?xmlContent=\(form)", status: .created)
            #expect(vm.name == "plus")
            try await client.expectError(.post, "/vm/snapshot?name=plus&snapshot=a%2Bb", status: .badRequest, "snapshot name 'a+b'")
        }
    }

    @Test func oneStateDirectoryServesOneController() async throws {
        let fixture = try await APIFixture.make()
        defer { fixture.dir.remove() }
        var settings = LocalControllerSettings(hypervisorURI: "test://" + fixture.dir.file("host.xml"), stateDirectory: fixture.dir.file("state"), openHypervisor: LibvirtHost.factory)
        settings.port = 0
        do {
            _ = try await LocalController.start(settings: settings)
            Issue.record("a second controller started on the same state directory")
        } catch let error as DozeError {
            #expect(error.kind == .conflict && error.message.contains("in use by another doze process"))
        }
    }

    @Test func kernelBootDomainsAreAcceptedWithTheirPathsAllowed() async throws {
        let fixture = try await APIFixture.make { settings in settings.diskDirectories = ["/var/lib/libvirt"] }
        try await fixture.run { client in
            let unikernel = """
                <domain type='kvm'><name>vm_helloworld</name><memory unit='KiB'>2048</memory><vcpu>1</vcpu>
                <os><type>hvm</type><kernel>/var/lib/libvirt/images/hello_qemu-x86_64</kernel></os>
                <devices><filesystem type='mount' accessmode='mapped'><source dir='/var/lib/libvirt/fs/fs0'/><target dir='fs0'/></filesystem>
                <interface type='bridge'><mac address='00:16:3e:6d:45:d0'/><source bridge='virbr0'/><target dev='en0'/></interface></devices></domain>
                """
            let vm = try await client.json(VMSummary.self, .post, "/vm", unikernel, status: .created)
            #expect(vm.status == .running && vm.memoryMB == 2)
            let meta = try await client.json([VirtualMachineMetaData].self, .post, "/localcontroller?getVirtualMachines", "0")
            #expect(meta.first?.xmlRepresentation.contains("<kernel>/var/lib/libvirt/images/hello_qemu-x86_64</kernel>") == true)
        }
    }
}
