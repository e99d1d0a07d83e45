import ClusterCore
import ClusterWire
import Foundation
import HTTPTypes
import Hummingbird

/// What the network API (seed 004) asks of the group leader.
public protocol NetworkBackend: Sendable {
    func createNetwork(_ request: NetworkCreateRequest) async throws(DozeError) -> SwitchDocument
    func listNetworks() async throws(DozeError) -> NetworkList
    func network(_ name: String) async throws(DozeError) -> SwitchDocument
    func deleteNetwork(_ name: String) async throws(DozeError)
    func allocateFloatingIP(_ request: FloatingIPAllocateRequest) async throws(DozeError) -> FloatingIPDocument
    func listFloatingIPs() async throws(DozeError) -> FloatingIPList
    func floatingIP(_ address: String) async throws(DozeError) -> FloatingIPDocument
    func bindFloatingIP(_ address: String, _ request: FloatingIPBindRequest) async throws(DozeError) -> FloatingIPDocument
    func unbindFloatingIP(_ address: String) async throws(DozeError) -> FloatingIPDocument
    func releaseFloatingIP(_ address: String) async throws(DozeError) -> FloatingIPDocument
    /// Seed 004's lifecycle call (`createSwitch`, `deleteSwitch`, `bindFip`, `unbindFip`).
    func seedNetworkLifecycle(_ operation: String, _ request: SeedNetworkRequest) async throws(DozeError) -> SeedNetworkDocument
}

/// The paths, for the leader and the bootstrap's forwarding alike.
enum NetworkPaths {
    static let seedOperations = ["createSwitch", "deleteSwitch", "bindFip", "unbindFip"]
}

/// `/v1/networks` (POST, GET, GET/DELETE `{name}`), `/v1/floating-ips` (POST allocate, GET, GET/DELETE `{address}`,
/// POST `{address}/bind|unbind`), and seed 004's `POST /VirtualMachineNetwork/{createSwitch|deleteSwitch|bindFip|unbindFip}`.
public struct NetworkRoutes<Backend: NetworkBackend>: Sendable {
    public let backend: Backend
    public let maxBodyBytes: Int

    public init(backend: Backend, maxBodyBytes: Int = 1 << 16) {
        self.backend = backend
        self.maxBodyBytes = maxBodyBytes
    }

    public func register<Context: RequestContext>(on router: Router<Context>) {
        let limit = maxBodyBytes, backend = self.backend
        router.post("/v1/networks") { request, _ in
            let body = try await HTTPBody.json(request, as: NetworkCreateRequest.self, limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.createNetwork(body) }, status: .created)
        }
        router.get("/v1/networks") { _, _ in
            try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.listNetworks() })
        }
        router.get("/v1/networks/{name}") { _, context in
            let name = try context.parameters.require("name")
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.network(name) })
        }
        router.delete("/v1/networks/{name}") { _, context in
            let name = try context.parameters.require("name")
            try await api { () async throws(DozeError) in try await backend.deleteNetwork(name) }
            return try HTTPReply.json(["deleted": name])
        }
        router.post("/v1/floating-ips") { request, _ in
            let body = try await Self.optionalBody(request, as: FloatingIPAllocateRequest.self, limit: limit) ?? FloatingIPAllocateRequest()
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.allocateFloatingIP(body) }, status: .created)
        }
        router.get("/v1/floating-ips") { _, _ in
            try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.listFloatingIPs() })
        }
        router.get("/v1/floating-ips/{address}") { _, context in
            let address = try context.parameters.require("address")
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.floatingIP(address) })
        }
        router.delete("/v1/floating-ips/{address}") { _, context in
            let address = try context.parameters.require("address")
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.releaseFloatingIP(address) })
        }
        router.post("/v1/floating-ips/{address}/{operation}") { request, context in
            let address = try context.parameters.require("address")
            switch try context.parameters.require("operation") {
            case "bind":
                let body = try await HTTPBody.json(request, as: FloatingIPBindRequest.self, limit: limit)
                return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.bindFloatingIP(address, body) })
            case "unbind":
                return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.unbindFloatingIP(address) })
            case let other:
                throw APIError(DozeError(.notFound, "unknown floating-IP operation '\(other)'; known: bind, unbind (and DELETE to release)"))
            }
        }
        router.post("/VirtualMachineNetwork/{operation}") { request, context in
            let operation = try context.parameters.require("operation")
            guard NetworkPaths.seedOperations.contains(operation) else {
                throw APIError(DozeError(.notFound, "unknown VirtualMachineNetwork operation '\(operation)'; known: \(NetworkPaths.seedOperations.joined(separator: ", "))"))
            }
            let body = try await HTTPBody.json(request, as: SeedNetworkRequest.self, limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.seedNetworkLifecycle(operation, body) })
        }
    }

    /// An empty body is allowed (allocate any address).
    static func optionalBody<T: Decodable>(_ request: Request, as type: T.Type, limit: Int) async throws -> T? {
        let bytes = try await HTTPBody.collect(request, limit: limit)
        guard !String(buffer: bytes).trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else { return nil }
        return try HTTPBody.decode(bytes, as: T.self)
    }
}

/// The bootstrap passes the network API through to the leader.
public struct NetworkForwardingRoutes<Backend: BootstrapBackend>: Sendable {
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
        router.post("/v1/networks") { request, _ in try await forward(request, .post) }
        router.get("/v1/networks") { request, _ in try await forward(request, .get) }
        router.get("/v1/networks/{name}") { request, _ in try await forward(request, .get) }
        router.delete("/v1/networks/{name}") { request, _ in try await forward(request, .delete) }
        router.post("/v1/floating-ips") { request, _ in try await forward(request, .post) }
        router.get("/v1/floating-ips") { request, _ in try await forward(request, .get) }
        router.get("/v1/floating-ips/{address}") { request, _ in try await forward(request, .get) }
        router.delete("/v1/floating-ips/{address}") { request, _ in try await forward(request, .delete) }
        router.post("/v1/floating-ips/{address}/{operation}") { request, _ in try await forward(request, .post) }
        router.post("/VirtualMachineNetwork/{operation}") { request, _ in try await forward(request, .post) }
    }
}
