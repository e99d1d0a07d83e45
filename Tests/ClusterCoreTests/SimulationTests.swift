import ClusterCore
import ClusterWire
import Testing

/// Whole clusters of the pure state machines in one process: a manual clock in 50 ms steps, an in-memory
/// network that can drop and partition, and an election store that grants leases (one holder per term, the
/// way the flock and etcd backends behave). Shells are modelled by `Sim`: it sends what the directives say.
final class Sim {
    enum Mode { case manager(GroupManagerState), leader(GroupLeaderState) }
    struct Manager { var mode: Mode; var alive = true; let info: ManagerInfo }
    struct Controller { var membership: ControllerMembership; var alive = true; let info: ControllerInfo }

    let step = Duration.milliseconds(50)
    let leaseTTL = Duration.milliseconds(1000)
    var now: MonotonicTime = .zero
    var managers: [NodeID: Manager] = [:]
    var controllers: [NodeID: Controller] = [:]
    var lease: (holder: NodeID, term: Term, expires: MonotonicTime)?
    var lastTerm: Term = 0
    /// Groups that can talk among themselves only; the election store sits with the first group.
    var partition: [Set<NodeID>] = []
    var dropEvery = 0          // drop every Nth message (deterministic loss)
    var delaySteps = 0         // every message arrives this many steps late
    private var sentCount = 0
    /// Datagrams in flight, as bytes: every message goes through the real codec (MAC) and replay guard.
    private var inbox: [(at: MonotonicTime, to: NodeID, bytes: [UInt8])] = []
    let codec = HeartbeatCodec(secret: "sim-secret")
    private var sequences: [NodeID: UInt64] = [:]
    private var guards: [NodeID: ReplayGuard] = [:]
    var dropped: [String: Int] = [:]
    /// (term, leader) pairs seen acting; two leaders in one term is the bug this simulation looks for.
    var actingLeaders: [Term: Set<NodeID>] = [:]

    init(managers m: Int, controllers c: Int) {
        for i in 1...m {
            let info = ManagerInfo(id: "gm\(i)", control: Endpoint(host: "gm\(i)", port: 1), heartbeat: Endpoint(host: "gm\(i)", port: 2))
            managers[info.id] = Manager(mode: .manager(GroupManagerState(me: info)), info: info)
        }
        for i in 1...c {
            let info = ControllerInfo(id: "lc\(i)", control: Endpoint(host: "lc\(i)", port: 1), heartbeat: Endpoint(host: "lc\(i)", port: 2),
                                      summary: CapacitySummary(total: ResourceVector(vcpus: 8, memoryKiB: 16_777_216)), vms: ["vm\(i)"])
            controllers[info.id] = Controller(membership: ControllerMembership(), info: info)
        }
    }

    func canTalk(_ a: NodeID, _ b: NodeID) -> Bool {
        partition.isEmpty || partition.contains { $0.contains(a) && $0.contains(b) }
    }
    func reachesStore(_ a: NodeID) -> Bool { partition.isEmpty || partition[0].contains(a) }
    func alive(_ id: NodeID) -> Bool { managers[id]?.alive ?? controllers[id]?.alive ?? false }

    func send(_ message: HeartbeatMessage, from: NodeID, to: NodeID) {
        sentCount += 1
        if dropEvery > 0 && sentCount % dropEvery == 0 { return }
        guard alive(from), alive(to), canTalk(from, to) else { return }
        sequences[from, default: 0] += 1
        let bytes = try! codec.encode(message, sender: from, stamp: .init(incarnation: 1, sequence: sequences[from]!))
        inbox.append((now + step * delaySteps, to, bytes))
    }

    /// Puts raw bytes on the wire to `to` (forgeries, replays), arriving next step.
    func inject(_ bytes: [UInt8], to: NodeID) { inbox.append((now, to, bytes)) }

    /// A synchronous HTTP call: it reaches only a live peer on the same side of a partition.
    func rpc(_ from: NodeID, _ to: NodeID) -> Bool { alive(from) && alive(to) && canTalk(from, to) }

    var leaders: [NodeID] {
        managers.values.filter { if case .leader = $0.mode { return $0.alive } ; return false }.map(\.info.id).sorted()
    }

    func leaderState(_ id: NodeID) -> GroupLeaderState? {
        if case .leader(let s)? = managers[id]?.mode { return s }
        return nil
    }

    // MARK: Election store

    func election() {
        if let l = lease {
            // The holder renews while it reaches the store; otherwise the lease runs out.
            if alive(l.holder) && reachesStore(l.holder) { lease!.expires = now + leaseTTL }
            else if now >= l.expires { lease = nil }
        }
        // A leader that cannot prove its lease steps down on its own (self-fencing), before anyone else can win.
        for (id, m) in managers where m.alive {
            if case .leader(let s) = m.mode, lease?.holder != id || lease?.term != s.me.term {
                managers[id]!.mode = .manager(GroupManagerState(me: m.info))
            }
        }
        guard lease == nil, let winner = managers.values.filter({ $0.alive && reachesStore($0.info.id) }).map(\.info.id).sorted().first
        else { return }
        lastTerm += 1
        lease = (winner, lastTerm, now + leaseTTL)
        let me = LeaderInfo(id: winner, term: lastTerm, control: managers[winner]!.info.control, heartbeat: managers[winner]!.info.heartbeat)
        managers[winner]!.mode = .leader(GroupLeaderState(me: me))
    }

    // MARK: One step

    func run(for duration: Duration) {
        let end = now + duration
        while now < end { tick() }
    }

    func tick() {
        now += step
        election()
        for id in leaders {
            guard let s = leaderState(id) else { continue }
            actingLeaders[s.me.term, default: []].insert(id)
        }
        let due = inbox.filter { $0.at <= now }
        inbox.removeAll { $0.at <= now }
        for (_, to, bytes) in due {
            switch codec.decode(bytes) {
            case .failure(let reason): dropped[reason.rawValue, default: 0] += 1
            case .success(let d):
                guard guards[to, default: ReplayGuard()].accept(d.stamp, from: d.sender) else { dropped["replayed", default: 0] += 1; continue }
                receive(d.message, at: to)
            }
        }
        for id in managers.keys.sorted() where managers[id]!.alive { tickManager(id) }
        for id in controllers.keys.sorted() where controllers[id]!.alive { tickController(id) }
    }

    func receive(_ message: HeartbeatMessage, at to: NodeID) {
        if var m = managers[to], m.alive {
            switch (m.mode, message) {
            case (.manager(var s), .leader(let l)):
                let d = s.onLeaderAnnouncement(l, now: now); m.mode = .manager(s); managers[to] = m; applyManager(to, d)
            case (.manager(var s), .controller(let info, let managerID)) where managerID == to:
                _ = s.onController(info, now: now); m.mode = .manager(s); managers[to] = m
            case (.leader(var s), .managerSummary(let info, let term, let cs)):
                _ = s.onManagerSummary(info, term: term, controllers: cs, now: now); m.mode = .leader(s); managers[to] = m
            default: break
            }
        } else if var c = controllers[to], c.alive {
            let d: [ControllerMembership.Directive]
            switch message {
            case .leader(let l): d = c.membership.onLeaderAnnouncement(l, now: now)
            case .manager(let info, _): d = c.membership.onManagerAnnouncement(info, now: now)
            default: d = []
            }
            controllers[to] = c
            applyController(to, d)
        }
    }

    func tickManager(_ id: NodeID) {
        var m = managers[id]!
        switch m.mode {
        case .leader(var s):
            _ = s.onTick(now: now)
            m.mode = .leader(s); managers[id] = m
            // Announce to everyone (in a real cluster: what it knows plus the bootstraps' relay).
            for other in managers.keys where other != id { send(.leader(s.me), from: id, to: other) }
            for c in controllers.keys { send(.leader(s.me), from: id, to: c) }
        case .manager(var s):
            let d = s.onTick(now: now)
            m.mode = .manager(s); managers[id] = m
            applyManager(id, d)
            guard case .manager(let s2) = managers[id]!.mode else { return }
            if let l = s2.leader, s2.joinedLeader {
                send(.managerSummary(m.info, term: l.term, controllers: s2.controllerList), from: id, to: l.id)
            }
            for c in s2.controllerList { send(.manager(m.info, leaderTerm: s2.leader?.term ?? 0), from: id, to: c.id) }
        }
    }

    func applyManager(_ id: NodeID, _ directives: [GroupManagerState.Directive]) {
        for d in directives {
            guard case .joinLeader(let l) = d, case .manager(var s) = managers[id]!.mode else { continue }
            if rpc(id, l.id), var gl = leaderState(l.id), gl.me.term == l.term {
                _ = gl.onManagerJoin(managers[id]!.info, controllers: s.controllerList, now: now)
                managers[l.id]!.mode = .leader(gl)
                s.onJoinedLeader(l)
            } else {
                s.onJoinLeaderFailed()
            }
            managers[id]!.mode = .manager(s)
        }
    }

    func tickController(_ id: NodeID) {
        let d = controllers[id]!.membership.onTick(now: now)
        applyController(id, d)
        if let m = controllers[id]!.membership.manager {
            send(.controller(controllers[id]!.info, managerID: m.id), from: id, to: m.id)
        }
    }

    func applyController(_ id: NodeID, _ directives: [ControllerMembership.Directive]) {
        for d in directives {
            switch d {
            case .requestAssignment(let l, let previous, let avoid):
                if rpc(id, l.id), var gl = leaderState(l.id), gl.me.term == l.term,
                   let m = gl.assign(controllers[id]!.info, previous: previous, avoid: avoid) {
                    managers[l.id]!.mode = .leader(gl)
                    let next = controllers[id]!.membership.onAssigned(m, now: now)
                    applyController(id, next)
                } else {
                    controllers[id]!.membership.onAssignmentFailed(now: now)
                }
            case .join(let m):
                if rpc(id, m.id), case .manager(var s) = managers[m.id]!.mode {
                    _ = s.onController(controllers[id]!.info, now: now)
                    managers[m.id]!.mode = .manager(s)
                    _ = controllers[id]!.membership.onJoined(m, now: now)
                } else {
                    controllers[id]!.membership.onJoinFailed(now: now)
                }
            default: break
            }
        }
    }

    // MARK: Views for assertions

    var leaderTerm: Term? { leaders.compactMap { leaderState($0)?.me.term }.max() }

    /// Controllers the (single, current) leader knows, and the controllers that believe they are joined.
    var leaderView: [NodeID] { leaders.last.flatMap { leaderState($0)?.allControllers.map(\.id) } ?? [] }
    var joinedControllers: [NodeID] { controllers.filter { $0.value.alive && $0.value.membership.manager != nil }.map(\.key).sorted() }

    func settled(controllers expected: [NodeID]) -> Bool {
        leaders.count == 1 && leaderView == expected.sorted() && joinedControllers == expected.sorted()
            && controllers.values.allSatisfy { c in
                guard c.alive, let m = c.membership.manager else { return !c.alive }
                return managers[m.id]?.alive == true && leaders.first != m.id
            }
    }

    /// Steps until `condition` holds; returns the time it took, or nil past `limit`.
    func time(until limit: Duration, _ condition: () -> Bool) -> Duration? {
        let start = now
        while now - start <= limit {
            if condition() { return now - start }
            tick()
        }
        return nil
    }

    var neverTwoLeadersInOneTerm: Bool { actingLeaders.values.allSatisfy { $0.count <= 1 } }
}

@Suite struct ClusterSimulationTests {
    let all = (1...6).map { "lc\($0)" }

    func settledCluster() -> Sim {
        let sim = Sim(managers: 3, controllers: 6)
        #expect(sim.time(until: .seconds(3), { sim.settled(controllers: all) }) != nil, "cluster did not form")
        return sim
    }

    @Test func clusterForms() {
        let sim = settledCluster()
        #expect(sim.leaders.count == 1)
        #expect(sim.neverTwoLeadersInOneTerm)
    }

    @Test func controllerDeathIsNoticedWithinTwoSeconds() throws {
        let sim = settledCluster()
        sim.controllers["lc3"]!.alive = false
        let took = try #require(sim.time(until: .seconds(2)) { !sim.leaderView.contains("lc3") })
        // Within the bound (the require), and not before the manager's timeout ran out: a silent controller is
        // given its whole timeout, it is not dropped on the first missed heartbeat.
        #expect(took >= GroupManagerState.Settings().controllerTimeout - sim.step, "dropped after only \(took)")
    }

    @Test func managerDeathReHomesItsControllersWithinThreeSeconds() throws {
        let sim = settledCluster()
        let leader = sim.leaders[0]
        let victim = try #require(sim.managers.keys.sorted().first { id in id != leader && sim.controllers.values.contains { c in c.membership.manager?.id == id } })
        sim.managers[victim]!.alive = false
        let took = try #require(sim.time(until: .seconds(3)) { sim.settled(controllers: all) })
        // The controllers wait out their manager timeout before they leave it.
        #expect(took >= ControllerMembership.Settings().managerTimeout - sim.step, "re-homed after only \(took)")
        #expect(sim.controllers.values.allSatisfy { $0.membership.manager?.id != victim })
    }

    @Test func leaderDeathElectsAHigherTermWithinThreeSeconds() throws {
        let sim = settledCluster()
        let old = try #require(sim.leaderTerm)
        sim.managers[sim.leaders[0]]!.alive = false
        let took = try #require(sim.time(until: .seconds(3)) { (sim.leaderTerm ?? 0) > old && sim.settled(controllers: all) })
        // No new leader before the dead one's lease expired: that is what keeps two leaders out of one term.
        #expect(took >= sim.leaseTTL - sim.step, "a new leader after only \(took)")
        #expect(sim.neverTwoLeadersInOneTerm)
    }

    @Test func partitionedLeaderStepsDownAndIsIgnoredAfterHealing() throws {
        let sim = settledCluster()
        let oldLeader = sim.leaders[0]
        let oldTerm = try #require(sim.leaderTerm)
        let others = Set(sim.managers.keys.filter { $0 != oldLeader } + sim.controllers.keys)
        // The store sits with the majority; the old leader is cut off alone.
        sim.partition = [others, [oldLeader]]
        let took = try #require(sim.time(until: .seconds(4)) { (sim.leaderTerm ?? 0) > oldTerm && sim.settled(controllers: all) })
        #expect(took >= sim.leaseTTL - sim.step, "a new leader after only \(took), while the old lease still ran")
        #expect(sim.leaderState(oldLeader) == nil, "the cut-off leader must have stepped down")
        sim.partition = []
        sim.run(for: .seconds(2))
        #expect(sim.settled(controllers: all))
        #expect((sim.leaderTerm ?? 0) > oldTerm)
        #expect(sim.neverTwoLeadersInOneTerm)
    }

    @Test func delayedNetworkStillConverges() {
        let sim = Sim(managers: 3, controllers: 6)
        sim.delaySteps = 4   // every heartbeat 200 ms late, under the 1.2 s timeouts
        #expect(sim.time(until: .seconds(5), { sim.settled(controllers: all) }) != nil)
        sim.run(for: .seconds(5))
        #expect(sim.settled(controllers: all), "late heartbeats flapped the membership")
    }

    @Test func forgedAndReplayedHeartbeatsChangeNothing() throws {
        let sim = settledCluster()
        let leader = try #require(sim.leaders.first)
        let term = try #require(sim.leaderTerm)
        // A forger without the secret claims a far higher term to everyone.
        let forger = HeartbeatCodec(secret: "guessed")
        let claim = HeartbeatMessage.leader(LeaderInfo(id: "evil", term: 999, control: Endpoint(host: "evil", port: 1), heartbeat: Endpoint(host: "evil", port: 2)))
        let forged = try forger.encode(claim, sender: "evil", stamp: .init(incarnation: 9, sequence: 1))
        // A genuine announcement of this leader, captured now and replayed later.
        let genuine = try sim.codec.encode(.leader(try #require(sim.leaderState(leader)).me), sender: leader, stamp: .init(incarnation: 1, sequence: 1))
        for id in Array(sim.managers.keys) + Array(sim.controllers.keys) {
            sim.inject(forged, to: id)
            sim.inject(genuine, to: id)
            sim.inject(Array("DOZE1".utf8) + Array(repeating: 7, count: 64), to: id)
        }
        sim.run(for: .seconds(2))
        #expect(sim.dropped["badMAC", default: 0] >= 2 * 8)
        #expect(sim.dropped["replayed", default: 0] >= 8)
        #expect(sim.leaders == [leader] && sim.leaderTerm == term)
        #expect(sim.settled(controllers: all))
    }

    @Test func lossyNetworkStillConverges() {
        let sim = Sim(managers: 3, controllers: 6)
        sim.dropEvery = 5   // 20 % of heartbeats lost
        #expect(sim.time(until: .seconds(5), { sim.settled(controllers: all) }) != nil)
        sim.run(for: .seconds(5))
        #expect(sim.settled(controllers: all), "lost heartbeats flapped the membership")
    }
}
