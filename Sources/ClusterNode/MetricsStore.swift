import ClusterCore
import Foundation

/// Host metrics samples on disk: one JSON-lines file per UTC day under `STATE/metrics/`, so they survive a
/// restart and old days are deleted whole.
struct MetricsStore: Sendable {
    let directory: String

    init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    private static func dayName(_ time: Double) -> String {
        let days = Int((time / 86400).rounded(.down))
        let date = Date(timeIntervalSince1970: Double(days) * 86400)
        var cal = Calendar(identifier: .gregorian)
        cal.timeZone = TimeZone(identifier: "UTC")!
        let components = cal.dateComponents([.year, .month, .day], from: date)
        return String(format: "%04d-%02d-%02d", components.year ?? 0, components.month ?? 0, components.day ?? 0)
    }

    func append(_ sample: MetricsSample) throws {
        var line = try JSONEncoder().encode(sample)
        line.append(0x0A)
        let path = "\(directory)/\(Self.dayName(sample.time)).jsonl"
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        defer { close(fd) }
        _ = line.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// Every sample with `from <= time < to`. A torn last line (crash mid-write) is skipped.
    func samples(from: Double, to: Double) -> [MetricsSample] {
        var result: [MetricsSample] = []
        let decoder = JSONDecoder()
        var day = (from / 86400).rounded(.down) * 86400
        while day < to {
            let path = "\(directory)/\(Self.dayName(day)).jsonl"
            if let data = FileManager.default.contents(atPath: path) {
                for line in data.split(separator: 0x0A) {
                    if let sample = try? decoder.decode(MetricsSample.self, from: line), sample.time >= from, sample.time < to {
                        result.append(sample)
                    }
                }
            }
            day += 86400
        }
        return result
    }

    func prune(olderThan cutoff: Double) {
        let keep = Self.dayName(cutoff)
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else { return }
        for name in names where name.hasSuffix(".jsonl") && String(name.dropLast(6)) < keep {
            try? FileManager.default.removeItem(atPath: "\(directory)/\(name)")
        }
    }
}
