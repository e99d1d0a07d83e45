import AsyncHTTPClient
import ClusterCore
import ClusterTestKit
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1
import Testing

extension ProcessTests {
/// `/metrics` on every role, read by Prometheus' own parser (`promtool check metrics`, from Debian's
/// `prometheus` package: scripts/setup.sh --promtool), and request ids followed across processes in JSON logs.
@Suite(.serialized) struct ObservabilityProcessTests {
    final class Cluster: TestCluster, @unchecked Sendable {
        init() throws { try super.init(prefix: "doze-observe") }

        /// A bootstrap, two managers (one leads, one manages) and two controllers, every node logging JSON.
        func up() async throws {
            try start("bs", ["bootstrap", "--listen", "127.0.0.1:0", "--state-dir", dir.file("bs"), "--secret", secret,
                             "--heartbeat-interval-ms", "100", "--leader-timeout-ms", "1000", "--log-format", "json"])
            bootstrap = try await address("bs")
            managerArguments = ["--vm-subnet", "10.81.0.0/24", "--log-format", "json"]
            for gm in ["gm1", "gm2"] { try startManager(gm) }
            for lc in ["lc1", "lc2"] { try startController(lc, extra: ["--log-format", "json"]) }
            try await eventually(.seconds(20), "the hierarchy to form") {
                guard let tree = await self.hierarchy(), tree.groupLeader != nil else { return false }
                return tree.groupManagerDescriptions.reduce(0) { $0 + $1.localControllers.count } == 2
            }
        }

        /// One exchange with a given request id: status, body and the id the answer carried.
        func exchange(_ method: HTTPMethod, _ address: String, _ target: String, body: String? = nil,
                      requestID: String? = nil) async throws -> (status: Int, body: String, requestID: String?) {
            var request = HTTPClientRequest(url: "http://\(address)\(target)")
            request.method = method
            if let requestID { request.headers.add(name: "X-Request-ID", value: requestID) }
            if let body { request.body = .bytes(ByteBuffer(string: body)) }
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(30))
            let bytes = try await response.body.collect(upTo: 16 << 20)
            return (Int(response.status.code), String(buffer: bytes), response.headers.first(name: "X-Request-ID"))
        }

        func scrape(_ name: String) async throws -> String {
            let (status, body, _) = try await exchange(.GET, try await address(name), "/metrics")
            guard status == 200 else { throw TimeoutError(what: "\(name) /metrics answered \(status): \(body)") }
            return body
        }

        func leaderName() async throws -> String {
            let id = try #require(await hierarchy()?.groupLeader?.id)
            return try #require(name(ofManager: id))
        }
    }

    /// `promtool check metrics` on `text`: its exit status and what it said (errors and lint problems).
    static func promtool(_ text: String) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["promtool", "check", "metrics"]
        let input = Pipe(), output = Pipe()
        process.standardInput = input
        process.standardOutput = output
        process.standardError = output
        try process.run()
        input.fileHandleForWriting.write(Data(text.utf8))
        try input.fileHandleForWriting.close()
        let said = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, said)
    }

    /// The value of one sample line (`name{labels} value`), nil when the exposition has no such series.
    static func sample(_ text: String, _ series: String) -> Double? {
        for line in text.split(separator: "\n") where line.hasPrefix(series + " ") {
            return Double(line.dropFirst(series.count + 1))
        }
        return nil
    }

    static var promtoolInstalled: Bool {
        ["/usr/bin/promtool", "/usr/local/bin/promtool"].contains { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test(.enabled(if: promtoolInstalled, "promtool (scripts/setup.sh --promtool) is not installed"))
    func everyRoleExposesMetricsPromtoolAcceptsAndTheyFollowASubmissionAndAMigration() async throws {
        let c = try Cluster()
        defer { c.stop() }
        try await c.up()
        let leader = try await c.leaderName()
        let before = try await c.scrape(leader)
        let successBefore = try #require(Self.sample(before, #"doze_submissions_total{outcome="success"}"#), "\(before)")

        // A submission of two VMs through the bootstrap, with our own request id.
        let requestID = "obs-\(UInt32.random(in: 0 ... .max))"
        let templates = (1...2).map { VirtualMachineTemplate(libVirtTemplate: SubmissionProcessTests.template("obs\($0)")) }
        let (status, body, answeredID) = try await c.exchange(.POST, c.bootstrap, "/v1/virtual-clusters",
                                                              body: try SubmissionProcessTests.submission(templates), requestID: requestID)
        #expect(status == 202, "\(body)\n\(c.logs())")
        #expect(answeredID == requestID, "the answer carries the id the client gave")
        let task = try #require((try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: Any])?["taskId"] as? String)
        let done = try await c.exchange(.GET, c.bootstrap, "/v1/virtual-clusters/\(task)?wait=20")
        let document = try JSONDecoder().decode(VirtualClusterTaskDocument.self, from: Data(done.body.utf8))
        #expect(document.state == .done && document.counts.running == 2, "\(done.body)\n\(c.logs())")

        // A migration of obs1 to the other controller.
        let meta = try JSONDecoder().decode(VirtualMachineMetaData.self,
                                            from: Data(try await c.exchange(.GET, c.bootstrap, "/v1/vms/obs1").body.utf8))
        let sourceID = try #require(meta.virtualMachineLocation.localControllerId)
        let source = try #require(c.name(ofController: sourceID))
        let destination = source == "lc1" ? "lc2" : "lc1"
        let migration = try await c.exchange(.POST, c.bootstrap, "/v1/migrations",
                                             body: #"{"vm":"obs1","to":"\#(c.controllerID(destination)!)"}"#)
        #expect(migration.status == 202, "\(migration.body)\n\(c.logs())")
        let record = try JSONDecoder().decode(MigrationRecord.self, from: Data(migration.body.utf8))
        let ended = try await c.exchange(.GET, c.bootstrap, "/v1/migrations/\(record.id)?wait=30")
        #expect(try JSONDecoder().decode(MigrationRecord.self, from: Data(ended.body.utf8)).state == .completed, "\(ended.body)")

        // Every role's exposition passes promtool: no parse errors, no lint problems.
        let plain = ["gm1", "gm2"].first { $0 != leader }!
        var scraped: [String: String] = [:]
        for name in ["bs", leader, plain, "lc1", "lc2"] {
            let text = try await c.scrape(name)
            scraped[name] = text
            let checked = try Self.promtool(text)
            #expect(checked.status == 0 && checked.output.isEmpty, "\(name): promtool said (\(checked.status)) \(checked.output)")
            // Route patterns only: no VM name, task or migration id in any label.
            for raw in ["obs1", task, record.id] {
                #expect(!text.contains(raw), "\(name) exposes '\(raw)' in a label")
            }
        }

        // The numbers moved by what we did.
        let after = try #require(scraped[leader])
        #expect(Self.sample(after, #"doze_submissions_total{outcome="success"}"#) == successBefore + 1, "\(after)")
        #expect(Self.sample(after, "doze_submission_duration_seconds_count") == successBefore + 1)
        #expect(Self.sample(after, #"doze_migrations_total{outcome="completed"}"#) == 1, "\(after)")
        #expect(Self.sample(after, "doze_migration_duration_seconds_count") == 1)
        #expect(Self.sample(after, "doze_is_leader") == 1 && Self.sample(after, "doze_election_wins_total") == 1)
        #expect((Self.sample(after, "doze_leader_term") ?? 0) >= 1)
        #expect(Self.sample(after, #"doze_http_requests_total{route="/v1/virtual-clusters",method="POST",status="202"}"#) == 1, "\(after)")
        #expect(Self.sample(after, #"doze_http_requests_total{route="/v1/migrations/{id}",method="GET",status="200"}"#) == 1, "\(after)")
        for lc in ["lc1", "lc2"] {
            let id = try #require(c.controllerID(lc))
            #expect(Self.sample(after, #"doze_host_vcpus{controller="\#(id)"}"#) == 8, "the leader shows \(lc)'s capacity")
            let own = try #require(scraped[lc])
            #expect(Self.sample(own, #"doze_host_vcpus{controller="\#(id)"}"#) == 8, "\(lc) shows its own capacity")
            #expect(Self.sample(own, #"doze_host_vms{controller="\#(id)"}"#) == (lc == destination ? 2 : 0), "\(own)")
            #expect((Self.sample(own, "doze_heartbeats_sent_total") ?? 0) > 0, "\(own)")
        }
        #expect(Self.sample(try #require(scraped[plain]), "doze_is_leader") == 0)
        let bootstrap = try #require(scraped["bs"])
        #expect((Self.sample(bootstrap, "doze_leader_changes_total") ?? 0) >= 1 && (Self.sample(bootstrap, "doze_heartbeats_accepted_total") ?? 0) > 0)
        #expect(Self.sample(bootstrap, #"doze_http_requests_total{route="/v1/virtual-clusters",method="POST",status="202"}"#) == 1)

        // One id, followed across processes: the bootstrap, the leader, the VMs' manager and their controller all
        // logged the submission's handling under the id the client gave, every line a JSON object.
        let placed = document.response.virtualMachineMetaData.first { $0.virtualMachineLocation.virtualMachineId == "obs1" }
        #expect(placed?.virtualMachineLocation.localControllerId == sourceID, "obs1 was started where the migration took it from")
        // As in Snooze the leader manages no controllers: the other manager placed the VMs.
        for name in ["bs", leader, plain, source] {
            let lines = try Self.jsonLines(c.processes[name]!.log)
            let tagged = lines.filter { ($0["metadata"] as? [String: Any])?["doze/request"] as? String == requestID }
            #expect(!tagged.isEmpty, "\(name) logged nothing under \(requestID):\n\(c.processes[name]!.log.suffix(3000))")
            if name == source {
                #expect(tagged.contains { ($0["message"] as? String) == "started VM" }, "\(tagged)")
            }
            for line in tagged { #expect(line["time"] is String && line["level"] is String && line["label"] is String) }
        }
    }

    /// Every log line that is not a plain `print` (those start "doze "), parsed as one JSON object.
    static func jsonLines(_ log: String) throws -> [[String: Any]] {
        try log.split(separator: "\n").filter { !$0.hasPrefix("doze ") }.map { line in
            guard let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any] else {
                throw TimeoutError(what: "not a JSON object: \(line)")
            }
            return object
        }
    }
}
}
