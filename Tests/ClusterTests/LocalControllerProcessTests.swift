import AsyncHTTPClient
import ClusterCore
import ClusterTestKit
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1
import Testing

extension ProcessTests {
/// The real `doze lc` binary, on loopback, with port 0 and a state directory per test.
@Suite(.serialized) struct LocalControllerProcessTests {
    struct Node {
        let process: DozeProcess
        let base: String
    }

    static func startLC(hostFile: String, state: String, log: String, sampleInterval: String = "0.1",
                        extraArguments: [String] = []) async throws -> Node {
        try? FileManager.default.removeItem(atPath: state + "/listen.addr")
        let process = try DozeProcess(arguments: ["lc", "--listen", "127.0.0.1:0", "--hypervisor", "test://" + hostFile,
                                                  "--state-dir", state, "--sample-interval", sampleInterval] + extraArguments,
                                      logPath: log)
        @Sendable func address() -> String {
            (try? String(contentsOfFile: state + "/listen.addr", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
        }
        do {
            try await eventually(.seconds(20), "doze lc to listen") { !address().isEmpty }
        } catch {
            process.kill9()
            Issue.record("doze lc did not start; its log:\n\(process.log)")
            throw error
        }
        return Node(process: process, base: "http://" + address())
    }

    static func request(_ method: HTTPMethod, _ url: String, _ body: String? = nil) async throws -> (Int, String) {
        var request = HTTPClientRequest(url: url)
        request.method = method
        if let body { request.body = .bytes(ByteBuffer(string: body)) }
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(10))
        let bytes = try await response.body.collect(upTo: 1 << 22)
        return (Int(response.status.code), String(buffer: bytes))
    }

    static func json<T: Decodable>(_ type: T.Type, _ url: String) async throws -> T {
        let (status, body) = try await request(.GET, url)
        #expect(status == 200, "\(url) → \(body)")
        return try JSONDecoder().decode(T.self, from: Data(body.utf8))
    }

    @Test func restartAfterKillNineLosesNothing() async throws {
        try await awayFromLocalMidnight()   // today's metrics before the kill are today's after the restart
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let host = dir.file("host.xml")
        try TestHostFile.write(to: host, cpus: 4, domains: [.init(name: "preexisting")])
        let state = dir.file("state")

        var node = try await Self.startLC(hostFile: host, state: state, log: dir.file("lc1.log"))
        #expect(try await Self.json(VMListDocument.self, node.base + "/vms").vms.map(\.name) == ["preexisting"])
        for name in ["a", "b", "c"] {
            let (status, body) = try await Self.request(.POST, node.base + "/vm",
                TestHostFile.domainXML(name: name, type: "kvm", vcpus: 1, memoryMiB: 64))
            #expect(status == 201, "\(body)")
        }
        #expect(try await Self.request(.POST, node.base + "/vm/suspend?name=b").0 == 200)
        #expect(try await Self.request(.POST, node.base + "/vm/shutdown?name=c").0 == 200)
        #expect(try await Self.request(.DELETE, node.base + "/vm?name=preexisting").0 == 200)
        #expect(try await Self.request(.PUT, node.base + "/hypervisor/quota", #"{"quota":{"cpu_max":2}}"#).0 == 200)
        let poolPath = dir.file("pool1")
        #expect(try await Self.request(.POST, node.base + "/hypervisor/pools",
                                       #"{"pool":{"name":"pool1","path":"\#(poolPath)","max_gb":5}}"#).0 == 200)
        let base = node.base
        try await eventually(.seconds(10), "two metrics samples") {
            let m = try await Self.json(MetricsDocument.self, base + "/hypervisor/metrics")
            return !m.metrics.memory.datas.isEmpty
        }
        let before = try await Self.json(VMListDocument.self, node.base + "/vms")

        node.process.kill9()
        // No sample for an hour: whatever metrics the restarted controller shows, it read back from its state.
        node = try await Self.startLC(hostFile: host, state: state, log: dir.file("lc2.log"), sampleInterval: "3600")
        defer { node.process.kill9() }

        let after = try await Self.json(VMListDocument.self, node.base + "/vms")
        #expect(after == before)
        #expect(after.vms.map(\.status) == [.running, .paused, .offline])
        #expect(try await Self.json(QuotaDocument.self, node.base + "/hypervisor/quota").quota.cpuMax == 2)
        #expect(try await Self.json(PoolsDocument.self, node.base + "/hypervisor/pools").pools.map(\.name) == ["pool1"])
        #expect(!(try await Self.json(MetricsDocument.self, node.base + "/hypervisor/metrics").metrics.memory.datas.isEmpty))
        // The adopted VMs are managed, not just listed.
        #expect(try await Self.request(.POST, node.base + "/vm/resume?name=b").0 == 200)
        #expect(try await Self.request(.POST, node.base + "/vm/start?name=c").0 == 409)   // quota: 2 vCPUs already in use
        #expect(try await Self.request(.DELETE, node.base + "/vm?name=a").0 == 200)
        #expect(try await Self.request(.POST, node.base + "/vm/start?name=c").0 == 200)
    }

    /// Issue 12: a load declared on a test-driver host is kept with the VM, and the real sampler reads it.
    @Test func declaredLoadSurvivesARestart() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let host = dir.file("host.xml")
        try TestHostFile.write(to: host, cpus: 4, domains: [.init(name: "web", vcpus: 2)])
        let state = dir.file("state")
        let fast = ["--usage-interval", "0.1", "--usage-estimator", "ewma:0.5"]
        var node = try await Self.startLC(hostFile: host, state: state, log: dir.file("lc1.log"), extraArguments: fast)
        let (status, body) = try await Self.request(.POST, node.base + "/v1/vms/web/load", #"{"vcpus": 1.25}"#)
        #expect(status == 200, "\(body)")
        node.process.kill9()

        node = try await Self.startLC(hostFile: host, state: state, log: dir.file("lc2.log"), extraArguments: fast)
        defer { node.process.kill9() }
        let base = node.base
        try await eventually(.seconds(10), "a usage sample") { try await Self.request(.GET, base + "/v1/vms/web/usage").0 == 200 }
        let usage = try await Self.json(VMUsageDocument.self, base + "/v1/vms/web/usage")
        #expect(usage.synthetic && usage.vcpusInUse == 1.25 && usage.vcpus == 2)
    }

    @Test func aVMsVNCPortIsReportedAsVncAddr() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let host = dir.file("host.xml")
        try TestHostFile.write(to: host, cpus: 4)
        let node = try await Self.startLC(hostFile: host, state: dir.file("state"), log: dir.file("lc.log"))
        defer { node.process.kill9() }
        // The test driver assigns no port, but keeps one given: the answer reads it from the live XML.
        let xml = "<domain type='test'><name>console</name><memory>131072</memory><vcpu>1</vcpu><os><type>hvm</type></os>"
            + "<devices><graphics type='vnc' port='5907' autoport='no' listen='0.0.0.0' passwd='pw'/></devices></domain>"
        #expect(try await Self.request(.POST, node.base + "/vm", xml).0 == 201)
        let (status, body) = try await Self.request(.POST, node.base + "/localcontroller?getVirtualMachineMetaData", "console")
        #expect(status == 200, "\(body)")
        let meta = try JSONDecoder().decode(VirtualMachineMetaData.self, from: Data(body.utf8))
        #expect(meta.vncAddr == "127.0.0.1:5907")
    }

    @Test func badUsageOptionsAreRefused() async throws {
        for (arguments, message) in [(["--usage-interval", "0"], "--usage-interval must be > 0"),
                                     (["--usage-estimator", "median:3"], "usage estimator 'median' is unknown")] {
            let dir = try TemporaryDirectory()
            defer { dir.remove() }
            let process = try DozeProcess(arguments: ["lc", "--hypervisor", "test:///default", "--state-dir", dir.file("state")] + arguments,
                                          logPath: dir.file("lc.log"))
            try await eventually(.seconds(20), "doze lc to refuse its options") { !process.process.isRunning }
            #expect(process.process.terminationStatus != 0)
            #expect(process.log.contains(message), "\(process.log)")
        }
    }

    @Test func sigtermStopsCleanly() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let host = dir.file("host.xml")
        try TestHostFile.write(to: host)
        let node = try await Self.startLC(hostFile: host, state: dir.file("state"), log: dir.file("lc.log"))
        #expect(try await Self.request(.GET, node.base + "/health").1 == "ok")
        let status = await node.process.terminate(within: .seconds(10))
        #expect(status == 0, "exit status \(String(describing: status)); log:\n\(node.process.log)")
    }

    /// Snooze clients that send `POST localcontroller?op HTTP/1.1` (no leading slash) are served, on keep-alive too.
    @Test func requestTargetsWithoutALeadingSlashAreServed() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let host = dir.file("host.xml")
        try TestHostFile.write(to: host, domains: [.init(name: "web1")])
        let node = try await Self.startLC(hostFile: host, state: dir.file("state"), log: dir.file("lc.log"))
        defer { node.process.kill9() }
        let port = try #require(Int(node.base.split(separator: ":").last!))
        let answer = try rawTCPExchange(port: port,
            "POST localcontroller?suspendVirtualMachineOnRequest HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nweb1"
            + "GET vm?name=web1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(answer.components(separatedBy: "HTTP/1.1 200 OK").count == 3, "\(answer)")
        #expect(answer.contains("\"name\":\"web1\"") && answer.contains("\"status\":\"PAUSED\""), "\(answer)")
    }

    @Test func libvirtSaysNothingOnStderr() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let host = dir.file("host.xml")
        try TestHostFile.write(to: host)
        let node = try await Self.startLC(hostFile: host, state: dir.file("state"), log: dir.file("lc.log"))
        defer { node.process.kill9() }
        // Failing libvirt calls: unknown domains, a bad define.
        _ = try await Self.request(.POST, node.base + "/localcontroller?resumeVirtualMachine", "ghost")
        _ = try await Self.request(.POST, node.base + "/vm", "<domain type='test'><name>x</name><memory>1</memory><vcpu>1</vcpu><os><type>nonsense</type></os></domain>")
        #expect(!node.process.log.contains("libvirt:"), "libvirt printed to stderr:\n\(node.process.log)")
    }
}
}
