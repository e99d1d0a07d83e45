import ClusterCore
import Testing

/// Managers and controllers for driving the submission planner: each controller has `vcpus` and `memoryMiB` in
/// total, of which `requestedVCPUs` / `requestedMiB` are already asked for.
enum PlannerFixture {
    static func endpointOf(_ id: String) -> Endpoint { Endpoint(host: id, port: 1) }

    static func controllerInfo(_ id: String, vcpus: Double = 8, memoryMiB: Double = 8192, requestedVCPUs: Double = 0,
                               requestedMiB: Double = 0, draining: Bool? = nil) -> ControllerInfo {
        ControllerInfo(id: id, control: endpointOf(id), heartbeat: endpointOf(id),
                       summary: CapacitySummary(total: ResourceVector(vcpus: vcpus, memoryKiB: memoryMiB * 1024),
                                                requested: ResourceVector(vcpus: requestedVCPUs, memoryKiB: requestedMiB * 1024)),
                       draining: draining)
    }

    static func managerInfo(_ id: String) -> ManagerInfo { ManagerInfo(id: id, control: endpointOf(id), heartbeat: endpointOf(id)) }

    static func view(_ managers: [String: [ControllerInfo]]) -> SubmissionPlanner.Managers {
        var view: SubmissionPlanner.Managers = [:]
        for (id, controllers) in managers { view[id] = GroupLeaderState.ManagerRecord(info: managerInfo(id), controllers: controllers) }
        return view
    }

    /// Three managers with one 8 vCPU / 8 GiB controller each.
    static let threeManagers = view(["gm1": [controllerInfo("lc1")], "gm2": [controllerInfo("lc2")], "gm3": [controllerInfo("lc3")]])

    static func small(_ name: String, pinnedHost: String? = nil) -> SubmissionPlanner.VMRequest {
        .init(name: name, demand: ResourceVector(vcpus: 1, memoryKiB: 524_288), pinnedHost: pinnedHost)
    }

    static func planner(_ policy: PlacementPolicy = .roundRobin, subnet: String? = nil) throws -> SubmissionPlanner {
        SubmissionPlanner(policy: policy, settings: .init(settleTime: .seconds(1)), pool: try subnet.map { try IPPool(subnet: $0) })
    }
}

extension SubmissionPlanner.VMPlan {
    /// "gm2", or "FAIL CODE: message", so a whole plan compares as plain strings.
    var shown: String {
        switch directive {
        case .dispatch(let manager): manager.id
        case .fail(let code, let message): "FAIL \(code.rawValue): \(message)"
        }
    }
}

@Suite struct SubmissionPlannerTests {
    typealias Fixture = PlannerFixture

    @Test func roundRobinSpreadsOverManagersAcrossSubmissions() throws {
        var planner = try Fixture.planner()
        let first = planner.plan((1...4).map { Fixture.small("a\($0)") }, managers: Fixture.threeManagers, now: .zero)
        #expect(first.map(\.shown) == ["gm1", "gm2", "gm3", "gm1"])
        let second = planner.plan((1...2).map { Fixture.small("b\($0)") }, managers: Fixture.threeManagers, now: .zero)
        #expect(second.map(\.shown) == ["gm2", "gm3"])   // the rotation continues where the last submission left it
        #expect(planner.reserved == Set(["a1", "a2", "a3", "a4", "b1", "b2"]))
    }

    @Test func leastLoadedPrefersTheRoomiestManagerAndSkipsDrainedControllers() throws {
        var planner = try Fixture.planner(.leastLoaded)
        let view = Fixture.view([
            "gm1": [Fixture.controllerInfo("lc1", memoryMiB: 4096)],
            "gm2": [Fixture.controllerInfo("lc2", memoryMiB: 16384, draining: true), Fixture.controllerInfo("lc3", memoryMiB: 2048)],
        ])
        // gm2's drained controller is not room it can offer: gm1 (4 GiB open) is the roomier one.
        let plans = planner.plan((1...3).map { Fixture.small("vm\($0)") }, managers: view, now: .zero)
        #expect(plans.map(\.shown) == ["gm1", "gm1", "gm1"])
    }

    @Test func reservationsHoldUntilSummariesShowTheVMs() throws {
        var planner = try Fixture.planner()
        let view = Fixture.view(["gm1": [Fixture.controllerInfo("lc1", vcpus: 2)]])
        #expect(planner.plan([Fixture.small("a"), Fixture.small("b")], managers: view, now: .zero).map(\.shown) == ["gm1", "gm1"])
        // The summary does not show them yet: a third VM would over-commit the manager.
        #expect(planner.plan([Fixture.small("c")], managers: view, now: .seconds(1)).map(\.shown)
            == ["FAIL NOT_ENOUGH_GROUP_MANAGER_CAPACITY: not enough capacity for VM 'c' (1 vCPUs, 512 MiB): the roomiest group manager has 0 vCPUs and 7168 MiB free"])
        planner.onFailed("a")   // a failed VM gives its room back at once
        #expect(planner.plan([Fixture.small("d")], managers: view, now: .seconds(2)).map(\.shown) == ["gm1"])
        // Listed in a summary, the VM's room is the summary's to show: the reservation goes.
        planner.onSummaries(listing: ["b"], now: .seconds(3))
        #expect(planner.reserved == ["d"])
        // Answered, a reservation lasts until the summaries had `settleTime` to reflect it; unanswered, 10 s.
        planner.onAnswered("d", now: .seconds(3))
        planner.onSummaries(listing: [], now: .seconds(4))
        #expect(planner.reserved == ["d"])
        planner.onSummaries(listing: [], now: .milliseconds(4001))
        #expect(planner.reserved.isEmpty)
        _ = planner.plan([Fixture.small("e")], managers: view, now: .seconds(5))
        planner.onSummaries(listing: [], now: .seconds(15))
        #expect(planner.reserved == ["e"])
        planner.onSummaries(listing: [], now: .milliseconds(15001))
        #expect(planner.reserved.isEmpty)
    }

    @Test func pinnedVMsGoToTheirPinOrFailWithTheReason() throws {
        var planner = try Fixture.planner()
        let view = Fixture.view(["gm1": [Fixture.controllerInfo("lc1")], "gm2": [Fixture.controllerInfo("lc2", vcpus: 1)]])
        let plans = planner.plan([
            Fixture.small("to-manager", pinnedHost: "gm2"),
            Fixture.small("to-controller", pinnedHost: "lc2"),
            Fixture.small("nowhere", pinnedHost: "lc9"),
            Fixture.small("unpinned"),
        ], managers: view, now: .zero)
        #expect(plans.map(\.shown) == [
            "gm2",
            // gm2's one vCPU is reserved by the VM before: the pin stands, so the VM fails rather than move.
            "FAIL NOT_ENOUGH_GROUP_MANAGER_CAPACITY: not enough capacity for VM 'to-controller' (1 vCPUs, 512 MiB): the roomiest group manager has 0 vCPUs and 7680 MiB free",
            "FAIL INVALID_HOST_ID: hostId 'lc9' names no group manager or local controller of this cluster",
            "gm1",
        ])
        #expect(plans.map(\.pinnedController) == [nil, "lc2", nil, nil])
        // Pinned to a controller with room, the VM goes to that controller's manager and says which controller.
        let again = planner.plan([Fixture.small("to-lc1", pinnedHost: "lc1")], managers: view, now: .zero)
        #expect(again == [.init(vm: "to-lc1", pinnedController: "lc1", directive: .dispatch(to: Fixture.managerInfo("gm1")))])
    }

    @Test func addressesAreNeverGivenTwiceAndFailedVMsGiveTheirsBack() throws {
        var planner = try Fixture.planner(subnet: "10.1.0.0/28")   // 13 usable addresses
        let view = Fixture.view(["gm1": [Fixture.controllerInfo("lc1", vcpus: 64, memoryMiB: 65536)]])
        var given: [String] = []
        for round in 0..<3 {
            let plans = planner.plan((1...3).map { Fixture.small("r\(round)-vm\($0)") }, managers: view, now: .zero)
            given += plans.compactMap(\.ipAddress)
        }
        #expect(given.count == 9 && Set(given).count == 9)
        #expect(given.first == "10.1.0.2")
        // A VM that fails still shows the address it was given, but the pool has it back.
        let failed = planner.plan([Fixture.small("lost", pinnedHost: "nope")], managers: view, now: .zero)
        #expect(failed.first?.ipAddress == "10.1.0.11")
        #expect(planner.pool?.free == 13 - 9)
        #expect(planner.pool?.allocated.values.contains("lost") == false)
    }

    @Test func anExhaustedPoolFailsClearlyAndReservesNothing() throws {
        var planner = try Fixture.planner(subnet: "10.2.0.0/29")   // 5 usable addresses
        let plans = planner.plan((1...7).map { Fixture.small("vm\($0)") }, managers: Fixture.threeManagers, now: .zero)
        #expect(plans.compactMap(\.ipAddress) == ["10.2.0.2", "10.2.0.3", "10.2.0.4", "10.2.0.5", "10.2.0.6"])
        #expect(plans.suffix(2).map(\.shown) == Array(repeating: "FAIL NOT_ENOUGH_IP_ADDRESSES: the VM subnet 10.2.0.0/29 has no free address left", count: 2))
        #expect(planner.reserved == Set((1...5).map { "vm\($0)" }))
        // A VM that ended gives its address back once it has been seen nowhere for `addressGrace`.
        #expect(planner.reclaimAddresses(inUse: Set((2...5).map { "vm\($0)" }), now: .seconds(5)) == false)
        #expect(planner.reclaimAddresses(inUse: Set((2...5).map { "vm\($0)" }), now: .seconds(15)) == true)
        #expect(planner.pool?.free == 1)
    }

    @Test func aLeaderJustElectedReclaimsNoAddresses() throws {
        var planner = try Fixture.planner(subnet: "10.3.0.0/29")
        _ = planner.plan([Fixture.small("vm1")], managers: Fixture.threeManagers, now: .zero)
        // settleTime is 1 s: before 4 s the managers may not all have reported what they run.
        #expect(planner.reclaimAddresses(inUse: [], now: .seconds(2)) == false)
        #expect(planner.reclaimAddresses(inUse: [], now: .seconds(3)) == false)
        #expect(planner.pool?.free == 4)
    }

    @Test func noRoomAnywhereFailsWithTodaysCodes() throws {
        var planner = try Fixture.planner(subnet: "10.4.0.0/29")
        let big = SubmissionPlanner.VMRequest(name: "big", demand: ResourceVector(vcpus: 64, memoryKiB: 67_108_864))
        let plans = planner.plan([big], managers: Fixture.threeManagers, now: .zero)
        #expect(plans.map(\.shown) == ["FAIL NOT_ENOUGH_GROUP_MANAGER_CAPACITY: not enough capacity for VM 'big' (64 vCPUs, 65536 MiB): no group manager has a local controller that large"])
        #expect(planner.pool?.free == 5)   // its address went back
        let none = planner.plan([Fixture.small("lonely")], managers: [:], now: .zero)
        #expect(none.map(\.shown) == ["FAIL NOT_ENOUGH_GROUP_MANAGER_CAPACITY: no group manager has joined the leader"])
        // A pin is checked before the managers are: with none, a pinned VM names a host that does not exist.
        let pinned = planner.plan([Fixture.small("pinned", pinnedHost: "gm1")], managers: [:], now: .zero)
        #expect(pinned.map(\.shown) == ["FAIL INVALID_HOST_ID: hostId 'gm1' names no group manager or local controller of this cluster"])
        #expect(planner.reserved.isEmpty)
    }

    @Test func anUnrecordedSubmissionGivesEverythingBack() throws {
        var planner = try Fixture.planner(subnet: "10.5.0.0/29")
        let plans = planner.plan([Fixture.small("a"), Fixture.small("b")], managers: Fixture.threeManagers, now: .zero)
        planner.onNotRecorded(plans.map(\.vm))
        #expect(planner.pool?.free == 5)
        #expect(planner.placement.reservations.isEmpty)
    }
}

@Suite struct ManagerDispatchTests {
    typealias Fixture = PlannerFixture
    let small = HostUsage(vcpus: 1, memoryMiB: 512)

    func refusal(_ vm: String) -> ManagerDispatch.Answer { .init(vm: vm, errorCode: .notEnoughLocalControllerCapacity, demand: small) }
    func started(_ vm: String) -> ManagerDispatch.Answer { .init(vm: vm, errorCode: .none, demand: small) }

    @Test func aRefusingManagerSendsItsUnpinnedVMsToTheRoomiestOther() {
        let view = Fixture.view([
            "gm1": [Fixture.controllerInfo("lc1")],
            "gm2": [Fixture.controllerInfo("lc2", requestedVCPUs: 6)],
            "gm3": [Fixture.controllerInfo("lc3", requestedVCPUs: 2)],
        ])
        let dispatch = ManagerDispatch(manager: "gm1", vms: [.init(id: "a", pinned: false), .init(id: "b", pinned: false),
                                                             .init(id: "pinned", pinned: true)])
        #expect(dispatch.start() == [.send(attempt: 0)])
        let answer = [started("a"), refusal("b"), refusal("pinned")]
        #expect(dispatch.needsManagersView(for: answer))
        #expect(dispatch.onAnswer(answer, managers: view) == [
            .record(["a", "pinned"]),   // a pinned VM's refusal is final
            .move(["b"], to: Fixture.managerInfo("gm3"), tried: ["gm1"]),
        ])
    }

    @Test func refusedVMsMoveAtMostTwiceAndOnlyWhereTheyFit() {
        let view = Fixture.view(["gm1": [Fixture.controllerInfo("lc1")], "gm2": [Fixture.controllerInfo("lc2")],
                                 "gm3": [Fixture.controllerInfo("lc3", vcpus: 1)]])
        let third = ManagerDispatch(manager: "gm2", vms: [.init(id: "b", pinned: false)], tried: ["gm1", "gm3"])
        #expect(!third.needsManagersView(for: [refusal("b")]))
        #expect(third.onAnswer([refusal("b")], managers: view) == [.record(["b"])])   // the refusal is the answer
        // Two VMs need two vCPUs together: gm3 has one, so only gm2 qualifies.
        let first = ManagerDispatch(manager: "gm1", vms: [.init(id: "x", pinned: false), .init(id: "y", pinned: false)])
        #expect(first.onAnswer([refusal("x"), refusal("y")], managers: view) == [.record([]), .move(["x", "y"], to: Fixture.managerInfo("gm2"), tried: ["gm1"])])
        let full = Fixture.view(["gm1": [Fixture.controllerInfo("lc1")], "gm2": [Fixture.controllerInfo("lc2", requestedVCPUs: 8)]])
        #expect(first.onAnswer([refusal("x"), refusal("y")], managers: full) == [.record(["x", "y"])])
    }

    @Test func unansweredVMsFailAsAnInvalidResponse() {
        let dispatch = ManagerDispatch(manager: "gm1", vms: [.init(id: "a", pinned: false), .init(id: "b", pinned: false)])
        #expect(!dispatch.needsManagersView(for: [started("a")]))
        #expect(dispatch.onAnswer([started("a")], managers: [:]) == [
            .record(["a"]), .fail(["b"], .invalidSubmissionResponse, "group manager gm1 did not answer for these VMs"),
        ])
    }

    @Test func aSilentManagerIsAskedFourTimesWithGrowingPausesThenItsVMsFail() {
        var dispatch = ManagerDispatch(manager: "gm1", vms: [.init(id: "a", pinned: false)])
        var sent: [Int] = []
        var pauses: [Duration] = []
        var directives = dispatch.start()
        var outcome: ManagerDispatch.Directive?
        while let directive = directives.first {
            directives.removeFirst()
            switch directive {
            case .send(let attempt):
                sent.append(attempt)
                directives += dispatch.onCallFailed("timeout \(attempt)")
            case .backOff(let pause):
                pauses.append(pause)
                directives += dispatch.onBackoffElapsed()
            default:
                outcome = directive
            }
        }
        #expect(sent == [0, 1, 2, 3])
        #expect(pauses == [.milliseconds(250), .milliseconds(500), .milliseconds(750), .milliseconds(1000)])
        #expect(outcome == .fail(["a"], .unableToStartOnGroupManager, "timeout 3"))
    }

    @Test func aManagerGoneWithTheVMsLeadsToRecovery() {
        var dispatch = ManagerDispatch(manager: "gm1", vms: [.init(id: "a", pinned: false)])
        _ = dispatch.onCallFailed("connection refused")
        #expect(dispatch.onBackoffElapsed() == [.send(attempt: 1)])
        #expect(dispatch.onManagerGone() == [.recover(reason: "group manager gm1 is gone")])
    }
}

@Suite struct LostManagerRecoveryTests {
    typealias Fixture = PlannerFixture
    let settings = LostManagerRecovery.Settings(settleTime: .seconds(1))   // watch 4 s, ask 20 s

    @Test func vmsFoundInHeartbeatsAreDoneWithoutAskingAnyone() {
        var recovery = LostManagerRecovery(manager: "gm1", vms: ["a", "b"], reason: "gone", settings: settings, now: .zero)
        #expect(recovery.start() == [.lookInHeartbeats])
        #expect(recovery.onLookedInHeartbeats(found: ["a"]) == [.pause(.milliseconds(250))])
        #expect(recovery.onPauseElapsed(now: .milliseconds(250)) == [.lookInHeartbeats])
        #expect(recovery.remaining == ["b"])
        _ = recovery.onLookedInHeartbeats(found: ["b"])
        #expect(recovery.onPauseElapsed(now: .milliseconds(500)) == [])
    }

    @Test func nothingIsPlacedAgainWhileAControllerCannotBeAsked() {
        var recovery = LostManagerRecovery(manager: "gm1", vms: ["a", "b"], reason: "gone", settings: settings, now: .zero)
        _ = recovery.onLookedInHeartbeats(found: [])
        #expect(recovery.onPauseElapsed(now: .seconds(4)) == [.askControllers])   // watched long enough
        #expect(recovery.onAskedControllers(found: ["a"], asked: 3, silent: 1, now: .seconds(5)) == [.pause(.milliseconds(500))])
        #expect(recovery.onPauseElapsed(now: .seconds(6)) == [.askControllers])
        #expect(recovery.onAskedControllers(found: [], asked: 3, silent: 2, now: .seconds(24)) == [
            .fail(["b"], .unableToStartOnGroupManager,
                  "group manager gm1 was lost with these VMs (gone), and 2 local controller(s) could not be asked whether they run them"),
        ])
    }

    @Test func onceEveryControllerAnsweredTheRestGoToTheRoomiestOtherManager() {
        var recovery = LostManagerRecovery(manager: "gm1", vms: ["a", "b"], reason: "gone", settings: settings, now: .zero)
        _ = recovery.onLookedInHeartbeats(found: [])
        _ = recovery.onPauseElapsed(now: .seconds(5))
        #expect(recovery.onAskedControllers(found: ["b"], asked: 2, silent: 0, now: .seconds(6)) == [.chooseManager])
        let view = Fixture.view(["gm1": [Fixture.controllerInfo("lc1")], "gm2": [Fixture.controllerInfo("lc2", requestedVCPUs: 4)],
                                 "gm3": [Fixture.controllerInfo("lc3", requestedVCPUs: 1)]])
        #expect(recovery.onManagersView(view) == [.move(["a"], to: Fixture.managerInfo("gm3"))])
    }

    @Test func withNoOtherManagerTheVMsFail() {
        var recovery = LostManagerRecovery(manager: "gm1", vms: ["a"], reason: "gone", settings: settings, now: .zero)
        _ = recovery.onLookedInHeartbeats(found: [])
        _ = recovery.onPauseElapsed(now: .seconds(5))
        _ = recovery.onAskedControllers(found: [], asked: 1, silent: 0, now: .seconds(6))
        #expect(recovery.onManagersView(Fixture.view(["gm1": [Fixture.controllerInfo("lc1")]])) == [
            .fail(["a"], .unableToStartOnGroupManager, "group manager gm1 unreachable (gone) and no other manager is left"),
        ])
    }
}

/// A whole submission carried out against scripted managers the way the coordinator carries it out against
/// real ones: plan, dispatch per manager, follow every directive, until each VM is running or failed.
@Suite struct SubmissionSimulationTests {
    typealias Fixture = PlannerFixture

    /// What a scripted manager does with a VM: start it, refuse it for want of room, or not answer at all.
    enum Behaviour { case starts, refuses, silent }

    struct Simulation {
        var view: SubmissionPlanner.Managers
        var behaviour: [NodeID: Behaviour]
        var outcome: [String: String] = [:]   // VM → "gm2", or "CODE"
        var calls: [NodeID] = []

        mutating func carryOut(_ plans: [SubmissionPlanner.VMPlan]) {
            var batches: [NodeID: [ManagerDispatch.VM]] = [:]
            for plan in plans {
                switch plan.directive {
                case .dispatch(let manager): batches[manager.id, default: []].append(.init(id: plan.vm, pinned: plan.pinnedController != nil))
                case .fail(let code, _): outcome[plan.vm] = code.rawValue
                }
            }
            for (manager, vms) in batches.sorted(by: { $0.key < $1.key }) { dispatch(vms, to: manager, tried: []) }
        }

        mutating func dispatch(_ vms: [ManagerDispatch.VM], to manager: NodeID, tried: Set<NodeID>) {
            var batch = ManagerDispatch(manager: manager, vms: vms, tried: tried)
            var directives = batch.start()
            var answer: [ManagerDispatch.Answer] = []
            while !directives.isEmpty {
                switch directives.removeFirst() {
                case .send:
                    calls.append(manager)
                    switch behaviour[manager] ?? .starts {
                    case .silent:
                        directives += batch.onCallFailed("group manager \(manager) did not answer")
                    case let reply:
                        let code: VMErrorCode = reply == .refuses ? .notEnoughLocalControllerCapacity : .none
                        answer = vms.map { .init(vm: $0.id, errorCode: code, demand: HostUsage(vcpus: 1, memoryMiB: 512)) }
                        directives += batch.onAnswer(answer, managers: view)
                    }
                case .backOff:
                    directives += batch.onBackoffElapsed()
                case .record(let ids):
                    for entry in answer where ids.contains(entry.vm) {
                        outcome[entry.vm] = entry.errorCode == .none ? manager : entry.errorCode.rawValue
                    }
                case .fail(let ids, let code, _):
                    for id in ids { outcome[id] = code.rawValue }
                case .move(let ids, let target, let tried):
                    dispatch(vms.filter { ids.contains($0.id) }, to: target.id, tried: tried)
                case .recover:
                    Issue.record("no manager is lost in this simulation")
                }
            }
        }
    }

    @Test func aRefusingManagerLeadsToARetryOnAnother() throws {
        var planner = try Fixture.planner(subnet: "10.9.0.0/24")
        var simulation = Simulation(view: Fixture.threeManagers, behaviour: ["gm1": .refuses])
        let plans = planner.plan((1...6).map { Fixture.small("vm\($0)") } + [Fixture.small("stuck", pinnedHost: "lc1")],
                                 managers: Fixture.threeManagers, now: .zero)
        simulation.carryOut(plans)
        // gm1's unpinned VMs went elsewhere; the one pinned to gm1's controller takes gm1's refusal.
        #expect(simulation.outcome["stuck"] == "NOT_ENOUGH_LOCAL_CONTROLLER_CAPACITY")
        let placed = (1...6).map { simulation.outcome["vm\($0)"] }
        #expect(placed.allSatisfy { $0 == "gm2" || $0 == "gm3" })
        #expect(simulation.calls.filter { $0 == "gm1" }.count == 1)
        #expect(Set(plans.compactMap(\.ipAddress)).count == 7)
    }

    @Test func refusalsEverywhereEndAfterThreeManagers() throws {
        var planner = try Fixture.planner()
        var simulation = Simulation(view: Fixture.threeManagers, behaviour: ["gm1": .refuses, "gm2": .refuses, "gm3": .refuses])
        simulation.carryOut(planner.plan([Fixture.small("vm1")], managers: Fixture.threeManagers, now: .zero))
        #expect(simulation.outcome == ["vm1": "NOT_ENOUGH_LOCAL_CONTROLLER_CAPACITY"])
        #expect(simulation.calls.count == 3)
    }

    @Test func aSilentManagerFailsItsVMsAndLeavesTheOthersAlone() throws {
        var planner = try Fixture.planner()
        var simulation = Simulation(view: Fixture.threeManagers, behaviour: ["gm2": .silent])
        simulation.carryOut(planner.plan((1...3).map { Fixture.small("vm\($0)") }, managers: Fixture.threeManagers, now: .zero))
        #expect(simulation.outcome == ["vm1": "gm1", "vm2": "UNABLE_TO_START_ON_GROUP_MANAGER", "vm3": "gm3"])
        #expect(simulation.calls.filter { $0 == "gm2" }.count == 4)
    }
}
