import ClusterAPI
import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import NIOHTTP1

/// Checks bearer tokens on a group manager: the admin token file's token, and the tokens in the cluster records
/// (read again when older than `freshFor`, or at once, at most every `missInterval`, for an id not yet known). The
/// leader hands its book over as soon as a change is stored, so there a revoke takes effect at once; on the other
/// managers within `freshFor`.
public actor ClusterTokens: TokenAuthenticating {
    static let freshFor: Duration = .seconds(2)
    static let missInterval: Duration = .milliseconds(250)

    let adminSecretHash: String?
    let load: (@Sendable () async throws -> AuthBook?)?
    private(set) var book = AuthBook()
    private var loadedAt: ContinuousClock.Instant?

    public init(adminSecretHash: String?, load: (@Sendable () async throws -> AuthBook?)?) {
        self.adminSecretHash = adminSecretHash
        self.load = load
    }

    public func principal(forToken token: String) async -> (principal: Principal, tokenID: String)? {
        guard let (id, secret) = APITokenSecret.parse(token) else { return nil }
        if id == APITokenSecret.adminFileID {
            guard let adminSecretHash, APITokenSecret.matches(secret, adminSecretHash) else { return nil }
            return (.admin, id)
        }
        await refresh(missing: book.tokens[id] == nil)
        guard let stored = book.liveToken(id), APITokenSecret.matches(secret, stored.secretHash) else { return nil }
        return (stored.principal, id)
    }

    private func refresh(missing: Bool) async {
        guard let load else { return }
        let now = ContinuousClock.now
        if let loadedAt, now - loadedAt < (missing ? Self.missInterval : Self.freshFor) { return }
        loadedAt = now
        if let loaded = try? await load() { book = loaded }
    }

    /// The leader's book, just stored.
    func update(_ book: AuthBook) {
        self.book = book
        loadedAt = ContinuousClock.now
    }
}

/// A local controller knows no tenant: it takes the cluster's nodes (signed calls) and the admin token.
public struct AdminTokenOnly: TokenAuthenticating {
    let adminSecretHash: String
    public init(adminSecretHash: String) { self.adminSecretHash = adminSecretHash }
    public func principal(forToken token: String) async -> (principal: Principal, tokenID: String)? {
        guard let (id, secret) = APITokenSecret.parse(token), id == APITokenSecret.adminFileID,
              APITokenSecret.matches(secret, adminSecretHash) else { return nil }
        return (.admin, id)
    }
}

/// The bootstrap keeps no records: it asks the leader who a token is (`GET /v1/whoami`), remembering answers for
/// `freshFor`, so that it refuses bad tokens itself and knows the principal of what it answers without the leader.
public actor LeaderTokenCheck: TokenAuthenticating {
    static let freshFor: Duration = .seconds(2)
    let leader: @Sendable () async -> Endpoint?
    let peers = PeerClient(timeout: .seconds(3))
    private var answers: [String: (principal: Principal, id: String, at: ContinuousClock.Instant)?] = [:]
    private var answeredAt: [String: ContinuousClock.Instant] = [:]

    public init(leader: @escaping @Sendable () async -> Endpoint?) { self.leader = leader }

    public func principal(forToken token: String) async -> (principal: Principal, tokenID: String)? {
        guard APITokenSecret.parse(token) != nil else { return nil }
        let key = APITokenSecret.hash(token)
        if let at = answeredAt[key], ContinuousClock.now - at < Self.freshFor, let answer = answers[key] {
            return answer.map { ($0.principal, $0.id) }
        }
        guard let endpoint = await leader() else { return nil }
        let who: WhoAmI? = try? await NodeCredentials.$forwardedAuthorization.withValue("Bearer \(token)") {
            try await peers.call(.GET, endpoint, "/v1/whoami", as: WhoAmI.self)
        }
        if answeredAt.count > 10_000 { answers.removeAll(); answeredAt.removeAll() }
        answeredAt[key] = ContinuousClock.now
        guard let who, let id = who.tokenId else {
            answers[key] = .some(nil)
            return nil
        }
        let principal: Principal = who.role == "admin" ? .admin : .tenant(who.tenant ?? Tenant.defaultName)
        answers[key] = (principal, id, ContinuousClock.now)
        return (principal, id)
    }
}
