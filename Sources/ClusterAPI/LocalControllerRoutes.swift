import ClusterCore
import ClusterWire
import Foundation
import HTTPTypes
import Hummingbird

/// The local controller's HTTP surface:
/// * Snooze's `/localcontroller?<operation>` (snooze.md §5.4), query-string dispatch, raw string bodies;
/// * seed 001's host API under `/hypervisor/…`;
/// * seed 003's single-host VM API (`/vm`, `/vms`, `/vm/suspend`, …).
public struct LocalControllerRoutes<Backend: LocalControllerBackend>: Sendable {
    public let backend: Backend
    public let maxBodyBytes: Int

    public init(backend: Backend, maxBodyBytes: Int = 1 << 20) {
        self.backend = backend
        self.maxBodyBytes = maxBodyBytes
    }

    public func register<Context: RequestContext>(on router: Router<Context>) {
        router.post("/localcontroller") { request, _ in try await self.snooze(request) }
        router.get("/localcontroller") { request, _ in try await self.snooze(request) }
        registerHost(on: router)
        registerVMs(on: router)
        registerUsage(on: router)
    }

    // MARK: - Snooze

    static var snoozeOperations: [String] {
        ["startVirtualMachines"] + VMControl.allCases.map(\.localControllerOperation)
            + ["resizeVirtualMachine", "getVirtualMachines", "getVirtualMachineMetaData", "migrateVirtualMachine", "getMigration",
               "abortMigration", "prepareIncomingMigration", "cancelIncomingMigration", "finishIncomingMigration",
               "restoreMigratedVirtualMachine", "setDraining"]
    }

    func snooze(_ request: Request) async throws -> Response {
        let limit = maxBodyBytes
        switch request.snoozeOperation {
        case "startVirtualMachines":
            let submission = try await HTTPBody.json(request, as: VirtualMachineSubmission.self, limit: limit)
            let partial = request.hasQueryFlag("partial")
            return try HTTPReply.json(try await api { () async throws(DozeError) in
                try await backend.startVirtualMachines(submission, partial: partial)
            })
        case "getVirtualMachineMetaData":
            let vm = try await HTTPBody.rawString(request, what: "VM id", limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.virtualMachineMetaData(vm: vm) })
        case "suspendVirtualMachineOnRequest":
            let vm = try await HTTPBody.rawString(request, what: "VM id", limit: limit)
            try await api { () async throws(DozeError) in try await backend.suspend(vm: vm) }
            return HTTPReply.bool(true)
        case "resumeVirtualMachine":
            let vm = try await HTTPBody.rawString(request, what: "VM id", limit: limit)
            try await api { () async throws(DozeError) in try await backend.resume(vm: vm) }
            return HTTPReply.bool(true)
        case "shutdownVirtualMachine":
            let vm = try await HTTPBody.rawString(request, what: "VM id", limit: limit)
            try await api { () async throws(DozeError) in try await backend.shutdown(vm: vm) }
            return HTTPReply.bool(true)
        case "rebootVirtualMachine":
            let vm = try await HTTPBody.rawString(request, what: "VM id", limit: limit)
            try await api { () async throws(DozeError) in try await backend.reboot(vm: vm) }
            return HTTPReply.bool(true)
        case "destroyVirtualMachine":
            let vm = try await HTTPBody.rawString(request, what: "VM id", limit: limit)
            try await api { () async throws(DozeError) in try await backend.destroy(vm: vm) }
            return HTTPReply.bool(true)
        case "startVirtualMachine":   // Doze addition: start a shut-off VM again (what `/vm/start` does)
            let vm = try await HTTPBody.rawString(request, what: "VM id", limit: limit)
            try await api { () async throws(DozeError) in try await backend.start(vm: vm) }
            return HTTPReply.bool(true)
        case "resizeVirtualMachine":
            let resize = try await HTTPBody.json(request, as: ResizeRequest.self, limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.resize(resize) })
        case "getVirtualMachines":
            // Snooze sends the number of monitoring entries; the list does not depend on it.
            _ = try await HTTPBody.string(request, limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.virtualMachines() })
        case "migrateVirtualMachine":
            let command = try await HTTPBody.json(request, as: LocalMigrationCommand.self, limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.startMigration(command) })
        case "getMigration":
            let id = try request.requiredQuery("id")
            let wait = request.optionalQuery("wait").flatMap(Double.init).flatMap({ $0.isFinite ? $0 : nil }).map { Duration.milliseconds(Int(min(max($0, 0), 300) * 1000)) }
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.migrationStatus(id: id, wait: wait) })
        case "abortMigration":
            let id = try request.requiredQuery("id")
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.abortMigration(id: id) })
        case "prepareIncomingMigration":
            let incoming = try await HTTPBody.json(request, as: IncomingMigration.self, limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.prepareIncomingMigration(incoming) })
        case "cancelIncomingMigration":
            let incoming = try await HTTPBody.json(request, as: IncomingMigration.self, limit: limit)
            try await api { () async throws(DozeError) in try await backend.cancelIncomingMigration(incoming) }
            return HTTPReply.bool(true)
        case "finishIncomingMigration":
            let incoming = try await HTTPBody.json(request, as: IncomingMigration.self, limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.finishIncomingMigration(incoming) })
        case "restoreMigratedVirtualMachine":
            // A saved image is larger than any other request: allow 64 MiB.
            let transfer = try await HTTPBody.json(request, as: OfflineMigrationImage.self, limit: max(limit, 64 << 20))
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.restoreMigratedVirtualMachine(transfer) })
        case "setDraining":
            let text = try await HTTPBody.rawString(request, what: "true or false", limit: limit)
            guard let draining = Bool(text) else { throw APIError(DozeError(.badRequest, "setDraining takes true or false, got '\(text)'")) }
            try await api { () async throws(DozeError) in try await backend.setDraining(draining) }
            return HTTPReply.bool(true)
        case nil:
            throw APIError(DozeError(.badRequest,
                "no operation: use /localcontroller?<operation>, one of \(Self.snoozeOperations.joined(separator: ", "))"))
        case let op?:
            throw APIError(DozeError(.notFound,
                "unknown local controller operation '\(op)'; known: \(Self.snoozeOperations.joined(separator: ", "))"))
        }
    }

    // MARK: - Seed 001: /hypervisor

    func registerHost<Context: RequestContext>(on router: Router<Context>) {
        let limit = maxBodyBytes
        router.get("/hypervisor/usages") { _, _ in
            try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.usages() })
        }
        router.get("/hypervisor/quota") { _, _ in
            try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.quota() })
        }
        router.put("/hypervisor/quota") { request, _ in
            let body = try await HTTPBody.json(request, as: QuotaDocument.self, limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.updateQuota(body) })
        }
        router.get("/hypervisor/network") { _, _ in
            try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.network() })
        }
        router.put("/hypervisor/network") { request, _ in
            let body = try await HTTPBody.json(request, as: NetworkDocument.self, limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.updateNetwork(body) })
        }
        router.get("/hypervisor/image-pool") { _, _ in
            try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.imagePool() })
        }
        router.put("/hypervisor/image-pool") { request, _ in
            let body = try await HTTPBody.json(request, as: ImagePoolDocument.self, limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.updateImagePool(body) })
        }
        router.get("/hypervisor/pools") { _, _ in
            try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.pools() })
        }
        router.post("/hypervisor/pools") { request, _ in
            let body = try await HTTPBody.json(request, as: PoolDocument.self, limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.createPool(body) })
        }
        router.put("/hypervisor/pools/{uuid}") { request, context in
            let uuid = try context.parameters.require("uuid")
            let body = try await HTTPBody.json(request, as: PoolDocument.self, limit: limit)
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.updatePool(uuid: uuid, body) })
        }
        router.delete("/hypervisor/pools/{uuid}") { request, context in
            let uuid = try context.parameters.require("uuid")
            _ = try await HTTPBody.string(request, limit: limit)   // seed 001 sends `{}`
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.deletePool(uuid: uuid) })
        }
        router.get("/hypervisor/metrics") { request, _ in
            let periodName = request.optionalQuery("q") ?? "today"
            guard let period = MetricsPeriod(rawValue: periodName) else {
                throw APIError(DozeError(.badRequest,
                    "q must be one of \(MetricsPeriod.allCases.map(\.rawValue).joined(separator: ", ")), got '\(periodName)'"))
            }
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.metrics(period) })
        }
    }

    // MARK: - Seed 003: /vm

    func registerVMs<Context: RequestContext>(on router: Router<Context>) {
        let limit = maxBodyBytes
        router.post("/vm") { request, _ in
            let body = try await HTTPBody.string(request, limit: limit)
            let summary: VMCreation
            if let fileName = request.optionalQuery("xmlName") {
                summary = try await api { () async throws(DozeError) in try await backend.createVM(xmlFile: Self.unquote(fileName)) }
            } else {
                let xml = request.optionalQuery("xmlContent").map(Self.unquote) ?? body
                guard !xml.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
                    throw APIError(DozeError(.badRequest, "give the domain XML in the body, or ?xmlName=FILE or ?xmlContent=XML"))
                }
                summary = try await api { () async throws(DozeError) in try await backend.createVM(xml: xml) }
            }
            return try HTTPReply.json(summary.summary, status: summary.created ? .created : .ok)
        }
        router.get("/vms") { _, _ in
            try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.listVMs() })
        }
        router.get("/vm") { request, _ in
            let name = try request.requiredQuery("name")
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.vm(name) })
        }
        router.delete("/vm") { request, _ in
            let name = try request.requiredQuery("name")
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.deleteVM(name) })
        }
        // The seed's route table says /vm/suspend, its prose /suspend: both work.
        for path in ["/vm/suspend", "/suspend"] {
            router.post(RouterPath(path)) { request, _ in
                let name = try request.requiredQuery("name")
                return try HTTPReply.json(try await api { () async throws(DozeError) in
                    try await backend.suspend(vm: name)
                    return try await backend.vm(name)
                })
            }
        }
        for path in ["/vm/resume", "/resume"] {
            router.post(RouterPath(path)) { request, _ in
                let name = try request.requiredQuery("name")
                return try HTTPReply.json(try await api { () async throws(DozeError) in
                    try await backend.resume(vm: name)
                    return try await backend.vm(name)
                })
            }
        }
        router.post("/vm/shutdown") { request, _ in
            let name = try request.requiredQuery("name")
            return try HTTPReply.json(try await api { () async throws(DozeError) in
                try await backend.shutdown(vm: name)
                return try await backend.vm(name)
            })
        }
        router.post("/vm/start") { request, _ in
            let name = try request.requiredQuery("name")
            return try HTTPReply.json(try await api { () async throws(DozeError) in
                try await backend.start(vm: name)
                return try await backend.vm(name)
            })
        }
        router.post("/vm/reboot") { request, _ in
            let name = try request.requiredQuery("name")
            return try HTTPReply.json(try await api { () async throws(DozeError) in
                try await backend.reboot(vm: name)
                return try await backend.vm(name)
            })
        }
        router.post("/vm/snapshot") { request, _ in
            let name = try request.requiredQuery("name")
            let body = try await HTTPBody.string(request, limit: limit)
            let xml = body.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty ? nil : body
            let snapshot = request.optionalQuery("snapshot")
            return try HTTPReply.json(try await api { () async throws(DozeError) in
                try await backend.createSnapshot(vm: name, name: snapshot, xml: xml)
            }, status: .created)
        }
        router.get("/vm/snapshots") { request, _ in
            let name = try request.requiredQuery("name")
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.snapshots(vm: name) })
        }
        router.post("/vm/snapshot/revert") { request, _ in
            let name = try request.requiredQuery("name")
            let snapshot = try request.requiredQuery("snapshot")
            return try HTTPReply.json(try await api { () async throws(DozeError) in
                try await backend.revertSnapshot(vm: name, snapshot: snapshot)
            })
        }
        router.delete("/vm/snapshot") { request, _ in
            let name = try request.requiredQuery("name")
            let snapshot = try request.requiredQuery("snapshot")
            try await api { () async throws(DozeError) in try await backend.deleteSnapshot(vm: name, snapshot: snapshot) }
            return HTTPReply.bool(true)
        }
    }

    // MARK: - Issue 12: usage

    func registerUsage<Context: RequestContext>(on router: Router<Context>) {
        let limit = maxBodyBytes
        router.get("/v1/vms/{name}/usage") { _, context in
            let name = try context.parameters.require("name")
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.vmUsage(name) })
        }
        router.get("/v1/hosts/self/usage") { _, _ in
            try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.hostUsage() })
        }
        router.post("/v1/vms/{name}/load") { request, context in
            let name = try context.parameters.require("name")
            let body = try await HTTPBody.collect(request, limit: limit)
            // `{}` and `null` clear the load; an empty body is more likely a mistake than a request to clear it.
            let isNull = String(buffer: body).trimmingCharacters(in: .whitespacesAndNewlines) == "null"
            let load = isNull ? SyntheticLoad() : try HTTPBody.decode(body, as: SyntheticLoadRequest.self).load
            return try HTTPReply.json(try await api { () async throws(DozeError) in try await backend.declareLoad(vm: name, load) })
        }
    }

    /// The seed's examples quote parameters (`xmlName='demo.xml'`); accept both forms.
    static func unquote(_ value: String) -> String {
        if value.count >= 2, let first = value.first, let last = value.last, first == last, first == "'" || first == "\"" {
            return String(value.dropFirst().dropLast())
        }
        return value
    }
}
