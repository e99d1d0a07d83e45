import AsyncHTTPClient
import ClusterCore
import ClusterTestKit
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1
import Testing

extension ProcessTests {
/// Seed 004's networks on a real cluster of `doze` processes with libvirt test-driver hosts: switches, addresses
/// in the VM's domain XML, floating IPs in the books (no data plane here, and the answers say so), the bad input
/// of the issue refused with nothing half-made, and the books surviving a leader failover.
@Suite(.serialized) struct NetworkProcessTests {
    final class Cluster: TestCluster, @unchecked Sendable {
        init() throws { try super.init(prefix: "doze-nets") }

        func up() async throws {
            try await startBootstrap()
            managerArguments = ["--vm-subnet", "10.80.0.0/16", "--floating-range", "10.77.0.200-10.77.0.201"]
            for gm in ["gm1", "gm2", "gm3"] { try startManager(gm) }
            for lc in ["lc1", "lc2"] { try startController(lc) }
            try await eventually(.seconds(20), "both controllers under a manager") {
                await self.hierarchy()?.groupManagerDescriptions.reduce(0) { $0 + $1.localControllers.count } == 2
            }
        }

        func api(_ method: HTTPMethod, _ path: String, _ body: String? = nil) async throws -> (Int, String) {
            var request = HTTPClientRequest(url: "http://\(bootstrap)\(path)")
            request.method = method
            if let body { request.body = .bytes(ByteBuffer(string: body)) }
            let response = try await HTTPClient.shared.execute(request, timeout: .seconds(60))
            return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 22)))
        }

        func json<T: Decodable>(_ type: T.Type, _ method: HTTPMethod, _ path: String, _ body: String? = nil,
                                expect: Int = 200) async throws -> T {
            let (status, text) = try await api(method, path, body)
            #expect(status == expect, "\(method) \(path): \(text)")
            return try JSONDecoder().decode(T.self, from: Data(text.utf8))
        }

        func submit(_ name: String, networks: [String]) async throws -> VirtualMachineMetaData {
            let xml = "<domain type='kvm'><name>\(name)</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os><devices/></domain>"
            var template = VirtualMachineTemplate(libVirtTemplate: xml)
            template.networks = networks
            let body = String(decoding: try JSONEncoder().encode(VirtualClusterSubmissionRequest(virtualMachineTemplates: [template])), as: UTF8.self)
            let (status, task) = try await api(.POST, "/v1/virtual-clusters", body)
            #expect(status == 202 || status == 200, "\(task)")
            let id = try JSONDecoder().decode([String: String].self, from: Data(task.utf8))["taskId"] ?? ""
            let deadline = ContinuousClock.now + .seconds(30)
            var document = try await json(VirtualClusterTaskDocument.self, .GET, "/v1/virtual-clusters/\(id)?wait=5")
            while document.state != .done, ContinuousClock.now < deadline {
                document = try await json(VirtualClusterTaskDocument.self, .GET, "/v1/virtual-clusters/\(id)?wait=5")
            }
            #expect(document.state == .done, "\(name) submitted in time")
            return try #require(document.response.virtualMachineMetaData.first)
        }
    }

    @Test func switchesAddressesAndFloatingIPsOnTestDriverHosts() async throws {
        let cluster = try Cluster()
        defer { cluster.stop() }
        try await cluster.up()

        let blue = try await cluster.json(SwitchDocument.self, .POST, "/v1/networks",
                                          #"{"name":"blue","subnet":"10.200.0.0/24","dhcpRange":"10.200.0.10-10.200.0.11"}"#, expect: 201)
        #expect(blue.gateway == "10.200.0.1" && blue.bridge == "dz-br100" && blue.capacity == 2)
        // Bad input: clear 4xx, nothing made.
        for (body, status, words) in [
            (#"{"name":"wide","subnet":"10.200.0.0/16"}"#, 409, "overlaps network 'blue'"),
            (#"{"name":"gw","subnet":"10.9.0.0/24","gateway":"10.8.0.1"}"#, 400, "not a host address"),
            (#"{"name":"def","subnet":"10.80.5.0/24"}"#, 409, "default VM subnet"),
            (#"{"name":"x","subnet":"nonsense"}"#, 400, "a.b.c.d/len"),
        ] {
            let (code, text) = try await cluster.api(.POST, "/v1/networks", body)
            #expect(code == status && text.contains(words), "\(body) -> \(code) \(text)")
        }
        #expect(try await cluster.json(NetworkList.self, .GET, "/v1/networks").networks.map(\.name) == ["blue"])

        // A VM on the switch: its NIC is in the domain XML the host runs, its address from the switch's range.
        let web = try await cluster.submit("web", networks: ["blue"])
        #expect(web.status == .running, "\(web.errorMessage ?? "")")
        let nic = try #require(web.networks?.first)
        #expect(nic.ip == "10.200.0.10" && nic.mac == "0a:56:0a:c8:00:0a" && nic.network == "blue")
        #expect(web.xmlRepresentation.contains("dz-br100") && web.xmlRepresentation.contains("0a:56:0a:c8:00:0a"), "\(web.xmlRepresentation)")
        let unknown = try await cluster.api(.POST, "/v1/virtual-clusters",
                                            #"{"virtualMachineTemplates":[{"name":"x","imageId":"i","networks":["nope"]}]}"#)
        #expect(unknown.0 == 404 && unknown.1.contains("no network 'nope'"), "\(unknown)")
        #expect(try await cluster.submit("db", networks: ["blue"]).networks?.first?.ip == "10.200.0.11")
        let exhausted = try await cluster.api(.POST, "/v1/virtual-clusters",
                                              #"{"virtualMachineTemplates":[{"name":"more","imageId":"i","networks":["blue"]}]}"#)
        #expect(exhausted.0 == 409 && exhausted.1.contains("no free address"), "\(exhausted)")

        // The switch in use cannot go.
        let inUse = try await cluster.api(.DELETE, "/v1/networks/blue")
        #expect(inUse.0 == 409 && inUse.1.contains("web"), "\(inUse)")

        // Floating IPs: allocate, bind (applied on web's host, which has no data plane and says so), bad binds.
        let fip = try await cluster.json(FloatingIPDocument.self, .POST, "/v1/floating-ips", "", expect: 201)
        #expect(fip.address == "10.77.0.200")
        let bound = try await cluster.json(FloatingIPDocument.self, .POST, "/v1/floating-ips/10.77.0.200/bind", #"{"vm":"web"}"#)
        #expect(bound.vm == "web" && bound.privateIP == "10.200.0.10" && bound.host == web.virtualMachineLocation.localControllerId)
        #expect(bound.dataPlane == "none")
        let twice = try await cluster.api(.POST, "/v1/floating-ips/10.77.0.200/bind", #"{"vm":"db"}"#)
        #expect(twice.0 == 409 && twice.1.contains("already bound"), "\(twice)")
        let listed = try await cluster.json(VirtualMachineList.self, .GET, "/v1/vms")
        #expect(listed.virtualMachines.first { $0.virtualMachineLocation.virtualMachineId == "web" }?.floatingIPs == ["10.77.0.200"])
        _ = try await cluster.json(FloatingIPDocument.self, .POST, "/v1/floating-ips/10.77.0.200/unbind", "")
        let again = try await cluster.api(.POST, "/v1/floating-ips/10.77.0.200/unbind", "")
        #expect(again.0 == 409 && again.1.contains("not bound"), "\(again)")
        let missing = try await cluster.api(.POST, "/v1/floating-ips/10.77.0.250/bind", #"{"vm":"web"}"#)
        #expect(missing.0 == 404, "\(missing)")

        // Seed 004's face: bind by MAC, the VirtualMachineNetwork document back.
        let seed = try await cluster.api(.POST, "/VirtualMachineNetwork/bindFip",
                                         #"{"name":"blue","bindFip":{"vmmac":"0a:56:0a:c8:00:0a","fip":"10.77.0.201"}}"#)
        #expect(seed.0 == 200 && seed.1.contains(#""kind":"VirtualMachineNetwork""#) && seed.1.contains(#""externalIP":"10.77.0.201""#), "\(seed)")

        // The books survive the leader: kill it, and the next one knows the switch, the leases and the binding.
        let leader = try #require(await cluster.hierarchy()?.groupLeader?.id)
        cluster.processes[try #require(cluster.name(ofManager: leader))]!.kill9()
        try await eventually(.seconds(20), "a new leader with the network books") {
            guard let list = try? await cluster.json(NetworkList.self, .GET, "/v1/networks") else { return false }
            return list.networks.first?.leases.map(\.vm).sorted() == ["db", "web"]
                && list.networks.first?.leases.first { $0.vm == "web" }?.floatingIP == "10.77.0.201"
        }

        // Destroying the VMs gives the addresses back; then the switch can go.
        for vm in ["web", "db"] { _ = try await cluster.api(.POST, "/v1/vms/\(vm)/destroy", "") }
        try await eventually(.seconds(30), "the addresses released") {
            (try? await cluster.json(SwitchDocument.self, .GET, "/v1/networks/blue"))?.leases.isEmpty == true
        }
        let floating = try await cluster.json(FloatingIPList.self, .GET, "/v1/floating-ips")
        #expect(floating.floatingIPs.allSatisfy { $0.vm == nil }, "an ended VM's floating IP stays allocated, unbound")
        let (deleted, text) = try await cluster.api(.DELETE, "/v1/networks/blue")
        #expect(deleted == 200, "\(text)")
    }
}
}
