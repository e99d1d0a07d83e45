/// Who is asking: what the API lets a request see and change.
public enum Principal: Sendable, Equatable, CustomStringConvertible {
    /// An admin token, the cluster's admin token file, or anyone while the API is open: sees and changes everything.
    case admin
    /// A tenant's token: sees and changes only that tenant's VMs, apps, networks and floating IPs.
    case tenant(String)
    /// Another node of the cluster (a call signed with the cluster secret).
    case node

    /// The tenant whose objects this principal is limited to; nil: all of them.
    public var scope: String? {
        if case .tenant(let name) = self { return name }
        return nil
    }

    public var isPrivileged: Bool { scope == nil }

    /// The tenant a new object made by this principal belongs to.
    public var owningTenant: String { scope ?? Tenant.defaultName }

    /// Whether an object owned by `tenant` (nil: made before tenants existed, so the default tenant's) is visible.
    public func sees(_ tenant: String?) -> Bool {
        guard let scope else { return true }
        return (tenant ?? Tenant.defaultName) == scope
    }

    public var description: String {
        switch self {
        case .admin: "admin"
        case .tenant(let name): "tenant \(name)"
        case .node: "node"
        }
    }
}

/// Upper bounds on what one tenant may hold at a time; nil: no bound.
public struct TenantQuota: Codable, Sendable, Equatable {
    public var vms: Int?
    public var vcpus: Int?
    public var memoryMiB: Int?
    public var floatingIPs: Int?

    public init(vms: Int? = nil, vcpus: Int? = nil, memoryMiB: Int? = nil, floatingIPs: Int? = nil) {
        self.vms = vms
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
        self.floatingIPs = floatingIPs
    }

    public static let unlimited = TenantQuota()
}

/// What a tenant holds now (or asks for): the quantities a quota bounds.
public struct TenantUsage: Codable, Sendable, Equatable {
    public var vms: Int
    public var vcpus: Int
    public var memoryMiB: Int
    public var floatingIPs: Int

    public init(vms: Int = 0, vcpus: Int = 0, memoryMiB: Int = 0, floatingIPs: Int = 0) {
        self.vms = vms
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
        self.floatingIPs = floatingIPs
    }

    public static func + (a: TenantUsage, b: TenantUsage) -> TenantUsage {
        TenantUsage(vms: a.vms + b.vms, vcpus: a.vcpus + b.vcpus, memoryMiB: a.memoryMiB + b.memoryMiB, floatingIPs: a.floatingIPs + b.floatingIPs)
    }
}

/// A project: the owner of VMs, apps, networks and floating IPs.
public struct Tenant: Codable, Sendable, Equatable {
    /// Owns what admins make, and everything made before tenants existed.
    public static let defaultName = "default"

    public var name: String
    public var quota: TenantQuota
    /// Unix seconds.
    public var created: Int64

    public init(name: String, quota: TenantQuota = .unlimited, created: Int64) {
        self.name = name
        self.quota = quota
        self.created = created
    }

    /// Refuses `adding` when it would take `usage` over the quota, naming each bound crossed with its numbers.
    public func admit(_ adding: TenantUsage, to usage: TenantUsage) throws(DozeError) {
        var over: [String] = []
        func check(_ what: String, _ limit: Int?, _ held: Int, _ asked: Int, unit: String = "") {
            guard let limit, asked > 0, held + asked > limit else { return }
            over.append("\(what): \(held)\(unit) held + \(asked)\(unit) asked > quota \(limit)\(unit)")
        }
        check("VMs", quota.vms, usage.vms, adding.vms)
        check("vCPUs", quota.vcpus, usage.vcpus, adding.vcpus)
        check("memory", quota.memoryMiB, usage.memoryMiB, adding.memoryMiB, unit: " MiB")
        check("floating IPs", quota.floatingIPs, usage.floatingIPs, adding.floatingIPs)
        guard over.isEmpty else {
            throw DozeError(.quotaExceeded, "tenant '\(name)' is over its quota: " + over.joined(separator: "; "))
        }
    }
}

/// An API token as the records keep it: never the secret, only its SHA-256.
public struct APIToken: Codable, Sendable, Equatable {
    /// Public part of the token (`dz_<id>_<secret>`): names it in lists and revocations.
    public var id: String
    public var tenant: String
    public var admin: Bool
    public var name: String
    /// Hex SHA-256 of the secret part.
    public var secretHash: String
    public var created: Int64
    public var revoked: Int64?

    public init(id: String, tenant: String, admin: Bool, name: String, secretHash: String, created: Int64, revoked: Int64? = nil) {
        self.id = id
        self.tenant = tenant
        self.admin = admin
        self.name = name
        self.secretHash = secretHash
        self.created = created
        self.revoked = revoked
    }

    public var principal: Principal { admin ? .admin : .tenant(tenant) }
}

/// The cluster's tenants and tokens, kept with the other records so every group manager (and a new leader) reads
/// the same. Changes are made on a copy by the leader and stored before they are answered.
public struct AuthBook: Codable, Sendable, Equatable {
    public private(set) var tenants: [String: Tenant]
    public private(set) var tokens: [String: APIToken]

    public init(tenants: [String: Tenant] = [:], tokens: [String: APIToken] = [:]) {
        self.tenants = tenants
        self.tokens = tokens
    }

    /// The default tenant always exists (unlimited unless given a quota).
    public func tenant(_ name: String) -> Tenant? {
        tenants[name] ?? (name == Tenant.defaultName ? Tenant(name: name, created: 0) : nil)
    }

    public var allTenants: [Tenant] {
        var all = tenants
        if all[Tenant.defaultName] == nil { all[Tenant.defaultName] = Tenant(name: Tenant.defaultName, created: 0) }
        return all.values.sorted { $0.name < $1.name }
    }

    public static func validateName(_ name: String, what: String) throws(DozeError) {
        let allowed = name.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 45 || $0 == 95 }
        guard (1...32).contains(name.utf8.count), allowed, name.first != "-" else {
            throw DozeError(.badRequest, "\(what) '\(name)' must be 1 to 32 of a-z, 0-9, '-' and '_', not starting with '-'")
        }
    }

    static func validate(_ quota: TenantQuota) throws(DozeError) {
        for (what, value) in [("vms", quota.vms), ("vcpus", quota.vcpus), ("memoryMiB", quota.memoryMiB), ("floatingIPs", quota.floatingIPs)] {
            if let value, value < 0 { throw DozeError(.badRequest, "quota \(what) must be >= 0, got \(value)") }
        }
    }

    public mutating func createTenant(_ name: String, quota: TenantQuota, now: Int64) throws(DozeError) -> Tenant {
        try Self.validateName(name, what: "tenant name")
        try Self.validate(quota)
        guard name != Tenant.defaultName else { throw DozeError(.conflict, "tenant 'default' always exists; set its quota instead") }
        guard tenants[name] == nil else { throw DozeError(.conflict, "tenant '\(name)' exists") }
        let tenant = Tenant(name: name, quota: quota, created: now)
        tenants[name] = tenant
        return tenant
    }

    public mutating func setQuota(_ name: String, _ quota: TenantQuota, now: Int64) throws(DozeError) -> Tenant {
        try Self.validate(quota)
        guard var tenant = tenant(name) else { throw DozeError(.notFound, "no tenant '\(name)'") }
        if tenants[name] == nil { tenant.created = now }
        tenant.quota = quota
        tenants[name] = tenant
        return tenant
    }

    /// Refused while the tenant holds anything (`holdings` names what) or has live tokens.
    public mutating func deleteTenant(_ name: String, holdings: [String]) throws(DozeError) {
        guard name != Tenant.defaultName else { throw DozeError(.conflict, "tenant 'default' cannot be deleted") }
        guard tenants[name] != nil else { throw DozeError(.notFound, "no tenant '\(name)'") }
        guard holdings.isEmpty else {
            throw DozeError(.conflict, "tenant '\(name)' still holds \(holdings.joined(separator: ", ")); remove them first")
        }
        let live = tokens.values.filter { $0.tenant == name && $0.revoked == nil }.map(\.id).sorted()
        guard live.isEmpty else {
            throw DozeError(.conflict, "tenant '\(name)' has live tokens (\(live.joined(separator: ", "))); revoke them first")
        }
        tenants[name] = nil
    }

    public mutating func addToken(_ token: APIToken) throws(DozeError) {
        guard tenant(token.tenant) != nil else { throw DozeError(.notFound, "no tenant '\(token.tenant)' (doze tenant create \(token.tenant))") }
        guard tokens[token.id] == nil else { throw DozeError(.conflict, "token id '\(token.id)' exists") }
        try Self.validateName(token.name, what: "token name")
        tokens[token.id] = token
    }

    /// Revoking twice is not an error: the token stays revoked since the first time.
    public mutating func revoke(_ id: String, now: Int64) throws(DozeError) -> APIToken {
        guard var token = tokens[id] else { throw DozeError(.notFound, "no token '\(id)'") }
        if token.revoked == nil { token.revoked = now }
        tokens[id] = token
        return token
    }

    /// The live token with this id, or nil (unknown or revoked).
    public func liveToken(_ id: String) -> APIToken? {
        guard let token = tokens[id], token.revoked == nil else { return nil }
        return token
    }
}
