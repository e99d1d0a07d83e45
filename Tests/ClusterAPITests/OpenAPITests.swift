import ClusterAPI
import ClusterCore
@testable import ClusterNode
import ClusterTestKit
import ClusterTransport
import Foundation
import Hummingbird
import HummingbirdTesting
import Logging
import Testing

/// docs/openapi.json is the native API's contract: these hold it to the routers that serve it, so a route added,
/// removed or renamed without the document (or the other way round) fails here.
@Suite struct OpenAPITests {
    typealias Operation = (method: String, path: String, roles: [String])

    static var document: [String: Any] {
        get throws { try #require(try JSONSerialization.jsonObject(with: Data(OpenAPIDocument.json.utf8)) as? [String: Any]) }
    }

    static func operations() throws -> [Operation] {
        let paths = try #require(try document["paths"] as? [String: [String: Any]])
        return try paths.flatMap { path, methods in
            try methods.map { method, value in
                let operation = try #require(value as? [String: Any])
                return (method.uppercased(), path, try #require(operation["x-doze-served-by"] as? [String], "\(method) \(path)"))
            }
        }
    }

    /// A router's path `/v1/vms/{id}/{operation}` covers the document's `/v1/vms/{id}/suspend`: a capture takes any
    /// segment; a segment the document leaves open must be open in the router too.
    static func covers(_ route: String, _ documented: String) -> Bool {
        let routeParts = route.split(separator: "/"), documentedParts = documented.split(separator: "/")
        guard routeParts.count == documentedParts.count else { return false }
        return zip(routeParts, documentedParts).allSatisfy { route, documented in
            route.hasPrefix("{") || (!documented.hasPrefix("{") && route == documented)
        }
    }

    static func v1Routes(_ router: Router<BasicRequestContext>) -> [(method: String, path: String)] {
        router.routes.map { ("\($0.method)", "\($0.path)") }.filter { $0.path.hasPrefix("/v1/") }
    }

    /// Every route of `router` documented for one of `roles`, and every operation documented for them routed:
    /// what is not, in words (empty when they agree).
    static func mismatches(_ router: Router<BasicRequestContext>, roles: Set<String>, _ what: String) throws -> [String] {
        let routes = v1Routes(router)
        let documented = try operations().filter { !roles.isDisjoint(with: $0.roles) }
        let undocumented = routes.filter { route in !documented.contains { $0.method == route.method && covers(route.path, $0.path) } }
        let unrouted = documented.filter { operation in !routes.contains { $0.method == operation.method && covers($0.path, operation.path) } }
        return undocumented.map { "\(what) routes \($0.method) \($0.path), which docs/openapi.json does not document for \(roles.sorted())" }
            + unrouted.map { "docs/openapi.json documents \($0.method) \($0.path) for \($0.roles), which \(what) does not route" }
    }

    /// The routers exactly as `doze bootstrap` and `doze gm` build them, around real nodes (not run).
    static func withRouters(auth mode: AuthMode = .open,
                            _ body: (_ bootstrap: Router<BasicRequestContext>, _ manager: Router<BasicRequestContext>) async throws -> Void) async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let cluster = ClusterSettings(secret: "openapi-test")
        let logger = Logger(label: "openapi-test")
        let bootstrapChannel = try await UDPChannel.bind(host: "127.0.0.1", port: 0)
        let managerChannel = try await UDPChannel.bind(host: "127.0.0.1", port: 0)
        let bootstrapLink = HeartbeatLink(me: UUID().uuidString.lowercased(), channel: bootstrapChannel, secret: cluster.secret, incarnation: 1)
        let managerLink = HeartbeatLink(me: UUID().uuidString.lowercased(), channel: managerChannel, secret: cluster.secret, incarnation: 1)
        let bootstrap = BootstrapNode(id: UUID().uuidString.lowercased(), link: bootstrapLink, cluster: cluster, logger: logger)
        let manager = GroupManagerNode(id: UUID().uuidString.lowercased(), control: Endpoint(host: "127.0.0.1", port: managerChannel.localEndpoint.port),
                                       link: managerLink, cluster: cluster, backend: .directory(dir.path), logger: logger)
        let auth = AuthPolicy(mode: mode, snoozeCompat: .off, nodeSignature: nil, tokens: nil)
        do {
            try await body(HierarchyRuntime.bootstrapRouter(bootstrap, link: bootstrapLink, auth: auth, metrics: NodeMetrics()),
                           HierarchyRuntime.groupManagerRouter(manager, link: managerLink, auth: auth, metrics: NodeMetrics()))
        } catch {
            await bootstrapChannel.close()
            await managerChannel.close()
            throw error
        }
        await bootstrapChannel.close()
        await managerChannel.close()
    }

    @Test func theEmbeddedDocumentIsDocsOpenAPIJSON() throws {
        let file = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/openapi.json")
        let text = try String(contentsOf: file, encoding: .utf8)
        #expect(text.trimmingCharacters(in: .newlines) == OpenAPIDocument.json, "run scripts/embed-openapi.py after editing docs/openapi.json")
    }

    @Test func everyRoutedV1OperationIsDocumentedAndEveryDocumentedOneRouted() async throws {
        try await Self.withRouters { bootstrap, manager in
            let bootstrapDrift = try Self.mismatches(bootstrap, roles: ["bootstrap"], "the bootstrap")
            let managerDrift = try Self.mismatches(manager, roles: ["leader", "manager"], "a group manager")
            #expect(bootstrapDrift == [])
            #expect(managerDrift == [])
            #expect(Self.v1Routes(bootstrap).count > 20 && Self.v1Routes(manager).count > 20)
            // And the check sees a drift either way: a route the document lacks, an operation no router has.
            bootstrap.get("/v1/undocumented") { _, _ in "" }
            let added = try Self.mismatches(bootstrap, roles: ["bootstrap"], "the bootstrap")
            #expect(added == ["the bootstrap routes GET /v1/undocumented, which docs/openapi.json does not document for [\"bootstrap\"]"])
            let missing = try Self.mismatches(bootstrap, roles: ["manager"], "the bootstrap")
            #expect(missing.contains("docs/openapi.json documents GET /v1/manager/usage for [\"manager\"], which the bootstrap does not route"))
        }
    }

    @Test func everyOperationDocumentsItsErrorsAndBearerAuth() throws {
        let document = try Self.document
        let schemes = try #require((document["components"] as? [String: Any])?["securitySchemes"] as? [String: [String: String]])
        #expect(schemes["bearerAuth"] == ["type": "http", "scheme": "bearer", "description": schemes["bearerAuth"]?["description"] ?? ""])
        #expect((document["security"] as? [[String: [String]]]) == [["bearerAuth": []]])
        let paths = try #require(document["paths"] as? [String: [String: [String: Any]]])
        for (path, methods) in paths {
            for (method, operation) in methods {
                let responses = try #require(operation["responses"] as? [String: Any])
                for status in ["400", "401", "403", "404", "413"] where responses[status] == nil {
                    Issue.record("\(method) \(path) does not document its \(status)")
                }
                #expect(responses.keys.contains { $0.hasPrefix("2") }, "\(method) \(path) documents no success")
            }
        }
    }

    /// Without a token, even where tokens are required: a client reads the contract before it has credentials.
    @Test func everyRoleServesTheDocument() async throws {
        try await Self.withRouters(auth: .tokens) { bootstrap, manager in
            for router in [bootstrap, manager] {
                try await Application(router: router).test(.router) { client in
                    try await client.execute(uri: OpenAPIRoutes.path, method: .get) { response in
                        #expect(response.status == .ok)
                        #expect(response.headers[.contentType] == "application/json")
                        #expect(String(buffer: response.body) == OpenAPIDocument.json)
                    }
                    try await client.execute(uri: "/v1/hosts", method: .get) { response in
                        #expect(response.status == .unauthorized, "the document's own route is open, the others not")
                    }
                }
            }
        }
    }
}
