import ClusterCore
import ClusterTransport
import Foundation
import Logging
import Synchronization
import Testing
@testable import ClusterNode

/// The pieces of `/metrics` and the JSON log that need no cluster: counters synced from heartbeat totals,
/// gauges of controllers that left, label values, one JSON object per line, credentials kept out.
@Suite struct ObservabilityTests {
    static func text(_ metrics: NodeMetrics) -> String { String(decoding: metrics.exposition(), as: UTF8.self) }

    @Test func heartbeatCountersAddWhatGrewSinceTheLastScrape() {
        let metrics = NodeMetrics()
        metrics.syncHeartbeats(["sent": 5, "accepted": 3, "dropped_staleTerm": 1])
        metrics.syncHeartbeats(["sent": 9, "accepted": 3, "dropped_staleTerm": 2, "dropped_badMac": 4])
        let text = Self.text(metrics)
        #expect(text.contains("doze_heartbeats_sent_total 9\n"), "\(text)")
        #expect(text.contains("doze_heartbeats_accepted_total 3\n"), "\(text)")
        #expect(text.contains(#"doze_heartbeats_dropped_total{reason="stale_term"} 2"#), "\(text)")
        #expect(text.contains(#"doze_heartbeats_dropped_total{reason="bad_mac"} 4"#), "\(text)")
    }

    @Test func aControllerThatLeftLosesItsGauges() {
        let metrics = NodeMetrics()
        let total = ResourceVector(vcpus: 8, memoryKiB: 1024 * 1024)
        let summary = CapacitySummary(total: total, used: ResourceVector(vcpus: 2, memoryKiB: 512 * 1024), requested: .zero, vmCount: 2)
        let a: NodeID = "lc-a", b: NodeID = "lc-b"
        metrics.showHosts([(a, summary), (b, summary)])
        var text = Self.text(metrics)
        #expect(text.contains(#"doze_host_vcpus{controller="\#(a)"} 8.0"#) && text.contains(#"doze_host_vcpus{controller="\#(b)"} 8.0"#), "\(text)")
        #expect(text.contains(#"doze_host_memory_used_bytes{controller="\#(a)"} 536870912.0"#), "\(text)")
        metrics.showHosts([(b, summary)])
        text = Self.text(metrics)
        #expect(!text.contains("\(a)") && text.contains(#"doze_host_vms{controller="\#(b)"} 2.0"#), "\(text)")
    }

    @Test func submissionOutcomesFollowTheCounts() {
        #expect(NodeMetrics.SubmissionOutcome(running: 3, failed: 0) == .success)
        #expect(NodeMetrics.SubmissionOutcome(running: 0, failed: 2) == .failure)
        #expect(NodeMetrics.SubmissionOutcome(running: 1, failed: 1) == .partial)
        #expect(NodeMetrics.snakeCase("oversizeSent") == "oversize_sent" && NodeMetrics.snakeCase("post-copy") == "post_copy")
    }

    @Test func twoNodesInOneProcessCountApart() {
        let one = NodeMetrics(), two = NodeMetrics()
        one.submissionEnded(.success, after: .seconds(1))
        #expect(Self.text(one).contains(#"doze_submissions_total{outcome="success"} 1"#))
        #expect(!Self.text(two).contains("doze_submissions_total"))
    }

    final class Lines: Sendable {
        let lines = Mutex<[String]>([])
        var all: [String] { lines.withLock { $0 } }
    }

    @Test func jsonLinesCarryTheRequestIDAndNoCredentials() throws {
        let captured = Lines()
        let provider = Logger.MetadataProvider { RequestID.current.map { ["doze/request": "\($0)"] } ?? [:] }
        var log = Logger(label: "doze") { label in
            JSONLogHandler(label: label, metadataProvider: provider) { line in captured.lines.withLock { $0.append(line) } }
        }
        log[metadataKey: "doze/role"] = "lc"
        RequestID.$current.withValue("abc-1") {
            log.info("called \"peer\"\nGET /v1/vms?token=s3cret&x=1", metadata: ["authorization": "Bearer s3cret", "doze/vm": ["a", "b"]])
        }
        log.debug("below the level")
        let lines = captured.all
        #expect(lines.count == 1 && lines[0].hasSuffix("}\n") && lines[0].filter { $0 == "\n" }.count == 1, "\(lines)")
        #expect(!lines[0].contains("s3cret"), "\(lines[0])")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        #expect(object["level"] as? String == "info" && object["label"] as? String == "doze")
        #expect((object["time"] as? String)?.hasSuffix("Z") == true)
        #expect(object["message"] as? String == "called \"peer\"\nGET /v1/vms?token=[redacted]&x=1")
        let metadata = try #require(object["metadata"] as? [String: Any])
        #expect(metadata["doze/request"] as? String == "abc-1" && metadata["doze/role"] as? String == "lc")
        #expect(metadata["authorization"] as? String == "[redacted]" && metadata["doze/vm"] as? [String] == ["a", "b"])
    }

    @Test func onlyPlainShortRequestIDsAreHonoured() {
        #expect(RequestID.sanitized("obs-12.a:b_C") == "obs-12.a:b_C")
        #expect(RequestID.sanitized("") == nil && RequestID.sanitized(nil) == nil)
        #expect(RequestID.sanitized("a b") == nil && RequestID.sanitized("x\ny") == nil && RequestID.sanitized("\"q\"") == nil)
        #expect(RequestID.sanitized(String(repeating: "a", count: 129)) == nil)
        let made = RequestID.make()
        #expect(made.count == 16 && RequestID.sanitized(made) == made && made != RequestID.make())
    }
}
