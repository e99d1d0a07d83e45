import AsyncHTTPClient
import ClusterCore
import ClusterTestKit
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1
import Testing

extension ProcessTests {
/// Migrations and drains on the embedded cluster: real `doze` processes, each controller on its own test-driver
/// host, where libvirt cannot migrate live, so VMs move by save and restore (`mode: offline`). Live migration
/// between real daemons is proven by scripts/e2e-migration.sh on topology/netns.yaml.
@Suite(.serialized) struct MigrationProcessTests {
    final class Cluster: TestCluster, @unchecked Sendable {
        init() throws { try super.init(prefix: "doze-migrate") }

        /// Three managers (one leads, two manage), three roomy controllers and a tiny one.
        func up() async throws {
            try await startBootstrap()
            managerArguments = ["--vm-subnet", "10.80.0.0/16", "--migrations-per-host", "1"]
            for gm in ["gm1", "gm2", "gm3"] { try startManager(gm) }
            for lc in ["lc1", "lc2", "lc3"] { try startController(lc) }
            try startController("tiny", cpus: 1, memoryMiB: 128)
            try await eventually(.seconds(20), "the hierarchy to form") {
                guard let tree = await self.hierarchy(), tree.groupLeader != nil else { return false }
                return tree.groupManagerDescriptions.reduce(0) { $0 + $1.localControllers.count } == 4
            }
        }

        func doze(_ arguments: [String], within limit: Duration = .seconds(60)) async throws -> ClientProcessTests.Outcome {
            try await ClientProcessTests.doze(arguments + ["--bootstrap", bootstrap], in: dir, within: limit)
        }

        func hosts() async throws -> [HostEntry] {
            let (status, body) = try await call(.GET, bootstrap, "/v1/hosts")
            guard status == 200 else { throw TimeoutError(what: "GET /v1/hosts answered \(status): \(body)") }
            return try JSONDecoder().decode(HostList.self, from: Data(body.utf8)).hosts
        }

        func meta(_ vm: String) async throws -> VirtualMachineMetaData {
            let (status, body) = try await call(.GET, bootstrap, "/v1/vms/\(vm)")
            guard status == 200 else { throw TimeoutError(what: "GET /v1/vms/\(vm) answered \(status): \(body)") }
            return try JSONDecoder().decode(VirtualMachineMetaData.self, from: Data(body.utf8))
        }

        func migrate(_ vm: String, to: String, options: String = "") async throws -> (status: Int, body: String) {
            try await call(.POST, bootstrap, "/v1/migrations", body: "{\"vm\":\"\(vm)\",\"to\":\"\(to)\"\(options)}")
        }

        /// The names the controller's own API lists (its host, not anyone's books).
        func domains(on lc: String) async throws -> [String] {
            let (_, body) = try await call(.GET, try await address(lc), "/vms")
            let list = try JSONDecoder().decode(VMListDocument.self, from: Data(body.utf8))
            return list.vms.map(\.name).sorted()
        }
    }

    @Test func offlineMigrationMovesTheVMAndEveryBookFollows() async throws {
        let c = try Cluster()
        defer { c.stop() }
        try await c.up()
        let template = c.dir.file("demo.xml")
        try ClientProcessTests.demo.write(toFile: template, atomically: true, encoding: .utf8)
        let submitted = try await c.doze(["submit", template, "--count", "3", "--wait", "--json", "--timeout", "30"])
        #expect(submitted.status == 0, "\(submitted)\n\(c.logs())")
        let task = try JSONDecoder().decode(VirtualClusterTaskDocument.self, from: Data(submitted.stdout.utf8))
        let ids = ["lc1", "lc2", "lc3"].compactMap { c.controllerID($0) }
        let names = Dictionary(uniqueKeysWithValues: zip(ids, ["lc1", "lc2", "lc3"]))
        let before = try await c.meta("demo-1")
        let sourceID = try #require(before.virtualMachineLocation.localControllerId, "demo-1 is placed: \(before)")
        let source = try #require(names[sourceID], "demo-1 is on a roomy host: \(before)")
        let destination = ["lc1", "lc2", "lc3"].first { $0 != source }!
        let destinationID = c.controllerID(destination)!
        let destinationAddress = try await c.address(destination)

        // The client: by HOST:PORT, waited for, JSON record.
        let moved = try await c.doze(["vm", "migrate", "demo-1", "--to", destinationAddress, "--wait", "--json"])
        #expect(moved.status == 0, "\(moved)\n\(c.logs())")
        let record = try JSONDecoder().decode(MigrationRecord.self, from: Data(moved.stdout.utf8))
        #expect(record.state == .completed && record.mode == "offline", "\(record)")
        #expect(record.source.localControllerId == sourceID && record.destination.localControllerId == destinationID)
        #expect((record.progress?.dataTotal ?? 0) > 0 && record.durationMs != nil, "\(record)")

        // Every book, right away: the hosts themselves, the VM's metadata, its task record, the managers' host lists.
        #expect(try await c.domains(on: source).contains("demo-1") == false)
        #expect(try await c.domains(on: destination).contains("demo-1"))
        let after = try await c.meta("demo-1")
        #expect(after.status == .running && after.virtualMachineLocation.localControllerId == destinationID, "\(after)")
        #expect(after.ipAddress == before.ipAddress, "the VM keeps its address: \(after)")
        let (_, taskBody) = try await c.call(.POST, c.bootstrap, "/bootstrap?getVirtualClusterResponse", body: task.taskId)
        let response = try JSONDecoder().decode(VirtualClusterSubmissionResponse.self, from: Data(taskBody.utf8))
        let inTask = try #require(response.virtualMachineMetaData.first { $0.virtualMachineLocation.virtualMachineId == "demo-1" })
        #expect(inTask.virtualMachineLocation.localControllerId == destinationID, "\(inTask)")
        let hosts = try await c.hosts()
        let src = try #require(hosts.first { $0.id == sourceID }), dst = try #require(hosts.first { $0.id == destinationID })
        #expect(!src.vms.contains("demo-1") && dst.vms.contains("demo-1"), "\(hosts)")
        // Host usage on both ends, from the controllers' own accounts.
        try await eventually(.seconds(5), "host usage to follow the VM") {
            let all = try await c.hosts()
            guard let s = all.first(where: { $0.id == sourceID }), let d = all.first(where: { $0.id == destinationID }) else { return false }
            return Int(s.vcpusRequested) == s.vms.count && Int(d.vcpusRequested) == d.vms.count && d.vms.contains("demo-1")
        }
        let (_, usage) = try await c.call(.GET, try await c.address(destination), "/hypervisor/usages")
        #expect(usage.contains("\"instances\":\(try await c.domains(on: destination).count)"), "\(usage)")

        // And back, in Snooze's two forms: the leader's MigrationRequest and the bootstrap's short one.
        let snooze = """
            {"sourceVirtualMachineLocation":{"virtualMachineId":"demo-1","localControllerId":"\(destinationID)"},
             "destinationVirtualMachineLocation":{"virtualMachineId":"demo-1","localControllerId":"\(sourceID)"},
             "destinationHypervisorSettings":null,"migrated":false}
            """
        let leaderID = try #require(await c.hierarchy()?.groupLeader?.id)
        let leader = try #require(c.name(ofManager: leaderID))
        let (status, body) = try await c.call(.POST, try await c.address(leader), "/groupmanager?migrateVirtualMachine", body: snooze)
        #expect(status == 200 && body == "true", "\(status) \(body)")
        try await eventually(.seconds(10), "demo-1 back on its first host") {
            try await c.meta("demo-1").virtualMachineLocation.localControllerId == sourceID
        }
        let (bsStatus, bsBody) = try await c.call(.POST, c.bootstrap, "/bootstrap?migrateVirtualMachine",
                                                  body: "{\"virtualMachineId\":\"demo-1\",\"localControllerId\":\"\(destinationID)\"}")
        #expect(bsStatus == 200 && bsBody == "true", "\(bsStatus) \(bsBody)")
        try await eventually(.seconds(10), "demo-1 moved through the bootstrap") {
            try await c.meta("demo-1").virtualMachineLocation.localControllerId == destinationID
        }
        let listed = try await c.doze(["migration", "list", "--json"])
        let migrations = try JSONDecoder().decode(MigrationList.self, from: Data(listed.stdout.utf8)).migrations
        #expect(migrations.count == 3 && migrations.allSatisfy { $0.state == .completed }, "\(listed)")
    }

    @Test func badMigrationsAreRefusedAndNothingMoves() async throws {
        let c = try Cluster()
        defer { c.stop() }
        try await c.up()
        let template = c.dir.file("demo.xml")
        try ClientProcessTests.demo.write(toFile: template, atomically: true, encoding: .utf8)
        let submitted = try await c.doze(["submit", template, "--count", "2", "--wait", "--timeout", "30"])
        #expect(submitted.status == 0, "\(submitted)")
        let here = try #require(try await c.meta("demo-1").virtualMachineLocation.localControllerId)
        let other = ["lc1", "lc2", "lc3"].compactMap { c.controllerID($0) }.first { $0 != here }!
        let tiny = c.controllerID("tiny")!

        func refused(_ vm: String, _ to: String, _ options: String = "", status expected: Int, saying words: String) async throws {
            let (status, body) = try await c.migrate(vm, to: to, options: options)
            #expect(status == expected && body.contains(words), "\(vm) → \(to): \(status) \(body)")
        }
        try await refused("nosuch", other, status: 404, saying: "no VM 'nosuch'")
        try await refused("demo-1", "nowhere", status: 404, saying: "no local controller 'nowhere'")
        try await refused("demo-1", here, status: 409, saying: "already runs on")
        try await refused("demo-1", tiny, status: 409, saying: "no room")
        try await refused("demo-1", other, ",\"options\":{\"mode\":\"live\"}", status: 422, saying: "cannot migrate live")
        try await refused("demo-1", other, ",\"options\":{\"mode\":\"fast\"}", status: 400, saying: "mode must be one of")
        let (malformed, why) = try await c.call(.POST, c.bootstrap, "/v1/migrations", body: "{\"vm\":\"demo-1\"}")
        #expect(malformed == 400 && why.contains("to"), "\(why)")
        let suspended = try await c.doze(["vm", "suspend", "demo-1"])
        #expect(suspended.status == 0, "\(suspended)")
        try await refused("demo-1", other, status: 409, saying: "suspended")
        let client = try await c.doze(["vm", "migrate", "demo-1", "--to", "nowhere"])
        #expect(client.status != 0 && client.stderr.contains("no local controller 'nowhere'"), "\(client)")
        // Nothing moved, nothing was left half-done.
        #expect(try await c.meta("demo-1").virtualMachineLocation.localControllerId == here)
        let listed = try await c.call(.GET, c.bootstrap, "/v1/migrations")
        #expect(listed.body.contains("\"migrations\":[]") || !listed.body.contains("completed"), "\(listed)")
        let (_, usage) = try await c.call(.GET, try await c.address("tiny"), "/hypervisor/usages")
        #expect(usage.contains("\"instances\":0") && usage.contains("\"cpu_used\":0"), "no room stays held on the destination: \(usage)")

        // Two moves of one VM at once: one happens, the other is refused; the VM exists exactly once.
        _ = try await c.doze(["vm", "resume", "demo-1"])
        let targets = ["lc1", "lc2", "lc3"].compactMap { c.controllerID($0) }.filter { $0 != here }
        async let first = c.migrate("demo-1", to: targets[0])
        async let second = c.migrate("demo-1", to: targets[1])
        let outcomes = try await [first, second]
        #expect(outcomes.filter { $0.status == 202 }.count >= 1, "\(outcomes)")
        for o in outcomes where o.status != 202 {
            #expect(o.status == 409 && (o.body.contains("already migrating") || o.body.contains("already runs")), "\(o)")
        }
        try await eventually(.seconds(10), "the migrations to end") {
            let (_, body) = try await c.call(.GET, c.bootstrap, "/v1/migrations")
            return !body.contains("\"running\"")
        }
        var holders = 0
        for lc in ["lc1", "lc2", "lc3", "tiny"] where try await c.domains(on: lc).contains("demo-1") { holders += 1 }
        #expect(holders == 1)
    }

    @Test func drainMovesEveryVMOffAndKeepsNewOnesAway() async throws {
        let c = try Cluster()
        defer { c.stop() }
        try await c.up()
        let template = c.dir.file("demo.xml")
        try ClientProcessTests.demo.write(toFile: template, atomically: true, encoding: .utf8)
        let submitted = try await c.doze(["submit", template, "--count", "6", "--wait", "--timeout", "30"])
        #expect(submitted.status == 0, "\(submitted)")
        try await eventually(.seconds(5), "the heartbeats to list all six VMs") { try await c.hosts().reduce(0) { $0 + $1.vms.count } == 6 }
        let busiest = try await c.hosts().filter { $0.id != c.controllerID("tiny") }.max { $0.vms.count < $1.vms.count }!
        let name = ["lc1", "lc2", "lc3"].first { c.controllerID($0) == busiest.id }!
        #expect(busiest.vms.count >= 2)

        // One migration per host at a time (--migrations-per-host 1): the drain queues the rest and finishes them all.
        let drained = try await c.doze(["host", "drain", String(busiest.id.prefix(8)), "--wait", "--json"], within: .seconds(90))
        #expect(drained.status == 0, "\(drained)\n\(c.logs())")
        let report = try JSONDecoder().decode(DrainReport.self, from: Data(drained.stdout.utf8))
        #expect(report.migrations.count == busiest.vms.count && report.migrations.allSatisfy { $0.state == .completed }, "\(report)")
        #expect(report.unplaced.isEmpty && report.migrations.allSatisfy { $0.destination.localControllerId != c.controllerID("tiny") })
        #expect(try await c.domains(on: name).isEmpty)
        try await eventually(.seconds(5), "the drained host to say so") {
            try await c.hosts().first { $0.id == busiest.id }?.draining == true
        }
        // New VMs go elsewhere while it is drained, and may come back once undrained.
        let web = c.dir.file("web.xml")
        try TestHostFile.domainXML(name: "web", type: "kvm").write(toFile: web, atomically: true, encoding: .utf8)
        let more = try await c.doze(["submit", web, "--count", "4", "--wait", "--json", "--timeout", "30"])
        #expect(more.status == 0, "\(more)")
        #expect(try await c.domains(on: name).isEmpty, "a drained host took a new VM")
        let undrained = try await c.doze(["host", "undrain", busiest.id])
        #expect(undrained.status == 0, "\(undrained)")
        try await eventually(.seconds(5), "the host to take VMs again") {
            try await c.hosts().first { $0.id == busiest.id }?.draining == false
        }
        let moveBack = try await c.doze(["vm", "migrate", report.migrations[0].vm, "--to", busiest.id, "--wait"])
        #expect(moveBack.status == 0 && moveBack.stdout.contains("state:") && moveBack.stdout.contains("completed"), "\(moveBack)")
        let table = try await c.doze(["host", "list"])
        #expect(table.stdout.contains("SCHEDULING") && !table.stdout.contains("drained"), "\(table)")
    }
}
}

extension ProcessTests.MigrationProcessTests {
    /// Every view that lists VMs in Snooze's shapes, each VM as that view describes it.
    func listedVMs(_ c: Cluster) async throws -> [String: [VirtualMachineMetaData]] {
        func decode<T: Decodable>(_ type: T.Type, _ answer: (status: Int, body: String)) throws -> T {
            guard answer.status == 200 else { throw TimeoutError(what: "a view answered \(answer.status): \(answer.body)") }
            return try JSONDecoder().decode(T.self, from: Data(answer.body.utf8))
        }
        func metas(_ controllers: [LocalControllerDescription]) -> [VirtualMachineMetaData] {
            controllers.flatMap { $0.virtualMachineMetaData.values }
        }
        var views: [String: [VirtualMachineMetaData]] = [:]
        let hierarchy = try decode(GroupLeaderRepositoryInformation.self,
                                   try await c.call(.POST, c.bootstrap, "/bootstrap?getCompleteHierarchy", body: "0"))
        views["getCompleteHierarchy"] = metas(hierarchy.groupManagerDescriptions.flatMap { $0.localControllers.values })
        let leader = try #require(hierarchy.groupLeader)
        let leaderAddress = "\(leader.listenSettings.controlDataAddress.address):\(leader.listenSettings.controlDataAddress.port)"
        let repository = try decode(GroupLeaderRepositoryInformation.self,
                                    try await c.call(.POST, leaderAddress, "/groupmanager?getGroupLeaderRepositoryInformation", body: "0"))
        views["getGroupLeaderRepositoryInformation"] = metas(repository.groupManagerDescriptions.flatMap { $0.localControllers.values })
        let list = try decode(LocalControllerList.self, try await c.call(.GET, c.bootstrap, "/bootstrap?getLocalControllerList"))
        views["getLocalControllerList"] = metas(list.localControllers)
        var managed: [VirtualMachineMetaData] = []
        for manager in hierarchy.groupManagerDescriptions {
            let address = "\(manager.listenSettings.controlDataAddress.address):\(manager.listenSettings.controlDataAddress.port)"
            let own = try decode(GroupManagerRepositoryInformation.self,
                                 try await c.call(.POST, address, "/groupmanager?getGroupManagerRepositoryInformation", body: "0"))
            managed += metas(own.localControllerDescriptions)
        }
        views["getGroupManagerRepositoryInformation"] = managed
        var described: [VirtualMachineMetaData] = []
        for vm in views["getCompleteHierarchy"]! {
            let location = String(decoding: try JSONEncoder().encode(vm.virtualMachineLocation), as: UTF8.self)
            described.append(try decode(VirtualMachineMetaData.self,
                                        try await c.call(.POST, c.bootstrap, "/bootstrap?getVirtualMachineMetaData", body: location)))
        }
        views["getVirtualMachineMetaData"] = described
        return views
    }

    /// What a Snooze client needs to act on a listed VM: its real state and a location that names live nodes.
    func incomplete(_ vm: VirtualMachineMetaData, controllers: [String: String], managers: [String: String]) -> String? {
        let location = vm.virtualMachineLocation
        guard let controller = location.localControllerId, let lc = location.localControllerControlDataAddress else { return "no controller" }
        guard let manager = location.groupManagerId, let gm = location.groupManagerControlDataAddress else { return "no manager" }
        let lcAddress = "\(lc.address):\(lc.port)", gmAddress = "\(gm.address):\(gm.port)"
        if vm.status == .unknown { return "status UNKNOWN" }
        if vm.requested.vcpus <= 0 || vm.requested.memoryKiB <= 0 { return "requested capacity \(vm.requestedCapacity)" }
        if controllers[controller] != lcAddress { return "controller \(controller) at \(lcAddress)" }
        if managers[manager] != gmAddress { return "manager \(manager) at \(gmAddress)" }
        if vm.groupManagerControlDataAddress != location.groupManagerControlDataAddress || !vm.isAssigned { return "assignment" }
        return nil
    }

    /// Lists VMs from every view, then acts on each listed VM using only what that listing said (the manager's
    /// address and the location it gave): suspend, resume, migrate, and after the move list again and destroy.
    @Test func everyViewDescribesVMsCompletelyAndItsLocationsWork() async throws {
        let c = try Cluster()
        defer { c.stop() }
        try await c.up()
        let template = c.dir.file("demo.xml")
        try ProcessTests.ClientProcessTests.demo.write(toFile: template, atomically: true, encoding: .utf8)
        let submitted = try await c.doze(["submit", template, "--count", "2", "--wait", "--timeout", "30"])
        #expect(submitted.status == 0, "\(submitted)\n\(c.logs())")

        func nodes() async throws -> (controllers: [String: String], managers: [String: String]) {
            let tree = try #require(await c.hierarchy())
            var controllers: [String: String] = [:], managers: [String: String] = [:]
            for manager in tree.groupManagerDescriptions {
                managers[manager.id] = "\(manager.listenSettings.controlDataAddress.address):\(manager.listenSettings.controlDataAddress.port)"
                for controller in manager.localControllers.values {
                    controllers[controller.id] = "\(controller.controlDataAddress.address):\(controller.controlDataAddress.port)"
                }
            }
            return (controllers, managers)
        }
        func checkViews(_ when: String) async throws -> [String: [VirtualMachineMetaData]] {
            let (controllers, managers) = try await nodes()
            // Right after a change the books may lag one heartbeat: wait (bounded) until every view is complete.
            try await eventually(.seconds(10), "every view complete \(when)") {
                try await self.listedVMs(c).allSatisfy { _, vms in
                    vms.count == 2 && vms.allSatisfy { self.incomplete($0, controllers: controllers, managers: managers) == nil }
                }
            }
            let views = try await listedVMs(c)
            for (view, vms) in views.sorted(by: { $0.key < $1.key }) {
                #expect(Set(vms.map(\.virtualMachineLocation.virtualMachineId)) == ["demo-1", "demo-2"], "\(view) \(when)")
                for vm in vms {
                    let problem = incomplete(vm, controllers: controllers, managers: managers)
                    #expect(problem == nil, "\(view) \(when): \(vm.virtualMachineLocation.virtualMachineId): \(problem ?? "")")
                }
            }
            return views
        }
        func act(_ operation: String, on vm: VirtualMachineMetaData) async throws {
            let gm = try #require(vm.virtualMachineLocation.groupManagerControlDataAddress)
            let body = String(decoding: try JSONEncoder().encode(vm.virtualMachineLocation), as: UTF8.self)
            let answer = try await c.call(.POST, "\(gm.address):\(gm.port)", "/groupmanager?\(operation)", body: body)
            #expect(answer.status == 200 && answer.body == "true", "\(operation) \(vm.virtualMachineLocation.virtualMachineId): \(answer)")
        }

        var views = try await checkViews("after the submission")
        for (_, vms) in views.sorted(by: { $0.key < $1.key }) {
            for vm in vms {
                try await act("suspendVirtualMachine", on: vm)
                try await act("resumeVirtualMachine", on: vm)
            }
        }

        // Migrate demo-1 to a controller the listing names, then act on where the new listing puts it.
        let listed = try #require(views["getLocalControllerList"]?.first { $0.virtualMachineLocation.virtualMachineId == "demo-1" })
        let (controllers, _) = try await nodes()
        let destination = try #require(controllers.keys.sorted().first { $0 != listed.virtualMachineLocation.localControllerId && c.name(ofController: $0) != "tiny" })
        let moved = try await c.call(.POST, c.bootstrap, "/bootstrap?migrateVirtualMachine",
                                     body: "{\"virtualMachineId\":\"demo-1\",\"localControllerId\":\"\(destination)\"}")
        #expect(moved.status == 200 && moved.body == "true", "\(moved)")
        try await eventually(.seconds(15), "demo-1 listed on its destination") {
            try await c.meta("demo-1").virtualMachineLocation.localControllerId == destination
        }
        views = try await checkViews("after the migration")
        for vm in try #require(views["getGroupManagerRepositoryInformation"]) {
            if vm.virtualMachineLocation.virtualMachineId == "demo-1" {
                #expect(vm.virtualMachineLocation.localControllerId == destination)
            }
            try await act("suspendVirtualMachine", on: vm)
            try await act("destroyVirtualMachine", on: vm)
        }
        try await eventually(.seconds(10), "both VMs gone from every view") {
            // A view may still list a VM its controller just destroyed (one heartbeat): its metadata is then a 404.
            (try? await self.listedVMs(c))?.allSatisfy { $0.value.isEmpty } ?? false
        }
    }
}
