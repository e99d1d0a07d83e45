import AsyncHTTPClient
import ClusterCore
import ClusterTestKit
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1
import Testing

extension ProcessTests {
/// Tokens and tenants on a real cluster of `doze` processes (`--auth tokens`): no token, a wrong, malformed or
/// revoked one, another tenant's VM, an admin route, a stray client calling a controller, over quota — each
/// refused with nothing changed; the books surviving a leader kill; no token in any log.
@Suite(.serialized) struct AuthProcessTests {
    final class Cluster: TestCluster, @unchecked Sendable {
        var adminToken = ""

        init(snoozeCompat: String = "token-in-query") throws {
            try super.init(prefix: "doze-auth")
            nodeArguments = ["--auth", "tokens", "--snooze-compat", snoozeCompat, "--admin-token-file", dir.file("admin.token")]
        }

        func up() async throws {
            try await startBootstrap()
            managerArguments = ["--vm-subnet", "10.80.0.0/16", "--floating-range", "10.77.0.200-10.77.0.210"]
            for gm in ["gm1", "gm2", "gm3"] { try startManager(gm) }
            for lc in ["lc1", "lc2"] { try startController(lc) }
            let file = dir.file("admin.token")
            try await eventually(.seconds(20), "the admin token made") { FileManager.default.fileExists(atPath: file) }
            adminToken = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            token = adminToken
            try await eventually(.seconds(20), "both controllers under a manager") {
                let (status, body) = try await self.api(.GET, "/v1/hosts", token: self.adminToken)
                return status == 200 && (try? JSONDecoder().decode(HostList.self, from: Data(body.utf8)))?.hosts.count == 2
            }
        }

        func api(_ method: HTTPMethod, _ path: String, _ body: String? = nil, token: String?, at address: String? = nil) async throws -> (Int, String) {
            let answer = try await call(method, address ?? bootstrap, path, body: body, headers: token.map { [("Authorization", "Bearer \($0)")] } ?? [])
            return (answer.status, answer.body)
        }

        func submit(_ name: String, token: String, vcpus: Int = 1) async throws -> (Int, String) {
            let xml = "<domain type='kvm'><name>\(name)</name><memory unit='MiB'>64</memory><vcpu>\(vcpus)</vcpu><os><type>hvm</type></os><devices/></domain>"
            let body = String(decoding: try JSONEncoder().encode(VirtualClusterSubmissionRequest(
                virtualMachineTemplates: [VirtualMachineTemplate(libVirtTemplate: xml)])), as: UTF8.self)
            let (status, task) = try await api(.POST, "/v1/virtual-clusters", body, token: token)
            guard status == 202 else { return (status, task) }
            let id = try JSONDecoder().decode([String: String].self, from: Data(task.utf8))["taskId"] ?? ""
            return try await api(.GET, "/v1/virtual-clusters/\(id)?wait=20", token: token)
        }

        func vmNames(token: String) async throws -> [String] {
            let (status, body) = try await api(.GET, "/v1/vms", token: token)
            #expect(status == 200, "\(body)")
            return try JSONDecoder().decode(VirtualMachineList.self, from: Data(body.utf8)).virtualMachines.map(\.virtualMachineLocation.virtualMachineId).sorted()
        }

        func newToken(tenant: String) async throws -> TokenDocument {
            let (status, body) = try await api(.POST, "/v1/tokens", #"{"tenant":"\#(tenant)","name":"t"}"#, token: adminToken)
            #expect(status == 201, "\(body)")
            return try JSONDecoder().decode(TokenDocument.self, from: Data(body.utf8))
        }
    }

    @Test func tokensTenantsAndEveryRefusal() async throws {
        let c = try Cluster()
        defer { c.stop() }
        try await c.up()
        #expect((try FileManager.default.attributesOfItem(atPath: c.dir.file("admin.token"))[.posixPermissions] as? NSNumber)?.intValue == 0o600)

        // No token, a malformed one, a well-formed unknown one, a wrong scheme: 401, on the bootstrap and the leader.
        let leader = try #require(await c.hierarchy()?.groupLeader).listenSettings.controlDataAddress
        for address in [c.bootstrap, "\(leader.address):\(leader.port)"] {
            #expect(try await c.api(.GET, "/v1/vms", token: nil, at: address).0 == 401)
            #expect(try await c.api(.GET, "/v1/vms", token: "nonsense", at: address).0 == 401)
            #expect(try await c.api(.GET, "/v1/vms", token: APITokenSecret.generate().token, at: address).0 == 401)
            #expect(try await c.call(.GET, address, "/v1/vms", headers: [("Authorization", "Basic YWRtaW46YWRtaW4=")]).status == 401)
            #expect(try await c.api(.GET, "/health", token: nil, at: address).0 == 200)
        }

        // A tenant with a quota, and its token.
        let (created, tenantBody) = try await c.api(.POST, "/v1/tenants", #"{"name":"blue","quota":{"vms":2,"vcpus":3}}"#, token: c.adminToken)
        #expect(created == 201, "\(tenantBody)")
        let blue = try await c.newToken(tenant: "blue")
        let blueToken = try #require(blue.token)
        #expect(try await c.api(.GET, "/v1/whoami", token: blueToken).1.contains(#""tenant":"blue""#))

        // Each submits; each sees its own VMs only, the admin all.
        #expect(try await c.submit("mine", token: blueToken).1.contains(#""tenant":"blue""#))
        #expect(try await c.submit("theirs", token: c.adminToken).0 == 200)
        #expect(try await c.vmNames(token: blueToken) == ["mine"])
        #expect(try await c.vmNames(token: c.adminToken) == ["mine", "theirs"])

        // Another tenant's VM does not exist for blue: reading or destroying it is a 404, and it keeps running.
        #expect(try await c.api(.GET, "/v1/vms/theirs", token: blueToken).0 == 404)
        #expect(try await c.api(.POST, "/v1/vms/theirs/destroy", token: blueToken).0 == 404)
        #expect(try await c.call(.POST, c.bootstrap, "/bootstrap?destroyVirtualMachine&token=\(blueToken)", body: "theirs").status == 404)
        let theirs = try await c.api(.GET, "/v1/vms/theirs", token: c.adminToken)
        #expect(theirs.0 == 200 && theirs.1.contains("RUNNING"), "\(theirs)")

        // Admin routes: 403 for a tenant.
        for (method, path, body) in [(HTTPMethod.GET, "/v1/hosts", nil as String?), (.POST, "/v1/tenants", #"{"name":"red"}"#),
                                     (.POST, "/v1/migrations", #"{"vm":"mine","to":"x"}"#), (.GET, "/v1/tenants/default", nil)] {
            let (status, text) = try await c.api(method, path, body, token: blueToken)
            #expect(status == 403 || (path == "/v1/tenants/default" && status == 404), "\(method) \(path): \(status) \(text)")
        }

        // Over quota: a clear refusal with the numbers, and nothing placed.
        let over = try await c.submit("big", token: blueToken, vcpus: 3)
        #expect(over.0 == 409 && over.1.contains("vCPUs: 1 held + 3 asked > quota 3"), "\(over)")
        #expect(try await c.vmNames(token: blueToken) == ["mine"])
        let usage = try await c.api(.GET, "/v1/tenants/blue", token: blueToken)
        #expect(usage.1.contains(#""usage":{"floatingIPs":0,"memoryMiB":64,"vcpus":1,"vms":1}"#), "\(usage)")

        // Networks and floating IPs belong to the tenant that made them: another tenant neither sees nor uses them.
        #expect(try await c.api(.PUT, "/v1/tenants/blue/quota", #"{"vms":2,"vcpus":3,"floatingIPs":1}"#, token: c.adminToken).0 == 200)
        #expect(try await c.api(.POST, "/v1/tenants", #"{"name":"red"}"#, token: c.adminToken).0 == 201)
        let redToken = try #require(try await c.newToken(tenant: "red").token)
        let made = try await c.api(.POST, "/v1/networks", #"{"name":"bn","subnet":"10.201.0.0/24"}"#, token: blueToken)
        #expect(made.0 == 201 && made.1.contains(#""tenant":"blue""#), "\(made)")
        #expect(try await c.api(.GET, "/v1/networks/bn", token: redToken).0 == 404)
        #expect(try await c.api(.DELETE, "/v1/networks/bn", token: redToken).0 == 404)
        #expect(!(try await c.api(.GET, "/v1/networks", token: redToken).1.contains("bn")))
        #expect(try await c.api(.GET, "/v1/networks/bn", token: blueToken).0 == 200)
        let redXML = "<domain type='kvm'><name>intruder</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os><devices/></domain>"
        var redTemplate = VirtualMachineTemplate(libVirtTemplate: redXML)
        redTemplate.networks = ["bn"]
        let redBody = String(decoding: try JSONEncoder().encode(VirtualClusterSubmissionRequest(virtualMachineTemplates: [redTemplate])), as: UTF8.self)
        #expect(try await c.api(.POST, "/v1/virtual-clusters", redBody, token: redToken).0 == 404)
        let fip = try await c.api(.POST, "/v1/floating-ips", "", token: blueToken)
        #expect(fip.0 == 201, "\(fip)")
        if fip.0 == 201 {
            let address = try JSONDecoder().decode(FloatingIPDocument.self, from: Data(fip.1.utf8)).address
            #expect(try await c.api(.GET, "/v1/floating-ips/\(address)", token: redToken).0 == 404)
            #expect(try await c.api(.DELETE, "/v1/floating-ips/\(address)", token: redToken).0 == 404)
            let second = try await c.api(.POST, "/v1/floating-ips", "", token: blueToken)
            #expect(second.0 == 409 && second.1.contains("floating IPs: 1 held + 1 asked > quota 1"), "\(second)")
        }
        #expect(try await c.api(.DELETE, "/v1/networks/bn", token: blueToken).0 == 200)
        // kvm-apps too: a tenant lists only its own and another's is not there.
        #expect(try await c.api(.GET, "/v1/kvm-apps", token: redToken).0 == 200)
        #expect(try await c.api(.GET, "/v1/kvm-apps/nosuch.bbk.bj", token: redToken).0 == 404)

        // A stray client cannot call a controller; the admin token and the cluster's own nodes can.
        let lc = try await c.address("lc1")
        #expect(try await c.api(.GET, "/vms", token: nil, at: lc).0 == 401)
        #expect(try await c.api(.GET, "/vms", token: blueToken, at: lc).0 == 401)
        #expect(try await c.call(.POST, lc, "/localcontroller?destroyVirtualMachine", body: "mine").status == 401)
        #expect(try await c.call(.POST, lc, "/localcontroller?destroyVirtualMachine", body: "mine",
                                 headers: [(NodeSignature.header, NodeSignature(secret: "not-the-secret").sign(method: "POST", target: "/localcontroller?destroyVirtualMachine", unixMs: NodeSignature.nowMs))]).status == 401)
        let direct = try await c.api(.GET, "/vms", token: c.adminToken, at: lc)
        #expect(direct.0 == 200, "\(direct)")
        #expect(try await c.vmNames(token: blueToken) == ["mine"])

        // Snooze: token-in-query lets a Snooze client in with ?token=, and without one it is refused.
        #expect(try await c.call(.GET, c.bootstrap, "/bootstrap?getLocalControllerList").status == 401)
        #expect(try await c.call(.GET, c.bootstrap, "/bootstrap?getLocalControllerList&token=\(c.adminToken)").status == 200)

        // A second token, then a leader kill: the new leader knows the tenant and the token.
        let second = try #require(try await c.newToken(tenant: "blue").token)
        let leaderID = try #require(await c.hierarchy()?.groupLeader).id
        let oldLeader = try #require(c.name(ofManager: leaderID))
        c.processes[oldLeader]?.kill9()
        try await eventually(.seconds(20), "a new leader answering blue's second token") {
            (try? await c.api(.GET, "/v1/vms", token: second))?.0 == 200
        }
        try await eventually(.seconds(10), "blue's VM listed again after the failover") { try await c.vmNames(token: second) == ["mine"] }

        // Revoked: refused within the checkers' refresh (2 s), by the leader and the bootstrap alike.
        #expect(try await c.api(.DELETE, "/v1/tokens/\(blue.id)", token: c.adminToken).0 == 200)
        try await eventually(.seconds(5), "the revoked token refused") { (try? await c.api(.GET, "/v1/vms", token: blueToken))?.0 == 401 }
        #expect(try await c.api(.GET, "/v1/vms", token: second).0 == 200)

        // No token is ever written to a log.
        for name in c.processes.keys {
            let log = c.processes[name]?.log ?? ""
            for token in [c.adminToken, blueToken, second] {
                let secret = String(token.split(separator: "_", maxSplits: 2)[2])
                #expect(!log.contains(secret), "\(name)'s log holds a token")
            }
        }
    }
}
}
