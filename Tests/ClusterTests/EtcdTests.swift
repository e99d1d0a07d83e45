import ClusterCore
@testable import ClusterNode
import ClusterTestKit
import ClusterWire
import Foundation
import Logging
import NIOHTTP1
import Testing

extension ProcessTests {
/// The etcd backend against a real etcd (Debian's etcd-server) on loopback: elections, self-fencing, fenced records,
/// and group managers electing on it as real processes.
@Suite(.serialized, .enabled(if: EtcdProcess.isInstalled, "needs /usr/bin/etcd (apt-get install etcd-server)"))
struct EtcdTests {
    static let log = Logger(label: "test.etcd")

    @Test func termsGrowAndADeposedLeadersWritesAreFencedOff() async throws {
        let dir = try TemporaryDirectory(prefix: "doze-etcd")
        defer { dir.remove() }
        let etcd = try EtcdProcess(directory: dir.path)
        defer { etcd.stop() }
        try await etcd.waitHealthy()
        let client = EtcdClient(endpoints: [etcd.clientURL])
        let election = EtcdElection(client: client, prefix: "/doze/t", ttlSeconds: 2, logger: Self.log)

        let first = try await election.campaign(candidate: "gm-a")
        // A second candidate waits while the first leads.
        let second = Task { try await election.campaign(candidate: "gm-b") }
        try await Task.sleep(for: .milliseconds(300))
        let holder = try await client.get("/doze/t/leader").kv?.value
        #expect(holder == Data("gm-a".utf8))

        let old = EtcdRecordStore(client: client, prefix: "/doze/t", term: Int64(first.term), logger: Self.log)
        var pool = try IPPool(subnet: "10.9.0.0/24")
        _ = try pool.allocate(for: "vm-1")
        try old.saveIPPool(pool)
        try await old.flush()
        #expect(try await old.loadIPPool()?.allocated.count == 1)

        // Resigning hands over at once; the new term is higher.
        let started = ContinuousClock.now
        await first.resign()
        let next = try await second.value
        #expect(next.term > first.term)
        #expect(started.duration(to: .now) < .seconds(1), "a resign hands over within one poll")

        // The deposed leader's writes never reach the records.
        _ = try pool.allocate(for: "vm-2")
        try old.saveIPPool(pool)
        await #expect(throws: DozeError.self) { try await old.flush() }
        let current = EtcdRecordStore(client: client, prefix: "/doze/t", term: Int64(next.term), logger: Self.log)
        #expect(try await current.loadIPPool()?.allocated.count == 1, "the fenced write was not applied")
        try current.saveTask(TaskRecord(id: "t1", createdAt: 1, vms: []))
        try await current.flush()
        #expect(try await current.loadTasks().map(\.id) == ["t1"])
        await next.resign()
    }

    @Test func aLeaderThatCannotRenewItsLeaseStepsDownBeforeItExpires() async throws {
        let dir = try TemporaryDirectory(prefix: "doze-etcd")
        defer { dir.remove() }
        let etcd = try EtcdProcess(directory: dir.path)
        defer { etcd.stop() }
        try await etcd.waitHealthy()
        let client = EtcdClient(endpoints: [etcd.clientURL])
        let election = EtcdElection(client: client, prefix: "/doze/s", ttlSeconds: 2, logger: Self.log)
        let leader = try await election.campaign(candidate: "gm-a")
        let won = ContinuousClock.now
        // etcd frozen: no keep-alive is acknowledged. The leader must give up within the TTL, not after it.
        etcd.pause()
        await leader.lost()
        let after = won.duration(to: .now)
        etcd.resume()
        #expect(after < .seconds(2), "stepped down after \(after), the lease TTL is 2 s")
        #expect(after > .seconds(1), "stepped down after \(after), before the lease was in doubt")
    }

    @Test func managersElectOnEtcdAndANewLeaderAnswersEveryTask() async throws {
        let c = try TestCluster(prefix: "doze-etcd-cluster")
        defer { c.stop() }
        let etcd = try EtcdProcess(directory: c.dir.path)
        defer { etcd.stop() }
        try await etcd.waitHealthy()
        try await c.startBootstrap()
        for gm in ["gm1", "gm2", "gm3"] {
            try c.start(gm, ["gm", "--listen", "127.0.0.1:0", "--state-dir", c.dir.file(gm), "--etcd", etcd.clientURL,
                             "--etcd-prefix", "/doze/test", "--lease-ttl", "2", "--vm-subnet", "10.81.0.0/24"] + c.common())
        }
        for lc in ["lc1", "lc2"] { try c.startController(lc) }
        try await eventually(.seconds(20), "the hierarchy to form") {
            guard let tree = await c.hierarchy(), tree.groupLeader != nil else { return false }
            return tree.groupManagerDescriptions.reduce(0) { $0 + $1.localControllers.count } == 2
        }
        let firstLeader = try #require(await c.hierarchy()?.groupLeader)
        let body = #"{"virtualMachineTemplates":[{"libVirtTemplate":"<domain type='test'><name>e1</name><memory unit='MiB'>128</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>"}]}"#
        let (status, task) = try await c.call(.POST, c.bootstrap, "/bootstrap?startVirtualCluster", body: body)
        #expect(status == 200, "\(task)")
        let (_, done) = try await c.call(.POST, c.bootstrap, "/bootstrap?getVirtualClusterResponse&wait=10", body: task)
        #expect(done.contains("RUNNING") && done.contains("10.81.0."), "\(done)")

        // kill -9 the leader: another manager wins on etcd within the lease TTL (+ polling), with a higher term,
        // and answers the task id from the records on etcd.
        let name = try #require(c.name(ofManager: firstLeader.id))
        let killed = ContinuousClock.now
        c.processes[name]?.kill9()
        try await eventually(.seconds(10), "a new leader") {
            guard let l = await c.hierarchy()?.groupLeader else { return false }
            return l.id != firstLeader.id && l.term > firstLeader.term
        }
        let gap = killed.duration(to: .now)
        #expect(gap < .seconds(3) + .milliseconds(1500), "no leader for \(gap); the lease TTL is 2 s")
        let (again, answer) = try await c.call(.POST, c.bootstrap, "/bootstrap?getVirtualClusterResponse&wait=10", body: task)
        #expect(again == 200 && answer.contains("RUNNING") && answer.contains("\"e1\""), "\(again) \(answer)\n\(c.logs())")
        // The pool came along: the next VM gets the next address, not one handed out before.
        let second = body.replacingOccurrences(of: "<name>e1</name>", with: "<name>e2</name>")
        let (_, task2) = try await c.call(.POST, c.bootstrap, "/bootstrap?startVirtualCluster", body: second)
        let (_, done2) = try await c.call(.POST, c.bootstrap, "/bootstrap?getVirtualClusterResponse&wait=10", body: task2)
        let first = try JSONDecoder().decode(VirtualClusterSubmissionResponse.self, from: Data(done.utf8)).virtualMachineMetaData[0].ipAddress
        let next = try JSONDecoder().decode(VirtualClusterSubmissionResponse.self, from: Data(done2.utf8)).virtualMachineMetaData[0].ipAddress
        #expect(!first.isEmpty && !next.isEmpty && first != next, "\(first) \(next)")
    }
}
}
