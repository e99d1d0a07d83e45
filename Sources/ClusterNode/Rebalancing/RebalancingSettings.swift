import ClusterCore

/// How the leader rebalances (issue 12) and how managers smooth the usage it rests on.
public struct RebalancingSettings: Sendable {
    public enum Mode: String, Sendable, CaseIterable {
        /// Plans every interval and carries out the moves.
        case on
        /// Never plans; usage is still collected and shown.
        case off
        /// Plans every interval and records the plan; moves nothing.
        case dryRun = "dry-run"
    }

    public var mode: Mode = .on
    /// Time between rounds: about the controllers' `--usage-interval`, so each round sees fresh samples.
    public var interval: Duration = .seconds(5)
    /// Underload relocation is off unless a low threshold is given: emptying hosts is for energy saving.
    public var policy = Rebalancer.Settings { settings in
        settings.cpu.low = 0
        settings.memory.low = 0
        settings.dwell = .seconds(10)
        settings.cooldown = .seconds(120)
    }
    /// The managers' window per host and VM.
    public var estimator: UsageEstimator = try! UsageEstimator.average(window: .seconds(30))

    public init() {}
}
