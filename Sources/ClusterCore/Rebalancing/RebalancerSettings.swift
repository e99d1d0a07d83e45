extension Rebalancer {
    /// The bounds of one resource, as fractions of a host's capacity.
    public struct Thresholds: Sendable, Equatable {
        /// Below this on every resource, a host is underloaded (a candidate to be emptied). 0 turns it off.
        public var low: Double
        /// Above this on any resource, a host is overloaded; no move may put a target above it.
        public var high: Double

        public init(low: Double, high: Double) {
            self.low = low
            self.high = high
        }
    }

    /// What the rebalancer aims for and how cautiously it moves. Build one, then call `validated()` (the
    /// `Rebalancer` initialiser does): a bad value is refused with a message naming it, never clamped.
    public struct Settings: Sendable, Equatable {
        public var cpu = Thresholds(low: 0.2, high: 0.8)
        public var memory = Thresholds(low: 0.2, high: 0.8)
        /// A host that went over `high` stays overloaded until every resource is below `high - hysteresis`,
        /// so a host hovering at the threshold does not flap in and out.
        public var hysteresis = 0.05
        /// How long a host must stay continuously overloaded (or underloaded) before anything moves.
        public var dwell: Duration = .seconds(60)
        /// How long a moved VM stays put before it may be moved again (counted from the move's end).
        public var cooldown: Duration = .seconds(300)
        /// How often to consolidate (pack VMs onto fewer hosts); nil: never, the default.
        public var consolidationInterval: Duration?
        /// The most migrations one round may start, all policies together.
        public var migrationBudget = 4

        public init(configure: (inout Settings) -> Void = { _ in }) {
            configure(&self)
        }

        public func validated() throws(DozeError) -> Settings {
            try Self.check(cpu, "cpu")
            try Self.check(memory, "memory")
            guard hysteresis.isFinite, hysteresis >= 0 else {
                throw DozeError(.badRequest, "rebalancer hysteresis must be >= 0, got \(hysteresis)")
            }
            for (thresholds, name) in [(cpu, "cpu"), (memory, "memory")] {
                // Shedding stops below high - hysteresis; if that were at or under `low`, a relieved host
                // would at once count as underloaded and be emptied: the two policies would fight.
                guard thresholds.high - hysteresis > thresholds.low else {
                    throw DozeError(.badRequest, "rebalancer \(name) high threshold minus hysteresis (\(thresholds.high) - \(hysteresis)) "
                        + "must stay above the low threshold \(thresholds.low)")
                }
            }
            guard dwell > .zero else { throw DozeError(.badRequest, "rebalancer dwell time must be > 0, got \(dwell)") }
            guard cooldown > .zero else { throw DozeError(.badRequest, "rebalancer cool-down must be > 0, got \(cooldown)") }
            if let consolidationInterval, consolidationInterval <= .zero {
                throw DozeError(.badRequest, "rebalancer consolidation interval must be > 0 (or off), got \(consolidationInterval)")
            }
            guard migrationBudget >= 1 else {
                throw DozeError(.badRequest, "rebalancer migration budget must be >= 1 per round, got \(migrationBudget)")
            }
            return self
        }

        private static func check(_ thresholds: Thresholds, _ name: String) throws(DozeError) {
            guard thresholds.high.isFinite, thresholds.high > 0, thresholds.high <= 1 else {
                throw DozeError(.badRequest, "rebalancer \(name) high threshold must be a fraction in (0, 1], got \(thresholds.high)")
            }
            guard thresholds.low.isFinite, thresholds.low >= 0, thresholds.low < 1 else {
                throw DozeError(.badRequest, "rebalancer \(name) low threshold must be a fraction in [0, 1), got \(thresholds.low)")
            }
            guard thresholds.low < thresholds.high else {
                throw DozeError(.badRequest, "rebalancer \(name) low threshold \(thresholds.low) must be below its high threshold \(thresholds.high)")
            }
        }
    }
}
