import AsyncHTTPClient
import ClusterCore
import ClusterTestKit
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1
import Testing

extension ProcessTests {
/// `doze submit` and `doze vm …`, the real binary against a small cluster of real `doze` processes on loopback
/// (port 0 everywhere): one bootstrap, two group managers (one leads), two local controllers on fake hosts.
@Suite(.serialized) struct ClientProcessTests {
    struct Outcome: CustomStringConvertible {
        var status: Int32
        var stdout: String
        var stderr: String
        var description: String { "exit \(status)\n--- stdout\n\(stdout)\n--- stderr\n\(stderr)" }
    }

    /// Runs `doze ARGS` to the end (at most `limit`), stdout and stderr apart.
    static func doze(_ arguments: [String], in dir: TemporaryDirectory, environment: [String: String] = [:],
                     within limit: Duration = .seconds(60)) async throws -> Outcome {
        let tag = UUID().uuidString
        let out = dir.file("cli-\(tag).out"), err = dir.file("cli-\(tag).err")
        FileManager.default.createFile(atPath: out, contents: nil)
        FileManager.default.createFile(atPath: err, contents: nil)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: DozeProcess.binaryPath())
        process.arguments = arguments
        process.environment = TestEnvironment.child.filter { $0.key != "DOZE_BOOTSTRAP" }.merging(environment) { $1 }
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = ContinuousClock.now + limit
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw TimeoutError(what: "doze \(arguments.joined(separator: " "))")
        }
        return Outcome(status: process.terminationStatus,
                       stdout: (try? String(contentsOfFile: out, encoding: .utf8)) ?? "",
                       stderr: (try? String(contentsOfFile: err, encoding: .utf8)) ?? "")
    }

    /// The shared harness: a bootstrap, two managers with a VM subnet, two controllers; plus the client.
    final class Cluster: TestCluster, @unchecked Sendable {
        init() throws { try super.init(prefix: "doze-client") }

        func up() async throws {
            try await startBootstrap()
            managerArguments = ["--vm-subnet", "10.80.0.0/16"]
            for gm in ["gm1", "gm2"] { try startManager(gm) }
            for lc in ["lc1", "lc2"] { try startController(lc) }
            // A leader, and both controllers under the other manager.
            do {
                try await eventually(.seconds(20), "the hierarchy to form") {
                    guard let tree = await self.hierarchy(), tree.groupLeader != nil else { return false }
                    return tree.groupManagerDescriptions.reduce(0) { $0 + $1.localControllers.count } == 2
                }
            } catch {
                Issue.record("the cluster did not form; logs:\n\(logs())")
                throw error
            }
        }

        func doze(_ arguments: [String], within limit: Duration = .seconds(60)) async throws -> Outcome {
            try await ClientProcessTests.doze(arguments + ["--bootstrap", bootstrap], in: dir, within: limit)
        }
    }

    /// The demo template, with a `<uuid>` the copies must not share.
    static let demo = """
        <domain type='kvm'>
          <name>demo</name>
          <uuid>8d4a6c1e-55a7-4f0e-9a0b-2d3c4e5f6a7b</uuid>
          <memory unit='MiB'>256</memory>
          <vcpu>1</vcpu>
          <os><type>hvm</type></os>
          <devices>
            <interface type='bridge'><source bridge='br100'/></interface>
          </devices>
        </domain>

        """

    @Test func submitWaitsForRunningVMsAndVMCommandsControlThem() async throws {
        let c = try Cluster()
        defer { c.stop() }
        try await c.up()
        let demo = c.dir.file("demo.xml")
        try Self.demo.write(toFile: demo, atomically: true, encoding: .utf8)

        // Three copies, waited for: one JSON document, every VM RUNNING with an address and a place.
        let submitted = try await c.doze(["submit", demo, "--count", "3", "--wait", "--json", "--timeout", "30"])
        #expect(submitted.status == 0, "\(submitted)\n\(c.logs())")
        let task = try JSONDecoder().decode(VirtualClusterTaskDocument.self, from: Data(submitted.stdout.utf8))
        #expect(task.state == .done && task.counts.running == 3 && task.counts.failed == 0, "\(task)")
        let vms = task.response.virtualMachineMetaData.sorted { $0.virtualMachineLocation.virtualMachineId < $1.virtualMachineLocation.virtualMachineId }
        #expect(vms.map(\.virtualMachineLocation.virtualMachineId) == ["demo-1", "demo-2", "demo-3"])
        for vm in vms {
            #expect(vm.status == .running, "\(vm)")
            #expect(vm.ipAddress.hasPrefix("10.80."), "\(vm)")
            #expect((vm.virtualMachineLocation.localControllerControlDataAddress?.port ?? 0) > 0, "\(vm)")
            #expect(!vm.xmlRepresentation.contains("8d4a6c1e"), "a copy keeps the template's uuid: \(vm.xmlRepresentation)")
        }
        #expect(Set(vms.map(\.ipAddress)).count == 3)

        // Without --wait: the task id alone; with --wait and no terminal: a summary line and a table.
        let web = c.dir.file("web.xml")
        try TestHostFile.domainXML(name: "web", type: "kvm").write(toFile: web, atomically: true, encoding: .utf8)
        let quick = try await c.doze(["submit", web])
        #expect(quick.status == 0, "\(quick)")
        #expect(quick.stdout.trimmingCharacters(in: .whitespacesAndNewlines).count == 36, "\(quick)")
        let table = try await c.doze(["submit", web, "--count", "2", "--wait", "--timeout", "30"])
        #expect(table.status == 0, "\(table)")
        #expect(table.stdout.contains("placed 2/2  running 2/2  failed 0/2"), "\(table)")
        #expect(table.stdout.contains("VM     STATUS   IP"), "\(table)")
        #expect(table.stdout.contains("web-2  RUNNING  10.80."), "\(table)")
        #expect(!table.stdout.contains("\r"), "no progress line when stdout is not a terminal")

        // The list, as JSON and as a table.
        let listed = try await c.doze(["vm", "list", "--json"])
        #expect(listed.status == 0, "\(listed)")
        let list = try JSONDecoder().decode(VirtualMachineList.self, from: Data(listed.stdout.utf8))
        #expect(Set(list.virtualMachines.map(\.virtualMachineLocation.virtualMachineId))
                == ["demo-1", "demo-2", "demo-3", "web", "web-1", "web-2"], "\(listed)")
        #expect(list.virtualMachines.allSatisfy { $0.status == .running })
        let human = try await c.doze(["vm", "list"])
        #expect(human.stdout.hasPrefix("VM      STATUS   IP"), "\(human)")
        #expect(human.stdout.contains("demo-2  RUNNING  10.80."), "\(human)")

        // A running name again: refused as a whole, with the name.
        let duplicate = try await c.doze(["submit", demo, "--count", "3", "--wait"])
        #expect(duplicate.status != 0, "\(duplicate)")
        #expect(duplicate.stderr.contains("demo-1"), "\(duplicate)")

        // A malformed template: refused by the server, the file named; not XML at all: refused before sending.
        let broken = c.dir.file("broken.xml")
        try "<domain type='kvm'><name>broken</name><memory unit='MiB'>128</memory><vcpu>x</vcpu>".write(toFile: broken, atomically: true, encoding: .utf8)
        let refused = try await c.doze(["submit", broken, "--wait"])
        #expect(refused.status != 0, "\(refused)")
        #expect(refused.stderr.contains("broken.xml") && refused.stderr.contains("invalid libVirtTemplate"), "\(refused)")
        let text = c.dir.file("notes.txt")
        try "just some notes\n".write(toFile: text, atomically: true, encoding: .utf8)
        let notXML = try await c.doze(["submit", text])
        #expect(notXML.status != 0 && notXML.stderr.contains("not a libvirt domain"), "\(notXML)")

        // Suspend, show, resume, destroy; several ids at once, one line each.
        let suspended = try await c.doze(["vm", "suspend", "demo-1", "demo-2"])
        #expect(suspended.status == 0, "\(suspended)")
        #expect(suspended.stdout == "demo-1: PAUSED\ndemo-2: PAUSED\n", "\(suspended)")
        let again = try await c.doze(["vm", "suspend", "demo-1"])
        #expect(again.status != 0 && again.stderr.contains("PAUSED"), "\(again)")
        let shown = try await c.doze(["vm", "show", "demo-1"])
        #expect(shown.status == 0 && shown.stdout.contains("status:") && shown.stdout.contains("PAUSED"), "\(shown)")
        let resumed = try await c.doze(["vm", "resume", "demo-1", "demo-2", "--json"])
        #expect(resumed.status == 0, "\(resumed)")
        let documents = try JSONDecoder().decode([VirtualMachineMetaData].self, from: Data(resumed.stdout.utf8))
        #expect(documents.map(\.status) == [.running, .running], "\(resumed)")
        let destroyed = try await c.doze(["vm", "destroy", "demo-3"])
        #expect(destroyed.status == 0 && destroyed.stdout == "demo-3: destroyed\n", "\(destroyed)")

        // Unknown ids: an error naming the id; the other ids are still handled.
        let unknown = try await c.doze(["vm", "show", "nosuch"])
        #expect(unknown.status != 0 && unknown.stderr.contains("nosuch"), "\(unknown)")
        let mixed = try await c.doze(["vm", "reboot", "nosuch", "demo-2"])
        #expect(mixed.status != 0, "\(mixed)")
        #expect(mixed.stderr.contains("nosuch") && mixed.stdout == "demo-2: RUNNING\n", "\(mixed)")
    }

    @Test func errorsBeforeAnyClusterAnswers() async throws {
        let dir = try TemporaryDirectory(prefix: "doze-client")
        defer { dir.remove() }
        let nobody = try ClosedPort()   // a port that refuses connections
        defer { withExtendedLifetime(nobody) {} }
        // An unreadable template: said before any network call.
        let missing = try await Self.doze(["submit", dir.file("nothing.xml"), "--bootstrap", nobody.address], in: dir)
        #expect(missing.status != 0, "\(missing)")
        #expect(missing.stderr.contains("cannot read template") && missing.stderr.contains("nothing.xml"), "\(missing)")
        #expect(!missing.stderr.contains("cannot reach"), "\(missing)")
        // A bootstrap nobody runs, named through DOZE_BOOTSTRAP.
        let vm = dir.file("vm.xml")
        try TestHostFile.domainXML(name: "vm").write(toFile: vm, atomically: true, encoding: .utf8)
        for arguments in [["submit", vm], ["vm", "list"]] {
            let down = try await Self.doze(arguments, in: dir, environment: ["DOZE_BOOTSTRAP": nobody.address])
            #expect(down.status != 0, "\(down)")
            #expect(down.stderr.contains("cannot reach the bootstrap at \(nobody.address)"), "\(down)")
        }
        // Copies need a name to number.
        let nameless = dir.file("nameless.xml")
        try "<domain type='kvm'><memory>1024</memory></domain>".write(toFile: nameless, atomically: true, encoding: .utf8)
        let unnamed = try await Self.doze(["submit", nameless, "--count", "2", "--bootstrap", nobody.address], in: dir)
        #expect(unnamed.status != 0 && unnamed.stderr.contains("no <name>"), "\(unnamed)")
    }
}
}
