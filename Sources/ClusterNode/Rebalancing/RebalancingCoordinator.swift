import ClusterCore
import ClusterWire
import Foundation
import Logging

/// The leader's rebalancing loop (issue 12): every interval it gathers the managers' usage windows and the
/// books into one observation, lets the pure `Rebalancer` plan, and carries the moves out through
/// `MigrationCoordinator` (per-host limits, progress, abort, books put right), following each to its end.
/// It records every round's plan and refusals and every move with its reason: `GET /v1/rebalancing`.
actor RebalancingCoordinator {
    typealias Managers = @Sendable () async -> [NodeID: GroupLeaderState.ManagerRecord]
    typealias Usage = @Sendable () async -> [ClusterHostUsage]

    let settings: RebalancingSettings
    private var rebalancer: Rebalancer
    private let migrations: MigrationCoordinator
    private let submissions: SubmissionCoordinator
    private let managers: Managers
    private let usage: Usage
    private let log: Logger
    private let started = ContinuousClock.now
    private var loop: Task<Void, Never>?
    private var active = true
    private var paused = false
    private var roundRunning = false
    private var rounds = 0
    private var lastRound: RebalancingStatus.Round?
    private var lastHosts: [RebalancingStatus.Host] = []
    private var moves: [RebalancingStatus.Move] = []
    static let keptMoves = 200

    init(settings: RebalancingSettings, migrations: MigrationCoordinator, submissions: SubmissionCoordinator, logger: Logger,
         managers: @escaping Managers, usage: @escaping Usage) {
        self.settings = settings
        do { rebalancer = try Rebalancer(settings: settings.policy) } catch {
            // The command line validates the same settings; this is only reached by a programming error.
            logger.error("rebalancer settings refused; using the defaults", metadata: ["error": "\(error.message)"])
            rebalancer = try! Rebalancer()
        }
        self.migrations = migrations
        self.submissions = submissions
        self.managers = managers
        self.usage = usage
        self.log = logger
    }

    private var now: MonotonicTime { started.duration(to: .now) }
    private static var wallMillis: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }

    func start() {
        guard loop == nil, settings.mode != .off else { return }
        let interval = settings.interval
        loop = Task { [weak self] in
            while !Task.isCancelled {
                try? await Task.sleep(for: interval)
                guard let self, !Task.isCancelled else { return }
                _ = try? await self.runRound(dryRun: nil, asked: false)
            }
        }
    }

    func stop() {
        active = false
        loop?.cancel()
        loop = nil
    }

    // MARK: - Control (`doze rebalance …`)

    func pause() -> RebalancingStatus {
        if !paused { log.notice("rebalancing paused") }
        paused = true
        return status()
    }

    func resume() -> RebalancingStatus {
        if paused { log.notice("rebalancing resumed") }
        paused = false
        return status()
    }

    /// One round now, even while paused; `dryRun` plans on a copy of the rebalancer and moves nothing.
    func runNow(dryRun: Bool) async throws(DozeError) -> RebalancingStatus {
        if settings.mode == .off && !dryRun {
            throw DozeError(.conflict, "rebalancing is off on this leader (--rebalance off); `doze rebalance run-now --dry-run` still shows the plan")
        }
        _ = try await runRound(dryRun: dryRun || settings.mode == .dryRun, asked: true)
        return status()
    }

    func status() -> RebalancingStatus {
        let policy = settings.policy
        let seconds = { (d: Duration) in Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18 }
        return RebalancingStatus(
            mode: settings.mode.rawValue, paused: paused,
            settings: .init(intervalSeconds: seconds(settings.interval),
                            cpu: .init(low: policy.cpu.low, high: policy.cpu.high), memory: .init(low: policy.memory.low, high: policy.memory.high),
                            hysteresis: policy.hysteresis, dwellSeconds: seconds(policy.dwell), cooldownSeconds: seconds(policy.cooldown),
                            consolidationIntervalSeconds: policy.consolidationInterval.map(seconds), migrationBudget: policy.migrationBudget,
                            estimator: settings.estimator.description),
            rounds: rounds, lastRound: lastRound, hosts: lastHosts, moves: moves)
    }

    // MARK: - Rounds

    /// `dryRun` nil: the round the loop runs every interval (skipped while paused).
    private func runRound(dryRun: Bool?, asked: Bool) async throws(DozeError) -> RebalancingStatus.Round? {
        guard active else { throw DozeError(.unavailable, "this node is no longer the group leader") }
        if !asked && paused { return nil }
        // One round at a time: a run-now waits (bounded) for the loop's round to end.
        let deadline = now + .seconds(30)
        while roundRunning {
            guard now < deadline else { throw DozeError(.unavailable, "a rebalancing round has been running for 30 s; retry later") }
            try? await Task.sleep(for: .milliseconds(50))
        }
        roundRunning = true
        defer { roundRunning = false }

        let observation = await observe()
        let at = now
        let directives: [Rebalancer.Directive]
        let dry = dryRun ?? (settings.mode == .dryRun)
        if dryRun == true && asked && settings.mode != .dryRun {
            var trial = rebalancer   // a value: what-if planning leaves the real timers and moves untouched
            directives = trial.onObservation(hosts: observation.hosts, vms: observation.vms, now: at)
            lastHosts = hostStatuses(observation, by: trial)
        } else {
            directives = rebalancer.onObservation(hosts: observation.hosts, vms: observation.vms, now: at)
            lastHosts = hostStatuses(observation, by: rebalancer)
        }
        rounds += 1

        var plan: [RebalancingStatus.PlannedMove] = []
        var refused: [RebalancingStatus.Refusal] = []
        var idle: [String] = []
        var toStart: [Rebalancer.Move] = []
        for directive in directives {
            switch directive {
            case .migrate(let move):
                plan.append(.init(vm: move.vm, from: move.from, to: move.to, reason: move.reason.rawValue))
                if dry {
                    if settings.mode == .dryRun { rebalancer.withdraw(move) }
                } else {
                    toStart.append(move)
                }
            case .refused(let subject, let why):
                switch subject {
                case .host(let host): refused.append(.init(kind: "host", id: host, reason: why))
                case .vm(let vm): refused.append(.init(kind: "vm", id: vm, reason: why))
                }
            case .markIdle(let host):
                idle.append(host)
                log.info("host idle", metadata: ["doze/lc": "\(host)"])
            }
        }
        let round = RebalancingStatus.Round(at: Self.wallMillis, dryRun: dry, plan: plan, refused: refused, idle: idle)
        lastRound = round
        if !plan.isEmpty {
            log.notice("rebalancing plan", metadata: ["doze/moves": "\(plan.map { "\($0.vm): \($0.from) → \($0.to) (\($0.reason))" })",
                                                      "doze/dryRun": "\(dry)"])
        }
        for move in toStart { await start(move, observation) }
        return round
    }

    /// Starts one move through the migration path; a refusal ends it at once (and the VM cools down).
    private func start(_ move: Rebalancer.Move, _ observation: Observation) async {
        let source = observation.fractions[move.from] ?? (0, 0)
        var entry = RebalancingStatus.Move(vm: move.vm, from: move.from, to: move.to, reason: move.reason.rawValue, migrationId: nil,
                                           state: "running", startedAt: Self.wallMillis,
                                           sourceCPUFraction: source.cpu, sourceMemoryFraction: source.memory)
        do {
            // Queued past the per-host limit, like a drain's: a round may plan more moves on one host than run at once.
            let record = try await migrations.migrate(MigrationSubmission(vm: move.vm, to: move.to), queue: true, knownSource: move.from,
                                                      reason: move.reason.rawValue)
            entry.migrationId = record.id
            entry.state = record.state.rawValue
            remember(entry)
            log.notice("rebalancing move started", metadata: ["doze/vm": "\(move.vm)", "doze/from": "\(move.from)", "doze/to": "\(move.to)",
                                                              "doze/reason": "\(move.reason.rawValue)", "doze/migration": "\(record.id)"])
            let id = record.id
            Task { await self.follow(id, move) }
        } catch {
            entry.state = "refused"
            entry.error = error.message
            entry.finishedAt = Self.wallMillis
            remember(entry)
            rebalancer.onMoveFinished(vm: move.vm, succeeded: false, now: now)
            log.warning("rebalancing move refused", metadata: ["doze/vm": "\(move.vm)", "doze/to": "\(move.to)", "error": "\(error.message)"])
        }
    }

    /// Waits for the migration's end (it always has one: MigrationCoordinator times migrations out).
    private func follow(_ id: String, _ move: Rebalancer.Move) async {
        var failures = 0
        while active {
            do {
                let record = try await migrations.record(id, wait: .seconds(30))
                guard record.state.isFinal else { continue }
                update(id) { entry in
                    entry.state = record.state.rawValue
                    entry.error = record.error
                    entry.finishedAt = record.finishedAt ?? Self.wallMillis
                }
                rebalancer.onMoveFinished(vm: move.vm, succeeded: record.state == .completed, now: now)
                return
            } catch {
                failures += 1
                guard failures < 5 else {
                    update(id) { entry in
                        entry.state = "failed"
                        entry.error = "lost track of migration \(id): \(error.message)"
                        entry.finishedAt = Self.wallMillis
                    }
                    rebalancer.onMoveFinished(vm: move.vm, succeeded: false, now: now)
                    return
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
    }

    private func remember(_ entry: RebalancingStatus.Move) {
        moves.append(entry)
        if moves.count > Self.keptMoves { moves.removeFirst(moves.count - Self.keptMoves) }
    }

    private func update(_ migration: String, _ change: (inout RebalancingStatus.Move) -> Void) {
        guard let index = moves.lastIndex(where: { $0.migrationId == migration }) else { return }
        change(&moves[index])
    }

    // MARK: - Observation

    struct Observation {
        var hosts: [Rebalancer.Host] = []
        var vms: [Rebalancer.VM] = []
        var fractions: [NodeID: (cpu: Double, memory: Double)] = [:]
        var usage: [NodeID: ClusterHostUsage] = [:]
    }

    /// The hosts whose manager answered with its windows, and their VMs. A VM the heartbeats list but the window
    /// has no estimate of yet (just started or arrived) counts at its full share of what the host reports as
    /// requested, and is not moved: a host must not look emptier than it is.
    private func observe() async -> Observation {
        let records = await managers()
        let reported = await usage()
        let migrating = await migrations.migratingVMs()
        let drained = await migrations.drainedHosts()
        let pinned = await submissions.pinnedVMs()
        let byHost = Dictionary(reported.map { ($0.localControllerId, $0) }, uniquingKeysWith: { first, _ in first })
        var observation = Observation()
        observation.usage = byHost
        for record in records.values {
            for controller in record.controllers {
                guard let hostUsage = byHost[controller.id] else { continue }   // its manager did not answer
                let total = controller.summary.total
                let capacity = HostUsage(vcpus: Int(total.vcpus), memoryMiB: Int(total.memoryKiB / 1024))
                observation.hosts.append(Rebalancer.Host(id: controller.id, capacity: capacity,
                                                         draining: controller.draining == true || drained.contains(controller.id)))
                var known = Set<String>()
                var knownCPU = 0.0, knownMemory = 0.0
                for vm in hostUsage.virtualMachines where controller.vms.contains(vm.vm) {
                    known.insert(vm.vm)
                    knownCPU += Double(vm.vcpus)
                    knownMemory += Double(vm.memoryMiB)
                    let state: Rebalancer.VM.State = migrating.contains(vm.vm) ? .migrating : vm.paused ? .suspended : .running
                    observation.vms.append(Rebalancer.VM(id: vm.vm, host: controller.id, cpuInUse: vm.vcpusInUse, memoryUsedMiB: vm.memoryUsedMiB,
                                                         requestedMemoryMiB: vm.memoryMiB, requestedVCPUs: vm.vcpus, state: state,
                                                         pinned: pinned.contains(vm.vm)))
                }
                let unknown = controller.vms.filter { !known.contains($0) }
                if !unknown.isEmpty {
                    let requested = controller.summary.requested
                    let cpu = max(0, requested.vcpus - knownCPU) / Double(unknown.count)
                    let memory = max(0, requested.memoryKiB / 1024 - knownMemory) / Double(unknown.count)
                    for name in unknown {
                        observation.vms.append(Rebalancer.VM(id: name, host: controller.id, cpuInUse: cpu, memoryUsedMiB: memory,
                                                             requestedMemoryMiB: Int(memory.rounded(.up)), requestedVCPUs: Int(cpu.rounded(.up)),
                                                             pinned: true))
                    }
                }
                var used = (cpu: 0.0, memory: 0.0)
                for vm in observation.vms where vm.host == controller.id {
                    used.cpu += vm.cpuInUse
                    used.memory += vm.memoryUsedMiB
                }
                observation.fractions[controller.id] = (capacity.vcpus > 0 ? used.cpu / Double(capacity.vcpus) : 0,
                                                        capacity.memoryMiB > 0 ? used.memory / Double(capacity.memoryMiB) : 0)
            }
        }
        return observation
    }

    private func hostStatuses(_ observation: Observation, by rebalancer: Rebalancer) -> [RebalancingStatus.Host] {
        observation.hosts.sorted { $0.id < $1.id }.map { host in
            let fractions = observation.fractions[host.id] ?? (0, 0)
            let vms = observation.vms.filter { $0.host == host.id }
            return RebalancingStatus.Host(id: host.id, condition: rebalancer.condition(of: host.id).rawValue,
                                          cpuFraction: fractions.cpu, memoryFraction: fractions.memory,
                                          vcpusInUse: vms.reduce(0) { $0 + $1.cpuInUse }, memoryUsedMiB: vms.reduce(0) { $0 + $1.memoryUsedMiB },
                                          vms: vms.count, draining: host.draining)
        }
    }
}
