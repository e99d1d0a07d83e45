import ClusterCore
import ClusterWire
import Foundation
import HTTPTypes
import Hummingbird

/// What the kvm-apps API asks of the group leader.
public protocol KVMAppBackend: Sendable {
    func createApp(_ app: KVMAppID, _ request: KVMAppCreateRequest) async throws(DozeError) -> KVMAppCreated
    func listApps() async throws(DozeError) -> [KVMAppEntry]
    func appTasks(_ id: String) async throws(DozeError) -> [KVMAppTaskEntry]
    /// Runs the operation on every VM of the app; the app as it is afterwards (nil once deleted).
    func operateApp(_ id: String, _ operation: KVMAppOperation) async throws(DozeError) -> KVMAppEntry?
}

/// Seed 000's `/v1/kvm-apps` on the group leader:
///
/// * `POST /v1/kvm-apps?name=&runas=&cluster=` (201 `{"id"}`), `GET /v1/kvm-apps`, `GET /v1/kvm-apps/{id}` (its tasks),
///   `DELETE /v1/kvm-apps/{id}` (200 `{"id"}`), `POST /v1/kvm-apps/{id}/start|stop|suspend|resume` (200, the app).
public struct KVMAppRoutes<Backend: KVMAppBackend>: Sendable {
    public let backend: Backend
    public let maxBodyBytes: Int

    public init(backend: Backend, maxBodyBytes: Int = 1 << 20) {
        self.backend = backend
        self.maxBodyBytes = maxBodyBytes
    }

    static var operations: [KVMAppOperation] { [.start, .stop, .suspend, .resume] }

    public func register<Context: RequestContext>(on router: Router<Context>) {
        let limit = maxBodyBytes
        router.post("/v1/kvm-apps") { request, _ in
            let app = try await api { () async throws(DozeError) in
                try KVMAppID(name: request.optionalQuery("name") ?? "", runAs: request.optionalQuery("runas") ?? "",
                             cluster: request.optionalQuery("cluster") ?? "")
            }
            let body = try await HTTPBody.json(request, as: KVMAppCreateRequest.self, limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.createApp(app, body) }, status: .created)
        }
        router.get("/v1/kvm-apps") { _, _ in
            try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.listApps() })
        }
        router.get("/v1/kvm-apps/{id}") { _, context in
            let id = try context.parameters.require("id")
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.appTasks(id) })
        }
        router.delete("/v1/kvm-apps/{id}") { _, context in
            let id = try context.parameters.require("id")
            _ = try await api { () async throws(DozeError) in try await backend.operateApp(id, .delete) }
            return try HTTPReply.json(KVMAppCreated(id: id))
        }
        router.post("/v1/kvm-apps/{id}/{operation}") { _, context in
            let id = try context.parameters.require("id")
            let name = try context.parameters.require("operation")
            guard let operation = KVMAppOperation(rawValue: name), Self.operations.contains(operation) else {
                throw APIError(DozeError(.notFound, "unknown kvm-app operation '\(name)'; known: \(Self.operations.map(\.rawValue).joined(separator: ", ")) (and DELETE /v1/kvm-apps/\(id))"))
            }
            let entry = try await api { () async throws(DozeError) in try await backend.operateApp(id, operation) }
            return try HTTPReply.json(entry)
        }
    }
}

/// The same paths on the bootstrap: passed through to the current leader, answers byte for byte.
extension BootstrapBackend {
    /// The request as it came (path, query, a POST's body) to the current leader, its answer passed back as it is.
    func passToLeader(_ request: Request, _ method: HTTPRequest.Method, limit: Int, timeout: Duration) async throws -> Response {
        let body = method == .post || method == .put ? try await HTTPBody.collect(request, limit: limit) : nil
        let target = request.uri.path + (request.uri.query.map { "?" + $0 } ?? "")
        return HTTPReply.passThrough(try await api { () async throws(DozeError) in
            try await callLeader(method, target, body: body, timeout: timeout)
        })
    }
}

public struct KVMAppForwardingRoutes<Backend: BootstrapBackend>: Sendable {
    public let backend: Backend
    public let maxBodyBytes: Int

    public init(backend: Backend, maxBodyBytes: Int = 1 << 20) {
        self.backend = backend
        self.maxBodyBytes = maxBodyBytes
    }

    /// An operation waits for every VM's controller (each may take up to a minute), so the leader gets longer.
    static var operationTimeout: Duration { .seconds(150) }

    public func register<Context: RequestContext>(on router: Router<Context>) {
        let limit = maxBodyBytes, backend = self.backend
        let forward: @Sendable (Request, HTTPRequest.Method, Duration) async throws -> Response = { request, method, timeout in
            try await backend.passToLeader(request, method, limit: limit, timeout: timeout)
        }
        router.post("/v1/kvm-apps") { request, _ in try await forward(request, .post, .seconds(40)) }
        router.get("/v1/kvm-apps") { request, _ in try await forward(request, .get, .seconds(40)) }
        router.get("/v1/kvm-apps/{id}") { request, _ in try await forward(request, .get, .seconds(40)) }
        router.delete("/v1/kvm-apps/{id}") { request, _ in try await forward(request, .delete, Self.operationTimeout) }
        router.post("/v1/kvm-apps/{id}/{operation}") { request, _ in try await forward(request, .post, Self.operationTimeout) }
    }
}
