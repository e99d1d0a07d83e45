import ClusterCore
import Testing

@Suite struct FailoverTests {
    static func settings(canFence: Bool = true) -> Failover.Settings {
        var settings = Failover.Settings(settleTime: .seconds(1))
        settings.canFence = canFence
        return settings
    }

    /// h1 runs a (HA) and b (not), h2 runs c (HA); every host in view.
    static func cluster(canFence: Bool = true) -> Failover {
        var failover = Failover(settings: settings(canFence: canFence))
        _ = failover.onView(listed: ["a": ["h1"], "b": ["h1"], "c": ["h2"]], hostsInView: ["h1", "h2", "h3"],
                            highlyAvailable: ["a", "c"], now: .seconds(2))
        return failover
    }

    @Test func aDeadHostsHAVMsRestartOnlyAfterItIsFenced() {
        var failover = Self.cluster()
        let down = failover.onControllerDown("h1", vms: ["a", "b"], highlyAvailable: ["a", "c"], now: .seconds(3))
        #expect(down.contains(.fence("h1", attempt: 1)))
        #expect(!down.contains { if case .restart = $0 { true } else { false } }, "nothing restarts before the fence: \(down)")
        #expect(failover.unknownVMs.map(\.name) == ["a", "b"])
        // The views and ticks meanwhile start nothing.
        #expect(failover.onView(listed: ["c": ["h2"]], hostsInView: ["h2", "h3"], highlyAvailable: ["a", "c"], now: .seconds(4))
                    .allSatisfy { if case .restart = $0 { false } else { true } })
        #expect(failover.onTick(now: .seconds(10)) == [])

        let fenced = failover.onFenceSucceeded("h1", now: .seconds(5))
        #expect(fenced == [.persist, .restart("a", avoiding: ["h1"])], "the HA VM only; b stays UNKNOWN")
        #expect(failover.records["a"]?.phase == .restarting(from: "h1", task: nil))
        #expect(failover.onRestartSubmitted("a", task: "t1") == [.persist])
        #expect(failover.records["b"]?.phase == .lost(from: "h1"))

        // Listed on h3: running there, and h1's copy of a is stale from now on.
        _ = failover.onView(listed: ["a": ["h3"], "c": ["h2"]], hostsInView: ["h2", "h3"], highlyAvailable: ["a", "c"], now: .seconds(6))
        #expect(failover.records["a"]?.phase == .running(on: "h3"))
        #expect(failover.staleVMs(on: "h1") == ["a"])
        #expect(failover.unknownVMs.map(\.name) == ["b"])
    }

    @Test func aVMStartedJustBeforeItsHostDiedIsProtectedThoughNoViewListedIt() {
        var failover = Self.cluster()
        // "d" started on h1 a moment ago; no view listed it before h1 died.
        let down = failover.onControllerDown("h1", vms: ["a", "b", "d"], highlyAvailable: ["a", "c", "d"], now: .seconds(3))
        #expect(down.contains(.markedUnknown(["a", "b", "d"], host: "h1", reason: "its host is down; fencing it before restarting HA VMs elsewhere")))
        #expect(failover.onFenceSucceeded("h1", now: .seconds(4)) == [.persist, .restart("a", avoiding: ["h1"]), .restart("d", avoiding: ["h1"])])
    }

    @Test func withoutAFenceAgentNothingIsEverRestarted() {
        var failover = Self.cluster(canFence: false)
        let down = failover.onControllerDown("h1", vms: [], highlyAvailable: [], now: .seconds(3))
        #expect(down.contains(.markedUnknown(["a", "b"], host: "h1", reason: "its host is down and no fence agent is configured: not restarted elsewhere")))
        var all = down
        for second in 4...60 {
            all += failover.onView(listed: ["c": ["h2"]], hostsInView: ["h2", "h3"], highlyAvailable: ["a", "c"], now: .seconds(second))
            all += failover.onTick(now: .seconds(second))
        }
        #expect(!all.contains { if case .restart = $0 { true } else if case .fence = $0 { true } else { false } })
        #expect(failover.unknownVMs.map(\.name) == ["a", "b"])
        // The host comes back with both: running again, nothing stale.
        _ = failover.onView(listed: ["a": ["h1"], "b": ["h1"], "c": ["h2"]], hostsInView: ["h1", "h2", "h3"],
                            highlyAvailable: ["a", "c"], now: .seconds(61))
        #expect(failover.unknownVMs.isEmpty && failover.staleVMs(on: "h1").isEmpty)
    }

    @Test func aFailingFenceIsRetriedWithBackOffAndNeverLeadsToARestart() {
        var failover = Self.cluster()
        _ = failover.onControllerDown("h1", vms: [], highlyAvailable: [], now: .seconds(3))
        var directives: [Failover.Directive] = []
        var fences: [Duration] = [.seconds(3)]
        var now = Duration.seconds(3)
        // Each fence attempt fails; ticks every 100 ms carry out the retries.
        while now < .seconds(400) {
            if case .fencing = failover.fencing["h1"] {
                directives += failover.onFenceFailed("h1", error: "exit status 1", now: now)
            }
            now += .milliseconds(100)
            let tick = failover.onTick(now: now)
            if tick.contains(where: { if case .fence = $0 { true } else { false } }) { fences.append(now) }
            directives += tick
        }
        #expect(!directives.contains { if case .restart = $0 { true } else { false } })
        #expect(fences.count == Self.settings().maxFenceAttempts)
        let pauses = zip(fences.dropFirst(), fences).map { $0 - $1 }
        #expect(pauses.first! >= .seconds(2) && pauses.first! < .seconds(3))
        #expect(zip(pauses.dropFirst(), pauses).allSatisfy { $0 >= $1 }, "back-off grows: \(pauses)")
        #expect(pauses.allSatisfy { $0 <= .seconds(61) })
        #expect(failover.fencing["h1"] == .gaveUp(lastError: "exit status 1"))
        #expect(failover.unknownVMs.map(\.name) == ["a", "b"])
        // A late success report for an attempt that already failed changes nothing.
        #expect(failover.onFenceSucceeded("h1", now: now) == [])
    }

    @Test func aHostBackBeforeItWasFencedKeepsItsVMs() {
        var failover = Self.cluster()
        _ = failover.onControllerDown("h1", vms: [], highlyAvailable: [], now: .seconds(3))
        _ = failover.onFenceFailed("h1", error: "timed out after 30 s", now: .seconds(4))
        _ = failover.onView(listed: ["a": ["h1"], "b": ["h1"], "c": ["h2"]], hostsInView: ["h1", "h2", "h3"],
                            highlyAvailable: ["a", "c"], now: .seconds(5))
        #expect(failover.records["a"]?.phase == .running(on: "h1"))
        #expect(failover.fencing["h1"] == nil, "a host back in view is not fenced any more")
        #expect(failover.onTick(now: .seconds(100)) == [])
    }

    @Test func aFenceThatSucceedsAfterTheHostCameBackStillRestartsItsVMs() {
        // The fence killed the host after it re-joined: what it reported is dead too.
        var failover = Self.cluster()
        _ = failover.onControllerDown("h1", vms: [], highlyAvailable: [], now: .seconds(3))
        _ = failover.onView(listed: ["a": ["h1"], "b": ["h1"], "c": ["h2"]], hostsInView: ["h1", "h2", "h3"],
                            highlyAvailable: ["a", "c"], now: .seconds(4))
        #expect(failover.fencing["h1"] == .fencing(attempt: 1), "a running fence is not forgotten")
        #expect(failover.onFenceSucceeded("h1", now: .seconds(5)) == [.persist, .restart("a", avoiding: ["h1"])])
    }

    @Test func aReturningFencedHostIsToldToDestroyItsStaleCopies() {
        var failover = Self.cluster()
        _ = failover.onControllerDown("h1", vms: [], highlyAvailable: [], now: .seconds(3))
        _ = failover.onFenceSucceeded("h1", now: .seconds(4))
        _ = failover.onView(listed: ["a": ["h3"], "c": ["h2"]], hostsInView: ["h2", "h3"], highlyAvailable: ["a", "c"], now: .seconds(5))
        #expect(failover.staleVMs(on: "h1") == ["a"] && failover.staleVMs(on: "h3") == [])
        // A controller that did not destroy its copy and reports it: destroyed there, once.
        let reported = failover.onView(listed: ["a": ["h1", "h3"], "b": ["h1"], "c": ["h2"]], hostsInView: ["h1", "h2", "h3"],
                                       highlyAvailable: ["a", "c"], now: .seconds(6))
        #expect(reported.filter { if case .destroyStale = $0 { true } else { false } } == [.destroyStale("a", on: "h1")])
        #expect(failover.records["a"]?.phase == .running(on: "h3"), "the stale copy never counts as the VM")
        #expect(failover.records["b"]?.phase == .running(on: "h1"), "non-HA VMs were never restarted: h1's copy is the VM")
        let again = failover.onView(listed: ["a": ["h1", "h3"], "b": ["h1"], "c": ["h2"]], hostsInView: ["h1", "h2", "h3"],
                                    highlyAvailable: ["a", "c"], now: .seconds(7))
        #expect(!again.contains { if case .destroyStale = $0 { true } else { false } })
        // Once h1 is in view without it, nothing is stale there.
        _ = failover.onView(listed: ["a": ["h3"], "b": ["h1"], "c": ["h2"]], hostsInView: ["h1", "h2", "h3"],
                            highlyAvailable: ["a", "c"], now: .seconds(8))
        #expect(failover.staleVMs(on: "h1") == [])
    }

    @Test func aFailedRestartIsSubmittedAgainAfterThePause() {
        var failover = Self.cluster()
        _ = failover.onControllerDown("h1", vms: [], highlyAvailable: [], now: .seconds(3))
        _ = failover.onFenceSucceeded("h1", now: .seconds(4))
        _ = failover.onRestartSubmitted("a", task: "t1")
        _ = failover.onRestartFailed("a", reason: "NOT_ENOUGH_GROUP_MANAGER_CAPACITY", now: .seconds(5))
        #expect(failover.onTick(now: .seconds(9)) == [])
        #expect(failover.onTick(now: .seconds(10)) == [.restart("a", avoiding: ["h1"])])
        #expect(failover.onTick(now: .seconds(20)) == [], "one restart in flight at a time")
    }

    @Test func aNewLeaderFinishesAFailoverOnceFromTheRecords() {
        var old = Self.cluster()
        _ = old.onControllerDown("h1", vms: [], highlyAvailable: [], now: .seconds(3))
        _ = old.onFenceSucceeded("h1", now: .seconds(4))
        // The old leader recorded the restart of a and died before submitting it; c's host died too, unseen.
        let records = Array(old.records.values)
        var next = Failover(records: records, settings: Self.settings())
        var directives = next.onView(listed: [:], hostsInView: [], highlyAvailable: ["a", "c"], now: .milliseconds(100))
        directives += next.onTick(now: .milliseconds(100))
        #expect(directives.isEmpty, "nothing before the managers had time to report: \(directives)")
        var restarts: [Failover.Directive] = []
        var fences: [Failover.Directive] = []
        for tenth in 11...100 {
            let now = Duration.milliseconds(100 * tenth)
            let all = next.onView(listed: ["b": ["h1"]].filter { _ in false }, hostsInView: ["h3"], highlyAvailable: ["a", "c"], now: now)
                + next.onTick(now: now)
            restarts += all.filter { if case .restart = $0 { true } else { false } }
            fences += all.filter { if case .fence = $0 { true } else { false } }
        }
        #expect(restarts == [.restart("a", avoiding: ["h1"])], "a is restarted once, by the new leader")
        #expect(fences == [.fence("h2", attempt: 1)], "h2 left the view unseen: fenced after the grace, never restarted unfenced")
        #expect(next.records["c"]?.phase == .lost(from: "h2"))
    }

    @Test func aRestartAnEarlierLeaderSubmittedIsFollowedNotRepeated() {
        var old = Self.cluster()
        _ = old.onControllerDown("h1", vms: [], highlyAvailable: [], now: .seconds(3))
        _ = old.onFenceSucceeded("h1", now: .seconds(4))
        _ = old.onRestartSubmitted("a", task: "t1")
        var next = Failover(records: Array(old.records.values), settings: Self.settings())
        var all: [Failover.Directive] = []
        for second in 1...30 {
            all += next.onView(listed: ["c": ["h2"]], hostsInView: ["h2", "h3"], highlyAvailable: ["a", "c"], now: .seconds(second))
            all += next.onTick(now: .seconds(second))
        }
        #expect(!all.contains { if case .restart = $0 { true } else { false } })
        // Its submission fails: now this leader restarts it.
        _ = next.onRestartFailed("a", reason: "task t1 failed", now: .seconds(31))
        #expect(next.onTick(now: .seconds(36)) == [.restart("a", avoiding: ["h1"])])
    }

    @Test func aVMDestroyedOnPurposeIsForgotten() {
        var failover = Self.cluster()
        for second in 3...9 {
            _ = failover.onView(listed: ["a": ["h1"], "c": ["h2"]], hostsInView: ["h1", "h2", "h3"], highlyAvailable: ["a", "c"], now: .seconds(second))
        }
        #expect(failover.records["b"] == nil)
        #expect(failover.onControllerDown("h1", vms: [], highlyAvailable: [], now: .seconds(10)).contains(.markedUnknown(["a"], host: "h1",
                                                                                          reason: "its host is down; fencing it before restarting HA VMs elsewhere")))
    }

    // MARK: - Simulation

    /// Random host deaths, fence outcomes and returns on a small cluster, driven like the shell drives it.
    /// Invariants: a VM is restarted only once its host was fenced, a fenced host never reports a stale copy as
    /// the VM, and at the end every HA VM runs on exactly one live host.
    @Test(arguments: 1...40) func randomFailuresNeverRunAVMTwice(seed: UInt64) {
        var rng = SeededGenerator(state: seed)
        let hosts = ["h1", "h2", "h3", "h4"]
        var running: [String: Set<String>] = ["h1": ["v0", "v1"], "h2": ["v2", "v3"], "h3": ["v4"], "h4": ["v5", "v6"]]
        let ha: Set<String> = ["v0", "v2", "v3", "v5", "v6"]
        var alive = Set(hosts)
        var fenced: Set<String> = []
        var failover = Failover(settings: Self.settings())
        var pendingFences: [String] = []
        var pendingRestarts: [(vm: String, avoiding: Set<String>)] = []
        /// Hosts fenced at least once (a retried restart names the host it was fenced from, since come back).
        var wasFenced: Set<String> = []
        var now = Duration.zero

        func listed() -> [String: Set<String>] {
            var listed: [String: Set<String>] = [:]
            for host in alive { for vm in running[host, default: []] { listed[vm, default: []].insert(host) } }
            return listed
        }
        func carry(_ directives: [Failover.Directive]) {
            for directive in directives {
                switch directive {
                case .fence(let host, _): pendingFences.append(host)
                case .restart(let vm, let avoiding):
                    let host = failover.records[vm]!.host
                    #expect(fenced.contains(host) || wasFenced.contains(host), "seed \(seed): \(vm) restarted while \(host) was not fenced")
                    #expect(avoiding.contains(host))
                    pendingRestarts.append((vm, avoiding))
                case .destroyStale(let vm, let host): running[host]?.remove(vm)
                case .markedUnknown, .persist: break
                }
            }
        }

        for step in 0..<600 {
            now += .milliseconds(250)
            // Events: a host dies, comes back (destroying what it is told is stale, as the controller does), fences end.
            let roll = rng.next() % 100
            if roll < 3, alive.count > 2, let victim = alive.sorted().randomElement(using: &rng) {
                alive.remove(victim)
                carry(failover.onControllerDown(victim, vms: running[victim, default: []], highlyAvailable: ha, now: now))
            } else if roll < 6, let back = Set(hosts).subtracting(alive).sorted().randomElement(using: &rng) {
                // As its controller does on re-joining: destroy what the leader says moved, then report.
                for vm in failover.staleVMs(on: back) { running[back]?.remove(vm) }
                fenced.remove(back)
                alive.insert(back)
            }
            if !pendingFences.isEmpty, rng.next() % 3 == 0 {
                let host = pendingFences.removeFirst()
                if rng.next() % 4 == 0 {
                    carry(failover.onFenceFailed(host, error: "refused", now: now))
                } else {
                    fenced.insert(host)
                    wasFenced.insert(host)
                    alive.remove(host)
                    carry(failover.onFenceSucceeded(host, now: now))
                }
            }
            if !pendingRestarts.isEmpty, rng.next() % 2 == 0 {
                let (vm, avoiding) = pendingRestarts.removeFirst()
                let targets = alive.subtracting(avoiding).sorted()
                if let target = targets.randomElement(using: &rng), !listed().keys.contains(vm) {
                    _ = failover.onRestartSubmitted(vm, task: "t\(step)")
                    running[target, default: []].insert(vm)
                } else {
                    carry(failover.onRestartFailed(vm, reason: "no room", now: now))
                }
            }
            carry(failover.onView(listed: listed(), hostsInView: alive, highlyAvailable: ha, now: now))
            carry(failover.onTick(now: now))
            // No VM is counted as running on two hosts: only stale copies may be listed twice, and never as the VM.
            for (vm, where_) in listed() where where_.count > 1 {
                let genuine = where_.subtracting(failover.records[vm]?.staleOn ?? [])
                #expect(genuine.count <= 1, "seed \(seed) step \(step): \(vm) genuinely on \(where_)")
            }
        }
        // Quiet period: every host back, fences and restarts allowed to finish.
        for host in Set(hosts).subtracting(alive) {
            for vm in failover.staleVMs(on: host) { running[host]?.remove(vm) }
            alive.insert(host)
            fenced.remove(host)
        }
        for _ in 0..<200 {
            now += .milliseconds(250)
            // Every host is back: a fence still pending fails (the host answers again), nothing is stopped.
            while !pendingFences.isEmpty { carry(failover.onFenceFailed(pendingFences.removeFirst(), error: "host is back", now: now)) }
            while !pendingRestarts.isEmpty {
                let (vm, avoiding) = pendingRestarts.removeFirst()
                if !listed().keys.contains(vm), let target = alive.subtracting(avoiding).sorted().first {
                    _ = failover.onRestartSubmitted(vm, task: "late")
                    running[target, default: []].insert(vm)
                }
            }
            carry(failover.onView(listed: listed(), hostsInView: alive, highlyAvailable: ha, now: now))
            carry(failover.onTick(now: now))
        }
        for vm in ha {
            let copies = hosts.filter { running[$0, default: []].contains(vm) }
            #expect(copies.count == 1, "seed \(seed): \(vm) on \(copies)")
        }
    }
}
