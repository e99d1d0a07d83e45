import AsyncHTTPClient
import ClusterCore
import ClusterTestKit
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1
import Testing

extension ProcessTests {
/// Seed 000's kvm-apps on a real cluster of `doze` processes: a bootstrap, three group managers and two local
/// controllers on different loopback addresses (127.0.0.1 and 127.0.0.2, so hostname constraints have something
/// to choose), each with an image in its image pool.
@Suite(.serialized) struct AppProcessTests {
    /// The shared harness, plus the kvm-app calls and the client.
    final class Cluster: TestCluster, @unchecked Sendable {
        init() throws { try super.init(prefix: "doze-apps") }

        func up() async throws {
            try await startBootstrap()
            managerArguments = ["--vm-subnet", "10.80.0.0/16"]
            for gm in ["gm1", "gm2", "gm3"] { try startManager(gm) }
            for (lc, host) in [("lc1", "127.0.0.1"), ("lc2", "127.0.0.2")] {
                // The default image pool is STATE/images; the test driver never reads the file.
                try FileManager.default.createDirectory(atPath: dir.file("\(lc)/images"), withIntermediateDirectories: true)
                FileManager.default.createFile(atPath: dir.file("\(lc)/images/cirros.qcow2"), contents: Data("QFI\u{fb}".utf8))
                try startController(lc, host: host)
            }
            try await eventually(.seconds(20), "both controllers under a manager") {
                await self.hierarchy()?.groupManagerDescriptions.reduce(0) { $0 + $1.localControllers.count } == 2
            }
        }

        func api(_ method: HTTPMethod, _ path: String, _ body: String? = nil) async throws -> (Int, Data) {
            var request = HTTPClientRequest(url: "http://\(bootstrap)\(path)")
            request.method = method
            if let body { request.body = .bytes(ByteBuffer(string: body)) }
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            return (Int(response.status.code), Data(try await response.body.collect(upTo: 1 << 22).readableBytesView))
        }

        func tasks(_ id: String) async throws -> [KVMAppTaskEntry] {
            let (status, data) = try await api(.GET, "/v1/kvm-apps/\(id)")
            guard status == 200 else { return [] }
            return try JSONDecoder().decode([KVMAppTaskEntry].self, from: data)
        }

        func apps() async throws -> [KVMAppEntry] {
            try JSONDecoder().decode([KVMAppEntry].self, from: try await api(.GET, "/v1/kvm-apps").1)
        }

        /// POSTs an operation and waits until every task shows `status`.
        func operate(_ id: String, _ operation: String, expect status: String) async throws {
            let (code, data) = try await api(.POST, "/v1/kvm-apps/\(id)/\(operation)")
            #expect(code == 200, "\(operation): \(String(decoding: data, as: UTF8.self))")
            let entry = try JSONDecoder().decode(KVMAppEntry.self, from: data)
            #expect(entry.operationStatus == "noop")
            try await eventually(.seconds(10), "\(id) \(operation) -> \(status)") {
                try await self.tasks(id).allSatisfy { $0.status == status }
            }
        }

        /// Runs the `doze` client; its exit status and everything it printed.
        func cli(_ arguments: [String]) async throws -> (status: Int32, output: String) {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: DozeProcess.binaryPath())
            process.arguments = arguments + ["--bootstrap", bootstrap]
            process.environment = TestEnvironment.child
            let outputPath = dir.file("cli-\(UUID().uuidString).out")
            FileManager.default.createFile(atPath: outputPath, contents: nil)
            let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
            defer { try? output.close() }
            process.standardOutput = output
            process.standardError = output
            try process.run()
            defer { if process.isRunning { process.terminate() } }
            try await eventually(.seconds(60), "doze \(arguments.prefix(2).joined(separator: " ")) to exit") { !process.isRunning }
            process.waitUntilExit()
            return (process.terminationStatus, (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "")
        }

    }

    @Test func kvmAppLifecycleThroughTheBootstrap() async throws {
        let c = try Cluster()
        defer { c.stop() }
        do { try await c.up() } catch {
            Issue.record("cluster did not come up: \(error)\n\(c.logs())")
            throw error
        }
        let lcIDs = Set(["lc1", "lc2"].compactMap { name -> String? in
            guard let data = FileManager.default.contents(atPath: c.dir.file("\(name)/controller.json")),
                  let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any] else { return nil }
            return object["id"] as? String
        })
        #expect(lcIDs.count == 2)

        // The seed's create, with a regex constraint both controllers satisfy: three VMs spread over both.
        let body = """
            {"count": 3, "cpus": 1, "mems": 128, "disks": 1, "image": {"type": "qcow2", "uri": "cirros.qcow2"},
             "vnc": {"password": "password"}, "executor": {"url": "http://192.168.0.104:81/swan-executor", "command": "./swan-executor kvm"},
             "constraints": [{"attribute": "hostname", "operator": "~=", "value": "^127\\\\.0\\\\.0\\\\.[12]$"}]}
            """
        let (created, createdBody) = try await c.api(.POST, "/v1/kvm-apps?name=demo&runas=bbk&cluster=bj", body)
        #expect(created == 201, "\(String(decoding: createdBody, as: UTF8.self))")
        #expect(try JSONDecoder().decode(KVMAppCreated.self, from: createdBody) == KVMAppCreated(id: "demo.bbk.bj"))
        do {
            try await eventually(.seconds(20), "three running tasks") {
                let tasks = try await c.tasks("demo.bbk.bj")
                return tasks.count == 3 && tasks.allSatisfy { $0.status == "TASK_RUNNING" && !$0.ipAddr.isEmpty }
            }
        } catch {
            Issue.record("tasks: \(try await c.tasks("demo.bbk.bj"))\n\(c.logs())")
            throw error
        }
        let tasks = try await c.tasks("demo.bbk.bj")
        #expect(tasks.map(\.name) == ["0.demo.bbk.bj", "1.demo.bbk.bj", "2.demo.bbk.bj"])
        #expect(tasks.allSatisfy { $0.ipAddr.hasPrefix("10.80.") && $0.id.hasSuffix("." + $0.name) && !$0.domainUuid.isEmpty })
        #expect(Set(tasks.map(\.ipAddr)).count == 3)
        #expect(Set(tasks.map(\.agentId)) == lcIDs, "spread over both controllers")
        let listed = try #require(try await c.apps().first { $0.id == "demo.bbk.bj" })
        #expect(listed.tasksStatus == ["TASK_RUNNING": 3] && listed.operationStatus == "noop" && listed.taskCount == 3)
        #expect(listed.config.vnc?.password == "password" && listed.config.image.uri == "cirros.qcow2")
        // The VNC console is in the domain (the test driver picks no port, so vncAddr stays empty).
        let (_, vm) = try await c.api(.GET, "/v1/vms/0.demo.bbk.bj")
        #expect(String(decoding: vm, as: UTF8.self).contains("<graphics type='vnc'"))

        try await c.operate("demo.bbk.bj", "suspend", expect: "KvmSuspended")
        #expect(try await c.tasks("demo.bbk.bj").allSatisfy { $0.opstatus == "KvmSuspended" })
        try await c.operate("demo.bbk.bj", "suspend", expect: "KvmSuspended")   // declarative: already there, still fine
        try await c.operate("demo.bbk.bj", "resume", expect: "TASK_RUNNING")
        try await c.operate("demo.bbk.bj", "stop", expect: "KvmStopped")
        let (refused, why) = try await c.api(.POST, "/v1/kvm-apps/demo.bbk.bj/resume")
        #expect(refused == 409 && String(decoding: why, as: UTF8.self).contains("cannot resume a VM that is OFFLINE (start it instead)"))
        try await c.operate("demo.bbk.bj", "start", expect: "TASK_RUNNING")

        // The client: a table by default; a refusal exits non-zero with the API's words.
        let show = try await c.cli(["app", "show", "demo.bbk.bj"])
        #expect(show.status == 0 && show.output.contains("1.demo.bbk.bj") && show.output.contains("TASK_RUNNING"), "\(show.output)")
        let impossible = try await c.cli(["app", "create", "nowhere", "--image", "cirros.qcow2", "--constraint", "hostname==10.9.9.9"])
        #expect(impossible.status != 0)
        #expect(impossible.output.contains("no local controller satisfies the constraint hostname == \"10.9.9.9\""), "\(impossible.output)")
        #expect(try await c.apps().map(\.id) == ["demo.bbk.bj"], "nothing half-created")

        // An image no controller has: created, and each task says why it failed.
        let (noImage, _) = try await c.api(.POST, "/v1/kvm-apps?name=noimg&runas=bbk&cluster=bj",
                                            #"{"count": 2, "cpus": 1, "mems": 64, "image": {"type": "iso", "uri": "missing.iso"}}"#)
        #expect(noImage == 201)
        try await eventually(.seconds(20), "the unknown image is reported") {
            let tasks = try await c.tasks("noimg.bbk.bj")
            return tasks.count == 2 && tasks.allSatisfy { $0.status == "KvmStartFailed" && $0.errmsg.contains("'missing.iso' is not in this host's image pool") }
        }
        #expect(try await c.apps().first { $0.id == "noimg.bbk.bj" }?.errmsg.hasPrefix("2 of 2 tasks failed to start") == true)

        // The leader dies: the next one reads the apps back and still finds every VM.
        let leader = try #require(await c.hierarchy()?.groupLeader?.id)
        let leaderName = try #require(["gm1", "gm2", "gm3"].first { c.nodeID($0) == leader })
        c.processes[leaderName]!.kill9()
        do {
            try await eventually(.seconds(20), "the new leader knows the app and its running VMs") {
                guard let apps = try? await c.apps() else { return false }
                return apps.first { $0.id == "demo.bbk.bj" }?.tasksStatus == ["TASK_RUNNING": 3]
            }
        } catch {
            Issue.record("after failover: \(String(describing: try? await c.apps().first { $0.id == "demo.bbk.bj" }))\n\(try await c.tasks("demo.bbk.bj"))\n\(c.logs())")
            throw error
        }

        let deleted = try await c.cli(["app", "delete", "demo.bbk.bj"])
        #expect(deleted.status == 0 && deleted.output.contains("deleted demo.bbk.bj"), "\(deleted.output)")
        let (gone, _) = try await c.api(.DELETE, "/v1/kvm-apps/noimg.bbk.bj")
        #expect(gone == 200)
        #expect(try await c.apps().isEmpty)
        let vms = await c.hierarchy()?.groupManagerDescriptions.flatMap { $0.localControllers.values.flatMap { $0.virtualMachineMetaData.keys } }
        #expect(vms == [], "every VM of the app was destroyed")
        let (missing, _) = try await c.api(.GET, "/v1/kvm-apps/demo.bbk.bj")
        #expect(missing == 404)
    }
}
}
