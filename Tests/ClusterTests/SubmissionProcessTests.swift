import ClusterCore
import ClusterTestKit
import ClusterWire
import Foundation
import NIOHTTP1
import Testing

extension ProcessTests {
/// Virtual-cluster submission through the real `doze` processes: Snooze's exact wire form through the bootstrap,
/// VM control, every bad input answered clearly, no over-commit under concurrency, and a leader killed mid-way.
@Suite(.serialized) struct SubmissionProcessTests {
    static func decode<T: Decodable>(_ type: T.Type, _ text: String) throws -> T {
        try JSONDecoder().decode(T.self, from: Data(text.utf8))
    }

    static func template(_ name: String, type: String = "kvm", vcpus: Int = 1, memoryMiB: Int = 64) -> String {
        "<domain type='\(type)'><name>\(name)</name><memory unit='MiB'>\(memoryMiB)</memory><vcpu>\(vcpus)</vcpu>"
            + "<os><type>hvm</type></os><devices><interface type='network'><source network='default'/></interface></devices></domain>"
    }

    static func submission(_ templates: [VirtualMachineTemplate]) throws -> String {
        String(decoding: try JSONEncoder().encode(VirtualClusterSubmissionRequest(virtualMachineTemplates: templates)), as: UTF8.self)
    }

    /// Starts a bootstrap, `managers` group managers and one controller per host size; waits until every
    /// controller is under a manager of the leader.
    static func cluster(managers: Int, controllers: [Int], memoryMiB: Int = 65536, subnet: String = "10.80.0.0/24") async throws -> TestCluster {
        let c = try TestCluster(prefix: "doze-submit")
        c.managerArguments = ["--vm-subnet", subnet]
        try await c.startBootstrap()
        for i in 1...managers { try c.startManager("gm\(i)") }
        for (i, cpus) in controllers.enumerated() { try c.startController("lc\(i + 1)", cpus: cpus, memoryMiB: memoryMiB) }
        do {
            try await eventually(.seconds(20), "every controller under a manager") {
                guard let r = try? await c.call(.GET, c.bootstrap, "/bootstrap?getLocalControllerList"), r.status == 200,
                      let list = try? decode(LocalControllerList.self, r.body) else { return false }
                return list.localControllers.count == controllers.count
            }
        } catch {
            let last = try? await c.call(.GET, c.bootstrap, "/bootstrap?getLocalControllerList")
            throw TimeoutError(what: "every controller under a manager; list: \(String(describing: last))\n\(c.logs(lines: 25))")
        }
        return c
    }

    /// Waits (bounded) for the task's final answer through the bootstrap's Snooze operation.
    static func finalResponse(_ c: TestCluster, _ task: String, within limit: Duration = .seconds(60)) async throws -> VirtualClusterSubmissionResponse {
        let deadline = ContinuousClock.now + limit
        while ContinuousClock.now < deadline {
            if let r = try? await c.call(.POST, c.bootstrap, "/bootstrap?getVirtualClusterResponse&wait=5", body: task, timeout: .seconds(10)) {
                if r.status == 200, !r.body.isEmpty { return try decode(VirtualClusterSubmissionResponse.self, r.body) }
                // Unavailable while a leader is elected is fine; not knowing the task never is.
                #expect(r.status != 404, "task \(task) unknown: \(r.body)")
                if r.status == 404 { throw TimeoutError(what: "task \(task) was forgotten") }
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        throw TimeoutError(what: "task \(task) final; logs:\n\(c.logs())")
    }

    /// Domain names on every controller's host, straight from the controllers.
    static func domains(_ c: TestCluster, controllers: Int) async throws -> [String] {
        var names: [String] = []
        for i in 1...controllers {
            let r = try await c.call(.GET, try await c.address("lc\(i)"), "/vms")
            names += try decode(VMListDocument.self, r.body).vms.map(\.name)
        }
        return names
    }

    @Test func snoozeWireSubmissionControlAndBadInput() async throws {
        let c = try await Self.cluster(managers: 2, controllers: [4, 4])
        defer { c.stop() }
        for lc in ["lc1", "lc2"] {
            FileManager.default.createFile(atPath: c.dir.file("\(lc)/images/tiny.qcow2"), contents: Data("qcow".utf8))
        }
        let bootstrapPort = try #require(Endpoint(c.bootstrap)).port

        // Exactly as an old Snooze client sends it: no leading slash, no Content-Type, raw JSON body.
        var fromImage = VirtualMachineTemplate(vcpus: 1, memory: 131_072, imageId: "tiny", name: "fromimage")
        fromImage.disks = [1]
        let body = try Self.submission([
            VirtualMachineTemplate(libVirtTemplate: Self.template("debian1"), networkCapacityDemand: .init(rxBytes: 12800, txBytes: 12800)),
            fromImage,
        ])
        let raw = try rawTCPExchange(port: bootstrapPort,
            "POST bootstrap?startVirtualCluster HTTP/1.1\r\nHost: x\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)", timeout: 10)
        #expect(raw.hasPrefix("HTTP/1.1 200"), "\(raw)")
        let task = String(raw.split(separator: "\r\n\r\n", maxSplits: 1).last ?? "")
        #expect(UUID(uuidString: task) != nil, "a raw task id, got '\(task)'")

        let response = try await Self.finalResponse(c, task)
        #expect(response.errorCode == nil)
        let byID = Dictionary(uniqueKeysWithValues: response.virtualMachineMetaData.map { ($0.virtualMachineLocation.virtualMachineId, $0) })
        let debian = try #require(byID["debian1"])
        #expect(debian.status == .running && debian.errorCode == .none)
        #expect(debian.ipAddress.hasPrefix("10.80.0."))
        #expect(debian.xmlRepresentation.contains("<mac address='\(IPPool.mac(for: debian.ipAddress)!)'/>"))
        #expect(debian.adaptations == ["domain type 'kvm' adapted to 'test' for this host"])
        #expect(debian.virtualMachineLocation.localControllerId != nil && (debian.groupManagerControlDataAddress?.port ?? 0) > 0)
        #expect(debian.requestedCapacity == [1, 65536, 12800, 12800])
        #expect(byID["fromimage"]?.status == .running, "\(String(describing: byID["fromimage"]))")
        #expect(byID["fromimage"]?.ipAddress != debian.ipAddress)
        // It boots an overlay of the image, with its data volume next to it.
        #expect(byID["fromimage"]?.disks == [1])
        #expect(byID["fromimage"]?.xmlRepresentation.contains("/vm-disks/fromimage-root.qcow2'/><target dev='vda'") == true)
        #expect(byID["fromimage"]?.xmlRepresentation.contains("/vm-disks/fromimage-data0.qcow2'/><target dev='vdb'") == true)

        // Kept, not deleted on the first read.
        let again = try await c.call(.POST, c.bootstrap, "/bootstrap?getVirtualClusterResponse", body: task)
        #expect(try Self.decode(VirtualClusterSubmissionResponse.self, again.body) == response)

        // VM control by id through the bootstrap, and by location on the manager.
        for (op, status) in [("suspend", VMStatus.paused), ("resume", .running)] {
            let r = try await c.call(.POST, c.bootstrap, "/bootstrap?\(op)VirtualMachine", body: "debian1")
            #expect(r.status == 200 && r.body == "true", "\(op): \(r)")
            let meta = try await c.call(.POST, c.bootstrap, "/bootstrap?getVirtualMachineMetaData", body: "debian1")
            #expect(try Self.decode(VirtualMachineMetaData.self, meta.body).status == status)
        }
        let twice = try await c.call(.POST, c.bootstrap, "/bootstrap?resumeVirtualMachine", body: "debian1")
        #expect(twice.status == 409 && twice.body.contains("already running"), "\(twice)")
        let location = try String(decoding: JSONEncoder().encode(debian.virtualMachineLocation), as: UTF8.self)
        let debianManager = try #require(debian.groupManagerControlDataAddress)
        let gm = "\(debianManager.address):\(debianManager.port)"
        let reboot = try await c.call(.POST, gm, "/groupmanager?rebootVirtualMachine", body: location)
        #expect(reboot.body == "true", "\(reboot)")
        let resize = try await c.call(.POST, c.bootstrap, "/bootstrap?resizeVirtualMachine",
                                      body: #"{"virtualMachineLocation":{"virtualMachineId":"debian1"},"resizedCapacity":[-1,32768,-1,-1]}"#)
        #expect(resize.status == 200 && (try? Self.decode(VirtualMachineMetaData.self, resize.body))?.requestedCapacity[1] == 32768, "\(resize)")

        // A second submission of a running name: refused, nothing created.
        let dup = try await c.call(.POST, c.bootstrap, "/bootstrap?startVirtualCluster",
                                   body: try Self.submission([VirtualMachineTemplate(libVirtTemplate: Self.template("debian1"))]))
        #expect(dup.status == 409 && dup.body.contains("debian1"), "\(dup)")
        // Malformed template: refused with the reason, the valid VM next to it not created either.
        let malformed = try await c.call(.POST, c.bootstrap, "/bootstrap?startVirtualCluster", body: try Self.submission([
            VirtualMachineTemplate(libVirtTemplate: Self.template("fine")),
            VirtualMachineTemplate(libVirtTemplate: "<domain type='kvm'><name>broken</name>"),
        ]))
        #expect(malformed.status == 400 && malformed.body.contains("virtualMachineTemplates[1]"), "\(malformed)")
        var badDisks = VirtualMachineTemplate(vcpus: 1, memory: 131_072, imageId: "tiny", name: "baddisks")
        badDisks.disks = [0]
        let zeroDisk = try await c.call(.POST, c.bootstrap, "/bootstrap?startVirtualCluster", body: try Self.submission([badDisks]))
        #expect(zeroDisk.status == 400 && zeroDisk.body.contains("virtualMachineTemplates[0]: disks[0] is in GiB"), "\(zeroDisk)")
        let garbage = try await c.call(.POST, c.bootstrap, "/bootstrap?startVirtualCluster", body: "{not json")
        #expect(garbage.status == 400, "\(garbage)")
        let unknownTask = try await c.call(.POST, c.bootstrap, "/bootstrap?getVirtualClusterResponse", body: "no-such-task")
        #expect(unknownTask.status == 404 && unknownTask.body.contains("no-such-task"), "\(unknownTask)")

        // Per-VM failures, each with its code and message: too big, unknown pinned host, unknown image.
        let failing = try await c.call(.POST, c.bootstrap, "/bootstrap?startVirtualCluster", body: try Self.submission([
            VirtualMachineTemplate(libVirtTemplate: Self.template("huge", vcpus: 64)),
            VirtualMachineTemplate(libVirtTemplate: Self.template("pinned"), hostId: "no-such-host"),
            VirtualMachineTemplate(vcpus: 1, memory: 131_072, imageId: "missing", name: "noimage"),
            VirtualMachineTemplate(libVirtTemplate: "<domain type='kvm'><name>refused</name><memory>65536</memory><os><type>hvm</type></os>"
                                   + "<devices><interface type='bogus'/></devices></domain>"),
        ]))
        let failed = try await Self.finalResponse(c, failing.body)
        let codes = Dictionary(uniqueKeysWithValues: failed.virtualMachineMetaData.map { ($0.virtualMachineLocation.virtualMachineId, $0) })
        #expect(codes["huge"]?.errorCode == .notEnoughGroupManagerCapacity && codes["huge"]?.errorMessage?.contains("64 vCPUs") == true,
                "\(String(describing: codes["huge"]))")
        #expect(codes["pinned"]?.errorCode == .invalidHostID && codes["pinned"]?.errorMessage?.contains("no-such-host") == true)
        #expect(codes["noimage"]?.errorCode == .imageNotFound && codes["noimage"]?.errorMessage?.contains("missing") == true)
        // libvirt's own refusal, in libvirt's words.
        #expect(codes["refused"]?.errorMessage?.contains("bogus") == true, "\(String(describing: codes["refused"]))")
        #expect(failed.virtualMachineMetaData.allSatisfy { $0.status == .error })
        // Nothing half-created: only the two VMs that run are on the hosts.
        #expect(try await Self.domains(c, controllers: 2).sorted() == ["debian1", "fromimage"])

        // Pinned to a group manager: placed by that manager on one of its controllers.
        let list = try Self.decode(LocalControllerList.self, try await c.call(.GET, c.bootstrap, "/bootstrap?getLocalControllerList").body)
        let manager = try #require(list.localControllers.first?.location.groupManagerId)
        let pinnedTask = try await c.call(.POST, c.bootstrap, "/bootstrap?startVirtualCluster", body: try Self.submission([
            VirtualMachineTemplate(libVirtTemplate: Self.template("ongm"), hostId: manager)]))
        let onManager = try #require(try await Self.finalResponse(c, pinnedTask.body).virtualMachineMetaData.first)
        #expect(onManager.status == .running && onManager.virtualMachineLocation.groupManagerId == manager, "\(onManager)")
        #expect(try await c.call(.POST, c.bootstrap, "/bootstrap?destroyVirtualMachine", body: "ongm").body == "true")

        // Over quota: lc1 may hold one more vCPU; two VMs pinned to it, one runs, the other fails with its reason.
        let lc1 = try await c.address("lc1")
        let usage = try await c.call(.GET, lc1, "/hypervisor/usages")
        let used = (try JSONSerialization.jsonObject(with: Data(usage.body.utf8)) as? [String: Any])
            .flatMap { ($0["usages"] as? [String: Any])?["cpu_used"] as? Int } ?? -1
        #expect(used >= 0, "\(usage)")
        let quota = try await c.call(.PUT, lc1, "/hypervisor/quota", body: #"{"quota":{"cpu_max":\#(used + 1)}}"#)
        #expect(quota.status == 200, "\(quota)")
        let lc1ID = try #require(c.controllerID("lc1"))
        // The new limit reaches the leader with the next heartbeats.
        try await eventually(.seconds(10), "the leader sees lc1's new quota") {
            guard let r = try? await c.call(.GET, c.bootstrap, "/bootstrap?getLocalControllerList"),
                  let list = try? Self.decode(LocalControllerList.self, r.body),
                  let lc = list.localControllers.first(where: { $0.id == lc1ID }) else { return false }
            return lc.totalCapacity.first == Double(used + 1) && lc.requestedCapacity.first == Double(used)
        }
        let overQuota = try await c.call(.POST, c.bootstrap, "/bootstrap?startVirtualCluster", body: try Self.submission([
            VirtualMachineTemplate(libVirtTemplate: Self.template("q1"), hostId: lc1ID),
            VirtualMachineTemplate(libVirtTemplate: Self.template("q2"), hostId: lc1ID),
        ]))
        let quotaResult = try await Self.finalResponse(c, overQuota.body).virtualMachineMetaData
        #expect(quotaResult.filter { $0.status == .running }.count == 1, "\(quotaResult)")
        let refused = try #require(quotaResult.first { $0.status == .error })
        #expect([.quotaExceeded, .notEnoughLocalControllerCapacity, .notEnoughGroupManagerCapacity].contains(refused.errorCode)
                && refused.errorMessage?.isEmpty == false, "\(refused)")
        let q = try #require(quotaResult.first { $0.status == .running }).virtualMachineLocation.virtualMachineId
        #expect(try await c.call(.POST, c.bootstrap, "/bootstrap?destroyVirtualMachine", body: q).body == "true")

        // Destroyed through the bootstrap: gone from its host and from the cluster.
        let destroy = try await c.call(.POST, c.bootstrap, "/bootstrap?destroyVirtualMachine", body: "debian1")
        #expect(destroy.body == "true")
        #expect(try await Self.domains(c, controllers: 2) == ["fromimage"])
        // The name is free again as soon as the heartbeats stop listing it: a new VM, not the old outcome.
        let sameName = try Self.submission([VirtualMachineTemplate(libVirtTemplate: Self.template("debian1"))])
        let deadline = ContinuousClock.now + .seconds(5)
        var resubmitted = try await c.call(.POST, c.bootstrap, "/bootstrap?startVirtualCluster", body: sameName)
        while resubmitted.status == 409 && ContinuousClock.now < deadline {
            try await Task.sleep(for: .milliseconds(50))
            resubmitted = try await c.call(.POST, c.bootstrap, "/bootstrap?startVirtualCluster", body: sameName)
        }
        #expect(resubmitted.status == 200, "\(resubmitted)")
        let reused = try await Self.finalResponse(c, resubmitted.body)
        #expect(reused.virtualMachineMetaData.first?.status == .running, "\(reused)")
        #expect(try await Self.domains(c, controllers: 2).sorted() == ["debian1", "fromimage"])
        let gone = try await c.call(.POST, c.bootstrap, "/bootstrap?suspendVirtualMachine", body: "nosuchvm")
        #expect(gone.status == 404 && gone.body.contains("nosuchvm"), "\(gone)")
    }

    @Test func concurrentSubmissionsNeverOvercommit() async throws {
        // Two hosts of 4 vCPUs; 12 concurrent submissions of one 2-vCPU VM each: exactly 4 fit.
        let c = try await Self.cluster(managers: 2, controllers: [4, 4])
        defer { c.stop() }
        let bootstrap = c.bootstrap
        let tasks = try await withThrowingTaskGroup(of: String.self) { group in
            for i in 0..<12 {
                let body = try Self.submission([VirtualMachineTemplate(libVirtTemplate: Self.template("c\(i)", vcpus: 2))])
                group.addTask {
                    let r = try await c.call(.POST, bootstrap, "/bootstrap?startVirtualCluster", body: body)
                    #expect(r.status == 200, "\(r)")
                    return r.body
                }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        var running = 0
        for task in tasks {
            for vm in try await Self.finalResponse(c, task).virtualMachineMetaData {
                if vm.status == .running { running += 1 } else {
                    #expect(vm.status == .error && vm.errorMessage?.isEmpty == false, "\(vm)")
                }
            }
        }
        #expect(running == 4)
        #expect(try await Self.domains(c, controllers: 2).count == 4)
    }

    /// `whileStarting`: kill once the first domains exist (managers hold results the leader never collected);
    /// otherwise at once (the new leader dispatches what the old one only recorded).
    @Test(arguments: [false, true])
    func leaderKilledMidSubmissionLosesNothingAndDuplicatesNothing(whileStarting: Bool) async throws {
        let c = try await Self.cluster(managers: 3, controllers: [64, 64, 64, 64])
        defer { c.stop() }
        let names = (0..<200).map { "vm\($0)" }
        let body = try Self.submission(names.map { VirtualMachineTemplate(libVirtTemplate: Self.template($0)) })
        let leader = try Self.decode(GroupManagerDescription.self, try await c.call(.GET, c.bootstrap, "/bootstrap?getGroupLeaderDescription").body)
        let submitted = try await c.call(.POST, c.bootstrap, "/bootstrap?startVirtualCluster", body: body)
        #expect(submitted.status == 200, "\(submitted)")
        let task = submitted.body
        if whileStarting {
            try await eventually(.seconds(10), "the first domains") { (try? await Self.domains(c, controllers: 4).count) ?? 0 > 0 }
        }
        c.processes[try #require(c.name(ofManager: leader.id))]!.kill9()
        let atKill = try await Self.domains(c, controllers: 4).count

        // The task id still answers after failover, through the same bootstrap: one call, which the bootstrap
        // takes to the new leader (a call stuck on the dead one would come back 503).
        let first = try await c.call(.POST, c.bootstrap, "/bootstrap?getVirtualClusterResponse&wait=30", body: task, timeout: .seconds(60))
        #expect(first.status == 200 && !first.body.isEmpty, "\(first.status): \(first.body.prefix(300))")
        let response = try await Self.finalResponse(c, task)
        let ids = response.virtualMachineMetaData.map(\.virtualMachineLocation.virtualMachineId)
        #expect(ids.sorted() == names.sorted(), "every VM answered exactly once")
        var ips = Set<String>()
        for vm in response.virtualMachineMetaData {
            if vm.status == .running {
                #expect(ips.insert(vm.ipAddress).inserted, "address \(vm.ipAddress) given twice")
            } else {
                #expect(vm.status == .error && vm.errorCode != .none && vm.errorMessage?.isEmpty == false, "\(vm)")
            }
        }
        // No duplicate domain on any host; every RUNNING VM on exactly one host, every failed one on none.
        let onHosts = try await Self.domains(c, controllers: 4)
        #expect(onHosts.count == Set(onHosts).count, "a VM was created twice")
        let running = Set(response.virtualMachineMetaData.filter { $0.status == .running }.map(\.virtualMachineLocation.virtualMachineId))
        #expect(Set(onHosts) == running)
        print("leader killed mid-submission (\(atKill) of 200 domains existed at the kill): \(running.count) RUNNING, \(200 - running.count) ERROR")
    }
}
}
