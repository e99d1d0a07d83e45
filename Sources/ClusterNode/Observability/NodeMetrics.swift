import ClusterCore
import CoreMetrics
import Metrics
import Prometheus
import Synchronization

/// One node's metrics: its own Prometheus registry, swift-metrics handles made through a factory over it, and
/// what `/metrics` shows. Nothing is bootstrapped globally (`MetricsSystem.bootstrap` may run once per process,
/// and tests run many nodes in one process): the runtime makes one `NodeMetrics` per node and hands it down.
///
/// Names follow Prometheus' conventions: the `doze_` prefix, `_total` counters, base units (`_seconds`,
/// `_bytes`), snake_case labels, and no ids or query strings in HTTP labels (the route pattern only).
public final class NodeMetrics: Sendable {
    public let registry: PrometheusCollectorRegistry
    let factory: PrometheusHelpFactory
    /// Heartbeat counts as `HeartbeatLink.statistics` last showed them: the link keeps plain totals, and each
    /// scrape adds what grew since the previous one.
    private let heartbeatsSeen = Mutex<[String: Int]>([:])
    /// The capacity gauges of each controller on show, so those of a controller that left are removed.
    private let hostGauges = Mutex<[String: HostGauges]>([:])

    static let requestBuckets: [Duration] = [.milliseconds(1), .milliseconds(5), .milliseconds(10), .milliseconds(25),
                                             .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
                                             .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10)]
    static let submissionBuckets: [Duration] = [.milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
                                                .seconds(1), .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30),
                                                .seconds(60), .seconds(120), .seconds(300)]
    static let migrationBuckets: [Duration] = [.milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1),
                                               .milliseconds(2500), .seconds(5), .seconds(10), .seconds(30), .seconds(60),
                                               .seconds(120), .seconds(300), .seconds(600)]

    /// Every family Doze exports, with its help text.
    static let help: [String: String] = [
        "doze_http_requests_total": "HTTP requests served, by route pattern, method and status code.",
        "doze_http_request_duration_seconds": "Time to answer an HTTP request, by route pattern and method.",
        "doze_heartbeats_sent_total": "Heartbeat datagrams sent.",
        "doze_heartbeats_accepted_total": "Heartbeat datagrams received and accepted.",
        "doze_heartbeats_dropped_total": "Heartbeat datagrams dropped, by reason.",
        "doze_leader_term": "The election term of the group leader this node follows or is (0: none known).",
        "doze_leader_changes_total": "Times this node saw the group leader change (a new term or a new leader).",
        "doze_election_wins_total": "Terms this group manager won and led.",
        "doze_election_step_downs_total": "Times this group manager stopped leading.",
        "doze_is_leader": "1 while this group manager is the group leader, else 0.",
        "doze_submissions_total": "Virtual-cluster submissions by outcome: success, partial, failure (once final), or rejected.",
        "doze_submission_duration_seconds": "Time from a submission's acceptance to its last VM being final.",
        "doze_migrations_total": "Live migrations by outcome (their final state).",
        "doze_migration_duration_seconds": "Time a live migration took, from its start to its end.",
        "doze_host_vcpus": "vCPUs a host offers (its quota), per controller.",
        "doze_host_vcpus_used": "vCPUs the VMs of a host hold, per controller.",
        "doze_host_memory_bytes": "Memory a host offers (its quota), per controller.",
        "doze_host_memory_used_bytes": "Memory the VMs of a host hold, per controller.",
        "doze_host_vms": "VMs on a host, per controller.",
    ]

    public init() {
        registry = PrometheusCollectorRegistry()
        factory = PrometheusHelpFactory(registry: registry, help: Self.help, buckets: [
            "doze_http_request_duration_seconds": Self.requestBuckets,
            "doze_submission_duration_seconds": Self.submissionBuckets,
            "doze_migration_duration_seconds": Self.migrationBuckets,
        ])
    }

    /// The text exposition format (version 0.0.4).
    public func exposition() -> [UInt8] { registry.emitToBuffer() }
    public static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    // MARK: - Events

    func counter(_ name: String, _ labels: [(String, String)] = []) -> CoreMetrics.Counter {
        CoreMetrics.Counter(label: name, dimensions: labels, factory: factory)
    }

    func gauge(_ name: String, _ labels: [(String, String)] = []) -> CoreMetrics.Gauge {
        CoreMetrics.Gauge(label: name, dimensions: labels, factory: factory)
    }

    func timer(_ name: String, _ labels: [(String, String)] = []) -> CoreMetrics.Timer {
        CoreMetrics.Timer(label: name, dimensions: labels, factory: factory)
    }

    func httpRequest(route: String, method: String, status: Int, duration: Duration) {
        counter("doze_http_requests_total", [("route", route), ("method", method), ("status", "\(status)")]).increment()
        timer("doze_http_request_duration_seconds", [("route", route), ("method", method)]).record(duration: duration)
    }

    /// A submission became final (`after`: since it was accepted), or was refused (`rejected`, no duration).
    func submissionEnded(_ outcome: SubmissionOutcome, after duration: Duration?) {
        counter("doze_submissions_total", [("outcome", outcome.rawValue)]).increment()
        if let duration { timer("doze_submission_duration_seconds").record(duration: duration) }
    }

    enum SubmissionOutcome: String, CaseIterable {
        case success, partial, failure, rejected

        /// Every VM running: success; none: failure; some: partial.
        init(running: Int, failed: Int) {
            self = failed == 0 ? .success : running == 0 ? .failure : .partial
        }
    }

    func migrationEnded(state: String, after duration: Duration?) {
        counter("doze_migrations_total", [("outcome", Self.snakeCase(state))]).increment()
        if let duration { timer("doze_migration_duration_seconds").record(duration: duration) }
    }

    func electionWon(term: Term) {
        counter("doze_election_wins_total").increment()
        gauge("doze_is_leader").record(1)
        leaderSeen(term: term)
    }

    func steppedDown() {
        counter("doze_election_step_downs_total").increment()
        gauge("doze_is_leader").record(0)
    }

    /// A (new) leader was followed or became this node.
    func leaderSeen(term: Term) {
        counter("doze_leader_changes_total").increment()
        gauge("doze_leader_term").record(Int64(clamping: term))
    }

    /// Families that exist from the start, at zero, so a scrape shows them and `increase()` sees the first event.
    func declare(role: NodeRole) {
        switch role {
        case .bootstrap:
            counter("doze_leader_changes_total").increment(by: 0)
            gauge("doze_leader_term").record(0)
        case .groupManager:
            for outcome in SubmissionOutcome.allCases { counter("doze_submissions_total", [("outcome", outcome.rawValue)]).increment(by: 0) }
            counter("doze_migrations_total", [("outcome", "succeeded")]).increment(by: 0)
            for name in ["doze_election_wins_total", "doze_election_step_downs_total", "doze_leader_changes_total"] {
                counter(name).increment(by: 0)
            }
            gauge("doze_is_leader").record(0)
            gauge("doze_leader_term").record(0)
        case .localController:
            break
        }
        counter("doze_heartbeats_sent_total").increment(by: 0)
        counter("doze_heartbeats_accepted_total").increment(by: 0)
    }

    public enum NodeRole: Sendable { case bootstrap, groupManager, localController }

    // MARK: - Read at scrape time

    /// Brings the heartbeat counters up to `HeartbeatLink.statistics` (`sent`, `accepted`, `dropped_<reason>`).
    func syncHeartbeats(_ statistics: [String: Int]) {
        let grown: [(String, Int)] = heartbeatsSeen.withLock { seen in
            var grown: [(String, Int)] = []
            for (key, value) in statistics where value > seen[key, default: 0] {
                grown.append((key, value - seen[key, default: 0]))
                seen[key] = value
            }
            return grown
        }
        for (key, amount) in grown {
            switch key {
            case "sent": counter("doze_heartbeats_sent_total").increment(by: Int64(amount))
            case "accepted": counter("doze_heartbeats_accepted_total").increment(by: Int64(amount))
            default:
                let reason = key.hasPrefix("dropped_") ? String(key.dropFirst("dropped_".count)) : key
                counter("doze_heartbeats_dropped_total", [("reason", Self.snakeCase(reason))]).increment(by: Int64(amount))
            }
        }
    }

    /// Shows each controller's capacity and use; the gauges of controllers no longer listed are removed.
    func showHosts(_ controllers: [(id: NodeID, summary: CapacitySummary)]) {
        hostGauges.withLock { shown in
            var listed = Set<String>()
            for controller in controllers {
                let id = "\(controller.id)"
                listed.insert(id)
                let gauges = shown[id] ?? HostGauges(controller: id, metrics: self)
                shown[id] = gauges
                gauges.show(controller.summary)
            }
            for (id, gauges) in shown where !listed.contains(id) {
                gauges.destroy()
                shown[id] = nil
            }
        }
    }

    struct HostGauges {
        let vcpus, vcpusUsed, memory, memoryUsed, vms: CoreMetrics.Gauge

        init(controller: String, metrics: NodeMetrics) {
            let label = [("controller", controller)]
            vcpus = metrics.gauge("doze_host_vcpus", label)
            vcpusUsed = metrics.gauge("doze_host_vcpus_used", label)
            memory = metrics.gauge("doze_host_memory_bytes", label)
            memoryUsed = metrics.gauge("doze_host_memory_used_bytes", label)
            vms = metrics.gauge("doze_host_vms", label)
        }

        func show(_ summary: CapacitySummary) {
            vcpus.record(summary.total.vcpus)
            vcpusUsed.record(summary.used.vcpus)
            memory.record(summary.total.memoryKiB * 1024)
            memoryUsed.record(summary.used.memoryKiB * 1024)
            vms.record(summary.vmCount)
        }

        func destroy() { for gauge in [vcpus, vcpusUsed, memory, memoryUsed, vms] { gauge.destroy() } }
    }

    /// `staleTerm` → `stale_term`: label values in the same case as the names.
    static func snakeCase(_ text: String) -> String {
        var out = ""
        for character in text {
            if character.isUppercase {
                if !out.isEmpty { out.append("_") }
                out.append(contentsOf: character.lowercased())
            } else if character.isLetter || character.isNumber {
                out.append(character)
            } else {
                out.append("_")
            }
        }
        return out
    }
}
