import ClusterCore
import Crypto
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// API tokens: `dz_<id>_<secret>`. The id names the token in lists and revocations; only SHA-256 of the secret
/// is stored, so the records (a directory, or etcd) never hold a usable token.
public enum APITokenSecret {
    /// The admin token file's token has this id; it is checked against the file, not the records.
    public static let adminFileID = "admin"

    /// A new token and what the records keep of it.
    public static func generate(id: String? = nil) -> (token: String, id: String, secretHash: String) {
        var rng = SystemRandomNumberGenerator()
        let tokenID = id ?? String((0..<6).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &rng)) }.joined())
        let secretBytes = (0..<32).map { _ in UInt8.random(in: 0...255, using: &rng) }
        let secret = Data(secretBytes).base64EncodedString().replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_").replacingOccurrences(of: "=", with: "")
        return ("dz_\(tokenID)_\(secret)", tokenID, hash(secret))
    }

    /// `(id, secret)` of a well-formed token.
    public static func parse(_ token: String) -> (id: String, secret: String)? {
        let parts = token.split(separator: "_", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, parts[0] == "dz", !parts[1].isEmpty, parts[2].utf8.count >= 16, token.utf8.count <= 200 else { return nil }
        return (String(parts[1]), String(parts[2]))
    }

    public static func hash(_ secret: String) -> String {
        SHA256.hash(data: Data(secret.utf8)).map { String(format: "%02x", $0) }.joined()
    }

    /// Whether `secret` hashes to `expectedHash`, in time independent of where they differ.
    public static func matches(_ secret: String, _ expectedHash: String) -> Bool {
        let actual = Array(hash(secret).utf8), expected = Array(expectedHash.utf8)
        guard actual.count == expected.count else { return false }
        var difference: UInt8 = 0
        for i in actual.indices { difference |= actual[i] ^ expected[i] }
        return difference == 0
    }
}

/// Node-to-node calls carry `X-Doze-Node: <unix ms>.<hex HMAC-SHA256>` over the method, the target and the time,
/// keyed by the cluster secret (the heartbeats' secret, derived apart). A stray client without the secret cannot
/// call a controller or act as a node; a captured header is good for `window` on that one target only.
public struct NodeSignature: Sendable {
    public static let header = "X-Doze-Node"
    /// A request a node makes on behalf of an authenticated client names the client here (signed with the rest).
    public static let onBehalfHeader = "X-Doze-On-Behalf-Of"
    public static let window: Int64 = 120_000

    let key: SymmetricKey

    public init(secret: String) {
        key = SymmetricKey(data: SHA256.hash(data: Data(("doze-http-v1:" + secret).utf8)))
    }

    static func message(method: String, target: String, unixMs: Int64, onBehalf: String?) -> Data {
        Data("\(method) \(target) \(unixMs) \(onBehalf ?? "")".utf8)
    }

    public func sign(method: String, target: String, unixMs: Int64, onBehalf: String? = nil) -> String {
        let mac = HMAC<SHA256>.authenticationCode(for: Self.message(method: method, target: target, unixMs: unixMs, onBehalf: onBehalf), using: key)
        return "\(unixMs)." + mac.map { String(format: "%02x", $0) }.joined()
    }

    public func verify(_ value: String, method: String, target: String, nowMs: Int64, onBehalf: String? = nil) -> Bool {
        let parts = value.split(separator: ".", maxSplits: 1)
        guard parts.count == 2, let time = Int64(parts[0]), abs(nowMs - time) <= Self.window,
              parts[1].utf8.count == 64 else { return false }
        var mac: [UInt8] = []
        var hex = parts[1].utf8.makeIterator()
        while let high = hex.next(), let low = hex.next() {
            guard let byte = UInt8(String(decoding: [high, low], as: UTF8.self), radix: 16) else { return false }
            mac.append(byte)
        }
        return HMAC<SHA256>.isValidAuthenticationCode(mac, authenticating: Self.message(method: method, target: target, unixMs: time, onBehalf: onBehalf),
                                                      using: key)
    }

    public static var nowMs: Int64 { Int64(Date().timeIntervalSince1970 * 1000) }
}

// MARK: - The /v1/tokens and /v1/tenants bodies

public struct TokenCreateRequest: Codable, Sendable, Equatable {
    /// Default: the asking tenant's own (admins: `default`).
    public var tenant: String?
    public var name: String?
    /// An admin token (admins only): sees and changes every tenant's objects.
    public var admin: Bool?

    public init(tenant: String? = nil, name: String? = nil, admin: Bool? = nil) {
        self.tenant = tenant
        self.name = name
        self.admin = admin
    }
}

public struct TokenDocument: Codable, Sendable, Equatable {
    public var id: String
    public var tenant: String
    public var admin: Bool
    public var name: String
    public var created: Int64
    public var revoked: Int64?
    /// Only in the answer to its creation: the token itself is never stored and cannot be shown again.
    public var token: String?

    public init(_ token: APIToken, secret: String? = nil) {
        id = token.id
        tenant = token.tenant
        admin = token.admin
        name = token.name
        created = token.created
        revoked = token.revoked
        self.token = secret
    }
}

public struct TokenList: Codable, Sendable, Equatable {
    public var tokens: [TokenDocument]
    public init(tokens: [TokenDocument]) { self.tokens = tokens }
}

public struct TenantCreateRequest: Codable, Sendable, Equatable {
    public var name: String
    public var quota: TenantQuota?
    public init(name: String, quota: TenantQuota? = nil) {
        self.name = name
        self.quota = quota
    }
}

public struct TenantDocument: Codable, Sendable, Equatable {
    public var name: String
    public var quota: TenantQuota
    public var usage: TenantUsage
    public var created: Int64
    public init(_ tenant: Tenant, usage: TenantUsage) {
        name = tenant.name
        quota = tenant.quota
        self.usage = usage
        created = tenant.created
    }
}

public struct TenantList: Codable, Sendable, Equatable {
    public var tenants: [TenantDocument]
    public init(tenants: [TenantDocument]) { self.tenants = tenants }
}

/// `GET /v1/whoami`: what the presented credentials are.
public struct WhoAmI: Codable, Sendable, Equatable {
    /// `admin`, `tenant` or `node`.
    public var role: String
    public var tenant: String?
    public var tokenId: String?
    public init(role: String, tenant: String?, tokenId: String?) {
        self.role = role
        self.tenant = tenant
        self.tokenId = tokenId
    }
}

/// `--admin-token-file`: the cluster's first admin token. Made at first start (mode 0600, in a 0700 directory when
/// it makes one) and read at every later one; every node given the same file takes the same token.
public enum AdminTokenFile {
    public static func loadOrCreate(_ path: String) throws -> (token: String, secretHash: String) {
        if let data = FileManager.default.contents(atPath: path) {
            let token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            guard let (id, secret) = APITokenSecret.parse(token), id == APITokenSecret.adminFileID else {
                throw DozeError(.badRequest, "\(path) does not hold an admin token (dz_admin_…); remove it to have a new one made")
            }
            return (token, APITokenSecret.hash(secret))
        }
        let directory = (path as NSString).deletingLastPathComponent
        if !directory.isEmpty, !FileManager.default.fileExists(atPath: directory) {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        }
        let made = APITokenSecret.generate(id: APITokenSecret.adminFileID)
        // Written under a temporary name with its mode set first: the token is never readable by others, even briefly.
        let temporary = path + ".\(getpid()).tmp"
        guard FileManager.default.createFile(atPath: temporary, contents: Data((made.token + "\n").utf8), attributes: [.posixPermissions: 0o600]) else {
            throw DozeError(.unavailable, "cannot write the admin token file \(path)")
        }
        // Another node given the same file may have made it meanwhile: keep the first.
        if link(temporary, path) != 0 {
            unlink(temporary)
            return try loadOrCreate(path)
        }
        unlink(temporary)
        return (made.token, made.secretHash)
    }
}
