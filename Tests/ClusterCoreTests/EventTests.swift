import ClusterCore
import Foundation
import Testing

/// The events stream's pure parts: what a change of view yields (`ClusterObserver`) and what a reader gets
/// for a revision (`EventLog`).
struct ClusterObserverTests {
    typealias VM = ClusterSnapshot.VM

    @Test func theFirstViewIsABaselineAndLaterOnesYieldWhatChanged() {
        var observer = ClusterObserver()
        let a = ClusterSnapshot(vms: ["web1": VM(status: .running, host: "lc1")],
                                hosts: ["lc1": .init(present: true, manager: "gm1", draining: false)])
        #expect(observer.onSnapshot(a).isEmpty)
        var b = a
        b.vms["web1"] = VM(status: .paused, host: "lc1")
        b.vms["web2"] = VM(status: .running, host: "lc1")
        let events = observer.onSnapshot(b)
        #expect(events.map(\.kind) == [.vmSuspended, .vmRunning])
        #expect(events.map(\.vm) == ["web1", "web2"])
        #expect(events[1].host == "lc1" && events[1].status == "RUNNING")
        #expect(observer.onSnapshot(b).isEmpty)
    }

    @Test func aSubmissionYieldsPlacementThenRunningThenItsEnd() {
        var observer = ClusterObserver()
        let hosts: [NodeID: ClusterSnapshot.Host] = ["lc1": .init(present: true, manager: "gm1", draining: false)]
        _ = observer.onSnapshot(ClusterSnapshot(hosts: hosts))
        let pending = ClusterSnapshot.Task(placements: ["d-1": nil], isFinal: false, running: 0, failed: 0)
        #expect(observer.onSnapshot(ClusterSnapshot(tasks: ["t1": pending], hosts: hosts)).isEmpty)
        let done = ClusterSnapshot.Task(placements: ["d-1": "lc1"], isFinal: true, running: 1, failed: 0)
        let events = observer.onSnapshot(ClusterSnapshot(vms: ["d-1": VM(status: .running, host: "lc1")], tasks: ["t1": done], hosts: hosts))
        #expect(events.map(\.kind) == [.vmPlaced, .vmRunning, .taskFinished])
        #expect(events[0].task == "t1" && events[0].host == "lc1")
        #expect(events[2].outcome == "succeeded" && events[2].detail == "running 1/1, failed 0/1")
    }

    @Test func aFinishedTaskWithFailuresSaysSo() {
        var observer = ClusterObserver()
        _ = observer.onSnapshot(ClusterSnapshot())
        let task = ClusterSnapshot.Task(placements: ["a": "lc1", "b": nil], isFinal: true, running: 1, failed: 1)
        let finished = observer.onSnapshot(ClusterSnapshot(tasks: ["t": task])).filter { $0.kind == .taskFinished }
        #expect(finished.map(\.outcome) == ["partial"])
    }

    @Test func aVMGoneFromEveryViewIsDestroyedButNotOneOfASilentManagerOrAVanishedHost() {
        var observer = ClusterObserver()
        let hosts: [NodeID: ClusterSnapshot.Host] = ["lc1": .init(present: true, manager: "gm1", draining: false),
                                                     "lc2": .init(present: true, manager: "gm2", draining: false)]
        _ = observer.onSnapshot(ClusterSnapshot(vms: ["a": VM(status: .running, host: "lc1"), "b": VM(status: .running, host: "lc2"),
                                                      "c": VM(status: .running, host: "lc1")], hosts: hosts))
        // `c`'s manager did not answer, but its summary still names it; lc2 vanished with `b`.
        var next = ClusterSnapshot(vms: [:], hosts: ["lc1": hosts["lc1"]!], reported: ["c"])
        var events = observer.onSnapshot(next)
        #expect(events.map(\.kind) == [.hostDown, .vmDestroyed])
        #expect(events.last?.vm == "a")
        // Later the HA books show `b` UNKNOWN: lost, not destroyed.
        next.vms["b"] = VM(status: .unknown, host: "lc2")
        events = observer.onSnapshot(next)
        #expect(events.map(\.kind) == [.vmLost] && events.first?.vm == "b")
    }

    @Test func aMigrationStartsAndEndsWithItsDurationAndARebalancingMoveSaysWhy() {
        var observer = ClusterObserver()
        _ = observer.onSnapshot(ClusterSnapshot())
        let running = ClusterSnapshot.Migration(vm: "web1", source: "lc1", destination: "lc2", state: "running", reason: "overload")
        #expect(observer.onSnapshot(ClusterSnapshot(migrations: ["m1": running])).map(\.kind) == [.migrationStarted, .rebalanceMove])
        var done = running
        done.state = "completed"
        done.durationMs = 1200
        let events = observer.onSnapshot(ClusterSnapshot(migrations: ["m1": done]))
        #expect(events.map(\.kind) == [.migrationFinished])
        #expect(events[0].source == "lc1" && events[0].destination == "lc2" && events[0].durationMs == 1200)
        // One that started and failed between two views yields both.
        let failed = ClusterSnapshot.Migration(vm: "web2", source: "lc1", destination: "lc2", state: "failed", error: "no room")
        let both = observer.onSnapshot(ClusterSnapshot(migrations: ["m1": done, "m2": failed]))
        #expect(both.map(\.kind) == [.migrationStarted, .migrationFailed] && both[1].detail == "no room")
    }

    @Test func hostsJoinDrainSleepWakeAndDie() {
        var observer = ClusterObserver()
        let up = ClusterSnapshot.Host(present: true, manager: "gm1", draining: false)
        _ = observer.onSnapshot(ClusterSnapshot())
        #expect(observer.onSnapshot(ClusterSnapshot(hosts: ["lc1": up])).map(\.kind) == [.hostUp])
        var drained = up
        drained.draining = true
        #expect(observer.onSnapshot(ClusterSnapshot(hosts: ["lc1": drained])).map(\.kind) == [.hostDrained])
        // Put to sleep: gone from the summaries on purpose, so asleep and not down.
        let asleep = ClusterSnapshot.Host(present: false, manager: "gm1", draining: false, power: "sleeping")
        #expect(observer.onSnapshot(ClusterSnapshot(hosts: ["lc1": asleep])).map(\.kind) == [.hostAsleep])
        var awake = up
        awake.power = "on"
        #expect(observer.onSnapshot(ClusterSnapshot(hosts: ["lc1": awake])).map(\.kind) == [.hostAwake, .hostUp])
        #expect(observer.onSnapshot(ClusterSnapshot(hosts: [:])).map(\.kind) == [.hostDown])
    }

    @Test func anHARestartIsReportedOnce() {
        var observer = ClusterObserver()
        _ = observer.onSnapshot(ClusterSnapshot())
        let restarting = ClusterSnapshot(restarting: ["db": "lc1"])
        let events = observer.onSnapshot(restarting)
        #expect(events.map(\.kind) == [.haRestart] && events[0].vm == "db" && events[0].source == "lc1")
        #expect(observer.onSnapshot(restarting).isEmpty)
    }

    @Test func membershipDirectivesBecomeManagerEvents() {
        let gm = ManagerInfo(id: "gm1", control: Endpoint(host: "127.0.0.1", port: 1), heartbeat: Endpoint(host: "127.0.0.1", port: 1))
        #expect(ClusterEvent.membership(.managerJoined(gm))?.kind == .managerUp)
        #expect(ClusterEvent.membership(.managerDown(gm, controllers: []))?.kind == .managerDown)
        #expect(ClusterEvent.membership(.ignoredStaleTerm(3)) == nil)
    }
}

struct EventLogTests {
    static func event(_ revision: Int64) -> ClusterEvent {
        var event = ClusterEvent(kind: .vmRunning, vm: "vm\(revision)")
        event.revision = revision
        return event
    }

    static func page(_ read: EventLog.Read) -> EventPage? {
        if case .page(let page) = read { return page }
        return nil
    }

    @Test func aReaderGetsTheEventsAfterItsRevisionInOrderAPageAtATime() {
        var log = EventLog(capacity: 100)
        for revision: Int64 in [3, 7, 8, 20] { #expect(log.append(Self.event(revision)).isEmpty) }
        #expect(Self.page(log.read(since: nil, limit: 10))?.events.map(\.revision) == [3, 7, 8, 20])
        #expect(Self.page(log.read(since: 7, limit: 10))?.events.map(\.revision) == [8, 20])
        #expect(Self.page(log.read(since: 5, limit: 10))?.events.map(\.revision) == [7, 8, 20])
        let first = Self.page(log.read(since: 0, limit: 2))
        #expect(first?.events.map(\.revision) == [3, 7] && first?.latestRevision == 20)
        #expect(first?.resume(after: 0) == 7)
        let empty = Self.page(log.read(since: 20, limit: 10))
        #expect(empty?.events.isEmpty == true && empty?.resume(after: 20) == 20)
    }

    @Test func compactionDropsTheOldestInBatchesAndRefusesReadersBelowTheFloor() {
        var log = EventLog(capacity: 10)
        var dropped: [ClusterEvent] = []
        for revision in Int64(1)...11 { dropped += log.append(Self.event(revision)) }
        #expect(dropped.isEmpty, "one over capacity is within the batch slack")
        dropped = log.append(Self.event(12))
        #expect(dropped.map(\.revision) == [1, 2])
        #expect(log.events.count == 10 && log.floor == 2)
        #expect(log.read(since: 1, limit: 10) == .compacted(oldest: 3, floor: 2))
        #expect(log.read(since: 0, limit: 10) == .compacted(oldest: 3, floor: 2))
        #expect(Self.page(log.read(since: 2, limit: 100))?.events.first?.revision == 3)
        // A reader that gives no revision gets what is kept.
        #expect(Self.page(log.read(since: nil, limit: 100))?.events.count == 10)
    }

    @Test func readBackKeepsTheNewestAndTheFloor() {
        let stored = (1...30).map { Self.event(Int64($0)) }.shuffled()
        let log = EventLog(capacity: 10, events: stored, floor: 0)
        #expect(log.events.map(\.revision) == Array(21...30))
        #expect(log.floor == 20 && log.latest == 30)
        let compacted = EventLog(capacity: 10, events: [Self.event(5), Self.event(9)], floor: 6)
        #expect(compacted.events.map(\.revision) == [9] && compacted.floor == 6)
        #expect(EventLog(capacity: 5, events: [], floor: 42).latest == 42)
    }

    @Test func eventsEncodeOnlyTheirFieldsAndDecodeUnknownKinds() throws {
        var event = ClusterEvent(kind: .vmPlaced, vm: "web1", host: "lc1", task: "t1")
        event.revision = 4
        event.time = "2026-12-04T03:00:00.000Z"
        let json = String(decoding: try JSONEncoder().encode(event), as: UTF8.self)
        #expect(!json.contains("tenant") && json.contains("\"kind\":\"vm.placed\""), "\(json)")
        let future = try JSONDecoder().decode(ClusterEvent.self, from: Data(#"{"revision":9,"time":"t","kind":"vm.teleported"}"#.utf8))
        #expect(future.kind.rawValue == "vm.teleported")
    }
}
