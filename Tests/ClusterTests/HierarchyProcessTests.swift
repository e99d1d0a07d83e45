import AsyncHTTPClient
import ClusterCore
import ClusterTestKit
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1
import Testing

extension ProcessTests {
/// A whole cluster of real `doze` processes on loopback (port 0 everywhere): kill -9 the leader, a manager and a
/// controller, and check the re-election, the re-joins, and that every VM is still known afterwards.
@Suite(.serialized) struct HierarchyProcessTests {
    typealias Cluster = TestCluster

    @Test func killNineHealsTheHierarchyAndKeepsEveryVM() async throws {
        let c = try Cluster()
        defer { c.stop() }
        try await c.startBootstrap()
        for m in ["gm1", "gm2", "gm3"] { try c.startManager(m) }
        let vms = ["vm-a", "vm-b", "vm-c", "vm-d"]
        for (i, vm) in vms.enumerated() { try c.startController("lc\(i + 1)", vm: vm) }

        var tree = try await c.waitForTree(vms: vms)
        let firstLeader = try #require(tree.groupLeader)
        #expect(tree.groupManagerDescriptions.count == 2)   // the leader manages no controllers

        // The leader dies: a new leader of a higher term, every VM still known.
        let leaderName = try #require(c.name(ofManager: firstLeader.id))
        c.processes[leaderName]!.kill9()
        var clock = ContinuousClock.now
        tree = try await c.waitForTree(minTerm: firstLeader.term, vms: vms)
        let secondLeader = try #require(tree.groupLeader)
        #expect(secondLeader.id != firstLeader.id)
        print("leader kill -> new leader and all VMs known in \(ContinuousClock.now - clock)")

        // The old leader comes back: it joins as a manager under the new term.
        try c.startManager(leaderName)
        try await eventually(.seconds(10), "restarted manager joins") {
            await c.hierarchy()?.groupManagerDescriptions.contains { $0.id == firstLeader.id } == true
        }

        // The manager holding the controllers dies: they re-join the restarted one.
        let holder = try #require(tree.groupManagerDescriptions.first { !$0.localControllers.isEmpty })
        c.processes[try #require(c.name(ofManager: holder.id))]!.kill9()
        clock = ContinuousClock.now
        try await eventually(.seconds(10), "controllers re-homed") {
            guard let t = await c.hierarchy() else { return false }
            return t.groupManagerDescriptions.allSatisfy { $0.id != holder.id }
                && t.groupManagerDescriptions.flatMap { $0.localControllers.values.flatMap { $0.virtualMachineMetaData.keys } }.sorted() == vms
        }
        print("manager kill -> controllers re-joined in \(ContinuousClock.now - clock)")

        // A controller dies: its manager drops it; restarted, it comes back with its VM, to the same manager.
        func manager(of vm: String, in tree: GroupLeaderRepositoryInformation) -> String? {
            tree.groupManagerDescriptions.first { $0.localControllers.values.contains { $0.virtualMachineMetaData[vm] != nil } }?.id
        }
        let before = try #require(manager(of: "vm-a", in: try await c.waitForTree(minTerm: firstLeader.term, vms: vms)))
        c.processes["lc1"]!.kill9()
        try await c.waitForTree(minTerm: firstLeader.term, vms: Array(vms.dropFirst()))
        try c.startController("lc1", vm: "vm-a")
        let healed = try await c.waitForTree(minTerm: firstLeader.term, vms: vms)
        #expect(manager(of: "vm-a", in: healed) == before, "a restarted controller goes back to its previous manager")
    }

    /// A controller last started while its clock ran a month ahead (its peers remember that incarnation) restarts
    /// with the clock corrected: its incarnation, kept in its state directory, still grows, so its manager takes
    /// its heartbeats instead of dropping them as replays and it comes back with its VM.
    @Test func restartAfterTheClockWentBackIsHeard() async throws {
        let c = try Cluster()
        defer { c.stop() }
        let month: UInt64 = 30 * 86_400 * 1_000_000_000
        let file = c.dir.file("lc1") + "/membership/incarnation.json"
        let ahead = UInt64(Date().timeIntervalSince1970 * 1e9) + month
        try FileManager.default.createDirectory(atPath: c.dir.file("lc1") + "/membership", withIntermediateDirectories: true)
        try Data(#"{"incarnation":\#(ahead)}"#.utf8).write(to: URL(fileURLWithPath: file))
        func recorded() throws -> UInt64 {
            let object = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: file))) as? [String: Any]
            return try #require((object?["incarnation"] as? NSNumber)?.uint64Value)
        }
        try await c.startBootstrap()
        try c.startManager("gm1")
        try c.startManager("gm2")
        try c.startController("lc1", vm: "vm-a")
        _ = try await c.waitForTree(vms: ["vm-a"])
        #expect(try recorded() == ahead + 1, "the start a month ahead heartbeats with an incarnation above the recorded one")

        c.processes["lc1"]!.kill9()
        _ = try await c.waitForTree(vms: [])
        try c.startController("lc1", vm: "vm-a")
        _ = try await c.waitForTree(vms: ["vm-a"])
        #expect(try recorded() == ahead + 2, "the real clock is a month behind the last start: the incarnation still grows")
        // Joined by HTTP, it must also stay: heartbeats dropped as replays would let its manager time it out.
        try await Task.sleep(for: .seconds(3))
        _ = try await c.waitForTree(vms: ["vm-a"], within: .milliseconds(500))
    }

    @Test func multicastFindsTheLeaderWithoutABootstrap() async throws {
        let c = try Cluster()
        defer { c.stop() }
        let nobody = try ClosedPort()
        defer { withExtendedLifetime(nobody) {} }
        c.bootstrap = nobody.address   // nothing answers there: the leader can only be learnt from the group
        let group = "225.4.5.6:\(try ClosedPort().port)"   // a port free a moment ago, so no other run shares the group
        try c.start("gm1", ["gm", "--listen", "127.0.0.1:0", "--state-dir", c.dir.file("gm1"), "--election-dir", c.dir.file("el"),
                            "--multicast", group] + c.common())
        try c.start("gm2", ["gm", "--listen", "127.0.0.1:0", "--state-dir", c.dir.file("gm2"), "--election-dir", c.dir.file("el"),
                            "--multicast", group] + c.common())
        try TestHostFile.write(to: c.dir.file("h.xml"), domains: [.init(name: "mvm")])
        try c.start("lc1", ["lc", "--listen", "127.0.0.1:0", "--hypervisor", "test://" + c.dir.file("h.xml"), "--state-dir", c.dir.file("lc1"),
                            "--multicast", group] + c.common())
        let ports = [try await c.address("gm1"), try await c.address("gm2")]
        try await eventually(.seconds(10), "the controller joins through multicast discovery") {
            for address in ports {
                var request = HTTPClientRequest(url: "http://\(address)/groupmanager?getLocalControllerList")
                request.method = .GET
                guard let response = try? await HTTPClient.shared.execute(request, timeout: .seconds(1)), response.status == .ok,
                      let body = try? await response.body.collect(upTo: 1 << 20),
                      let list = try? JSONDecoder().decode(LocalControllerList.self, from: Data(body.readableBytesView)) else { continue }
                if list.localControllers.count == 1 && list.localControllers[0].virtualMachineMetaData.keys.contains("mvm") { return true }
            }
            return false
        }
    }

    @Test func forgedHeartbeatsAreDroppedNotTrusted() async throws {
        let c = try Cluster()
        defer { c.stop() }
        try await c.startBootstrap()
        try c.startManager("gm1")
        try await eventually(.seconds(10), "a leader") { await c.hierarchy()?.groupLeader != nil }
        let leader = try #require(await c.hierarchy()?.groupLeader)
        // A forged announcement (wrong secret) of a much higher term, and garbage, sent to the bootstrap.
        let forger = HeartbeatCodec(secret: "wrong")
        let forged = try forger.encode(.leader(LeaderInfo(id: "evil", term: 999, control: Endpoint(host: "127.0.0.1", port: 1),
                                                          heartbeat: Endpoint(host: "127.0.0.1", port: 1))),
                                       sender: "evil", stamp: .init(incarnation: 1, sequence: 1))
        let target = try #require(Endpoint(c.bootstrap))
        let socket = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(socket) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(target.port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        for payload in [forged, Array("DOZE1garbage".utf8), Array(repeating: 0xFF, count: 2000), []] {
            _ = withUnsafePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { sendto(socket, payload, payload.count, 0, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
        }
        try await Task.sleep(for: .milliseconds(500))
        let after = try #require(await c.hierarchy()?.groupLeader)
        #expect(after.id == leader.id && after.term == leader.term)
        // Each one was dropped and counted by reason.
        var request = HTTPClientRequest(url: "http://\(c.bootstrap)/v1/heartbeats")
        request.method = .GET
        let body = try await HTTPClient.shared.execute(request, timeout: .seconds(2)).body.collect(upTo: 1 << 16)
        let counters = try JSONDecoder().decode([String: Int].self, from: Data(body.readableBytesView))
        #expect(counters["dropped_badMAC", default: 0] >= 1, "\(counters)")      // the forged announcement
        #expect(counters["dropped_tooShort", default: 0] >= 2, "\(counters)")    // "DOZE1garbage" and the empty one
        #expect(counters["dropped_badMagic", default: 0] >= 1, "\(counters)")    // 2000 bytes of 0xFF
        #expect(counters["accepted", default: 0] > 0, "\(counters)")
        #expect(c.processes["bs"]!.process.isRunning)
    }
}
}
