import ClusterAPI
import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import Logging
import NIOHTTP1

/// The manager side of submissions and VM control: placement on this manager's local controllers, and
/// forwarding of VM operations to the controller that runs the VM.
extension ManagerRole {
    /// Outcomes are kept per task and VM (a name reused by a later task is a new VM), long enough for any leader
    /// to re-ask after a failover.
    static let outcomeMemory: Duration = .seconds(600)
    static let reservationLimit: Duration = .seconds(10)

    /// The controller's heartbeat now covers these VMs: it lists them, or it was sent a full interval after the
    /// controller answered their start (so a VM destroyed before any heartbeat listed it frees its room too).
    func settleReported(_ controller: ControllerInfo) {
        guard !controllerPlacement.reservations.isEmpty else { return }
        let listed = Set(controller.vms)
        let now = self.now
        for (key, reservation) in controllerPlacement.reservations where reservation.candidate == controller.id {
            let covered = listed.contains(key) || startAnsweredAt[key].map { now - $0 >= cluster.heartbeatInterval } == true
            guard covered else { continue }
            controllerPlacement.settle(key)
            reservedAt[key] = nil
            startAnsweredAt[key] = nil
        }
    }

    /// Reservations whose VM never showed up (it ended at once) and outcomes old enough to forget.
    func pruneSubmissionBooks() {
        let now = self.now
        for (key, at) in reservedAt where now - at > Self.reservationLimit {
            controllerPlacement.settle(key)
            reservedAt[key] = nil
            startAnsweredAt[key] = nil
        }
        for (key, outcome) in vmOutcomes where now - outcome.at > Self.outcomeMemory { vmOutcomes[key] = nil }
    }

    /// Places and starts VMs on this manager's controllers; answers every VM's outcome, matched by id.
    /// Idempotent per VM id: a VM already started (or starting) here is answered, never placed twice.
    func startVirtualMachines(_ submission: VirtualMachineSubmission, task: String?, retry: Bool) async throws(DozeError) -> VirtualMachineSubmission {
        let state = try following()
        guard !submission.virtualMachineMetaData.isEmpty else {
            throw DozeError(.badRequest, "virtualMachineMetaData is empty: nothing to start")
        }
        let controllers = state.controllers
        let candidates = controllers.values.map { controller in
            PlacementCandidate(id: controller.id, free: controller.summary.free, schedulable: controller.draining != true)
        }
        var batches: [NodeID: [VirtualMachineMetaData]] = [:]
        var immediate: [String: VirtualMachineMetaData] = [:]
        var order: [String] = []
        // Starts are remembered per task and VM: the same name in a later task (after a destroy) is a new VM.
        let scope = (task ?? UUID().uuidString) + "/"
        for var meta in submission.virtualMachineMetaData {
            let vm = meta.virtualMachineLocation.virtualMachineId
            let key = scope + vm
            order.append(vm)
            if vmStarts[key] != nil { continue }
            if let outcome = vmOutcomes[key] {
                immediate[vm] = outcome.meta
                continue
            }
            if retry, let holder = controllers.values.first(where: { $0.vms.contains(vm) }) {
                // Asked again after a failover and already on one of our hosts: report it, start nothing.
                vmStarts[key] = Task { await self.fetchMetaData(vm, on: holder) }
                continue
            }
            let demand = meta.demand
            let pinned = meta.virtualMachineLocation.localControllerId
            switch controllerPlacement.place(vm, demand: demand, among: candidates, pinned: pinned) {
            case .success(let lc):
                reservedAt[vm] = now
                meta.virtualMachineLocation.localControllerId = lc
                batches[lc, default: []].append(meta)
            case .failure(let failure):
                immediate[vm] = failed(meta, failure)
            }
        }
        // One call per controller, all controllers at once.
        for (lc, metas) in batches {
            guard let controller = controllers[lc] else { continue }
            let batch = Task { await self.startBatch(metas, on: controller) }
            for meta in metas {
                let vm = meta.virtualMachineLocation.virtualMachineId
                vmStarts[scope + vm] = Task { (await batch.value)[vm] ?? Self.error(meta, .invalidSubmissionResponse, "the local controller did not answer for this VM") }
            }
        }
        var results: [VirtualMachineMetaData] = []
        for vm in order {
            var meta: VirtualMachineMetaData
            let key = scope + vm
            if let decided = immediate[vm] {
                meta = decided
            } else if let start = vmStarts[key] {
                meta = await start.value
                vmStarts[key] = nil
            } else if let outcome = vmOutcomes[key] {
                meta = outcome.meta   // a concurrent request finished it meanwhile
            } else {
                continue
            }
            meta.locate(under: me)
            if meta.status == .error {
                controllerPlacement.settle(vm)
                reservedAt[vm] = nil
            } else if reservedAt[vm] != nil {
                startAnsweredAt[vm] = now
            }
            vmOutcomes[key] = (meta, now)
            results.append(meta)
        }
        return VirtualMachineSubmission(virtualMachineMetaData: results)
    }

    private func failed(_ meta: VirtualMachineMetaData, _ failure: Placement.Failure) -> VirtualMachineMetaData {
        let vm = meta.virtualMachineLocation.virtualMachineId
        switch failure {
        case .notEnoughCapacity(let demand, let largest):
            let room = largest.map { "the roomiest local controller has \($0.vcpus) vCPUs and \($0.memoryMiB) MiB free" } ?? "this group manager has no local controller"
            return Self.error(meta, .notEnoughLocalControllerCapacity,
                              "no local controller of group manager \(id) has room for VM '\(vm)' (\(demand.vcpus) vCPUs, \(demand.memoryMiB) MiB): \(room)")
        case .unknownHost(let lc):
            return Self.error(meta, .invalidHostID, "local controller '\(lc)' is not managed by group manager \(id)")
        case .hostUnschedulable(let lc):
            return Self.error(meta, .notEnoughLocalControllerCapacity, "local controller '\(lc)' takes no new VMs")
        }
    }

    static func error(_ meta: VirtualMachineMetaData, _ code: VMErrorCode, _ message: String) -> VirtualMachineMetaData {
        var errored = meta
        errored.status = .error
        errored.errorCode = code
        errored.errorMessage = message
        return errored
    }

    private func startBatch(_ metas: [VirtualMachineMetaData], on controller: ControllerInfo,
                            tried: Set<NodeID> = []) async -> [String: VirtualMachineMetaData] {
        var out: [String: VirtualMachineMetaData] = [:]
        do {
            let answer = try await peers.call(.POST, controller.control, "/localcontroller?startVirtualMachines&partial",
                                              body: VirtualMachineSubmission(virtualMachineMetaData: metas),
                                              as: VirtualMachineSubmission.self, timeout: .seconds(30) + .milliseconds(20 * metas.count))
            for meta in answer.virtualMachineMetaData { out[meta.virtualMachineLocation.virtualMachineId] = meta }
        } catch {
            let reason = remoteError(error, "local controller \(controller.id) at \(controller.control) did not answer")
            // Never reached (refused, or no connection in time): the request was not delivered, so the VMs can go to
            // another controller without any risk of running twice. Anything else might have started them.
            let undelivered = (error as? PeerClient.Failure).map { $0.status == nil && Self.neverConnected($0.message) } ?? false
            if undelivered, tried.count < 2 {
                return await placeElsewhere(metas, avoiding: tried.union([controller.id]), reason: reason.message)
            }
            for meta in metas {
                out[meta.virtualMachineLocation.virtualMachineId] = Self.error(meta, .unableToStartOnLocalController, reason.message)
            }
        }
        return out
    }

    static func neverConnected(_ message: String) -> Bool {
        ["connectionRefused", "Connection refused", "connectTimeout", "ECONNREFUSED"].contains { message.contains($0) }
    }

    /// VMs whose controller could not be reached: placed again on the others (pinned ones fail).
    private func placeElsewhere(_ metas: [VirtualMachineMetaData], avoiding: Set<NodeID>, reason: String) async -> [String: VirtualMachineMetaData] {
        var out: [String: VirtualMachineMetaData] = [:]
        guard !nodeIsLeading else {
            for meta in metas { out[meta.virtualMachineLocation.virtualMachineId] = Self.error(meta, .unableToStartOnLocalController, reason) }
            return out
        }
        let candidates = state.controllers.values.filter { !avoiding.contains($0.id) }.map { controller in
            PlacementCandidate(id: controller.id, free: controller.summary.free, schedulable: controller.draining != true)
        }
        var batches: [NodeID: [VirtualMachineMetaData]] = [:]
        for var meta in metas {
            let vm = meta.virtualMachineLocation.virtualMachineId
            let demand = meta.demand
            controllerPlacement.settle(vm)
            guard case .success(let lc) = controllerPlacement.place(vm, demand: demand, among: candidates) else {
                out[vm] = Self.error(meta, .unableToStartOnLocalController, reason + "; no other local controller has room")
                continue
            }
            reservedAt[vm] = now
            meta.virtualMachineLocation.localControllerId = lc
            batches[lc, default: []].append(meta)
        }
        for (lc, batch) in batches {
            guard let controller = state.controllers[lc] else { continue }
            log.info("a local controller could not be reached; its VMs go to another", metadata: ["doze/lc": "\(lc)", "doze/vms": "\(batch.count)"])
            out.merge(await startBatch(batch, on: controller, tried: avoiding)) { $1 }
        }
        return out
    }

    private func fetchMetaData(_ vm: String, on controller: ControllerInfo) async -> VirtualMachineMetaData {
        do {
            return try await peers.call(.POST, controller.control, "/localcontroller?getVirtualMachineMetaData", body: vm,
                                        as: VirtualMachineMetaData.self)
        } catch {
            var meta = VirtualMachineMetaData(location: VirtualMachineLocation(virtualMachineId: vm), status: .running)   // listed by its heartbeat
            meta.locate(onController: controller.id, at: NetworkAddress(controller.control))
            return meta
        }
    }

    // MARK: - VM control (by VirtualMachineLocation)

    /// The controller running `location`'s VM: the one the location names, else whichever heartbeat lists it.
    func controller(for location: VirtualMachineLocation) throws(DozeError) -> ControllerInfo {
        let state = try following()
        let vm = location.virtualMachineId
        guard !vm.isEmpty else { throw DozeError(.badRequest, "virtualMachineLocation.virtualMachineId is missing") }
        if let named = location.localControllerId.flatMap({ state.controllers[$0] }) { return named }
        if let holder = state.controllers.values.first(where: { $0.vms.contains(vm) }) { return holder }
        throw DozeError(.notFound, "VM '\(vm)' is not on any local controller of group manager \(id)")
    }

    func controlVirtualMachine(_ operation: VMControl, _ location: VirtualMachineLocation) async throws(DozeError) {
        let holder = try controller(for: location)
        do {
            _ = try await peers.call(.POST, holder.control, "/localcontroller?\(operation.localControllerOperation)",
                                     body: location.virtualMachineId, as: String.self, timeout: .seconds(60))
            if operation == .destroy {
                // Gone: whatever room was still held for it while heartbeats caught up is free now.
                controllerPlacement.settle(location.virtualMachineId)
                reservedAt[location.virtualMachineId] = nil
                startAnsweredAt[location.virtualMachineId] = nil
            }
        } catch {
            throw remoteError(error, "local controller \(holder.id) at \(holder.control) did not answer")
        }
    }

    func resizeVirtualMachine(_ request: ResizeRequest) async throws(DozeError) -> VirtualMachineMetaData {
        let holder = try controller(for: request.virtualMachineLocation)
        do {
            var meta = try await peers.call(.POST, holder.control, "/localcontroller?resizeVirtualMachine", body: request,
                                            as: VirtualMachineMetaData.self, timeout: .seconds(60))
            meta.locate(under: me)
            return meta
        } catch {
            throw remoteError(error, "local controller \(holder.id) at \(holder.control) did not answer")
        }
    }

    /// Snooze answered an unknown VM with an OFFLINE stub; so does this.
    func virtualMachineMetaData(_ request: VirtualMachineMetaDataRequest) async throws(DozeError) -> VirtualMachineMetaData {
        let location = request.virtualMachineLocation
        let holder: ControllerInfo
        do { holder = try controller(for: location) } catch {
            if error.kind == .notFound { return VirtualMachineMetaData(location: location, status: .offline) }
            throw error
        }
        do {
            var meta = try await peers.call(.POST, holder.control, "/localcontroller?getVirtualMachineMetaData",
                                            body: location.virtualMachineId, as: VirtualMachineMetaData.self)
            meta.locate(under: me)
            return meta
        } catch {
            let failure = remoteError(error, "local controller \(holder.id) at \(holder.control) did not answer")
            if failure.kind == .notFound { return VirtualMachineMetaData(location: location, status: .offline) }
            throw failure
        }
    }

    /// `searchVirtualMachine`: the local controller holding the VM, if one of ours does.
    func searchVirtualMachine(_ vm: String) async throws(DozeError) -> String? {
        try following().controllers.values.first(where: { $0.vms.contains(vm) })?.id
    }

    /// Every VM on this manager's controllers, each asked now.
    func virtualMachineDescriptions() async throws(DozeError) -> VirtualMachineList {
        let controllers = Array(try following().controllers.values)
        let peers = self.peers
        let me = self.me
        let lists = await askEach(controllers, id: \.id) { controller in
            try? await peers.call(.POST, controller.control, "/localcontroller?getVirtualMachines", body: "0",
                                  as: [VirtualMachineMetaData].self)
        }
        return VirtualMachineList(merging: lists.values.map { list in
            list.map { meta in
                var located = meta
                located.locate(under: me)
                return located
            }
        })
    }
}
