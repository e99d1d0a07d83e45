import ClusterCore
import ClusterWire
import Hummingbird

/// What the leader asks of a host's data plane for floating IPs.
public protocol HostNetworkBackend: Sendable {
    func applyFloatingIP(_ request: HostFloatingIPRequest, bind: Bool) async throws(DozeError) -> HostFloatingIPResult
}

/// `POST /v1/host/floating-ips` (apply) and `POST /v1/host/floating-ips/remove` on a local controller.
public struct HostNetworkRoutes<Backend: HostNetworkBackend>: Sendable {
    public let backend: Backend
    public init(backend: Backend) { self.backend = backend }

    public func register<Context: RequestContext>(on router: Router<Context>) {
        let backend = self.backend
        router.post("/v1/host/floating-ips") { request, _ in
            let body = try await HTTPBody.json(request, as: HostFloatingIPRequest.self, limit: 1 << 14)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.applyFloatingIP(body, bind: true) })
        }
        router.post("/v1/host/floating-ips/remove") { request, _ in
            let body = try await HTTPBody.json(request, as: HostFloatingIPRequest.self, limit: 1 << 14)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.applyFloatingIP(body, bind: false) })
        }
    }
}
