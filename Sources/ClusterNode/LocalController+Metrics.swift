import ClusterCore
import Hypervisor
import Logging

extension LocalController {
    /// Reads the counters of every active VM and, from the second reading on, stores one sample.
    public func takeSample(monotonicSeconds: Double, wallTime: Double) async {
        var domains: [String: HostReading.DomainCounters] = [:]
        var memory: UInt64 = 0
        for record in vms.values where record.info.state.isActive {
            guard let stats = try? await hypervisor.stats(.uuid(record.info.uuid)) else { continue }
            domains[record.info.uuid] = .init(cpuTimeNs: stats.cpuTimeNs, rxBytes: stats.rxBytes, txBytes: stats.txBytes)
            memory += stats.memoryKiB
        }
        let reading = HostReading(monotonicSeconds: monotonicSeconds, domains: domains, activeMemoryKiB: memory)
        let step = metricsSeries.onReading(reading, hostCPUs: node.cpus, wallTime: wallTime)
        if let sample = step.sample {
            do { try metrics.append(sample) } catch {
                log.warning("cannot store a metrics sample", metadata: ["error": "\(error)"])
            }
        }
        if let cutoff = step.pruneBefore { metrics.prune(olderThan: cutoff) }
    }
}
