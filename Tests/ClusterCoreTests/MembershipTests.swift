import ClusterCore
import Testing

let ms = Duration.milliseconds
func endpoint(_ port: Int) -> Endpoint { Endpoint(host: "127.0.0.1", port: port) }
func manager(_ id: String) -> ManagerInfo { ManagerInfo(id: id, control: endpoint(5000 + id.hashValue % 100), heartbeat: endpoint(6000)) }
func controller(_ id: String, vcpusUsed: Double = 0) -> ControllerInfo {
    ControllerInfo(id: id, control: endpoint(7000), heartbeat: endpoint(8000),
                   summary: CapacitySummary(total: ResourceVector(vcpus: 8, memoryKiB: 8_388_608),
                                            requested: ResourceVector(vcpus: vcpusUsed, memoryKiB: 0), vmCount: 0))
}
func leader(_ id: String, term: Term) -> LeaderInfo { LeaderInfo(id: id, term: term, control: endpoint(5001), heartbeat: endpoint(9000)) }

@Suite struct FailureDetectorTests {
    @Test func silentPeersTimeOutOnce() {
        var d = FailureDetector<String>(timeout: ms(1000))
        let r1 = d.onHeartbeat(from: "a", now: ms(0))
        #expect(r1)
        let r2 = d.onHeartbeat(from: "a", now: ms(500))
        #expect(!r2)
        d.onHeartbeat(from: "b", now: ms(100))
        let r3 = d.onTick(now: ms(1000))
        #expect(r3.isEmpty)
        let r4 = d.onTick(now: ms(1101))
        #expect(r4 == ["b"])
        let r5 = d.onTick(now: ms(1501))
        #expect(r5 == ["a"])
        let r6 = d.onTick(now: ms(5000))
        #expect(r6.isEmpty)
    }
}

func accept(_ g: inout ReplayGuard, _ s: ReplayGuard.Stamp, _ from: String) -> Bool { g.accept(s, from: from) }

@Suite struct ReplayGuardTests {
    typealias S = ReplayGuard.Stamp

    @Test func acceptsOnlyNewer() {
        var g = ReplayGuard()
        #expect(accept(&g, S(incarnation: 10, sequence: 1), "n"))
        #expect(accept(&g, S(incarnation: 10, sequence: 2), "n"))
        #expect(!accept(&g, S(incarnation: 10, sequence: 2), "n"))   // replayed
        #expect(!accept(&g, S(incarnation: 10, sequence: 1), "n"))   // older
        #expect(accept(&g, S(incarnation: 11, sequence: 0), "n"))    // restarted sender
        #expect(!accept(&g, S(incarnation: 10, sequence: 99), "n"))  // the old incarnation is over
        #expect(accept(&g, S(incarnation: 1, sequence: 1), "other"))
    }

    /// A node that last started with its clock a month ahead restarts after the clock was corrected: its new
    /// incarnation still beats the one its peers remember, so they do not drop it as a replay.
    @Test func restartAfterTheClockWentBackIsStillNewer() {
        let month: UInt64 = 30 * 86_400 * 1_000_000_000
        let real: UInt64 = 1_796_000_000 * 1_000_000_000
        let ahead = ReplayGuard.nextIncarnation(previous: nil, wallClockNanoseconds: real + month)
        #expect(ahead == real + month)
        let corrected = ReplayGuard.nextIncarnation(previous: ahead, wallClockNanoseconds: real)
        #expect(corrected == ahead + 1)
        var g = ReplayGuard()
        #expect(accept(&g, S(incarnation: ahead, sequence: 500), "n"))
        #expect(accept(&g, S(incarnation: corrected, sequence: 0), "n"))
        // With a sane clock the wall clock leads again; the maximum never lets an incarnation repeat.
        #expect(ReplayGuard.nextIncarnation(previous: real, wallClockNanoseconds: real + 5) == real + 5)
        #expect(ReplayGuard.nextIncarnation(previous: real, wallClockNanoseconds: real) == real + 1)
        #expect(ReplayGuard.nextIncarnation(previous: .max, wallClockNanoseconds: real) == real)
    }
}

@Suite struct GroupLeaderStateTests {
    func state(_ policy: GroupLeaderState.AssignmentPolicy = .roundRobin) -> GroupLeaderState {
        var settings = GroupLeaderState.Settings()
        settings.assignment = policy
        return GroupLeaderState(me: leader("gl", term: 3), settings: settings)
    }

    @Test func roundRobinSpreadsControllers() {
        var s = state()
        _ = s.onManagerJoin(manager("m1"), controllers: [], now: .zero)
        _ = s.onManagerJoin(manager("m2"), controllers: [], now: .zero)
        let picks = (0..<4).map { s.assign(controller("c\($0)"), previous: nil)!.id }
        #expect(picks == ["m1", "m2", "m1", "m2"])
    }

    @Test func leastLoadedPicksTheFreestManager() {
        var s = state(.leastLoaded)
        _ = s.onManagerJoin(manager("busy"), controllers: [controller("c1", vcpusUsed: 7)], now: .zero)
        _ = s.onManagerJoin(manager("idle"), controllers: [controller("c2", vcpusUsed: 1)], now: .zero)
        let r7 = s.assign(controller("new"), previous: nil)
        #expect(r7?.id == "idle")
    }

    @Test func aControllerGoesBackToItsManager() {
        var s = state()
        _ = s.onManagerJoin(manager("m1"), controllers: [controller("c2")], now: .zero)
        _ = s.onManagerJoin(manager("m2"), controllers: [controller("c1")], now: .zero)
        let r8 = s.assign(controller("c1"), previous: nil)
        #expect(r8?.id == "m2")           // already held
        let r9 = s.assign(controller("c9"), previous: "m2")
        #expect(r9?.id == "m2")          // previous still alive and under its share
        let r10 = s.assign(controller("c9"), previous: "gone")
        #expect(r10?.id != "gone")      // previous dead: policy
        let r11 = s.assign(controller("c1"), previous: nil, avoid: "m2")
        #expect(r11?.id == "m1")  // the controller saw m2 fail
        var empty = GroupLeaderState(me: leader("x", term: 1))
        let none = empty.assign(controller("c"), previous: nil)
        #expect(none == nil)
    }

    @Test func stickinessDoesNotKeepASkew() {
        // A restarted cluster: every controller last had m2. Half return to it, the rest go to m1, even though
        // no report has arrived between the joins.
        var s = state()
        _ = s.onManagerJoin(manager("m1"), controllers: [], now: .zero)
        _ = s.onManagerJoin(manager("m2"), controllers: [], now: .zero)
        let picks = (0..<4).map { s.assign(controller("c\($0)"), previous: "m2")!.id }
        #expect(picks.filter { $0 == "m2" }.count == 2 && picks.filter { $0 == "m1" }.count == 2, "\(picks)")
    }

    @Test func deadManagersAreDroppedWithTheirControllers() {
        var s = state()
        _ = s.onManagerJoin(manager("m1"), controllers: [controller("c1")], now: .zero)
        _ = s.onManagerJoin(manager("m2"), controllers: [], now: .zero)
        _ = s.onManagerSummary(manager("m2"), term: 3, controllers: [], now: ms(1000))
        let d = s.onTick(now: ms(1600))
        #expect(d == [.managerDown(manager("m1"), controllers: [controller("c1")])])
        #expect(s.managers.keys.sorted() == ["m2"])
    }

    @Test func summariesOfAnotherTermAreIgnored() {
        var s = state()
        let r12 = s.onManagerSummary(manager("m1"), term: 2, controllers: [], now: .zero)
        #expect(r12 == [.ignoredStaleTerm(2)])
        #expect(s.managers.isEmpty)
    }

    @Test func controllersMoveBetweenManagersAndDropsAreReported() {
        var s = state()
        _ = s.onManagerJoin(manager("m1"), controllers: [controller("c1"), controller("c2")], now: .zero)
        // c1 re-joined m2: it is no longer m1's.
        _ = s.onManagerJoin(manager("m2"), controllers: [controller("c1")], now: .zero)
        #expect(s.managers["m1"]?.controllers.map(\.id) == ["c2"])
        // m1 stops reporting c2: the controller died.
        let r13 = s.onManagerSummary(manager("m1"), term: 3, controllers: [], now: ms(10))
        #expect(r13 == [.controllerDown(controller("c2"), managerID: "m1")])
        #expect(s.allControllers.map(\.id) == ["c1"])
    }
}

@Suite struct GroupManagerStateTests {
    @Test func followsHigherTermsAndIgnoresOlderOnes() {
        var s = GroupManagerState(me: manager("m1"))
        let r14 = s.onLeaderAnnouncement(leader("a", term: 2), now: .zero)
        #expect(r14 == [.joinLeader(leader("a", term: 2))])
        s.onJoinedLeader(leader("a", term: 2))
        let r15 = s.onLeaderAnnouncement(leader("a", term: 2), now: ms(100))
        #expect(r15.isEmpty)
        let r16 = s.onLeaderAnnouncement(leader("b", term: 1), now: ms(200))
        #expect(r16 == [.ignoredStaleTerm(1)])
        let r17 = s.onLeaderAnnouncement(leader("b", term: 2), now: ms(200))
        #expect(r17 == [.ignoredStaleTerm(2)])   // two leaders in a term: never
        let r18 = s.onLeaderAnnouncement(leader("b", term: 3), now: ms(300))
        #expect(r18 == [.joinLeader(leader("b", term: 3))])
        #expect(s.leader?.id == "b")
    }

    @Test func aFailedJoinIsRetriedOnTheNextAnnouncement() {
        var s = GroupManagerState(me: manager("m1"))
        _ = s.onLeaderAnnouncement(leader("a", term: 2), now: .zero)
        s.onJoinLeaderFailed()
        let r19 = s.onLeaderAnnouncement(leader("a", term: 2), now: ms(100))
        #expect(r19 == [.joinLeader(leader("a", term: 2))])
    }

    @Test func silentControllersAreDroppedWithinTheTimeout() {
        var s = GroupManagerState(me: manager("m1"))
        let r20 = s.onController(controller("c1"), now: .zero)
        #expect(r20 == [.controllerJoined(controller("c1"))])
        _ = s.onController(controller("c2"), now: .zero)
        _ = s.onController(controller("c2"), now: ms(1000))
        let r21 = s.onTick(now: ms(1300))
        #expect(r21 == [.controllerDown(controller("c1"))])
        #expect(s.controllerList.map(\.id) == ["c2"])
    }

    @Test func aSilentLeaderIsForgotten() {
        var s = GroupManagerState(me: manager("m1"))
        _ = s.onLeaderAnnouncement(leader("a", term: 5), now: .zero)
        let r22 = s.onTick(now: ms(2100))
        #expect(r22 == [.leaderLost(leader("a", term: 5))])
        // After forgetting, even a lower term is followed: the old one was never seen again.
        let r23 = s.onLeaderAnnouncement(leader("b", term: 4), now: ms(2200))
        #expect(r23 == [.joinLeader(leader("b", term: 4))])
    }
}

@Suite struct ControllerMembershipTests {
    @Test func joinsThroughTheLeader() {
        var m = ControllerMembership()
        let r24 = m.onLeaderAnnouncement(leader("gl", term: 1), now: .zero)
        #expect(r24 == [.requestAssignment(leader("gl", term: 1), previous: nil, avoid: nil)])
        let r25 = m.onAssigned(manager("m1"), now: ms(5))
        #expect(r25 == [.join(manager("m1"))])
        let r26 = m.onJoined(manager("m1"), now: ms(10))
        #expect(r26 == [.joined(manager("m1"))])
        #expect(m.manager == manager("m1"))
        #expect(m.previousManager == "m1")
    }

    @Test func aSilentManagerTriggersAnImmediateReassignmentAvoidingIt() {
        var m = ControllerMembership()
        _ = m.onLeaderAnnouncement(leader("gl", term: 1), now: .zero)
        _ = m.onAssigned(manager("m1"), now: .zero)
        _ = m.onJoined(manager("m1"), now: .zero)
        _ = m.onManagerAnnouncement(manager("m1"), now: ms(1000))
        _ = m.onLeaderAnnouncement(leader("gl", term: 1), now: ms(1500))
        let r27 = m.onTick(now: ms(2000))
        #expect(r27.isEmpty)
        let r28 = m.onTick(now: ms(2300))
        #expect(r28 == [.managerLost(manager("m1")),
                                             .requestAssignment(leader("gl", term: 1), previous: "m1", avoid: "m1")])
    }

    @Test func failedAssignmentsAreRetriedAfterTheInterval() {
        var m = ControllerMembership()
        _ = m.onLeaderAnnouncement(leader("gl", term: 1), now: .zero)
        m.onAssignmentFailed(now: ms(10))
        let r29 = m.onTick(now: ms(100))
        #expect(r29.isEmpty)
        let r30 = m.onTick(now: ms(300))
        #expect(r30 == [.requestAssignment(leader("gl", term: 1), previous: nil, avoid: nil)])
    }

    @Test func aRestartedControllerAsksForItsPreviousManager() {
        var m = ControllerMembership(previousManager: "m7")
        let r31 = m.onLeaderAnnouncement(leader("gl", term: 9), now: .zero)
        #expect(r31 == [.requestAssignment(leader("gl", term: 9), previous: "m7", avoid: nil)])
    }

    @Test func staleLeadersAreIgnored() {
        var m = ControllerMembership()
        _ = m.onLeaderAnnouncement(leader("new", term: 4), now: .zero)
        let r32 = m.onLeaderAnnouncement(leader("old", term: 3), now: ms(1))
        #expect(r32 == [.ignoredStaleTerm(3)])
        #expect(m.leader?.id == "new")
    }
}
