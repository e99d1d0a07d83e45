import AsyncHTTPClient
import ClusterCore
import ClusterTestKit
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1
import Testing

extension ProcessTests {
/// Issue 12's energy saving on real processes, launched as a user would (`doze cluster up` with an `energy:` map and
/// the shipped `topology/power-agent.py`): idle hosts are drained and put to sleep one at a time down to
/// `min_awake`, `doze host list` shows them SLEEPING, a new leader reads them back from the records, and a
/// submission that finds no room wakes one and is placed.
@Suite(.serialized) struct EnergyProcessTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

    @Test func idleHostsSleepAndASubmissionWithoutRoomWakesOne() async throws {
        let dir = try TemporaryDirectory(prefix: "doze-energy")
        defer { dir.remove() }
        // Free ports for the launcher (it waits on fixed addresses): held, then released just before `up`.
        var held = try (0..<7).map { _ in try ClosedPort() }
        let ports = held.map(\.port)
        var hostFiles: [String] = []
        for i in 1...3 {
            _ = try TestHostFile.write(to: dir.file("host\(i).xml"), cpus: 4, memoryMiB: 8192)
            hostFiles.append(dir.file("host\(i).xml"))
        }
        let topology = """
            name: energy-test
            secret: energy-test-secret
            run_dir: \(dir.file("run"))
            heartbeat: { interval_ms: 100, controller_timeout_ms: 600, manager_timeout_ms: 600, leader_timeout_ms: 1000 }
            energy:
              power_off: "\(Self.root)/topology/power-agent.py off {layout}"
              wake: "\(Self.root)/topology/power-agent.py on {layout}"
              idle_s: 2
            bootstrap:
              - listen: 127.0.0.1:\(ports[0])
            managers:
              - listen: 127.0.0.1:\(ports[1])
              - listen: 127.0.0.1:\(ports[2])
              - listen: 127.0.0.1:\(ports[6])
            controllers:
              - { listen: 127.0.0.1:\(ports[3]), host: \(hostFiles[0]) }
              - { listen: 127.0.0.1:\(ports[4]), host: \(hostFiles[1]) }
              - { listen: 127.0.0.1:\(ports[5]), host: \(hostFiles[2]) }
            """
        let file = dir.file("energy.yaml")
        try topology.write(toFile: file, atomically: true, encoding: .utf8)
        held.removeAll()
        let up = try await ClientProcessTests.doze(["cluster", "up", file, "--detach"], in: dir, within: .seconds(90))
        defer { _ = try? runDown(file, dir) }
        try #require(up.status == 0, "\(up)")
        let bootstrap = "127.0.0.1:\(ports[0])"
        let client = HTTPClient.shared

        func hosts() async throws -> [HostEntry] {
            var request = HTTPClientRequest(url: "http://\(bootstrap)/v1/hosts")
            request.method = .GET
            let response = try await client.execute(request, timeout: .seconds(10))
            let body = try await response.body.collect(upTo: 1 << 20)
            return try JSONDecoder().decode(HostList.self, from: Data(body.readableBytesView)).hosts
        }

        // All three hold no VM: two go to sleep, one after the other; one stays awake.
        let deadline = ContinuousClock.now + .seconds(60)
        var listed: [HostEntry] = []
        while ContinuousClock.now < deadline {
            listed = (try? await hosts()) ?? []
            if listed.filter({ $0.power == "sleeping" }).count == 2 && listed.filter({ $0.power == "on" }).count == 1 { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(listed.filter { $0.power == "sleeping" }.count == 2, "\(listed)\n\(logs(dir))")
        #expect(listed.filter { $0.power == "sleeping" }.allSatisfy { $0.vcpus == 4 && $0.memoryMiB == 8192 }, "capacity remembered: \(listed)")
        let table = try await ClientProcessTests.doze(["host", "list", "--bootstrap", bootstrap], in: dir)
        #expect(table.status == 0 && table.stdout.components(separatedBy: "SLEEPING").count == 3, "\(table)")
        // Its controller is really gone: nothing answers on a sleeping host's address.
        let sleeper = try #require(listed.first { $0.power == "sleeping" })
        let gone = try? await client.execute(HTTPClientRequest(url: "http://\(sleeper.address.address):\(sleeper.address.port)/health"),
                                             timeout: .seconds(2))
        #expect(gone == nil, "the sleeping host's controller does not answer")

        // The leader that put them to sleep dies: the next one reads them back from the records, lists them and can wake them.
        let leader = try #require(try await leaderAddress(bootstrap), "a leader is known")
        let layout = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir.file("run/layout.json")))) as? [String: Any]
        let nodes = (layout?["nodes"] as? [[String: Any]]) ?? []
        let leaderNode = try #require(nodes.first { $0["listen"] as? String == leader }, "\(leader) in \(nodes)")
        let pid = try #require(Int32(String(contentsOfFile: leaderNode["pid_file"] as! String, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)))
        kill(pid, SIGKILL)
        let electedBy = ContinuousClock.now + .seconds(30)
        var relisted: [HostEntry] = []
        while ContinuousClock.now < electedBy {
            if let now = try? await leaderAddress(bootstrap), now != leader, let entries = try? await hosts(),
               entries.filter({ $0.power == "sleeping" }).count == 2 {
                relisted = entries
                break
            }
            try await Task.sleep(for: .milliseconds(200))
        }
        #expect(relisted.filter { $0.power == "sleeping" }.count == 2, "the new leader knows the sleeping hosts\n\(logs(dir))")

        // Two 3-vCPU VMs: the awake 4-CPU host takes one; the other needs a host woken.
        let template = dir.file("wide.xml")
        try "<domain type='test'><name>wide</name><memory unit='MiB'>1024</memory><vcpu>3</vcpu><os><type>hvm</type></os></domain>"
            .write(toFile: template, atomically: true, encoding: .utf8)
        let started = ContinuousClock.now
        let submitted = try await ClientProcessTests.doze(["submit", template, "--count", "2", "--wait", "--timeout", "120",
                                                           "--bootstrap", bootstrap], in: dir, within: .seconds(180))
        let took = ContinuousClock.now - started
        #expect(submitted.status == 0 && submitted.stdout.contains("running 2/2"), "\(submitted)\n\(logs(dir))")
        print("energy: a submission without room woke a host and ran in \(took)")
        var after = try await hosts()
        let settle = ContinuousClock.now + .seconds(10)
        while after.filter({ $0.vms.contains { $0.hasPrefix("wide-") } }).count < 2 && ContinuousClock.now < settle {
            try await Task.sleep(for: .milliseconds(200))   // heartbeats list the new VMs within a round or two
            after = try await hosts()
        }
        #expect(after.filter { $0.vms.contains { $0.hasPrefix("wide-") } }.count == 2, "the VMs run on two hosts: \(after)")
        #expect(after.filter { $0.power == "sleeping" }.count == 1, "one host woke, one still sleeps: \(after)")
    }

    /// The current leader's control address, as the bootstrap knows it.
    func leaderAddress(_ bootstrap: String) async throws -> String? {
        let response = try await HTTPClient.shared.execute(HTTPClientRequest(url: "http://\(bootstrap)/bootstrap?getGroupLeaderDescription"),
                                                           timeout: .seconds(5))
        let body = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .ok, let object = try JSONSerialization.jsonObject(with: Data(body.readableBytesView)) as? [String: Any],
              let listen = object["listenSettings"] as? [String: Any], let control = listen["controlDataAddress"] as? [String: Any],
              let host = control["address"] as? String, let port = control["port"] as? Int else { return nil }
        return "\(host):\(port)"
    }

    func runDown(_ file: String, _ dir: TemporaryDirectory) throws -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: DozeProcess.binaryPath())
        process.arguments = ["cluster", "down", file]
        process.environment = TestEnvironment.child
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    func logs(_ dir: TemporaryDirectory) -> String {
        let run = dir.file("run")
        let files = ((try? FileManager.default.contentsOfDirectory(atPath: run)) ?? []).filter { $0.hasSuffix(".log") && $0.hasPrefix("gm") }
        return files.sorted().map { name in
            let text = (try? String(contentsOfFile: run + "/" + name, encoding: .utf8)) ?? ""
            return "== \(name)\n" + text.split(separator: "\n").filter { $0.contains("host") || $0.contains("power") || $0.contains("wak") }
                .suffix(12).joined(separator: "\n")
        }.joined(separator: "\n")
    }
}
}
