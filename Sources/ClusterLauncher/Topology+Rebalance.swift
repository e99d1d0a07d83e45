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
