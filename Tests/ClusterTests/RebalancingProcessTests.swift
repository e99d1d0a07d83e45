import AsyncHTTPClient
import ClusterCore
import ClusterTestKit
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1
import Testing

extension ProcessTests {
/// Issue 12 on real processes: controllers sample use, managers window it, the leader's rebalancer moves a VM off
/// a host whose declared load crosses the threshold, through the migration path, and records why.
@Suite(.serialized) struct RebalancingProcessTests {
    final class Cluster: TestCluster, @unchecked Sendable {
        init() throws { try super.init(prefix: "doze-rebalance") }

        /// One leader, two managers, three 8-CPU 16 GiB controllers; fast samples, windows and rounds.
        func up(rebalance: [String] = []) async throws {
            try await startBootstrap()
            managerArguments = ["--vm-subnet", "10.80.0.0/16", "--usage-estimator", "average:1.5", "--rebalance-interval", "0.5",
                                "--rebalance-dwell", "1"] + rebalance
            for gm in ["gm1", "gm2", "gm3"] { try startManager(gm) }
            for lc in ["lc1", "lc2", "lc3"] { try startController(lc, extra: ["--usage-interval", "0.5"]) }
            try await eventually(.seconds(20), "the hierarchy to form") {
                guard let tree = await self.hierarchy(), tree.groupLeader != nil else { return false }
                return tree.groupManagerDescriptions.reduce(0) { $0 + $1.localControllers.count } == 3
            }
        }

        func doze(_ arguments: [String], within limit: Duration = .seconds(60)) async throws -> ClientProcessTests.Outcome {
            try await ClientProcessTests.doze(arguments + ["--bootstrap", bootstrap], in: dir, within: limit)
        }

        func get<T: Decodable>(_ target: String, as type: T.Type) async throws -> T {
            let (status, body) = try await call(.GET, bootstrap, target)
            guard status == 200 else { throw TimeoutError(what: "GET \(target) answered \(status): \(body)") }
            return try JSONDecoder().decode(T.self, from: Data(body.utf8))
        }

        func host(of vm: String) async throws -> String? {
            try await get("/v1/vms/\(vm)", as: VirtualMachineMetaData.self).virtualMachineLocation.localControllerId
        }

        /// Polls `/v1/rebalancing` until `condition` holds.
        func status(within limit: Duration, _ what: String, _ condition: (RebalancingStatus) -> Bool) async throws -> RebalancingStatus {
            let deadline = ContinuousClock.now + limit
            var last: RebalancingStatus?
            while ContinuousClock.now < deadline {
                if let status = try? await get("/v1/rebalancing", as: RebalancingStatus.self) {
                    if condition(status) { return status }
                    last = status
                }
                try await Task.sleep(for: .milliseconds(200))
            }
            throw TimeoutError(what: "\(what); last status: \(String(describing: last))\n\(logs())")
        }

        /// Two 3-vCPU 7 GiB VMs on one host, both declared busy: 75% of its CPU, 85% of its memory.
        func makeHotHost() async throws -> String {
            let template = dir.file("cruncher.xml")
            try "<domain type='test'><name>cruncher</name><memory unit='MiB'>7168</memory><vcpu>3</vcpu><os><type>hvm</type></os></domain>"
                .write(toFile: template, atomically: true, encoding: .utf8)
            let submitted = try await doze(["submit", template, "--count", "2", "--wait", "--timeout", "30"])
            #expect(submitted.status == 0, "\(submitted)\n\(logs())")
            let hot = try #require(try await host(of: "cruncher-1"))
            if try await host(of: "cruncher-2") != hot {
                let moved = try await doze(["vm", "migrate", "cruncher-2", "--to", hot, "--wait"])
                #expect(moved.status == 0, "\(moved)\n\(logs())")
            }
            for vm in ["cruncher-1", "cruncher-2"] {
                let (status, body) = try await call(.POST, bootstrap, "/v1/vms/\(vm)/load", body: #"{"vcpus": 3, "memoryMiB": 7000}"#)
                #expect(status == 200 && body.contains("7000"), "\(status) \(body)")
            }
            return hot
        }
    }

    @Test func anOverloadedHostIsRelievedByAMigrationAndTheRecordSaysWhy() async throws {
        let c = try Cluster()
        defer { c.stop() }
        try await c.up()
        let hot = try await c.makeHotHost()

        let status: RebalancingStatus? = try await c.status(within: .seconds(30), "the rebalancer to move a VM off the hot host") {
            $0.moves.contains { $0.from == hot && $0.state == "completed" }
        }
        let move = try #require(status?.moves.first { $0.from == hot })
        #expect(move.reason == "overload" && move.to != hot && move.sourceMemoryFraction > 0.8, "\(move)")
        #expect(status?.moves.count == 1, "one move relieves the host: \(String(describing: status?.moves))")
        #expect(try await c.host(of: move.vm) == move.to, "the books follow the VM")
        let migration = try await c.get("/v1/migrations/\(move.migrationId ?? "?")", as: MigrationRecord.self)
        #expect(migration.reason == "overload" && migration.state == .completed, "\(migration)")

        // The figures fall back under the thresholds, on both hosts, as the managers' windows see them.
        try await eventually(.seconds(10), "the hot host's use to fall under the thresholds") {
            guard let usage = try? await c.get("/v1/hosts/\(hot)/usage", as: ClusterHostUsage.self) else { return false }
            return usage.cpuFraction < 0.8 && usage.memoryFraction < 0.8 && usage.virtualMachines.count == 1
        }
        let target = try await c.get("/v1/hosts/\(move.to)/usage", as: ClusterHostUsage.self)
        #expect(target.memoryFraction < 0.8 && target.cpuFraction < 0.8, "\(target)")
        // The moved VM's window starts afresh on its new host, from the controller's next sample.
        try await eventually(.seconds(10), "the moved VM's usage on its new host") {
            (try? await c.get("/v1/vms/\(move.vm)/usage", as: ClusterVMUsage.self)) != nil
        }
        let vm = try await c.get("/v1/vms/\(move.vm)/usage", as: ClusterVMUsage.self)
        #expect(vm.synthetic && vm.vcpusInUse == 3 && vm.memoryUsedMiB == 7000 && vm.localControllerId == move.to, "\(vm)")
        // Snooze's monitoring entry in the VM's metadata carries the same use.
        let meta = try await c.get("/v1/vms/\(move.vm)", as: VirtualMachineMetaData.self)
        let entry = try #require(meta.usedCapacity.values.first, "usedCapacity filled: \(meta)")
        #expect(entry.usedCapacity == [3, 7000 * 1024, 0, 0] && "\(entry.timeStamp)" == meta.usedCapacity.keys.first, "\(entry)")
        let hosts = try await c.get("/v1/hosts", as: HostList.self).hosts
        #expect(hosts.allSatisfy { ($0.cpuFraction ?? 1) < 0.8 && ($0.memoryFraction ?? 1) < 0.8 }, "\(hosts)")

        // The CLI shows the same.
        let shown = try await c.doze(["rebalance", "status"])
        #expect(shown.status == 0 && shown.stdout.contains("overload") && shown.stdout.contains("completed"), "\(shown)")

        // Bad input: a clear error, nothing moved.
        for (method, target, code) in [(HTTPMethod.POST, "/v1/rebalancing/bogus", 404), (.POST, "/v1/rebalancing/run-now?dryRun=maybe", 400),
                                       (.POST, "/v1/rebalancing/pause?dryRun=true", 400), (.GET, "/v1/vms/nosuch/usage", 404),
                                       (.GET, "/v1/hosts/nosuch/usage", 404)] {
            let (answer, body) = try await c.call(method, c.bootstrap, target, body: method == .POST ? "" : nil)
            #expect(answer == code && body.contains("\"error\""), "\(target): \(answer) \(body)")
        }
        let (tooMuch, body) = try await c.call(.POST, c.bootstrap, "/v1/vms/cruncher-1/load", body: #"{"vcpus": 99}"#)
        #expect(tooMuch == 400 && body.contains("more than the VM's 3 vCPU"), "\(tooMuch) \(body)")
        let (misspelt, why) = try await c.call(.POST, c.bootstrap, "/v1/vms/cruncher-1/load", body: #"{"cpus": 1}"#)
        #expect(misspelt == 400 && why.contains("unknown key 'cpus'"), "\(misspelt) \(why)")
    }

    @Test func dryRunPlansTheMoveAndMovesNothingAndPauseStopsRounds() async throws {
        let c = try Cluster()
        defer { c.stop() }
        try await c.up(rebalance: ["--rebalance", "dry-run"])
        let hot = try await c.makeHotHost()

        let status: RebalancingStatus? = try await c.status(within: .seconds(30), "a dry-run round to plan a move off the hot host") {
            $0.lastRound?.plan.contains { $0.from == hot && $0.reason == "overload" } ?? false
        }
        #expect(status?.mode == "dry-run" && status?.lastRound?.dryRun == true && status?.moves.isEmpty == true, "\(String(describing: status))")
        let first = try await c.host(of: "cruncher-1"), second = try await c.host(of: "cruncher-2")
        #expect(first == hot && second == hot, "nothing moved")
        let planned = try await c.doze(["rebalance", "run-now", "--dry-run"])
        #expect(planned.status == 0 && planned.stdout.contains("plan: cruncher-"), "\(planned)")

        let paused = try await c.doze(["rebalance", "pause"])
        #expect(paused.status == 0 && paused.stdout.contains("paused"), "\(paused)")
        let rounds = try await c.get("/v1/rebalancing", as: RebalancingStatus.self).rounds
        try await Task.sleep(for: .seconds(2))
        let later = try await c.get("/v1/rebalancing", as: RebalancingStatus.self)
        #expect(later.paused && later.rounds == rounds, "no round while paused: \(rounds) → \(later.rounds)")
        let resumed = try await c.doze(["rebalance", "resume"])
        #expect(resumed.status == 0 && resumed.stdout.contains("running"), "\(resumed)")
        try await eventually(.seconds(5), "rounds to run again") {
            (try? await c.get("/v1/rebalancing", as: RebalancingStatus.self).rounds).map { $0 > rounds } ?? false
        }
    }

    @Test func badRebalancingFlagsAreRefusedAtStart() async throws {
        let dir = try TemporaryDirectory(prefix: "doze-rebalance-flags")
        defer { dir.remove() }
        for (flags, message) in [(["--cpu-high", "1.5"], "cpu high threshold must be a fraction in (0, 1]"),
                                 (["--memory-low=-0.1"], "memory low threshold must be a fraction in [0, 1)"),
                                 (["--rebalance-dwell=-3"], "--rebalance-dwell must be a number of seconds above 0"),
                                 (["--rebalance", "sometimes"], "--rebalance must be on, off or dry-run"),
                                 (["--usage-estimator", "median:3"], "usage estimator 'median' is unknown")] {
            let outcome = try await ClientProcessTests.doze(["gm", "--state-dir", dir.file("gm"), "--election-dir", dir.file("e")] + flags,
                                                            in: dir, within: .seconds(20))
            #expect(outcome.status != 0 && outcome.stderr.contains(message), "\(flags): \(outcome)")
        }
    }
}
}
