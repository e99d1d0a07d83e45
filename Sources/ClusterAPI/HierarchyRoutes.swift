import ClusterCore
import ClusterWire
import Foundation
import HTTPTypes
import Hummingbird

/// What the group-manager HTTP surface asks of its node (leader or plain manager).
public protocol GroupManagerBackend: Sendable {
    // Leader only
    func joinGroupLeader(_ request: JoinLeaderRequest) async throws(DozeError)
    func assignLocalController(_ request: AssignRequest) async throws(DozeError) -> AssignedGroupManager
    func localControllerList() async throws(DozeError) -> LocalControllerList
    func groupLeaderRepository() async throws(DozeError) -> GroupLeaderRepositoryInformation
    func groupManagerDescription(id: String) async throws(DozeError) -> GroupManagerDescription
    // Manager only
    func joinGroupManager(_ request: JoinManagerRequest) async throws(DozeError)
    func groupManagerRepository() async throws(DozeError) -> GroupManagerRepositoryInformation
    func localControllerDescription(id: String) async throws(DozeError) -> LocalControllerDescription
    // Both
    func selfDescription() async -> GroupManagerDescription
}

/// What the bootstrap's HTTP surface asks of its node.
public protocol BootstrapBackend: Sendable {
    /// nil while no leader is known.
    func groupLeaderDescription() async -> GroupManagerDescription?
    /// The leader's `getGroupLeaderRepositoryInformation` answer, passed through as received (JSON).
    func completeHierarchy() async throws(DozeError) -> ByteBuffer
    /// The leader's `getLocalControllerList` answer, passed through as received (JSON).
    func localControllerList() async throws(DozeError) -> ByteBuffer
}

/// `/groupmanager?<operation>`: Snooze's group-manager and group-leader operations (snooze.md §5.3).
public struct GroupManagerRoutes<Backend: GroupManagerBackend>: Sendable {
    public let backend: Backend
    public let maxBodyBytes: Int

    public init(backend: Backend, maxBodyBytes: Int = 4 << 20) {
        self.backend = backend
        self.maxBodyBytes = maxBodyBytes
    }

    public static var operations: [String] {
        ["joinGroupLeader", "assignLocalController", "getLocalControllerList", "getGroupLeaderRepositoryInformation",
         "getGroupManagerDescription", "joinGroupManager", "getGroupManagerRepositoryInformation",
         "getLocalControllerDescription", "getSelfDescription"]
    }

    public func register<Context: RequestContext>(on router: Router<Context>) {
        router.post("/groupmanager") { request, _ in try await self.handle(request) }
        router.get("/groupmanager") { request, _ in try await self.handle(request) }
    }

    func handle(_ request: Request) async throws -> Response {
        let limit = maxBodyBytes
        switch request.snoozeOperation {
        case "joinGroupLeader":
            let body = try await HTTPBody.json(request, as: JoinLeaderRequest.self, limit: limit)
            try await api { () async throws(DozeError) in try await backend.joinGroupLeader(body) }
            return HTTPReply.bool(true)
        case "assignLocalController":
            let body = try await HTTPBody.json(request, as: AssignRequest.self, limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.assignLocalController(body) })
        case "getLocalControllerList":
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.localControllerList() })
        case "getGroupLeaderRepositoryInformation":
            _ = try await HTTPBody.string(request, limit: limit)   // Snooze sends a monitoring-entry count
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.groupLeaderRepository() })
        case "getGroupManagerDescription":
            let id = try await HTTPBody.rawString(request, what: "group manager id", limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.groupManagerDescription(id: id) })
        case "joinGroupManager":
            let body = try await HTTPBody.json(request, as: JoinManagerRequest.self, limit: limit)
            try await api { () async throws(DozeError) in try await backend.joinGroupManager(body) }
            return HTTPReply.bool(true)
        case "getGroupManagerRepositoryInformation":
            _ = try await HTTPBody.string(request, limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.groupManagerRepository() })
        case "getLocalControllerDescription":
            let id = try await HTTPBody.rawString(request, what: "local controller id", limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.localControllerDescription(id: id) })
        case "getSelfDescription":
            return try HTTPReply.json(await backend.selfDescription())
        case nil:
            throw APIError(DozeError(.badRequest, "no operation: use /groupmanager?<operation>, one of \(Self.operations.joined(separator: ", "))"))
        case let op?:
            throw APIError(DozeError(.notFound, "unknown group manager operation '\(op)'; known: \(Self.operations.joined(separator: ", "))"))
        }
    }
}

/// `/bootstrap?<operation>` (snooze.md §5.2): the stable entry point; every read goes to the current leader.
public struct BootstrapRoutes<Backend: BootstrapBackend>: Sendable {
    public let backend: Backend

    public init(backend: Backend) { self.backend = backend }

    public static var operations: [String] { ["getGroupLeaderDescription", "getCompleteHierarchy", "getLocalControllerList"] }

    public func register<Context: RequestContext>(on router: Router<Context>) {
        router.get("/bootstrap") { request, _ in try await self.handle(request) }
        router.post("/bootstrap") { request, _ in try await self.handle(request) }
    }

    func handle(_ request: Request) async throws -> Response {
        switch request.snoozeOperation {
        case "getGroupLeaderDescription":
            // Snooze: an empty body while no leader is known.
            guard let leader = await backend.groupLeaderDescription() else { return HTTPReply.text("") }
            return try HTTPReply.json(leader)
        case "getCompleteHierarchy":
            return HTTPReply.rawJSON(try await api { () async throws(DozeError) in try await backend.completeHierarchy() })
        case "getLocalControllerList", "geLocalControllerList":   // Snooze's Java client misspells it
            return HTTPReply.rawJSON(try await api { () async throws(DozeError) in try await backend.localControllerList() })
        case nil:
            throw APIError(DozeError(.badRequest, "no operation: use /bootstrap?<operation>, one of \(Self.operations.joined(separator: ", "))"))
        case let op?:
            throw APIError(DozeError(.notFound, "unknown bootstrap operation '\(op)'; known: \(Self.operations.joined(separator: ", "))"))
        }
    }
}
