import Foundation

extension Topology {
    /// `rebalance:` — the `doze gm` rebalancing flags (and the controllers' `--usage-interval`), each optional:
    /// ```yaml
    /// rebalance: { mode: on, interval_s: 5, cpu_high: 0.8, dwell_s: 10, usage_estimator: "ewma:0.5", usage_interval_s: 2 }
    /// ```
    /// Values are checked by the nodes themselves, which refuse to start with a message naming the flag.
    public struct Rebalance: Sendable, Codable {
        public var mode: String?
        public var intervalS: Double?
        public var cpuHigh: Double?
        public var cpuLow: Double?
        public var memoryHigh: Double?
        public var memoryLow: Double?
        public var hysteresis: Double?
        public var dwellS: Double?
        public var cooldownS: Double?
        public var consolidationIntervalMin: Double?
        public var migrationBudget: Int?
        public var usageEstimator: String?
        public var usageIntervalS: Double?

        enum CodingKeys: String, CodingKey {
            case mode, intervalS = "interval_s", cpuHigh = "cpu_high", cpuLow = "cpu_low", memoryHigh = "memory_high"
            case memoryLow = "memory_low", hysteresis, dwellS = "dwell_s", cooldownS = "cooldown_s"
            case consolidationIntervalMin = "consolidation_interval_min", migrationBudget = "migration_budget"
            case usageEstimator = "usage_estimator", usageIntervalS = "usage_interval_s"
        }

        var managerArguments: [String] {
            var args: [String] = []
            if let mode { args += ["--rebalance", mode] }
            let numbers: [(String, Double?)] = [
                ("--rebalance-interval", intervalS), ("--cpu-high", cpuHigh), ("--cpu-low", cpuLow), ("--memory-high", memoryHigh),
                ("--memory-low", memoryLow), ("--rebalance-hysteresis", hysteresis), ("--rebalance-dwell", dwellS),
                ("--rebalance-cooldown", cooldownS), ("--consolidation-interval", consolidationIntervalMin),
            ]
            for (flag, value) in numbers { if let value { args += [flag, "\(value)"] } }
            if let migrationBudget { args += ["--migration-budget", "\(migrationBudget)"] }
            if let usageEstimator { args += ["--usage-estimator", usageEstimator] }
            return args
        }

        var controllerArguments: [String] {
            usageIntervalS.map { ["--usage-interval", "\($0)"] } ?? []
        }
    }
}

extension Topology {
    /// `energy:` — the `doze gm` energy-saving flags:
    /// ```yaml
    /// energy: { power_off: "power-agent.py off {layout}", wake: "power-agent.py on {layout}", idle_s: 60 }
    /// ```
    /// A command's first word, when it names a file next to the topology, is made absolute; `{layout}` becomes the
    /// run directory's layout.json (what `topology/power-agent.py` reads to find the host's processes).
    public struct Energy: Sendable, Codable {
        public var powerOff: String
        public var wake: String
        public var idleS: Double?
        public var minAwake: Int?
        public var wakeTimeoutS: Double?
        public var agentTimeoutS: Double?

        enum CodingKeys: String, CodingKey {
            case powerOff = "power_off", wake, idleS = "idle_s", minAwake = "min_awake", wakeTimeoutS = "wake_timeout_s"
            case agentTimeoutS = "agent_timeout_s"
        }

        func managerArguments(resolve: (String) -> String, layoutFile: String) -> [String] {
            func command(_ text: String) -> String {
                var words = text.split(separator: " ", omittingEmptySubsequences: true).map(String.init)
                if let first = words.first, !first.hasPrefix("/"), FileManager.default.fileExists(atPath: resolve(first)) {
                    words[0] = resolve(first)
                }
                return words.joined(separator: " ").replacingOccurrences(of: "{layout}", with: layoutFile)
            }
            var args = ["--power-off-command", command(powerOff), "--wake-command", command(wake)]
            if let idleS { args += ["--idle-before-sleep", "\(idleS)"] }
            if let minAwake { args += ["--min-awake", "\(minAwake)"] }
            if let wakeTimeoutS { args += ["--wake-timeout", "\(wakeTimeoutS)"] }
            if let agentTimeoutS { args += ["--agent-timeout", "\(agentTimeoutS)"] }
            return args
        }
    }
}
