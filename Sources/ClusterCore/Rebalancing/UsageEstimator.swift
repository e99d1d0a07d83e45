/// Smooths one usage series (a VM's vCPUs in use, or its memory in MiB) before the rebalancer sees it, so one
/// spike does not move a VM. Pure: samples come with their `now`; the shell keeps one per VM and resource.
///
/// `.average(window:)`: the mean of the samples of the last `window` (Snooze averaged its last 15 samples).
/// `.ewma(alpha:)`: `estimate = alpha × sample + (1 - alpha) × estimate`, per sample (not per second).
/// Samples older than the newest one, and non-finite ones, are dropped: they come from the network.
public struct UsageEstimator: Sendable, Equatable {
    public enum Method: Sendable, Equatable {
        case average(window: Duration)
        case ewma(alpha: Double)
    }

    public let method: Method
    private var samples: [(at: MonotonicTime, value: Double)] = []
    private var smoothed: Double?
    private var newest: MonotonicTime?

    public static func average(window: Duration) throws(DozeError) -> UsageEstimator {
        guard window > .zero else { throw DozeError(.badRequest, "usage estimator window must be > 0, got \(window)") }
        return UsageEstimator(method: .average(window: window))
    }

    public static func ewma(alpha: Double) throws(DozeError) -> UsageEstimator {
        guard alpha.isFinite, alpha > 0, alpha <= 1 else {
            throw DozeError(.badRequest, "usage estimator EWMA alpha must be in (0, 1], got \(alpha)")
        }
        return UsageEstimator(method: .ewma(alpha: alpha))
    }

    private init(method: Method) {
        self.method = method
    }

    public mutating func record(_ value: Double, now: MonotonicTime) {
        guard value.isFinite, value >= 0, newest.map({ now >= $0 }) ?? true else { return }
        newest = now
        switch method {
        case .average(let window):
            samples.append((now, value))
            samples.removeAll { now - $0.at >= window }
        case .ewma(let alpha):
            smoothed = smoothed.map { alpha * value + (1 - alpha) * $0 } ?? value
        }
    }

    /// The smoothed value at `now`; nil before the first sample, or when every sample of the window is older
    /// than `window` (an average of nothing is not zero).
    public func estimate(now: MonotonicTime) -> Double? {
        switch method {
        case .average(let window):
            let recent = samples.filter { now - $0.at < window }
            return recent.isEmpty ? nil : recent.reduce(0) { $0 + $1.value } / Double(recent.count)
        case .ewma:
            return smoothed
        }
    }

    public static func == (l: Self, r: Self) -> Bool {
        l.method == r.method && l.smoothed == r.smoothed && l.newest == r.newest
            && l.samples.map(\.at) == r.samples.map(\.at) && l.samples.map(\.value) == r.samples.map(\.value)
    }
}

extension UsageEstimator {
    /// What a controller smooths its VMs' use with unless told otherwise: the mean of the last 30 seconds.
    public static let defaultForSampling = UsageEstimator(method: .average(window: .seconds(30)))

    /// Parses `average:SECONDS` or `ewma:ALPHA` (the `--usage-estimator` syntax).
    public static func parse(_ text: String) throws(DozeError) -> UsageEstimator {
        let parts = text.split(separator: ":", maxSplits: 1, omittingEmptySubsequences: false).map(String.init)
        let syntax = "use average:SECONDS (e.g. average:30) or ewma:ALPHA (e.g. ewma:0.3)"
        guard parts.count == 2 else { throw DozeError(.badRequest, "usage estimator '\(text)' is not understood; \(syntax)") }
        guard let number = Double(parts[1]), number.isFinite else {
            throw DozeError(.badRequest, "usage estimator '\(text)': '\(parts[1])' is not a number; \(syntax)")
        }
        switch parts[0] {
        case "average":
            guard number > 0, number <= 86_400 else {
                throw DozeError(.badRequest, "usage estimator window must be from more than 0 to 86400 seconds, got \(parts[1])")
            }
            return try average(window: .milliseconds(Int64((number * 1000).rounded())))
        case "ewma":
            return try ewma(alpha: number)
        default:
            throw DozeError(.badRequest, "usage estimator '\(parts[0])' is unknown; \(syntax)")
        }
    }
}

extension UsageEstimator: CustomStringConvertible {
    /// The form `parse` reads: `average:30`, `ewma:0.3`.
    public var description: String {
        switch method {
        case .average(let window):
            let seconds = Double(window.components.seconds) + Double(window.components.attoseconds) / 1e18
            return "average:" + (seconds == seconds.rounded() ? "\(Int(seconds))" : "\(seconds)")
        case .ewma(let alpha):
            return "ewma:\(alpha)"
        }
    }
}
