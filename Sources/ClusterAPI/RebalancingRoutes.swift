import ClusterCore
import ClusterWire
import Foundation
import HTTPTypes
import Hummingbird

/// What the rebalancing and usage surface (issue 12) asks of a group-manager node: the leader answers the
/// cluster-wide calls, a following manager its own windows.
public protocol RebalancingBackend: Sendable {
    func rebalancingStatus() async throws(DozeError) -> RebalancingStatus
    /// `run-now` (with `dryRun`), `pause` or `resume`.
    func rebalancingControl(_ operation: RebalancingOperation, dryRun: Bool) async throws(DozeError) -> RebalancingStatus
    func clusterHostUsage(_ id: String) async throws(DozeError) -> ClusterHostUsage
    func clusterVMUsage(_ id: String) async throws(DozeError) -> ClusterVMUsage
    func declareLoad(vm: String, _ request: SyntheticLoadRequest) async throws(DozeError) -> SyntheticLoadDocument
    /// A following manager's windows of its controllers.
    func managerUsage() async throws(DozeError) -> ManagerUsageDocument
}

public enum RebalancingOperation: String, Sendable, CaseIterable {
    case runNow = "run-now", pause, resume
}

/// `/v1/rebalancing…`, `/v1/hosts/{id}/usage`, `/v1/vms/{id}/usage` and `/v1/vms/{id}/load` on the leader (the
/// bootstrap forwards the same paths, `RebalancingForwardingRoutes`), and `/v1/manager/usage` on every manager.
public struct RebalancingRoutes<Backend: RebalancingBackend>: Sendable {
    public let backend: Backend
    public let maxBodyBytes: Int

    public init(backend: Backend, maxBodyBytes: Int = 1 << 20) {
        self.backend = backend
        self.maxBodyBytes = maxBodyBytes
    }

    public func register<Context: RequestContext>(on router: Router<Context>) {
        let limit = maxBodyBytes
        router.get("/v1/rebalancing") { _, _ in
            try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.rebalancingStatus() })
        }
        router.post("/v1/rebalancing/{operation}") { request, context in
            let name = try context.parameters.require("operation")
            guard let operation = RebalancingOperation(rawValue: name) else {
                throw APIError(DozeError(.notFound, "unknown rebalancing operation '\(name)'; known: "
                    + RebalancingOperation.allCases.map(\.rawValue).joined(separator: ", ")))
            }
            let dryRun = try Self.flag(request, "dryRun")
            guard !dryRun || operation == .runNow else { throw APIError(DozeError(.badRequest, "dryRun goes with run-now only")) }
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.rebalancingControl(operation, dryRun: dryRun) })
        }
        router.get("/v1/hosts/{id}/usage") { _, context in
            let id = try context.parameters.require("id")
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.clusterHostUsage(id) })
        }
        router.get("/v1/vms/{id}/usage") { _, context in
            let id = try context.parameters.require("id")
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.clusterVMUsage(id) })
        }
        router.post("/v1/vms/{id}/load") { request, context in
            let id = try context.parameters.require("id")
            let body = try await HTTPBody.collect(request, limit: limit)
            // As on the controller: `{}` and `null` clear; an empty body is refused there as a likely mistake.
            let isNull = String(buffer: body).trimmingCharacters(in: .whitespacesAndNewlines) == "null"
            let load = isNull ? SyntheticLoadRequest(load: SyntheticLoad()) : try HTTPBody.decode(body, as: SyntheticLoadRequest.self)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.declareLoad(vm: id, load) })
        }
        router.get("/v1/manager/usage") { _, _ in
            try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.managerUsage() })
        }
    }

    /// `?dryRun`, `?dryRun=true|false|1|0`.
    static func flag(_ request: Request, _ name: String) throws -> Bool {
        guard let value = request.optionalQuery(name) else { return request.hasQueryFlag(name) }
        switch value.lowercased() {
        case "", "true", "1", "yes": return true
        case "false", "0", "no": return false
        default: throw APIError(DozeError(.badRequest, "\(name) must be true or false, got '\(value)'"))
        }
    }
}

/// The bootstrap passes the rebalancing and cluster-usage calls to the current leader as they are.
public struct RebalancingForwardingRoutes<Backend: BootstrapBackend>: Sendable {
    public let backend: Backend
    public let maxBodyBytes: Int

    public init(backend: Backend, maxBodyBytes: Int = 1 << 20) {
        self.backend = backend
        self.maxBodyBytes = maxBodyBytes
    }

    public func register<Context: RequestContext>(on router: Router<Context>) {
        let limit = maxBodyBytes, backend = self.backend
        let forward: @Sendable (Request, HTTPRequest.Method) async throws -> Response = { request, method in
            try await backend.passToLeader(request, method, limit: limit, timeout: .seconds(40))
        }
        router.get("/v1/rebalancing") { request, _ in try await forward(request, .get) }
        router.post("/v1/rebalancing/{operation}") { request, _ in try await forward(request, .post) }
        router.get("/v1/hosts/{id}/usage") { request, _ in try await forward(request, .get) }
        router.get("/v1/vms/{id}/usage") { request, _ in try await forward(request, .get) }
    }
}
