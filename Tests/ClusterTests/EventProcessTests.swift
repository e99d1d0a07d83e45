import AsyncHTTPClient
import ClusterCore
import ClusterTestKit
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1
import Testing

extension ProcessTests {
/// The events stream against real `doze` processes on loopback: `GET /v1/events` (long-poll and server-sent events,
/// through the bootstrap), `doze events`, and, on etcd, a `kill -9` of the leader in the middle.
@Suite(.serialized) struct EventProcessTests {
    static func template(_ name: String) -> String {
        #"{"virtualMachineTemplates":[{"libVirtTemplate":"<domain type='test'><name>\#(name)</name><memory unit='MiB'>128</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>"}]}"#
    }

    /// Every kept event, read a page at a time with `since`.
    static func allEvents(_ c: TestCluster, since start: Int64? = nil) async throws -> [ClusterEvent] {
        var since = start, events: [ClusterEvent] = []
        while true {
            let (status, body) = try await c.call(.GET, c.bootstrap, "/v1/events" + (since.map { "?since=\($0)" } ?? ""))
            guard status == 200 else { throw TimeoutError(what: "events answered \(status): \(body)") }
            let page = try JSONDecoder().decode(EventPage.self, from: Data(body.utf8))
            events += page.events
            since = page.resume(after: since)
            if page.events.isEmpty || (since ?? 0) >= page.latestRevision { return events }
        }
    }

    /// The leader has taken its first view: what happens from now on is an event (before, it is part of that view).
    static func leaderWatches(_ c: TestCluster) async throws {
        try await eventually(.seconds(10), "the leader to take its first view") {
            let (status, body) = try await c.call(.GET, c.bootstrap, "/v1/events?since=0")
            return status == 200 && (try? JSONDecoder().decode(EventPage.self, from: Data(body.utf8)))?.watching == true
        }
    }

    static func submitAndWait(_ c: TestCluster, _ vm: String) async throws -> String {
        let (status, accepted) = try await c.call(.POST, c.bootstrap, "/v1/virtual-clusters", body: template(vm))
        #expect(status == 202, "\(accepted)")
        let task = try JSONDecoder().decode([String: String].self, from: Data(accepted.utf8))["taskId"] ?? ""
        let (_, done) = try await c.call(.GET, c.bootstrap, "/v1/virtual-clusters/\(task)?wait=20", timeout: .seconds(40))
        #expect(done.contains("RUNNING"), "\(done)")
        return task
    }

    /// `read()` again every 100 ms until `done` holds of its value, for at most `limit`.
    static func polled<T: Sendable>(_ limit: Duration, _ what: String, _ read: @escaping @Sendable () async throws -> T,
                                    until done: @escaping @Sendable (T) -> Bool) async throws -> T {
        let deadline = ContinuousClock.now + limit
        while true {
            let value = try await read()
            if done(value) { return value }
            guard ContinuousClock.now < deadline else { throw TimeoutError(what: what) }
            try await Task.sleep(for: .milliseconds(100))
        }
    }

    static func expectIncreasing(_ events: [ClusterEvent], _ what: String) {
        let revisions = events.map(\.revision)
        #expect(zip(revisions, revisions.dropFirst()).allSatisfy { $0 < $1 }, "\(what): revisions not strictly increasing: \(revisions)")
    }

    @Test func aSubmissionShowsItsPlacementThenRunningThenItsEndThroughLongPollStreamAndCLI() async throws {
        let c = try TestCluster(prefix: "doze-events")
        defer { c.stop() }
        try await c.startBootstrap()
        c.managerArguments = ["--vm-subnet", "10.82.0.0/24"]
        for gm in ["gm1", "gm2"] { try c.startManager(gm) }
        for lc in ["lc1", "lc2"] { try c.startController(lc) }
        try await eventually(.seconds(20), "the hierarchy to form") {
            guard let tree = await c.hierarchy(), tree.groupLeader != nil else { return false }
            return tree.groupManagerDescriptions.reduce(0) { $0 + $1.localControllers.count } == 2
        }
        try await Self.leaderWatches(c)
        let before = try await Self.allEvents(c)
        let mark = before.last?.revision ?? 0
        #expect(before.first?.kind == .leaderElected, "\(before.map(\.kind))")

        // A long-poll parked before the VM exists returns as soon as something happens.
        async let parked = c.call(.GET, c.bootstrap, "/v1/events?since=\(mark)&wait=30", timeout: .seconds(40))
        let task = try await Self.submitAndWait(c, "ev1")
        let (parkedStatus, parkedBody) = try await parked
        #expect(parkedStatus == 200)
        let woken = try JSONDecoder().decode(EventPage.self, from: Data(parkedBody.utf8))
        #expect(!woken.events.isEmpty && woken.events.allSatisfy { $0.revision > mark }, "\(parkedBody)")

        let events = try await Self.polled(.seconds(10), "placement, RUNNING and the task's end", { try await Self.allEvents(c, since: mark) },
                                           until: { $0.contains { $0.kind == .taskFinished && $0.task == task } })
        Self.expectIncreasing(events, "since=\(mark)")
        let placed = try #require(events.firstIndex { $0.kind == .vmPlaced && $0.vm == "ev1" }, "\(events.map(\.kind))")
        let running = try #require(events.firstIndex { $0.kind == .vmRunning && $0.vm == "ev1" }, "\(events.map(\.kind))")
        let finished = try #require(events.firstIndex { $0.kind == .taskFinished && $0.task == task })
        #expect(placed < running && running < finished, "\(events.map { "\($0.revision) \($0.kind)" })")
        #expect(events[placed].task == task && events[placed].host != nil && events[running].host == events[placed].host)
        #expect(events[finished].outcome == "succeeded" && !events[finished].time.isEmpty)

        // Bad input is refused with the reason; a plain manager refuses, naming the leader.
        let (bad, badBody) = try await c.call(.GET, c.bootstrap, "/v1/events?since=yesterday")
        #expect(bad == 400 && badBody.contains("since must be an event revision"), "\(badBody)")

        // Server-sent events through the bootstrap, resumed with Last-Event-ID: exactly the events after it.
        var request = HTTPClientRequest(url: "http://\(c.bootstrap)/v1/events")
        request.headers.add(name: "Accept", value: "text/event-stream")
        request.headers.add(name: "Last-Event-ID", value: "\(mark)")
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        #expect(response.headers.first(name: "Content-Type") == "text/event-stream")
        let text = try await withTimeout(.seconds(15), "the event stream") {
            var text = ""
            for try await chunk in response.body {
                text += String(buffer: chunk)
                if text.contains("\"task\":\"\(task)\"") && text.contains("task.finished") { break }
            }
            return text
        }
        let ids = text.split(separator: "\n").filter { $0.hasPrefix("id: ") }.compactMap { Int64($0.dropFirst(4)) }
        let common = min(ids.count, events.count)
        #expect(common > 0 && ids.prefix(common) == events.map(\.revision).prefix(common), "\(ids) vs \(events.map(\.revision))")

        // The CLI: one line per event, the kinds readable.
        let cli = try await ClientProcessTests.doze(["events", "--since", "\(mark)", "--bootstrap", c.bootstrap], in: c.dir)
        #expect(cli.status == 0, "\(cli)")
        let lines = cli.stdout.split(separator: "\n")
        #expect(lines.contains { $0.contains("vm.placed") && $0.contains("vm=ev1") && $0.contains("task=\(task)") }, "\(cli)")
        #expect(lines.contains { $0.contains("vm.running") && $0.contains("vm=ev1") && $0.contains("status=RUNNING") }, "\(cli)")
        #expect(lines.first.map { $0.hasPrefix(String(events[0].revision)) } == true, "\(cli)")
        // --tail N: the last N kept; --vm and --count: one VM's, stopping after N.
        let kept = try await Self.allEvents(c)
        let tail = try await ClientProcessTests.doze(["events", "--tail", "2", "--json", "--bootstrap", c.bootstrap], in: c.dir)
        let tailed = try tail.stdout.split(separator: "\n").map { try JSONDecoder().decode(ClusterEvent.self, from: Data($0.utf8)) }
        #expect(tailed.count == 2 && tailed.first == kept[kept.count - 2], "\(tail)")
        let one = try await ClientProcessTests.doze(["events", "--vm", "ev1", "--count", "1", "--follow", "--bootstrap", c.bootstrap], in: c.dir)
        #expect(one.status == 0 && one.stdout.split(separator: "\n").count == 1 && one.stdout.contains("vm.placed"), "\(one)")
        let json = try await ClientProcessTests.doze(["events", "--since", "\(mark)", "--json", "--bootstrap", c.bootstrap], in: c.dir)
        let decoded = try json.stdout.split(separator: "\n").map { try JSONDecoder().decode(ClusterEvent.self, from: Data($0.utf8)) }
        #expect(Array(decoded.prefix(events.count)) == events, "\(json)")
    }

    @Test func aMigrationADrainAndADestroyShowAsEventsWithTheirHosts() async throws {
        let c = try TestCluster(prefix: "doze-events-moves")
        defer { c.stop() }
        try await c.startBootstrap()
        c.managerArguments = ["--vm-subnet", "10.87.0.0/24"]
        for gm in ["gm1", "gm2"] { try c.startManager(gm) }
        for lc in ["lc1", "lc2"] { try c.startController(lc) }
        try await eventually(.seconds(20), "the hierarchy to form") {
            guard let tree = await c.hierarchy(), tree.groupLeader != nil else { return false }
            return tree.groupManagerDescriptions.reduce(0) { $0 + $1.localControllers.count } == 2
        }
        try await Self.leaderWatches(c)
        _ = try await Self.submitAndWait(c, "mv1")
        let placed = try await Self.polled(.seconds(10), "mv1 placed", { try await Self.allEvents(c) },
                                           until: { $0.contains { $0.kind == .vmRunning && $0.vm == "mv1" } })
        let source = try #require(placed.last { $0.kind == .vmRunning && $0.vm == "mv1" }?.host)
        let destination = try #require([c.controllerID("lc1"), c.controllerID("lc2")].compactMap { $0 }.first { $0 != source })
        let mark = placed.last!.revision

        let (moved, movedBody) = try await c.call(.POST, c.bootstrap, "/v1/migrations", body: #"{"vm":"mv1","to":"\#(destination)"}"#)
        #expect(moved == 202, "\(movedBody)")
        let migrated = try await Self.polled(.seconds(20), "the migration's end", { try await Self.allEvents(c, since: mark) },
                                             until: { $0.contains { $0.kind == .migrationFinished || $0.kind == .migrationFailed } })
        let started = try #require(migrated.first { $0.kind == .migrationStarted }, "\(migrated.map(\.kind))")
        let finished = try #require(migrated.first { $0.kind == .migrationFinished }, "\(migrated.map { "\($0.kind) \($0.detail ?? "")" })")
        #expect(started.revision < finished.revision && started.vm == "mv1" && finished.migration == started.migration)
        #expect(finished.source == source && finished.destination == destination && finished.durationMs != nil, "\(finished)")

        // A drain of the VM's new host: drained, and the VM moves back; undrained.
        let (drain, drainBody) = try await c.call(.POST, c.bootstrap, "/v1/hosts/\(destination)/drain", body: "", timeout: .seconds(60))
        #expect(drain == 200, "\(drainBody)")
        // The drained flag reaches the leader with the summaries: an undrain before that would never be seen drained.
        _ = try await Self.polled(.seconds(10), "host.drained", { try await Self.allEvents(c, since: finished.revision) },
                                  until: { $0.contains { $0.kind == .hostDrained } })
        let (undrain, undrainBody) = try await c.call(.POST, c.bootstrap, "/v1/hosts/\(destination)/undrain", body: "")
        #expect(undrain == 200, "\(undrainBody)")
        let (destroyed, destroyedBody) = try await c.call(.POST, c.bootstrap, "/v1/vms/mv1/destroy", body: "")
        #expect(destroyed == 200, "\(destroyedBody)")
        let later = try await Self.polled(.seconds(20), "drain, undrain and destroy", { try await Self.allEvents(c, since: finished.revision) },
                                          until: { events in [.hostDrained, .hostUndrained, .vmDestroyed].allSatisfy { kind in events.contains { $0.kind == kind } } })
        let kinds = later.map(\.kind)
        #expect(later.first { $0.kind == .hostDrained }?.host == destination && later.first { $0.kind == .hostUndrained }?.host == destination)
        #expect(later.contains { $0.kind == .migrationFinished && $0.source == destination && $0.detail == nil }, "\(kinds)")
        #expect(later.first { $0.kind == .migrationStarted }?.detail?.hasPrefix("drain") == true, "\(later)")
        #expect(kinds.firstIndex(of: .hostDrained)! < kinds.firstIndex(of: .hostUndrained)!, "\(kinds)")
        #expect(later.last { $0.kind == .vmDestroyed }?.vm == "mv1" && kinds.last == .vmDestroyed, "\(kinds)")
    }

    @Test func aTenantsTokenSeesOnlyItsOwnVMsEventsByLongPollAndStream() async throws {
        let c = try AuthProcessTests.Cluster()
        defer { c.stop() }
        try await c.up()
        @Sendable func page(_ token: String, _ query: String = "") async throws -> EventPage {
            let (status, body) = try await c.api(.GET, "/v1/events" + query, token: token)
            guard status == 200 else { throw TimeoutError(what: "events answered \(status): \(body)") }
            return try JSONDecoder().decode(EventPage.self, from: Data(body.utf8))
        }
        try await eventually(.seconds(10), "the leader's first view") { try await page(c.adminToken).watching == true }
        #expect(try await c.api(.GET, "/v1/events", token: nil).0 == 401)
        let (created, tenantBody) = try await c.api(.POST, "/v1/tenants", #"{"name":"blue"}"#, token: c.adminToken)
        #expect(created == 201, "\(tenantBody)")
        let blue = try #require(try await c.newToken(tenant: "blue").token)
        #expect(try await c.submit("bluevm", token: blue).0 == 200)
        #expect(try await c.submit("adminvm", token: c.adminToken).0 == 200)
        let all = try await Self.polled(.seconds(10), "both VMs running in the admin's events", { try await page(c.adminToken) },
                                        until: { p in ["bluevm", "adminvm"].allSatisfy { vm in p.events.contains { $0.kind == .vmRunning && $0.vm == vm } } })
        #expect(all.events.contains { $0.kind.isInfrastructure })
        #expect(all.events.first { $0.vm == "bluevm" && $0.kind == .vmRunning }?.tenant == "blue")
        // Blue's page: only blue's VM (placement, RUNNING) and task, nothing of the admin's or the infrastructure's.
        let own = try await page(blue)
        #expect(!own.events.isEmpty && own.events.allSatisfy { $0.tenant == "blue" && !$0.kind.isInfrastructure }, "\(own.events)")
        #expect(Set(own.events.compactMap(\.vm)) == ["bluevm"] && own.events.contains { $0.kind == .taskFinished })
        #expect(own.resume(after: nil) == all.latestRevision, "a tenant resumes past the events it does not see")
        // A parked long-poll of blue's is not answered by the admin's VM, and is by blue's own.
        let mark = own.resume(after: nil)!
        async let parked = c.api(.GET, "/v1/events?since=\(mark)&wait=20", token: blue)
        try await Task.sleep(for: .milliseconds(300))
        #expect(try await c.api(.POST, "/v1/vms/adminvm/suspend", token: c.adminToken).0 == 200)
        try await Task.sleep(for: .seconds(1))
        #expect(try await c.api(.POST, "/v1/vms/bluevm/suspend", token: blue).0 == 200)
        let (parkedStatus, parkedBody) = try await parked
        let woken = try JSONDecoder().decode(EventPage.self, from: Data(parkedBody.utf8))
        #expect(parkedStatus == 200 && woken.events.map(\.kind) == [.vmSuspended] && woken.events.first?.vm == "bluevm", "\(parkedBody)")
        // The stream through the bootstrap keeps blue's token: blue's events only.
        var request = HTTPClientRequest(url: "http://\(c.bootstrap)/v1/events")
        request.headers.add(name: "Accept", value: "text/event-stream")
        request.headers.add(name: "Authorization", value: "Bearer \(blue)")
        let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
        let text = try await withTimeout(.seconds(15), "blue's event stream") {
            var text = ""
            for try await chunk in response.body {
                text += String(buffer: chunk)
                if text.contains("vm.suspended") { break }
            }
            return text
        }
        let streamed = text.split(separator: "\n").filter { $0.hasPrefix("data: ") }
            .compactMap { try? JSONDecoder().decode(ClusterEvent.self, from: Data($0.dropFirst(6).utf8)) }
        #expect(!streamed.isEmpty && streamed.allSatisfy { $0.tenant == "blue" && $0.vm != "adminvm" && !$0.kind.isInfrastructure }, "\(text)")
    }

    @Test func onTheDirectoryStoreOldRevisionsAreGoneWith410AndANewLeaderKeepsTheLogItsCounterAndItsFloor() async throws {
        let c = try TestCluster(prefix: "doze-events-dir")
        defer { c.stop() }
        try await c.startBootstrap()
        c.managerArguments = ["--vm-subnet", "10.85.0.0/24", "--events-kept", "10"]
        for gm in ["gm1", "gm2", "gm3"] { try c.startManager(gm) }
        for lc in ["lc1", "lc2"] { try c.startController(lc) }
        try await eventually(.seconds(20), "the hierarchy to form") {
            guard let tree = await c.hierarchy(), tree.groupLeader != nil else { return false }
            return tree.groupManagerDescriptions.reduce(0) { $0 + $1.localControllers.count } == 2
        }
        try await Self.leaderWatches(c)
        // Five VMs: five placements, five RUNNING, one end, past the ten kept (plus a tenth of slack).
        let templates = (1...5).map { #"{"libVirtTemplate":"<domain type='test'><name>cp\#($0)</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>"}"# }
        let (status, accepted) = try await c.call(.POST, c.bootstrap, "/v1/virtual-clusters",
                                                  body: #"{"virtualMachineTemplates":["# + templates.joined(separator: ",") + "]}")
        #expect(status == 202, "\(accepted)")
        struct Gone: Decodable {
            struct Detail: Decodable { var code: String; var message: String; var oldestRevision: Int64?; var resumeSince: Int64 }
            var error: Detail
        }
        let gone = try await Self.polled(.seconds(15), "a compaction", {
            try await c.call(.GET, c.bootstrap, "/v1/events?since=0")
        }, until: { $0.status == 410 })
        let detail = try JSONDecoder().decode(Gone.self, from: Data(gone.body.utf8)).error
        #expect(detail.code == "gone" && detail.resumeSince > 0 && detail.oldestRevision == detail.resumeSince + 1, "\(gone.body)")
        let kept = try await Self.polled(.seconds(15), "the task's end", { try await Self.allEvents(c, since: detail.resumeSince) },
                                         until: { $0.contains { $0.kind == .taskFinished } })
        #expect(kept.first?.revision == detail.oldestRevision && kept.count <= 11, "\(kept.map(\.revision))")
        // The directory store counts: no revision skipped.
        #expect(zip(kept, kept.dropFirst()).allSatisfy { $0.revision + 1 == $1.revision }, "\(kept.map(\.revision))")
        let refused = try await ClientProcessTests.doze(["events", "--since", "0", "--bootstrap", c.bootstrap], in: c.dir)
        #expect(refused.status != 0 && refused.stderr.contains("compacted away"), "\(refused)")

        // kill -9 the leader: the next one reads the log and the floor back and goes on counting.
        let oldLeader = try #require(await c.hierarchy()?.groupLeader)
        c.processes[try #require(c.name(ofManager: oldLeader.id))]?.kill9()
        try await eventually(.seconds(10), "a new leader") {
            guard let leader = await c.hierarchy()?.groupLeader else { return false }
            return leader.id != oldLeader.id
        }
        let after = try await Self.polled(.seconds(15), "the new leader's election in the events", {
            try await Self.allEvents(c)
        }, until: { $0.contains { $0.kind == .leaderElected && $0.leader != oldLeader.id } })
        let carried = after.filter { $0.revision <= kept.last!.revision }
        #expect(carried == Array(kept.suffix(carried.count)) && !carried.isEmpty, "\(after.map(\.revision)) vs \(kept.map(\.revision))")
        let elected = try #require(after.first { $0.kind == .leaderElected && $0.leader != oldLeader.id })
        #expect(elected.revision > kept.last!.revision)
        #expect(zip(after, after.dropFirst()).allSatisfy { $0.revision + 1 == $1.revision }, "\(after.map(\.revision))")
        let (stillGone, _) = try await c.call(.GET, c.bootstrap, "/v1/events?since=0")
        #expect(stillGone == 410)
    }

    @Test(.enabled(if: EtcdProcess.isInstalled, "needs /usr/bin/etcd (apt-get install etcd-server)"))
    func onEtcdANewLeaderGoesOnWithTheSameRevisionsAndFollowKeepsPrinting() async throws {
        let c = try TestCluster(prefix: "doze-events-etcd")
        defer { c.stop() }
        let etcd = try EtcdProcess(directory: c.dir.path)
        defer { etcd.stop() }
        try await etcd.waitHealthy()
        try await c.startBootstrap()
        for gm in ["gm1", "gm2", "gm3"] {
            try c.start(gm, ["gm", "--listen", "127.0.0.1:0", "--state-dir", c.dir.file(gm), "--etcd", etcd.clientURL,
                             "--etcd-prefix", "/doze/events", "--lease-ttl", "2", "--vm-subnet", "10.83.0.0/24"] + c.common())
        }
        for lc in ["lc1", "lc2"] { try c.startController(lc) }
        try await eventually(.seconds(20), "the hierarchy to form") {
            guard let tree = await c.hierarchy(), tree.groupLeader != nil else { return false }
            return tree.groupManagerDescriptions.reduce(0) { $0 + $1.localControllers.count } == 2
        }
        try await Self.leaderWatches(c)
        // `doze events --follow` from the start, across what follows.
        let follower = try DozeProcess(arguments: ["events", "--follow", "--json", "--timeout", "90", "--bootstrap", c.bootstrap],
                                       logPath: c.dir.file("follow.log"))
        defer { follower.kill9() }
        _ = try await Self.submitAndWait(c, "et1")
        let first = try await Self.polled(.seconds(10), "et1 RUNNING in the events", { try await Self.allEvents(c) },
                                          until: { $0.contains { $0.kind == .vmRunning && $0.vm == "et1" } })
        Self.expectIncreasing(first, "before the failover")
        let oldLeader = try #require(await c.hierarchy()?.groupLeader)

        // A server-sent events stream through the bootstrap, open across the failover, until et2's task ends.
        let bootstrap = c.bootstrap
        let stream = Task { () async throws -> String in
            try await withTimeout(.seconds(60), "the event stream across the failover") {
                var request = HTTPClientRequest(url: "http://\(bootstrap)/v1/events")
                request.headers.add(name: "Accept", value: "text/event-stream")
                let response = try await HTTPClient.shared.execute(request, timeout: .seconds(90))
                var text = ""
                for try await chunk in response.body {
                    text += String(buffer: chunk)
                    if text.components(separatedBy: "\"kind\":\"task.finished\"").count > 2 { break }
                }
                return text
            }
        }
        let name = try #require(c.name(ofManager: oldLeader.id))
        c.processes[name]?.kill9()
        try await eventually(.seconds(10), "a new leader") {
            guard let leader = await c.hierarchy()?.groupLeader else { return false }
            return leader.id != oldLeader.id && leader.term > oldLeader.term
        }
        try await Self.leaderWatches(c)
        let newTask = try await Self.submitAndWait(c, "et2")
        let after = try await Self.polled(.seconds(15), "et2's events from the new leader", { try await Self.allEvents(c) },
                                          until: { $0.contains { $0.kind == .taskFinished && $0.task == newTask } })
        // The old leader's events are all still there, unchanged, and the new leader's come after them.
        Self.expectIncreasing(after, "after the failover")
        #expect(zip(after, after.dropFirst()).contains { $0.revision + 1 < $1.revision }, "etcd's revisions are shared with the other records: \(after.map(\.revision))")
        #expect(Array(after.prefix(first.count)) == first, "the new leader lost or changed events")
        let elected = after.filter { $0.kind == .leaderElected }
        #expect(elected.count == 2 && elected[1].term! > elected[0].term! && elected[1].revision > first.last!.revision,
                "\(elected)")
        // Resuming from the last event seen before the failover: nothing missed, nothing twice.
        let resumed = try await Self.allEvents(c, since: first.last!.revision)
        #expect(Array(resumed.prefix(after.count - first.count)) == Array(after.dropFirst(first.count)))

        let streamed = try await stream.value.split(separator: "\n").filter { $0.hasPrefix("id: ") }.compactMap { Int64($0.dropFirst(4)) }
        #expect(Array(streamed.prefix(after.count)) == after.map(\.revision), "\(streamed) vs \(after.map(\.revision))")

        // The follower printed every event once, in order, across the failover.
        let printed = try await Self.polled(.seconds(20), "doze events --follow to print et2's end", {
            follower.log.split(separator: "\n").filter { $0.hasPrefix("{") }
                .compactMap { try? JSONDecoder().decode(ClusterEvent.self, from: Data($0.utf8)) }
        }, until: { $0.contains { $0.kind == .taskFinished && $0.task == newTask } })
        Self.expectIncreasing(printed, "doze events --follow")
        #expect(Array(printed.prefix(after.count)) == after, "\(printed.map(\.revision)) vs \(after.map(\.revision))\n\(follower.log)")
    }
}
}
