import ClusterCore
import ClusterWire
import Foundation
import HTTPTypes
import Hummingbird

/// Tokens and tenants: the leader's books (`AuthCoordinator`). A tenant's token sees and makes its own tenant's
/// tokens; tenants themselves are the admin's.
public protocol AuthBackend: Sendable {
    func whoAmI() async throws(DozeError) -> WhoAmI
    func createToken(_ request: TokenCreateRequest) async throws(DozeError) -> TokenDocument
    func tokenList() async throws(DozeError) -> TokenList
    func revokeToken(_ id: String) async throws(DozeError) -> TokenDocument
    func createTenant(_ request: TenantCreateRequest) async throws(DozeError) -> TenantDocument
    func tenantList() async throws(DozeError) -> TenantList
    func tenant(_ name: String) async throws(DozeError) -> TenantDocument
    func setTenantQuota(_ name: String, _ quota: TenantQuota) async throws(DozeError) -> TenantDocument
    func deleteTenant(_ name: String) async throws(DozeError) -> TenantDocument
}

public struct AuthRoutes<Backend: AuthBackend>: Sendable {
    public let backend: Backend
    public let maxBodyBytes: Int

    public init(backend: Backend, maxBodyBytes: Int = 1 << 16) {
        self.backend = backend
        self.maxBodyBytes = maxBodyBytes
    }

    public func register<Context: RequestContext>(on router: Router<Context>) {
        let backend = self.backend, limit = maxBodyBytes
        router.get("/v1/whoami") { _, _ in try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.whoAmI() }) }
        router.post("/v1/tokens") { request, _ in
            let body = try await HTTPBody.optionalJSON(request, as: TokenCreateRequest.self, limit: limit) ?? TokenCreateRequest()
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.createToken(body) }, status: .created)
        }
        router.get("/v1/tokens") { _, _ in try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.tokenList() }) }
        router.delete("/v1/tokens/{id}") { _, context in
            let id = try context.parameters.require("id")
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.revokeToken(id) })
        }
        router.post("/v1/tenants") { request, _ in
            let body = try await HTTPBody.json(request, as: TenantCreateRequest.self, limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.createTenant(body) }, status: .created)
        }
        router.get("/v1/tenants") { _, _ in try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.tenantList() }) }
        router.get("/v1/tenants/{name}") { _, context in
            let name = try context.parameters.require("name")
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.tenant(name) })
        }
        router.put("/v1/tenants/{name}/quota") { request, context in
            let name = try context.parameters.require("name")
            let quota = try await HTTPBody.json(request, as: TenantQuota.self, limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.setTenantQuota(name, quota) })
        }
        router.delete("/v1/tenants/{name}") { _, context in
            let name = try context.parameters.require("name")
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.deleteTenant(name) })
        }
    }
}

/// The same paths on the bootstrap, passed to the leader with the client's token.
public struct AuthForwardingRoutes<Backend: BootstrapBackend>: Sendable {
    public let backend: Backend
    public let maxBodyBytes: Int

    public init(backend: Backend, maxBodyBytes: Int = 1 << 16) {
        self.backend = backend
        self.maxBodyBytes = maxBodyBytes
    }

    public func register<Context: RequestContext>(on router: Router<Context>) {
        let limit = maxBodyBytes, backend = self.backend
        let forward: @Sendable (Request, HTTPRequest.Method) async throws -> Response = { request, method in
            try await backend.passToLeader(request, method, limit: limit, timeout: .seconds(30))
        }
        router.get("/v1/whoami") { request, _ in try await forward(request, .get) }
        router.post("/v1/tokens") { request, _ in try await forward(request, .post) }
        router.get("/v1/tokens") { request, _ in try await forward(request, .get) }
        router.delete("/v1/tokens/{id}") { request, _ in try await forward(request, .delete) }
        router.post("/v1/tenants") { request, _ in try await forward(request, .post) }
        router.get("/v1/tenants") { request, _ in try await forward(request, .get) }
        router.get("/v1/tenants/{name}") { request, _ in try await forward(request, .get) }
        router.put("/v1/tenants/{name}/quota") { request, _ in try await forward(request, .put) }
        router.delete("/v1/tenants/{name}") { request, _ in try await forward(request, .delete) }
    }
}
