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
    func startVirtualCluster(_ request: VirtualClusterSubmissionRequest) async throws(DozeError) -> String
    func virtualClusterTask(id: String, wait: Duration) async throws(DozeError) -> VirtualClusterTaskDocument
    func discoverVirtualMachine(_ vm: String) async throws(DozeError) -> VirtualMachineDiscoveryResponse
    // Manager only
    /// `task`: the leader's task id, so a repeated request is recognised (VM names can be reused after a destroy);
    /// `retry`: a repeat after a failover, where a VM a controller already reports is that VM.
    func startVirtualMachines(_ submission: VirtualMachineSubmission, task: String?, retry: Bool) async throws(DozeError) -> VirtualMachineSubmission
    func controlVirtualMachine(_ operation: VMControl, _ location: VirtualMachineLocation) async throws(DozeError)
    func resizeVirtualMachine(_ request: ResizeRequest) async throws(DozeError) -> VirtualMachineMetaData
    func virtualMachineMetaData(_ request: VirtualMachineMetaDataRequest) async throws(DozeError) -> VirtualMachineMetaData
    func searchVirtualMachine(_ vm: String) async throws(DozeError) -> String?
    // Both
    func selfDescription() async -> GroupManagerDescription
    /// A manager: the VMs of its controllers; the leader: every VM of the cluster.
    func virtualMachineDescriptions() async throws(DozeError) -> VirtualMachineList

    // Migrations and drains (the leader), and the managers' book update
    func migrate(_ request: MigrationSubmission) async throws(DozeError) -> MigrationRecord
    func migration(id: String, wait: Duration) async throws(DozeError) -> MigrationRecord
    func migrationList() async throws(DozeError) -> MigrationList
    func abortMigration(id: String) async throws(DozeError) -> MigrationRecord
    func hostList() async throws(DozeError) -> HostList
    func drainHost(_ id: String, options: MigrationOptions?) async throws(DozeError) -> DrainReport
    func undrainHost(_ id: String) async throws(DozeError) -> DrainReport
    func virtualMachineMoved(_ move: VirtualMachineMove) async throws(DozeError)
}

/// What the bootstrap's HTTP surface asks of its node.
public protocol BootstrapBackend: Sendable {
    /// nil while no leader is known.
    func groupLeaderDescription() async -> GroupManagerDescription?
    /// The leader's `getGroupLeaderRepositoryInformation` answer, passed through as received (JSON).
    func completeHierarchy() async throws(DozeError) -> ByteBuffer
    /// The leader's `getLocalControllerList` answer, passed through as received (JSON).
    func localControllerList() async throws(DozeError) -> ByteBuffer
    /// Any call to the current leader, its answer (status and body) passed through byte for byte.
    func callLeader(_ method: HTTPRequest.Method, _ target: String, body: ByteBuffer?, timeout: Duration) async throws(DozeError) -> (status: Int, body: ByteBuffer)
    /// A call to the group manager holding `vm` (found through the leader), with the VM's location.
    func callVMManager(_ vm: String, _ operation: String, body: @Sendable (VirtualMachineLocation) throws -> ByteBuffer) async throws(DozeError) -> (status: Int, body: ByteBuffer)
}

/// The longest a client may ask a call to wait for a task to finish.
public let maximumWait: Duration = .seconds(300)

extension Request {
    /// `wait=SECONDS` (fractions allowed), bounded by `maximumWait`.
    func waitBound() throws -> Duration {
        guard let text = optionalQuery("wait") else { return .zero }
        guard let seconds = Double(text), seconds >= 0, seconds.isFinite else {
            throw APIError(DozeError(.badRequest, "wait must be a number of seconds >= 0, got '\(text)'"))
        }
        // Bounded before converting: 1e308 s in milliseconds does not fit in an Int64 (that trapped).
        return .milliseconds(Int64(min(seconds, Double(maximumWait.components.seconds)) * 1000))
    }

    /// A `VirtualMachineLocation` body, or a raw VM id (read as a location naming only the VM).
    func location(limit: Int) async throws -> VirtualMachineLocation {
        let text = try await HTTPBody.string(self, limit: limit).trimmingCharacters(in: .whitespacesAndNewlines)
        guard !text.isEmpty else { throw APIError(DozeError(.badRequest, "the request body must carry a VirtualMachineLocation or a VM id")) }
        if text.hasPrefix("{") {
            do { return try WireCoding.decode(VirtualMachineLocation.self, from: Data(text.utf8)) } catch let decodingError as DecodingError {
                throw APIError(DozeError(.badRequest, "malformed JSON for VirtualMachineLocation: \(HTTPBody.describe(decodingError, in: Data(text.utf8)))"))
            }
        }
        var id = text
        if text.hasPrefix("\""), let decoded = try? JSONDecoder().decode(String.self, from: Data(text.utf8)) { id = decoded }
        return VirtualMachineLocation(virtualMachineId: id)
    }
}

extension HTTPReply {
    /// A peer's answer passed through: its status, its body, JSON or text as the body shows.
    public static func passThrough(_ answer: (status: Int, body: ByteBuffer)) -> Response {
        let first = answer.body.readableBytesView.first
        let json = first == UInt8(ascii: "{") || first == UInt8(ascii: "[") || first == UInt8(ascii: "\"")
            || answer.body.readableBytesView.elementsEqual("true".utf8) || answer.body.readableBytesView.elementsEqual("false".utf8)
        return Response(status: .init(code: answer.status), headers: [.contentType: json ? "application/json" : "text/plain; charset=utf-8"],
                        body: .init(byteBuffer: answer.body))
    }
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
        ["startVirtualCluster", "getVirtualClusterResponse", "discoverVirtualMachine", "joinGroupLeader", "assignLocalController",
         "getLocalControllerList", "getGroupLeaderRepositoryInformation", "getGroupManagerDescription", "startVirtualMachines"]
            + VMControl.allCases.map(\.snoozeOperation)
            + ["resizeVirtualMachine", "getVirtualMachineMetaData", "searchVirtualMachine", "getVirtualMachineDescriptions",
               "joinGroupManager", "getGroupManagerRepositoryInformation", "getLocalControllerDescription", "getSelfDescription",
               "migrateVirtualMachine", "virtualMachineMoved"]
    }

    public func register<Context: RequestContext>(on router: Router<Context>) {
        router.post("/groupmanager") { request, _ in try await self.handle(request) }
        router.get("/groupmanager") { request, _ in try await self.handle(request) }
        // Doze's native submission API on the leader (the bootstrap serves the same paths).
        router.post("/v1/virtual-clusters") { request, _ in
            let body = try await HTTPBody.json(request, as: VirtualClusterSubmissionRequest.self, limit: maxBodyBytes)
            let id = try await api { () async throws(DozeError) in try await backend.startVirtualCluster(body) }
            return try HTTPReply.json(["taskId": id], status: .accepted)
        }
        router.get("/v1/virtual-clusters/{id}") { request, context in
            let id = try context.parameters.require("id")
            let wait = try request.waitBound()
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.virtualClusterTask(id: id, wait: wait) })
        }
        registerMigrations(on: router)
    }

    /// Migrations and hosts on the leader (the bootstrap forwards the same paths).
    func registerMigrations<Context: RequestContext>(on router: Router<Context>) {
        let limit = maxBodyBytes
        router.post("/v1/migrations") { request, _ in
            let body = try await HTTPBody.json(request, as: MigrationSubmission.self, limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.migrate(body) }, status: .accepted)
        }
        router.get("/v1/migrations") { _, _ in
            try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.migrationList() })
        }
        router.get("/v1/migrations/{id}") { request, context in
            let id = try context.parameters.require("id")
            let wait = try request.waitBound()
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.migration(id: id, wait: wait) })
        }
        router.delete("/v1/migrations/{id}") { _, context in
            let id = try context.parameters.require("id")
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.abortMigration(id: id) })
        }
        router.get("/v1/hosts") { _, _ in
            try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.hostList() })
        }
        router.post("/v1/hosts/{id}/{operation}") { request, context in
            let id = try context.parameters.require("id")
            switch try context.parameters.require("operation") {
            case "drain":
                let text = try await HTTPBody.string(request, limit: limit).trimmingCharacters(in: .whitespacesAndNewlines)
                var options: MigrationOptions?
                if !text.isEmpty {
                    do { options = try WireCoding.decode(MigrationOptions.self, from: Data(text.utf8)) } catch let decodingError as DecodingError {
                        throw APIError(DozeError(.badRequest, "malformed JSON for the drain's migration options: \(HTTPBody.describe(decodingError, in: Data(text.utf8)))"))
                    }
                }
                return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.drainHost(id, options: options) })
            case "undrain":
                return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.undrainHost(id) })
            case let other:
                throw APIError(DozeError(.notFound, "unknown host operation '\(other)'; known: drain, undrain"))
            }
        }
    }

    func handle(_ request: Request) async throws -> Response {
        let limit = maxBodyBytes
        switch request.snoozeOperation {
        case "startVirtualCluster":
            let body = try await HTTPBody.json(request, as: VirtualClusterSubmissionRequest.self, limit: limit)
            return HTTPReply.text(try await api { () async throws(DozeError) in try await backend.startVirtualCluster(body) })
        case "getVirtualClusterResponse":
            // Snooze's contract: an empty body until the result is final; Doze keeps it readable until it expires.
            let id = try await HTTPBody.rawString(request, what: "task id", limit: limit)
            let wait = try request.waitBound()
            let task = try await api { () async throws(DozeError) in try await backend.virtualClusterTask(id: id, wait: wait) }
            guard task.state == .done else { return HTTPReply.text("") }
            return try HTTPReply.json(task.response)
        case "discoverVirtualMachine":
            let vm = try await HTTPBody.rawString(request, what: "VM id", limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.discoverVirtualMachine(vm) })
        case "startVirtualMachines":
            let body = try await HTTPBody.json(request, as: VirtualMachineSubmission.self, limit: limit)
            let task = request.optionalQuery("task")
            let retry = request.hasQueryFlag("retry")
            return try HTTPReply.json(try await api { () async throws(DozeError) in
                try await backend.startVirtualMachines(body, task: task, retry: retry)
            })
        case let op? where VMControl(snoozeOperation: op) != nil:
            let location = try await request.location(limit: limit)
            try await api { () async throws(DozeError) in try await backend.controlVirtualMachine(VMControl(snoozeOperation: op)!, location) }
            return HTTPReply.bool(true)
        case "resizeVirtualMachine":
            let body = try await HTTPBody.json(request, as: ResizeRequest.self, limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.resizeVirtualMachine(body) })
        case "getVirtualMachineMetaData":
            let text = try await HTTPBody.string(request, limit: limit).trimmingCharacters(in: .whitespacesAndNewlines)
            let body: VirtualMachineMetaDataRequest
            if text.hasPrefix("{") {
                do { body = try WireCoding.decode(VirtualMachineMetaDataRequest.self, from: Data(text.utf8)) } catch let decodingError as DecodingError {
                    throw APIError(DozeError(.badRequest, "malformed JSON for VirtualMachineMetaDataRequest: \(HTTPBody.describe(decodingError, in: Data(text.utf8)))"))
                }
            } else {
                guard !text.isEmpty else { throw APIError(DozeError(.badRequest, "the request body must carry the VM's location or id")) }
                body = VirtualMachineMetaDataRequest(virtualMachineLocation: VirtualMachineLocation(virtualMachineId: text))
            }
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.virtualMachineMetaData(body) })
        case "searchVirtualMachine":
            let vm = try await HTTPBody.rawString(request, what: "VM id", limit: limit)
            return HTTPReply.text(try await api { () async throws(DozeError) in try await backend.searchVirtualMachine(vm) } ?? "")
        case "getVirtualMachineDescriptions":
            _ = try await HTTPBody.string(request, limit: limit)   // Snooze's HostListRequest: paging we do not need
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.virtualMachineDescriptions() })
        case "migrateVirtualMachine":
            // Snooze's MigrationRequest: the VM and the destination controller; answered like Snooze, `true` once
            // started (a refusal is an error with its reason, not Snooze's silent `true`).
            let body = try await HTTPBody.json(request, as: SnoozeMigrationRequest.self, limit: limit)
            guard let destination = body.destinationVirtualMachineLocation.localControllerId else {
                throw APIError(DozeError(.badRequest, "destinationVirtualMachineLocation.localControllerId is missing: migrate to which local controller?"))
            }
            let submission = MigrationSubmission(vm: body.sourceVirtualMachineLocation.virtualMachineId, to: destination)
            _ = try await api { () async throws(DozeError) in try await backend.migrate(submission) }
            return HTTPReply.bool(true)
        case "virtualMachineMoved":
            let move = try await HTTPBody.json(request, as: VirtualMachineMove.self, limit: limit)
            try await api { () async throws(DozeError) in try await backend.virtualMachineMoved(move) }
            return HTTPReply.bool(true)
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

/// `/bootstrap?<operation>` (snooze.md §5.2): the stable entry point; every call goes to the current leader, VM
/// operations to the group manager holding the VM. Doze's native API is served here too (`/v1/...`).
public struct BootstrapRoutes<Backend: BootstrapBackend>: Sendable {
    public let backend: Backend
    public let maxBodyBytes: Int

    public init(backend: Backend, maxBodyBytes: Int = 16 << 20) {
        self.backend = backend
        self.maxBodyBytes = maxBodyBytes
    }

    public static var operations: [String] {
        ["getGroupLeaderDescription", "getCompleteHierarchy", "getLocalControllerList", "startVirtualCluster",
         "getVirtualClusterResponse"]
            + VMControl.allCases.map(\.snoozeOperation)
            + ["resizeVirtualMachine", "getVirtualMachineMetaData", "getVirtualMachineDescriptions", "migrateVirtualMachine"]
    }

    public func register<Context: RequestContext>(on router: Router<Context>) {
        router.get("/bootstrap") { request, _ in try await self.handle(request) }
        router.post("/bootstrap") { request, _ in try await self.handle(request) }
        registerNative(on: router)
    }

    private func leader(_ method: HTTPRequest.Method, _ target: String, _ body: ByteBuffer?, wait: Duration = .zero) async throws -> Response {
        HTTPReply.passThrough(try await api { () async throws(DozeError) in
            try await backend.callLeader(method, target, body: body, timeout: wait + .seconds(30))
        })
    }

    private func vm(_ id: String, _ operation: String, body: @escaping @Sendable (VirtualMachineLocation) throws -> ByteBuffer) async throws -> Response {
        HTTPReply.passThrough(try await api { () async throws(DozeError) in try await backend.callVMManager(id, operation, body: body) })
    }

    static func encoded(_ value: some Encodable) throws -> ByteBuffer { ByteBuffer(bytes: try WireCoding.encoder().encode(value)) }

    func handle(_ request: Request) async throws -> Response {
        let limit = maxBodyBytes
        switch request.snoozeOperation {
        case "getGroupLeaderDescription":
            // Snooze: an empty body while no leader is known.
            guard let leader = await backend.groupLeaderDescription() else { return HTTPReply.text("") }
            return try HTTPReply.json(leader)
        case "getCompleteHierarchy":
            return HTTPReply.rawJSON(try await api { () async throws(DozeError) in try await backend.completeHierarchy() })
        case "getLocalControllerList", "geLocalControllerList":   // Snooze's Java client misspells it
            return HTTPReply.rawJSON(try await api { () async throws(DozeError) in try await backend.localControllerList() })
        case "startVirtualCluster":
            return try await leader(.post, "/groupmanager?startVirtualCluster", try await HTTPBody.collect(request, limit: limit))
        case "getVirtualClusterResponse":
            let wait = try request.waitBound()
            let target = "/groupmanager?getVirtualClusterResponse" + (wait > .zero ? "&wait=\(Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18)" : "")
            return try await leader(.post, target, try await HTTPBody.collect(request, limit: limit), wait: wait)
        case let op? where VMControl(snoozeOperation: op) != nil:
            let id = try await HTTPBody.rawString(request, what: "VM id", limit: limit)
            return try await vm(id, op) { try Self.encoded($0) }
        case "resizeVirtualMachine":
            let resize = try await HTTPBody.json(request, as: ResizeRequest.self, limit: limit)
            return try await vm(resize.virtualMachineLocation.virtualMachineId, "resizeVirtualMachine") { location in
                try Self.encoded(ResizeRequest(virtualMachineLocation: location, resizedCapacity: resize.resizedCapacity))
            }
        case "getVirtualMachineMetaData":
            let location = try await request.location(limit: limit)
            return try await vm(location.virtualMachineId, "getVirtualMachineMetaData") {
                try Self.encoded(VirtualMachineMetaDataRequest(virtualMachineLocation: $0))
            }
        case "getVirtualMachineDescriptions":
            _ = try await HTTPBody.string(request, limit: limit)
            return try await leader(.post, "/groupmanager?getVirtualMachineDescriptions", ByteBuffer(string: "{}"))
        case "migrateVirtualMachine":
            // Snooze's bootstrap form, which it served only with Cassandra: `true` once the migration started.
            let body = try await HTTPBody.json(request, as: BootstrapMigrationRequest.self, limit: limit)
            let native = try Self.encoded(MigrationSubmission(vm: body.virtualMachineId, to: body.localControllerId))
            let answer = try await api { () async throws(DozeError) in
                try await backend.callLeader(.post, "/v1/migrations", body: native, timeout: .seconds(60))
            }
            guard (200..<300).contains(answer.status) else { return HTTPReply.passThrough(answer) }
            return HTTPReply.bool(true)
        case nil:
            throw APIError(DozeError(.badRequest, "no operation: use /bootstrap?<operation>, one of \(Self.operations.joined(separator: ", "))"))
        case let op?:
            throw APIError(DozeError(.notFound, "unknown bootstrap operation '\(op)'; known: \(Self.operations.joined(separator: ", "))"))
        }
    }

    /// Doze's native API: JSON in, JSON out, errors as `{"error":{…}}` with an HTTP status.
    func registerNative<Context: RequestContext>(on router: Router<Context>) {
        let limit = maxBodyBytes
        router.post("/v1/virtual-clusters") { request, _ in
            try await leader(.post, "/v1/virtual-clusters", try await HTTPBody.collect(request, limit: limit))
        }
        router.get("/v1/virtual-clusters/{id}") { request, context in
            let id = try context.parameters.require("id")
            let wait = try request.waitBound()
            let seconds = Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18
            let escaped = id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id
            return try await leader(.get, "/v1/virtual-clusters/\(escaped)?wait=\(seconds)", nil, wait: wait)
        }
        router.get("/v1/vms") { _, _ in
            try await leader(.post, "/groupmanager?getVirtualMachineDescriptions", ByteBuffer(string: "{}"))
        }
        router.post("/v1/migrations") { request, _ in
            try await leader(.post, "/v1/migrations", try await HTTPBody.collect(request, limit: limit))
        }
        router.get("/v1/migrations") { _, _ in try await leader(.get, "/v1/migrations", nil) }
        router.get("/v1/migrations/{id}") { request, context in
            let id = try context.parameters.require("id")
            let wait = try request.waitBound()
            let seconds = Double(wait.components.seconds) + Double(wait.components.attoseconds) / 1e18
            let escaped = id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id
            return try await leader(.get, "/v1/migrations/\(escaped)?wait=\(seconds)", nil, wait: wait)
        }
        router.delete("/v1/migrations/{id}") { _, context in
            let id = try context.parameters.require("id")
            let escaped = id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id
            return try await leader(.delete, "/v1/migrations/\(escaped)", nil, wait: .seconds(30))
        }
        router.get("/v1/hosts") { _, _ in try await leader(.get, "/v1/hosts", nil) }
        router.post("/v1/hosts/{id}/{operation}") { request, context in
            let id = try context.parameters.require("id")
            let operation = try context.parameters.require("operation")
            let escaped = id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id
            return try await leader(.post, "/v1/hosts/\(escaped)/\(operation)", try await HTTPBody.collect(request, limit: limit), wait: .seconds(60))
        }
        router.get("/v1/vms/{id}") { _, context in
            let id = try context.parameters.require("id")
            return try await vm(id, "getVirtualMachineMetaData") { try Self.encoded(VirtualMachineMetaDataRequest(virtualMachineLocation: $0)) }
        }
        router.post("/v1/vms/{id}/{operation}") { request, context in
            let id = try context.parameters.require("id")
            let name = try context.parameters.require("operation")
            if name == "load" {   // declared load (test-driver hosts): the leader passes it to the VM's controller
                let escaped = id.addingPercentEncoding(withAllowedCharacters: .urlPathAllowed) ?? id
                return try await leader(.post, "/v1/vms/\(escaped)/load", try await HTTPBody.collect(request, limit: limit))
            }
            if name == "resize" {
                let resize = try await HTTPBody.json(request, as: NativeResize.self, limit: limit)
                guard resize.vcpus != nil || resize.memoryMiB != nil else {
                    throw APIError(DozeError(.badRequest, "give vcpus and/or memoryMiB"))
                }
                let memoryKiB: Double = resize.memoryMiB.map { Double($0) * 1024 } ?? -1
                let capacity: [Double] = [Double(resize.vcpus ?? -1), memoryKiB, -1, -1]
                return try await vm(id, "resizeVirtualMachine") { try Self.encoded(ResizeRequest(virtualMachineLocation: $0, resizedCapacity: capacity)) }
            }
            guard let operation = VMControl(rawValue: name) else {
                throw APIError(DozeError(.notFound, "unknown VM operation '\(name)'; known: \(VMControl.allCases.map(\.rawValue).joined(separator: ", ")), resize, load"))
            }
            let answer = try await api { () async throws(DozeError) in
                try await backend.callVMManager(id, operation.snoozeOperation) { try Self.encoded($0) }
            }
            guard answer.status == 200 else { return HTTPReply.passThrough(answer) }
            if operation == .destroy {
                return try HTTPReply.json(VirtualMachineMetaData(location: VirtualMachineLocation(virtualMachineId: id), status: .offline))
            }
            // The VM as it is now.
            return try await vm(id, "getVirtualMachineMetaData") { try Self.encoded(VirtualMachineMetaDataRequest(virtualMachineLocation: $0)) }
        }
    }
}

/// `POST /v1/vms/{id}/resize`: named fields instead of Snooze's positional vector; absent means unchanged.
public struct NativeResize: Sendable, Codable {
    public var vcpus: Int?
    public var memoryMiB: Int?
    public init(vcpus: Int?, memoryMiB: Int?) {
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
    }
}
