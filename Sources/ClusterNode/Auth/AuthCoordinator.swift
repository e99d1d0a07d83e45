import ClusterAPI
import ClusterCore
import ClusterWire
import Foundation
import Logging

/// The leader's tenants and tokens. Every change is made on a copy, stored (and flushed: a token is never handed
/// out before the records hold it) and only then kept and given to this node's token checker.
actor AuthCoordinator {
    let store: (any ClusterRecordStore)?
    let tokens: ClusterTokens
    let log: Logger
    private var book = AuthBook()
    private var loaded = false

    init(store: (any ClusterRecordStore)?, tokens: ClusterTokens, logger: Logger) {
        self.store = store
        self.tokens = tokens
        self.log = logger
    }

    var unixNow: Int64 { Int64(Date().timeIntervalSince1970) }

    func current() async throws(DozeError) -> AuthBook {
        if !loaded {
            do {
                book = try await store?.loadAuth() ?? AuthBook()
            } catch {
                throw DozeError(.unavailable, "the tenants and tokens could not be read from the cluster records: \(error)")
            }
            loaded = true
            await tokens.update(book)
        }
        return book
    }

    private func commit(_ changed: AuthBook) async throws(DozeError) {
        do {
            try store?.saveAuth(changed)
            try await store?.flush()
        } catch {
            throw DozeError(.unavailable, "the change could not be stored in the cluster records: \(error)")
        }
        book = changed
        await tokens.update(changed)
    }

    func tenant(_ name: String) async throws(DozeError) -> Tenant? { try await current().tenant(name) }

    func createToken(_ request: TokenCreateRequest, by principal: Principal) async throws(DozeError) -> TokenDocument {
        var changed = try await current()
        let tenant = request.tenant ?? principal.owningTenant
        if let scope = principal.scope {
            guard tenant == scope else { throw DozeError(.forbidden, "a token of tenant '\(scope)' makes tokens for '\(scope)' only") }
            guard request.admin != true else { throw DozeError(.forbidden, "only an admin makes admin tokens") }
        }
        let made = APITokenSecret.generate()
        let token = APIToken(id: made.id, tenant: tenant, admin: request.admin == true, name: request.name ?? "token",
                             secretHash: made.secretHash, created: unixNow)
        try changed.addToken(token)
        try await commit(changed)
        log.notice("API token created", metadata: ["doze/token": "\(token.id)", "doze/tenant": "\(tenant)", "doze/admin": "\(token.admin)"])
        return TokenDocument(token, secret: made.token)
    }

    func tokenList(for principal: Principal) async throws(DozeError) -> TokenList {
        let all = try await current().tokens.values.filter { principal.sees($0.tenant) && !($0.admin && principal.scope != nil) }
        return TokenList(tokens: all.sorted { ($0.created, $0.id) < ($1.created, $1.id) }.map { TokenDocument($0) })
    }

    func revoke(_ id: String, by principal: Principal) async throws(DozeError) -> TokenDocument {
        var changed = try await current()
        guard let token = changed.tokens[id], principal.sees(token.tenant), !(token.admin && principal.scope != nil) else {
            throw DozeError(.notFound, "no token '\(id)'")
        }
        let revoked = try changed.revoke(token.id, now: unixNow)
        try await commit(changed)
        log.notice("API token revoked", metadata: ["doze/token": "\(id)", "doze/tenant": "\(token.tenant)"])
        return TokenDocument(revoked)
    }

    func createTenant(_ request: TenantCreateRequest) async throws(DozeError) -> Tenant {
        var changed = try await current()
        let tenant = try changed.createTenant(request.name, quota: request.quota ?? .unlimited, now: unixNow)
        try await commit(changed)
        log.notice("tenant created", metadata: ["doze/tenant": "\(tenant.name)"])
        return tenant
    }

    func setQuota(_ name: String, _ quota: TenantQuota) async throws(DozeError) -> Tenant {
        var changed = try await current()
        let tenant = try changed.setQuota(name, quota, now: unixNow)
        try await commit(changed)
        return tenant
    }

    func deleteTenant(_ name: String, holdings: [String]) async throws(DozeError) -> Tenant {
        var changed = try await current()
        guard let tenant = changed.tenant(name) else { throw DozeError(.notFound, "no tenant '\(name)'") }
        try changed.deleteTenant(name, holdings: holdings)
        try await commit(changed)
        return tenant
    }
}
