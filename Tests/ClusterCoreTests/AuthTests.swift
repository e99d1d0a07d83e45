import ClusterCore
import ClusterWire
import Testing

@Suite struct AuthBookTests {
    func book() throws -> AuthBook {
        var book = AuthBook()
        _ = try book.createTenant("blue", quota: TenantQuota(vms: 2, vcpus: 4), now: 100)
        return book
    }

    @Test func tenantsAreValidatedAndUnique() throws {
        var book = try book()
        #expect(throws: DozeError.self) { _ = try book.createTenant("blue", quota: .unlimited, now: 1) }
        #expect(throws: DozeError.self) { _ = try book.createTenant("Blue Team", quota: .unlimited, now: 1) }
        #expect(throws: DozeError.self) { _ = try book.createTenant("default", quota: .unlimited, now: 1) }
        #expect(throws: DozeError.self) { _ = try book.createTenant("red", quota: TenantQuota(vms: -1), now: 1) }
        #expect(book.tenant("default") != nil)
        #expect(book.allTenants.map(\.name) == ["blue", "default"])
    }

    @Test func quotaNamesEveryBoundCrossedWithItsNumbers() throws {
        let blue = try #require(try book().tenant("blue"))
        try blue.admit(TenantUsage(vms: 1, vcpus: 2), to: TenantUsage(vms: 1, vcpus: 2))
        do {
            try blue.admit(TenantUsage(vms: 2, vcpus: 4), to: TenantUsage(vms: 1, vcpus: 1))
            Issue.record("over quota was admitted")
        } catch {
            #expect(error.kind == .quotaExceeded)
            #expect(error.message.contains("VMs: 1 held + 2 asked > quota 2"), "\(error.message)")
            #expect(error.message.contains("vCPUs: 1 held + 4 asked > quota 4"), "\(error.message)")
        }
        // Unbounded quantities never refuse.
        try blue.admit(TenantUsage(memoryMiB: 1 << 30), to: TenantUsage(memoryMiB: 1 << 30))
    }

    @Test func tokensNeedATenantAndRevokeStaysRevoked() throws {
        var book = try book()
        #expect(throws: DozeError.self) {
            try book.addToken(APIToken(id: "a1", tenant: "nosuch", admin: false, name: "x", secretHash: "h", created: 1))
        }
        try book.addToken(APIToken(id: "a1", tenant: "blue", admin: false, name: "ci", secretHash: "h", created: 1))
        #expect(book.liveToken("a1")?.principal == .tenant("blue"))
        let first = try book.revoke("a1", now: 5)
        let second = try book.revoke("a1", now: 9)
        #expect(first.revoked == 5 && second.revoked == 5)
        #expect(book.liveToken("a1") == nil)
        #expect(throws: DozeError.self) { _ = try book.revoke("zz", now: 1) }
    }

    @Test func aTenantWithHoldingsOrLiveTokensStays() throws {
        var book = try book()
        try book.addToken(APIToken(id: "a1", tenant: "blue", admin: false, name: "ci", secretHash: "h", created: 1))
        #expect(throws: DozeError.self) { try book.deleteTenant("blue", holdings: ["1 VM"]) }
        #expect(throws: DozeError.self) { try book.deleteTenant("blue", holdings: []) }
        _ = try book.revoke("a1", now: 2)
        try book.deleteTenant("blue", holdings: [])
        #expect(book.tenant("blue") == nil)
        #expect(throws: DozeError.self) { try book.deleteTenant("default", holdings: []) }
    }

    @Test func principalsSeeTheirOwnTenantOnly() {
        #expect(Principal.tenant("blue").sees("blue"))
        #expect(!Principal.tenant("blue").sees("red"))
        #expect(!Principal.tenant("blue").sees(nil))
        #expect(Principal.tenant("default").sees(nil))
        #expect(Principal.admin.sees("red") && Principal.node.sees(nil))
        #expect(Principal.admin.owningTenant == "default" && Principal.tenant("blue").owningTenant == "blue")
    }
}

@Suite struct AccessRuleTests {
    func rule(_ method: String, _ path: String, _ operation: String? = nil, controller: Bool = false) -> AccessRule {
        AccessRule.classify(method: method, path: path, operation: operation, onController: controller)
    }

    @Test func classifiesRoutes() {
        #expect(rule("GET", "/health") == .anyone)
        #expect(rule("GET", "/metrics") == .anyone)
        #expect(rule("GET", "/v1/vms") == .tenantScoped)
        #expect(rule("POST", "/v1/vms/web1/suspend") == .tenantScoped)
        #expect(rule("POST", "/v1/virtual-clusters") == .tenantScoped)
        #expect(rule("GET", "/v1/hosts") == .admin)
        #expect(rule("POST", "/v1/hosts/x/drain") == .admin)
        #expect(rule("POST", "/v1/migrations") == .admin)
        #expect(rule("POST", "/v1/tenants") == .admin)
        #expect(rule("GET", "/v1/tenants") == .admin)
        #expect(rule("GET", "/v1/tenants/blue") == .tenantScoped)
        #expect(rule("GET", "/v1/vmsx") == .admin)
        #expect(rule("POST", "/v1/vms/x/load") == .admin)
        #expect(rule("POST", "/v1/networks") == .tenantScoped)
        #expect(rule("POST", "/VirtualMachineNetwork/bindFip") == .tenantScoped)
        #expect(rule("GET", "/v1/kvm-apps") == .tenantScoped)
        #expect(rule("GET", "/v1/something-new") == .admin)
        #expect(rule("POST", "/groupmanager", "startVirtualCluster") == .tenantScoped)
        #expect(rule("POST", "/groupmanager", "joinGroupLeader") == .node)
        #expect(rule("POST", "/groupmanager", "getLocalControllerList") == .admin)
        #expect(rule("POST", "/groupmanager", nil) == .admin)
        #expect(rule("GET", "/v1/vms", controller: true) == .admin)
        #expect(rule("POST", "/localcontroller", "startVirtualMachines", controller: true) == .node)
        #expect(rule("GET", "/health", controller: true) == .anyone)
    }

    @Test func tenantsNeverReachAdminOrNodeRoutes() {
        for admitted in [AccessRule.admin, .node] {
            #expect(!admitted.allows(.tenant("blue")))
            #expect(!admitted.allows(nil))
            #expect(admitted.allows(.admin) && admitted.allows(.node))
        }
        #expect(AccessRule.tenantScoped.allows(.tenant("blue")))
        #expect(!AccessRule.tenantScoped.allows(nil))
        #expect(AccessRule.anyone.allows(nil))
    }
}

@Suite struct TokenAndSignatureTests {
    @Test func tokensParseAndMatchOnlyTheirHash() throws {
        let made = APITokenSecret.generate()
        let (id, secret) = try #require(APITokenSecret.parse(made.token))
        #expect(id == made.id)
        #expect(APITokenSecret.matches(secret, made.secretHash))
        #expect(!APITokenSecret.matches(secret + "x", made.secretHash))
        #expect(!made.secretHash.contains(secret))
        #expect(APITokenSecret.parse("Bearer x") == nil)
        #expect(APITokenSecret.parse("dz__abcdefabcdefabcdef") == nil)
        #expect(APITokenSecret.parse("dz_id_short") == nil)
        #expect(APITokenSecret.generate().token != made.token)
    }

    @Test func nodeSignaturesBindMethodTargetTimeAndSecret() {
        let signer = NodeSignature(secret: "s1")
        let header = signer.sign(method: "POST", target: "/groupmanager?joinGroupLeader", unixMs: 1_000_000)
        #expect(signer.verify(header, method: "POST", target: "/groupmanager?joinGroupLeader", nowMs: 1_000_500))
        #expect(!signer.verify(header, method: "GET", target: "/groupmanager?joinGroupLeader", nowMs: 1_000_500))
        #expect(!signer.verify(header, method: "POST", target: "/groupmanager?startVirtualMachines", nowMs: 1_000_500))
        #expect(!signer.verify(header, method: "POST", target: "/groupmanager?joinGroupLeader", nowMs: 1_000_000 + NodeSignature.window + 1))
        #expect(!NodeSignature(secret: "s2").verify(header, method: "POST", target: "/groupmanager?joinGroupLeader", nowMs: 1_000_500))
        #expect(!signer.verify("1000000.zz", method: "POST", target: "/groupmanager?joinGroupLeader", nowMs: 1_000_500))
        #expect(!signer.verify("garbage", method: "POST", target: "/", nowMs: 0))
    }
}
