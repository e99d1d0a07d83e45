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
