import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import HTTPTypes
import Hummingbird

/// Whether the native API needs a token. `open` (the default on loopback only) treats a request without one as
/// the admin; a request that presents a token is always held to it.
public enum AuthMode: String, Sendable, CaseIterable {
    case open, tokens
}

/// What unmodified Snooze clients, which send no token, may do on `/bootstrap` and `/groupmanager`.
public enum SnoozeCompat: String, Sendable, CaseIterable {
    /// No token needed (as the admin): the default on loopback.
    case open
    /// A token as `?token=…` in the query (or a bearer header): the default elsewhere.
    case tokenInQuery = "token-in-query"
    /// Clients cannot use the Snooze API at all; only nodes can.
    case off
}

/// Checks a presented token; nil when it is unknown, revoked or malformed.
public protocol TokenAuthenticating: Sendable {
    func principal(forToken token: String) async -> (principal: Principal, tokenID: String)?
}

/// The principal of the request being handled (set by `AuthMiddleware`). Outside a request (the leader's own
/// rounds, in-process tests without the middleware) it is the admin.
public enum RequestPrincipal {
    @TaskLocal public static var current: Principal = .admin
    @TaskLocal public static var tokenID: String?

    /// Refuses a tenant: admins and nodes only.
    public static func requireAdmin(_ what: String) throws(DozeError) {
        guard current.isPrivileged else { throw DozeError(.forbidden, "\(what) needs an admin token; \(current) may not") }
    }
}

public struct AuthPolicy: Sendable {
    public var mode: AuthMode
    public var snoozeCompat: SnoozeCompat
    /// Verifies other nodes' calls; nil when the cluster has no secret (a standalone controller).
    public var nodeSignature: NodeSignature?
    public var tokens: (any TokenAuthenticating)?
    /// The node is a local controller: only nodes (and admins) call it.
    public var onController: Bool
    /// The node is a bootstrap: the client's token goes on with what it forwards to the leader.
    public var forwardsCredentials: Bool

    public init(mode: AuthMode, snoozeCompat: SnoozeCompat, nodeSignature: NodeSignature?, tokens: (any TokenAuthenticating)?,
                onController: Bool = false, forwardsCredentials: Bool = false) {
        self.mode = mode
        self.snoozeCompat = snoozeCompat
        self.nodeSignature = nodeSignature
        self.tokens = tokens
        self.onController = onController
        self.forwardsCredentials = forwardsCredentials
    }

    /// The defaults for a node listening on `host`: open on loopback, tokens anywhere else.
    public static func defaultMode(listeningOn host: String) -> AuthMode { isLoopback(host) ? .open : .tokens }
    public static func defaultSnoozeCompat(listeningOn host: String) -> SnoozeCompat { isLoopback(host) ? .open : .tokenInQuery }

    public static func isLoopback(_ host: String) -> Bool {
        host == "localhost" || host == "::1" || host.hasPrefix("127.")
    }
}

/// Authenticates every request (bearer token, node signature, or none) and refuses what `AccessRule` does not
/// allow the principal, before any handler runs: 401 without valid credentials, 403 for a tenant on an admin route.
/// A token is never logged, and never echoed back in an error.
public struct AuthMiddleware<Context: RequestContext>: RouterMiddleware {
    public let policy: AuthPolicy

    public init(policy: AuthPolicy) { self.policy = policy }

    public func handle(_ request: Request, context: Context,
                       next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        let snooze = AccessRule.isSnooze(path: path)
        let rule = AccessRule.classify(method: request.method.rawValue, path: path, operation: snooze ? request.snoozeOperation : nil,
                                       onController: policy.onController)
        if rule == .anyone { return try await next(request, context) }
        let (principal, tokenID, bearer) = try await authenticate(request, snooze: snooze)
        guard let principal else {
            if snooze {
                switch policy.snoozeCompat {
                case .off: throw APIError(DozeError(.forbidden, "the Snooze API is off on this cluster (snooze_compat: off); use /v1 with a token"))
                case .tokenInQuery: throw APIError(DozeError(.unauthorized, "this cluster needs a token on Snooze calls: ?token=… or Authorization: Bearer … (snooze_compat: token-in-query)"))
                case .open: break
                }
            }
            throw APIError(DozeError(.unauthorized, "this cluster needs an API token: send Authorization: Bearer <token> (doze token create; the admin token is in the cluster's admin token file)"))
        }
        if snooze, policy.snoozeCompat == .off, principal != .node {
            throw APIError(DozeError(.forbidden, "the Snooze API is off on this cluster (snooze_compat: off); use /v1 with a token"))
        }
        guard rule.allows(principal) else {
            throw APIError(DozeError(.forbidden, rule == .node ? "\(request.method) \(path) is for the cluster's own nodes"
                                                               : "\(request.method) \(path) needs an admin token; \(principal) may not"))
        }
        let forwarded = policy.forwardsCredentials ? bearer.map { "Bearer \($0)" } : nil
        return try await RequestPrincipal.$current.withValue(principal) {
            try await RequestPrincipal.$tokenID.withValue(tokenID) {
                try await NodeCredentials.$forwardedAuthorization.withValue(forwarded) { try await next(request, context) }
            }
        }
    }

    /// nil principal: no credentials were presented and none are required for this request.
    func authenticate(_ request: Request, snooze: Bool) async throws -> (Principal?, String?, String?) {
        var bearer: String?
        if let header = request.headers[.authorization] {
            let parts = header.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].lowercased() == "bearer" else {
                throw APIError(DozeError(.unauthorized, "the Authorization header must be 'Bearer <token>'"))
            }
            bearer = String(parts[1]).trimmingCharacters(in: .whitespaces)
        } else if snooze, policy.snoozeCompat == .tokenInQuery, let token = request.uri.queryParameters.get("token") {
            bearer = token
        }
        if let bearer {
            guard let tokens = policy.tokens, let (principal, id) = await tokens.principal(forToken: bearer) else {
                throw APIError(DozeError(.unauthorized, "the token is not valid here: unknown, revoked or malformed"))
            }
            return (principal, id, bearer)
        }
        if let signature = request.headers[HTTPField.Name(NodeSignature.header)!] {
            guard let verifier = policy.nodeSignature,
                  verifier.verify(signature, method: request.method.rawValue, target: request.uri.description, nowMs: NodeSignature.nowMs) else {
                throw APIError(DozeError(.unauthorized, "the node signature is not valid (another cluster's secret, or a clock more than 2 minutes off)"))
            }
            return (.node, nil, nil)
        }
        let openHere = snooze ? policy.snoozeCompat == .open : policy.mode == .open
        return (openHere ? .admin : nil, nil, nil)
    }
}
