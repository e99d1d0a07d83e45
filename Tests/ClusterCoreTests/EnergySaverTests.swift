import ClusterCore
import Testing

/// The energy saver's pure rules (issue 12): who goes to sleep, when, and who is woken for room.
@Suite struct EnergySaverTests {
    let a = Endpoint(host: "127.0.0.1", port: 5010), b = Endpoint(host: "127.0.0.1", port: 5011), c = Endpoint(host: "127.0.0.1", port: 5012)

    func saver(idle: Duration = .seconds(10), awake: Int = 1) throws -> EnergySaver {
        try EnergySaver(settings: .init { $0.idleTime = idle; $0.minimumAwake = awake; $0.settleTime = .seconds(1); $0.booksLag = .seconds(3) })
    }

    func hosts(_ vms: [Int], migrating: Set<Int> = []) -> [EnergySaver.Host] {
        zip([a, b, c], vms).enumerated().map { i, pair in
            EnergySaver.Host(id: "h\(i)", address: pair.0, manager: "gm", vms: pair.1, migrating: migrating.contains(i),
                             capacity: HostUsage(vcpus: 8, memoryMiB: 16384))
        }
    }

    @Test func anIdleHostIsDrainedThenPoweredOffOnceSettledAndEmpty() throws {
        var energy = try saver()
        #expect(energy.onObservation(hosts([1, 0, 0]), now: .seconds(0)).isEmpty)
        #expect(energy.onObservation(hosts([1, 0, 0]), now: .seconds(9)).isEmpty, "not idle long enough")
        #expect(energy.onObservation(hosts([1, 0, 0]), now: .seconds(10)) == [.drain("h1")], "one host at a time")
        #expect(energy.power(of: "h1") == .poweringOff)
        #expect(energy.onObservation(hosts([1, 0, 0]), now: .seconds(10.5)).isEmpty, "the drain settles first")
        #expect(energy.onObservation(hosts([1, 0, 0]), now: .seconds(11)) == [.powerOff("h1", b)])
        #expect(energy.onObservation(hosts([1, 0, 0]), now: .seconds(12)).isEmpty, "the agent is asked once")
        #expect(energy.onPowerOffFinished("h1", error: nil, now: .seconds(13)).isEmpty)
        #expect(energy.power(of: "h1") == .sleeping && energy.sleeping.map(\.id) == ["h1"])
        #expect(energy.sleeping.first?.capacity == HostUsage(vcpus: 8, memoryMiB: 16384), "what it may give is remembered")
        // The books still list it for a moment: not taken as back (and the next idle host's turn comes).
        #expect(energy.onObservation(hosts([1, 0, 0]), now: .seconds(14)) == [.drain("h2")])
        #expect(energy.power(of: "h1") == .sleeping)
    }

    @Test func theMinimumStaysAwakeAndBusyOrMigratingHostsNeverSleep() throws {
        var energy = try saver(awake: 2)
        _ = energy.onObservation(hosts([0, 0, 3]), now: .seconds(0))
        #expect(energy.onObservation(hosts([0, 0, 3]), now: .seconds(20)) == [.drain("h0")])
        #expect(energy.onPowerOffFinished("h0", error: nil, now: .seconds(21)).isEmpty)
        let awake = hosts([0, 0, 3]).filter { $0.id != "h0" }
        #expect(energy.onObservation(awake, now: .seconds(60)).isEmpty, "two hosts must stay awake")
        var other = try saver()
        _ = other.onObservation(hosts([0, 0, 0], migrating: [0, 1, 2]), now: .seconds(0))
        #expect(other.onObservation(hosts([0, 0, 0], migrating: [0, 1, 2]), now: .seconds(60)).isEmpty, "a migration is on its way")
    }

    @Test func aVMThatLandsDuringThePowerOffKeepsTheHostOn() throws {
        var energy = try saver()
        _ = energy.onObservation(hosts([1, 0, 0]), now: .seconds(0))
        #expect(energy.onObservation(hosts([1, 0, 0]), now: .seconds(10)) == [.drain("h1")])
        #expect(energy.onObservation(hosts([1, 1, 0]), now: .seconds(11)) == [.undrain("h1"), .drain("h2")], "h2's turn")
        #expect(energy.power(of: "h1") == .on)
    }

    @Test func aFailedPowerOffUndrainsAndWaitsAnotherIdleTime() throws {
        var energy = try saver()
        _ = energy.onObservation(hosts([1, 0]), now: .seconds(0))
        _ = energy.onObservation(hosts([1, 0]), now: .seconds(10))
        _ = energy.onObservation(hosts([1, 0]), now: .seconds(11))
        #expect(energy.onPowerOffFinished("h1", error: "exit 1", now: .seconds(12)) == [.undrain("h1")])
        #expect(energy.power(of: "h1") == .on && energy.lastFailures["h1"] == "exit 1")
        #expect(energy.onObservation(hosts([1, 0]), now: .seconds(21)).isEmpty)
        #expect(energy.onObservation(hosts([1, 0]), now: .seconds(22)) == [.drain("h1")])
    }

    @Test func wakingForRoomPicksTheLongestAsleepOnceAndHoldsOffPowerOffs() throws {
        var energy = try saver()
        _ = energy.onObservation(hosts([1, 0, 0]), now: .seconds(0))
        _ = energy.onObservation(hosts([1, 0, 0]), now: .seconds(10))
        _ = energy.onObservation(hosts([1, 0, 0]), now: .seconds(11))
        _ = energy.onPowerOffFinished("h1", error: nil, now: .seconds(12))
        let two = hosts([1, 0, 0]).filter { $0.id != "h1" }
        _ = energy.onObservation(two, now: .seconds(20))
        _ = energy.onObservation(two, now: .seconds(23))
        _ = energy.onPowerOffFinished("h2", error: nil, now: .seconds(24))
        #expect(energy.sleeping.map(\.id) == ["h1", "h2"])
        #expect(energy.wakeForRoom(now: .seconds(30)) == .wake("h1", b), "asleep longest")
        #expect(energy.wakeForRoom(now: .seconds(31)) == nil, "one wake at a time")
        #expect(energy.isWaking)
        // Heard again: on, undrained, and nothing else goes down right after a wake.
        #expect(energy.onObservation(hosts([1, 0]), now: .seconds(35)) == [.undrain("h1")])
        #expect(energy.power(of: "h1") == .on)
        #expect(energy.onObservation(hosts([1, 0]), now: .seconds(44)).isEmpty, "held off for an idle time after the wake")
    }

    @Test func aWakeThatNeverComesBackOrFailsLeavesTheHostAsleep() throws {
        var energy = try saver()
        _ = energy.onObservation(hosts([1, 0]), now: .seconds(0))
        _ = energy.onObservation(hosts([1, 0]), now: .seconds(10))
        _ = energy.onObservation(hosts([1, 0]), now: .seconds(11))
        _ = energy.onPowerOffFinished("h1", error: nil, now: .seconds(12))
        _ = energy.wakeForRoom(now: .seconds(20))
        energy.onWakeFinished("h1", error: "exit 2", now: .seconds(21))
        #expect(energy.power(of: "h1") == .sleeping && energy.sleeping.first?.lastError?.contains("exit 2") == true)
        _ = energy.wakeForRoom(now: .seconds(30))
        _ = energy.onObservation(hosts([1]), now: .seconds(30 + 121))
        #expect(energy.power(of: "h1") == .sleeping && energy.sleeping.first?.lastError?.contains("did not come back") == true)
    }

    @Test func badSettingsAreRefused() {
        #expect(throws: DozeError.self) { try EnergySaver(settings: .init { $0.idleTime = .zero }) }
        #expect(throws: DozeError.self) { try EnergySaver(settings: .init { $0.minimumAwake = 0 }) }
        #expect(throws: DozeError.self) { try EnergySaver(settings: .init { $0.wakeTimeout = .seconds(-1) }) }
    }
}
