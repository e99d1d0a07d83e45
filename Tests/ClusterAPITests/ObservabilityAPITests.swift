import ClusterCore
import ClusterNode
import ClusterTestKit
import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdTesting
import Testing

/// The controller's real router: every answer carries a request id, and `/metrics` counts by route pattern.
@Suite struct ObservabilityAPITests {
    static let requestID = HTTPField.Name("X-Request-ID")!

    @Test func answersCarryTheRequestIDAndMetricsCountRoutePatternsNotPaths() async throws {
        let metrics = NodeMetrics()
        let fixture = try await APIFixture.make(domains: [.init(name: "web-1")]) { $0.metrics = metrics }
        try await fixture.run { client in
            try await client.execute(uri: "/vm?name=web-1", method: .get, headers: [Self.requestID: "given-1"]) { response in
                #expect(response.status == .ok && response.headers[Self.requestID] == "given-1")
            }
            // Not sane (a space): replaced by a fresh id.
            try await client.execute(uri: "/vm?name=nope&token=abc", method: .get, headers: [Self.requestID: "a b"]) { response in
                #expect(response.status == .notFound)
                let id = try #require(response.headers[Self.requestID])
                #expect(id.count == 16 && id != "a b")
            }
            try await client.execute(uri: "/v1/vms/web-1/usage", method: .get) { response in
                #expect(response.headers[Self.requestID] != nil)
            }
            try await client.execute(uri: "/no/such/route", method: .get) { response in
                #expect(response.status == .notFound && response.headers[Self.requestID] != nil)
            }
            try await client.execute(uri: "/metrics", method: .get) { response in
                #expect(response.headers[.contentType] == "text/plain; version=0.0.4; charset=utf-8")
                let text = String(buffer: response.body)
                #expect(text.contains(#"doze_http_requests_total{route="/vm",method="GET",status="200"} 1"#), "\(text)")
                #expect(text.contains(#"doze_http_requests_total{route="/vm",method="GET",status="404"} 1"#), "\(text)")
                #expect(text.contains(#"doze_http_requests_total{route="/v1/vms/{name}/usage",method="GET""#), "\(text)")
                #expect(!text.contains("web-1") && !text.contains("nope") && !text.contains("token"), "\(text)")
                #expect(text.contains("doze_host_vms{controller=\"\(fixture.controller.id)\"} 1.0"), "\(text)")
            }
        }
    }
}
