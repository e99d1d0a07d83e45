import ArgumentParser
import ClusterCore
import ClusterNode
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1

/// How the leader rebalances (issue 12), on `doze gm`: every group manager takes them, the one that leads uses them.
struct RebalanceOptions: ParsableArguments {
    @Option(help: "on: move VMs off overloaded hosts (and underloaded ones, with a low threshold); dry-run: plan only; off.")
    var rebalance = "on"

    @Option(help: "Seconds between rebalancing rounds.")
    var rebalanceInterval: Double = 5

    @Option(help: "Share of a host's vCPUs in use above which it is overloaded (0 < x <= 1).")
    var cpuHigh = 0.8

    @Option(help: "Share of vCPUs in use below which (with memory too) a host is underloaded and emptied; 0: never.")
    var cpuLow = 0.0

    @Option(help: "Share of a host's memory in use above which it is overloaded (0 < x <= 1).")
    var memoryHigh = 0.8

    @Option(help: "Share of memory in use below which (with vCPUs too) a host is underloaded and emptied; 0: never.")
    var memoryLow = 0.0

    @Option(help: "An overloaded host is relieved once every share is below the high threshold minus this.")
    var rebalanceHysteresis = 0.05

    @Option(help: "Seconds a host must stay over (or under) a threshold before any VM moves.")
    var rebalanceDwell: Double = 10

    @Option(help: "Seconds a moved VM stays put before it may move again.")
    var rebalanceCooldown: Double = 120

    @Option(help: "Minutes between consolidation rounds (pack VMs onto fewer hosts); 0: never.")
    var consolidationInterval: Double = 0

    @Option(help: "The most migrations one round may start.")
    var migrationBudget = 4

    @Option(help: "How managers smooth usage samples: average:SECONDS or ewma:ALPHA.")
    var usageEstimator = "average:30"

    func validate() throws { _ = try settings() }

    func settings() throws -> RebalancingSettings {
        var settings = RebalancingSettings()
        guard let mode = RebalancingSettings.Mode(rawValue: rebalance) else {
            throw ValidationError("--rebalance must be on, off or dry-run, got '\(rebalance)'")
        }
        settings.mode = mode
        for (name, value) in [("rebalance-interval", rebalanceInterval), ("rebalance-dwell", rebalanceDwell),
                              ("rebalance-cooldown", rebalanceCooldown)] where !(value.isFinite && value > 0 && value <= 86_400) {
            throw ValidationError("--\(name) must be a number of seconds above 0 and at most 86400, got \(value)")
        }
        guard consolidationInterval.isFinite, consolidationInterval >= 0, consolidationInterval <= 10_080 else {
            throw ValidationError("--consolidation-interval must be from 0 (never) to 10080 minutes, got \(consolidationInterval)")
        }
        settings.interval = Self.duration(rebalanceInterval)
        settings.policy.cpu = .init(low: cpuLow, high: cpuHigh)
        settings.policy.memory = .init(low: memoryLow, high: memoryHigh)
        settings.policy.hysteresis = rebalanceHysteresis
        settings.policy.dwell = Self.duration(rebalanceDwell)
        settings.policy.cooldown = Self.duration(rebalanceCooldown)
        settings.policy.consolidationInterval = consolidationInterval > 0 ? Self.duration(consolidationInterval * 60) : nil
        settings.policy.migrationBudget = migrationBudget
        do {
            settings.policy = try settings.policy.validated()
            settings.estimator = try UsageEstimator.parse(usageEstimator)
        } catch {
            throw ValidationError(error.message)
        }
        return settings
    }

    static func duration(_ seconds: Double) -> Duration { .milliseconds(Int64((seconds * 1000).rounded())) }
}

/// Energy saving (issue 12), on `doze gm`: on when both agents are given.
struct EnergyOptions: ParsableArguments {
    @Option(help: "Puts an idle host to sleep: a shell command, run with the host's id and HOST:PORT appended; exit 0 once it is down.")
    var powerOffCommand: String?

    @Option(help: "Wakes a sleeping host when placement needs room, run the same way; exit 0 once it is starting.")
    var wakeCommand: String?

    @Option(help: "Seconds a host must hold no VM before it is put to sleep.")
    var idleBeforeSleep: Double = 300

    @Option(help: "Hosts always kept awake.")
    var minAwake = 1

    @Option(help: "Seconds a woken host has to be heard again before the wake counts as failed.")
    var wakeTimeout: Double = 120

    @Option(help: "Seconds an agent may run.")
    var agentTimeout: Double = 120

    func validate() throws { _ = try settings() }

    func settings() throws -> EnergySettings {
        var settings = EnergySettings()
        guard (powerOffCommand == nil) == (wakeCommand == nil) else {
            throw ValidationError("--power-off-command and --wake-command go together: a host put to sleep must be woken")
        }
        for (name, command) in [("power-off-command", powerOffCommand), ("wake-command", wakeCommand)] {
            guard let command else { continue }
            guard let first = command.split(separator: " ").first, !command.trimmingCharacters(in: .whitespaces).isEmpty else {
                throw ValidationError("--\(name) is empty")
            }
            let program = String(first)
            if program.contains("/") && !FileManager.default.isExecutableFile(atPath: program) {
                throw ValidationError("--\(name): \(program) is not an executable file")
            }
        }
        for (name, value) in [("idle-before-sleep", idleBeforeSleep), ("wake-timeout", wakeTimeout), ("agent-timeout", agentTimeout)]
            where !(value.isFinite && value > 0 && value <= 86_400) {
            throw ValidationError("--\(name) must be a number of seconds above 0 and at most 86400, got \(value)")
        }
        guard minAwake >= 1 else { throw ValidationError("--min-awake must be at least 1, got \(minAwake)") }
        settings.powerOffCommand = powerOffCommand
        settings.wakeCommand = wakeCommand
        settings.saver.idleTime = RebalanceOptions.duration(idleBeforeSleep)
        settings.saver.minimumAwake = minAwake
        settings.saver.wakeTimeout = RebalanceOptions.duration(wakeTimeout)
        settings.agentTimeout = RebalanceOptions.duration(agentTimeout)
        return settings
    }
}

struct RebalanceCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rebalance", abstract: "Watch and steer the leader's rebalancing: status, run-now, pause, resume.",
        subcommands: [Status.self, RunNow.self, Pause.self, Resume.self], defaultSubcommand: Status.self)

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Hosts' load against the thresholds, the last plan, refusals and moves.")
        @Option(help: "Moves to print, newest last.")
        var moves = 10
        @Option(help: "First wait up to this many seconds until the rebalancer has moved a VM, no move is still running and its last round planned none (exit 1 if not).")
        var waitSettled: Double?
        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                var raw = try await api.call(.GET, "/v1/rebalancing")
                if let limit = waitSettled {
                    let deadline = ContinuousClock.now + RebalanceOptions.duration(limit)
                    while !RebalanceCommand.settled(try api.decode(RebalancingStatus.self, raw)) {
                        guard ContinuousClock.now < deadline else {
                            printError("the rebalancer did not settle within \(RebalanceCommand.trim(limit)) s")
                            print(RebalanceCommand.render(try api.decode(RebalancingStatus.self, raw), moves: moves))
                            throw ExitCode.failure
                        }
                        try await Task.sleep(for: .milliseconds(500))
                        raw = try await api.call(.GET, "/v1/rebalancing")
                    }
                }
                if client.json { print(String(buffer: raw)); return }
                print(RebalanceCommand.render(try api.decode(RebalancingStatus.self, raw), moves: moves))
            }
        }
    }

    struct RunNow: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "run-now", abstract: "Run one round now (dwell times still apply); with --dry-run, only print its plan.")
        @Flag(help: "Plan without moving anything.")
        var dryRun = false
        @OptionGroup var client: ClientOptions

        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                let raw = try await api.call(.POST, "/v1/rebalancing/run-now" + (dryRun ? "?dryRun=true" : ""), body: "")
                if client.json { print(String(buffer: raw)); return }
                print(RebalanceCommand.render(try api.decode(RebalancingStatus.self, raw), moves: 10))
            }
        }
    }

    struct Pause: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Stop planning and moving until resumed (running migrations go on).")
        @OptionGroup var client: ClientOptions
        func run() async throws { try await RebalanceCommand.control("pause", client) }
    }

    struct Resume: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Plan and move again.")
        @OptionGroup var client: ClientOptions
        func run() async throws { try await RebalanceCommand.control("resume", client) }
    }

    static func control(_ operation: String, _ client: ClientOptions) async throws {
        try await reportingFailures {
            let api = try client.client()
            let raw = try await api.call(.POST, "/v1/rebalancing/\(operation)", body: "")
            if client.json { print(String(buffer: raw)); return }
            let status = try api.decode(RebalancingStatus.self, raw)
            print("rebalancing \(status.paused ? "paused" : "running") (mode \(status.mode))")
        }
    }

    static func settled(_ status: RebalancingStatus) -> Bool {
        !status.moves.isEmpty && !status.moves.contains { $0.state == "running" || $0.state == "queued" }
            && (status.lastRound?.plan.isEmpty ?? false)
    }

    static func percent(_ fraction: Double) -> String { "\(Int((fraction * 100).rounded()))%" }

    static func render(_ status: RebalancingStatus, moves limit: Int) -> String {
        let s = status.settings
        var out = "mode \(status.mode)\(status.paused ? " (paused)" : ""), round every \(trim(s.intervalSeconds)) s, "
            + "cpu \(percent(s.cpu.low))–\(percent(s.cpu.high)), memory \(percent(s.memory.low))–\(percent(s.memory.high)), "
            + "dwell \(trim(s.dwellSeconds)) s, estimator \(s.estimator), rounds \(status.rounds)\n"
        var hosts = TextTable("HOST", "CPU", "MEMORY", "VCPUS IN USE", "VMS", "CONDITION")
        for host in status.hosts {
            hosts.add([String(host.id.prefix(8)), percent(host.cpuFraction), percent(host.memoryFraction),
                       String(format: "%.2f", host.vcpusInUse), "\(host.vms)", host.condition + (host.draining ? ", drained" : "")])
        }
        out += hosts.render()
        if let round = status.lastRound {
            out += "\nlast round\(round.dryRun ? " (dry run)" : ""): " + (round.plan.isEmpty ? "no move" : "\(round.plan.count) move(s)")
            for move in round.plan { out += "\n  plan: \(move.vm) \(move.from.prefix(8)) → \(move.to.prefix(8)) (\(move.reason))" }
            for refusal in round.refused { out += "\n  refused: \(refusal.reason)" }
            for host in round.idle { out += "\n  idle: \(host.prefix(8))" }
        }
        let recent = status.moves.suffix(max(0, limit))
        if !recent.isEmpty {
            var table = TextTable("VM", "FROM", "TO", "REASON", "STATE", "SOURCE CPU", "SOURCE MEM", "MIGRATION")
            for move in recent {
                table.add([move.vm, String(move.from.prefix(8)), String(move.to.prefix(8)), move.reason,
                           move.state + (move.error.map { ": \($0)" } ?? ""), percent(move.sourceCPUFraction), percent(move.sourceMemoryFraction),
                           move.migrationId.map { String($0.prefix(8)) } ?? "-"])
            }
            out += "\nmoves:\n" + table.render()
        }
        return out
    }

    static func trim(_ value: Double) -> String { value == value.rounded() ? "\(Int(value))" : "\(value)" }
}

extension VMCommand {
    struct Load: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Declare what a VM uses, on test-driver hosts only (they measure no real load): the rebalancer acts on it.")
        @Argument(help: "The VM's id (its name).")
        var id: String
        @Option(help: "vCPUs busy, 0 … the VM's vCPUs (e.g. 1.8).")
        var vcpus: Double?
        @Option(help: "Memory in use, MiB, 0 … the VM's memory.")
        var memoryMib: Double?
        @Flag(help: "Forget the declared load: samples measure again.")
        var clear = false
        @OptionGroup var client: ClientOptions

        func validate() throws {
            guard clear != (vcpus != nil || memoryMib != nil) else { throw ValidationError("give --vcpus and/or --memory-mib, or --clear") }
        }

        func run() async throws {
            try await reportingFailures {
                let api = try client.client()
                var body: [String: Double] = [:]
                if let vcpus { body["vcpus"] = vcpus }
                if let memoryMib { body["memoryMiB"] = memoryMib }
                let raw = try await api.call(.POST, "/v1/vms/\(BootstrapClient.segment(id))/load", body: body)
                if client.json { print(String(buffer: raw)); return }
                let load = try api.decode(SyntheticLoadDocument.self, raw)
                let parts = [load.vcpus.map { "vcpus \($0)" }, load.memoryMiB.map { "memory \(Int($0)) MiB" }].compactMap { $0 }
                print("\(id): " + (parts.isEmpty ? "load cleared" : "load " + parts.joined(separator: ", ")))
            }
        }
    }
}
