import ClusterCore
import ClusterWire
import Foundation
import Logging

/// The leader's energy saver (issue 12): every interval it shows the pure `EnergySaver` the hosts the heartbeats
/// list and carries out its directives — drain an idle host, run the power-off agent, run the wake agent when a
/// submission finds no room, undrain a host that is back. A service of `LeaderRole`, made and stopped with the term.
actor EnergyCoordinator {
    typealias Managers = @Sendable () async -> [NodeID: GroupLeaderState.ManagerRecord]

    let settings: EnergySettings
    private var saver: EnergySaver
    private let migrations: MigrationCoordinator
    private let managers: Managers
    private let log: Logger
    private let started = ContinuousClock.now
    private var loop: Task<Void, Never>?
    private var active = true
    /// When each host last changed power, wall clock (for `doze host list`).
    private var changedAt: [NodeID: Int64] = [:]

    /// `booksLag`: how long the leader's books may list a controller that stopped (its heartbeat timeouts).
    /// The records of this term: sleeping hosts are written there, so the next leader can wake them.
    private let store: (any ClusterRecordStore)?
    private var saved: [SleepingHost] = []

    init(settings: EnergySettings, booksLag: Duration, store: (any ClusterRecordStore)?, migrations: MigrationCoordinator,
         logger: Logger, managers: @escaping Managers) {
        self.settings = settings
        self.store = store
        var saverSettings = settings.saver
        saverSettings.booksLag = max(saverSettings.booksLag, booksLag)
        do { saver = try EnergySaver(settings: saverSettings) } catch {
            logger.error("energy saving settings refused; using the defaults", metadata: ["error": "\(error.message)"])
            saver = try! EnergySaver()
        }
        self.migrations = migrations
        self.managers = managers
        self.log = logger
    }

    private var now: MonotonicTime { started.duration(to: .now) }
    private static var wallMillis: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    /// Takes over the hosts earlier leaders put to sleep, then runs the loop.
    func start() async {
        guard settings.enabled, loop == nil else { return }
        if let store {
            do {
                saved = try await store.loadSleepingHosts()
                saver.restore(sleeping: saved.map { ($0.id, $0.address, $0.manager, HostUsage(vcpus: $0.vcpus, memoryMiB: $0.memoryMiB)) },
                              now: now)
                if !saved.isEmpty { log.info("sleeping hosts read back", metadata: ["doze/hosts": "\(saved.count)"]) }
            } catch {
                log.error("cannot read the sleeping hosts; they are woken only by hand", metadata: ["error": "\(error)"])
            }
        }
        let interval = settings.interval
        loop = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard let self, !Task.isCancelled else { return }
                await self.observe()
            }
        }
    }

    func stop() {
        active = false
        loop?.cancel()
        loop = nil
    }

    // MARK: - Views

    /// Power of every host this leader put to sleep or is waking, for the host list (hosts simply on are not listed).
    func records() -> [EnergySaver.Record] { saver.records.values.sorted { $0.id < $1.id } }

    func power(of host: NodeID) -> EnergySaver.Power { saver.power(of: host) }

    func lastFailure(of host: NodeID) -> String? { saver.lastFailures[host] ?? saver.records[host]?.lastError }

    func since(_ host: NodeID) -> Int64? { changedAt[host] }

    // MARK: - The loop

    private func observe() async {
        guard active else { return }
        let records = await managers()
        let migrating = await migrations.hostsMigrating()
        var hosts: [EnergySaver.Host] = []
        for record in records.values {
            for controller in record.controllers {
                let ours = saver.records[controller.id]?.drained ?? false
                hosts.append(EnergySaver.Host(id: controller.id, address: controller.control, manager: record.info.id, vms: controller.vms.count,
                                              migrating: migrating.contains(controller.id),
                                              drainedByOperator: controller.draining == true && !ours,
                                              capacity: HostUsage(vcpus: Int(controller.summary.total.vcpus),
                                                                  memoryMiB: Int(controller.summary.total.memoryKiB / 1024))))
            }
        }
        let before = saver.records.mapValues(\.power)
        let directives = saver.onObservation(hosts, now: now)
        noteChanges(since: before)
        for directive in directives { await carryOut(directive) }
    }

    private func carryOut(_ directive: EnergySaver.Directive) async {
        switch directive {
        case .drain(let host):
            log.notice("host idle; draining it to power it off", metadata: ["doze/lc": "\(host)"])
            do { try await migrations.markDraining(host, true) } catch {
                log.warning("cannot drain the idle host; it stays on", metadata: ["doze/lc": "\(host)", "error": "\(error.message)"])
                _ = saver.onPowerOffFinished(host, error: "cannot drain it: \(error.message)", now: now)
            }
        case .powerOff(let host, let address):
            guard let command = settings.powerOffCommand else { return }
            log.notice("powering off an idle host", metadata: ["doze/lc": "\(host)", "doze/address": "\(address)"])
            Task {
                let error = await AgentCommand.shell(command, arguments: [host, "\(address)"], timeout: settings.agentTimeout)
                await self.poweredOff(host, error: error)
            }
        case .wake(let host, let address):
            guard let command = settings.wakeCommand else { return }
            log.notice("waking a sleeping host for room", metadata: ["doze/lc": "\(host)", "doze/address": "\(address)"])
            changedAt[host] = Self.wallMillis
            Task {
                let error = await AgentCommand.shell(command, arguments: [host, "\(address)"], timeout: settings.agentTimeout)
                self.woke(host, error: error)
            }
        case .undrain(let host):
            log.notice("host is back; opening it to placement", metadata: ["doze/lc": "\(host)"])
            do { try await migrations.markDraining(host, false) } catch {
                log.warning("cannot undrain the host that came back", metadata: ["doze/lc": "\(host)", "error": "\(error.message)"])
            }
        }
    }

    private func poweredOff(_ host: NodeID, error: String?) async {
        let before = saver.records.mapValues(\.power)
        let directives = saver.onPowerOffFinished(host, error: error, now: now)
        noteChanges(since: before)
        if let error {
            log.error("the power-off agent failed; the host stays on", metadata: ["doze/lc": "\(host)", "error": "\(error)"])
        } else {
            log.notice("host asleep", metadata: ["doze/lc": "\(host)"])
        }
        for directive in directives { await carryOut(directive) }
    }

    private func woke(_ host: NodeID, error: String?) {
        saver.onWakeFinished(host, error: error, now: now)
        if let error { log.error("the wake agent failed", metadata: ["doze/lc": "\(host)", "error": "\(error)"]) }
    }

    private func noteChanges(since before: [NodeID: EnergySaver.Power]) {
        let after = saver.records.mapValues(\.power)
        for host in Set(before.keys).union(after.keys) where before[host] != after[host] { changedAt[host] = Self.wallMillis }
        // Asleep or being woken: not in the hierarchy, so only the records remember it.
        let sleeping = saver.records.values.filter { $0.power == .sleeping || $0.power == .waking }.sorted { $0.id < $1.id }.map {
            SleepingHost(id: $0.id, address: $0.address, manager: $0.manager, vcpus: $0.capacity.vcpus, memoryMiB: $0.capacity.memoryMiB)
        }
        guard active, sleeping != saved else { return }
        do {
            try store?.saveSleepingHosts(sleeping)
            saved = sleeping
        } catch {
            log.error("cannot record the sleeping hosts", metadata: ["error": "\(error)"])
        }
    }

    // MARK: - Wake for room

    /// A submission found no room: wakes one sleeping host and waits (bounded) until its controller is back in the
    /// books and open to placement. False at once when energy saving is off or nothing sleeps.
    func wakeForRoom(within limit: Duration) async -> Bool {
        guard settings.enabled, active else { return false }
        let deadline = now + limit
        // Wait for a wake in progress, or start one.
        var host = saver.records.values.first { $0.power == .waking }?.id
        if host == nil, let directive = saver.wakeForRoom(now: now), case .wake(let id, _) = directive {
            host = id
            await carryOut(directive)
        }
        guard let host else { return false }
        while active && now < deadline {
            let listed = await managers().values.lazy.flatMap(\.controllers).first { $0.id == host }
            if let listed, listed.draining != true, saver.power(of: host) == .on { return true }
            if saver.power(of: host) == .sleeping { return false }   // the wake failed or timed out
            try? await Task.sleep(for: .milliseconds(100))
        }
        return false
    }
}
