import ClusterAPI
import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import Hypervisor
import Logging
import NIOHTTP1

/// Puts a local controller into the hierarchy: follows the leader, asks it for a group manager, joins that
/// manager with its VMs, heartbeats it, and re-joins elsewhere the moment it falls silent. The decisions are
/// `ControllerMembership`'s; this actor carries them out.
actor ControllerAgent {
    let controller: LocalController
    let cluster: ClusterSettings
    nonisolated let link: HeartbeatLink
    let stateDirectory: String
    let peers = PeerClient(timeout: .seconds(1))
    let log: Logger
    private let clock = ContinuousClock()
    private let started: ContinuousClock.Instant
    private var membership: ControllerMembership
    private var control = Endpoint(host: "127.0.0.1", port: 0)

    init(controller: LocalController, link: HeartbeatLink, cluster: ClusterSettings, stateDirectory: String,
         previousManager: NodeID?, logger: Logger) {
        self.controller = controller
        self.link = link
        self.cluster = cluster
        self.stateDirectory = stateDirectory
        var settings = ControllerMembership.Settings()
        settings.managerTimeout = cluster.managerTimeout
        settings.leaderTimeout = cluster.leaderTimeout
        settings.retryInterval = cluster.heartbeatInterval
        membership = ControllerMembership(previousManager: previousManager, settings: settings)
        var log = logger
        log[metadataKey: "doze/role"] = "lc"
        log[metadataKey: "doze/node"] = "\(controller.id)"
        self.log = log
        started = clock.now
    }

    var now: MonotonicTime { started.duration(to: clock.now) }

    func setControl(_ endpoint: Endpoint) { control = endpoint }

    func run() async {
        while control.port == 0 && !Task.isCancelled { try? await Task.sleep(for: .milliseconds(10)) }
        await link.drive(interval: cluster.heartbeatInterval, receive: { await self.receive($0) }, tick: { await self.tick() })
    }

    func info() async -> ControllerInfo {
        ControllerInfo(id: controller.id, control: control, heartbeat: link.channel.localEndpoint,
                       summary: await controller.capacitySummary(), vms: await controller.vmNames(),
                       draining: await controller.isDraining ? true : nil, usage: await controller.usageReport())
    }

    private func tick() async {
        let directives = membership.onTick(now: now)
        let me = await info()
        await link.send(.hello(MemberInfo(id: me.id, role: .localController, control: me.control, heartbeat: me.heartbeat),
                               knownTerm: membership.leader?.term ?? 0), to: cluster.bootstraps)
        if let manager = membership.manager {
            await link.send(.controller(me, managerID: manager.id), to: [manager.heartbeat])
        }
        for directive in directives { apply(directive) }
    }

    func receive(_ decoded: HeartbeatCodec.Decoded) async {
        let directives: [ControllerMembership.Directive]
        switch decoded.message {
        case .leader(let leader): directives = membership.onLeaderAnnouncement(leader, now: now)
        case .manager(let manager, _): directives = membership.onManagerAnnouncement(manager, now: now)
        default: return
        }
        for directive in directives { apply(directive) }
    }

    private func apply(_ directive: ControllerMembership.Directive) {
        switch directive {
        case .requestAssignment(let leader, let previous, let avoid):
            Task { await requestAssignment(leader, previous: previous, avoid: avoid) }
        case .join(let manager):
            Task { await join(manager) }
        case .managerLost(let manager):
            log.warning("group manager silent; re-joining", metadata: ["doze/gm": "\(manager.id)"])
        case .joined(let manager):
            log.notice("joined group manager", metadata: ["doze/gm": "\(manager.id)", "doze/address": "\(manager.control)"])
            NodeIdentity(id: controller.id, previousManager: manager.id).save(stateDirectory: stateDirectory)
        case .ignoredStaleTerm:
            Task { await link.count("staleTerm") }
        }
    }

    private func requestAssignment(_ leader: LeaderInfo, previous: NodeID?, avoid: NodeID?) async {
        let request = AssignRequest(controller: await info(), previousManager: previous, avoidManager: avoid)
        do {
            let assigned = try await peers.call(.POST, leader.control, "/groupmanager?assignLocalController",
                                                body: request, as: AssignedGroupManager.self)
            // This host was fenced and these VMs run elsewhere now: our copies go before we report any VM.
            let stale = assigned.staleVirtualMachines ?? []
            guard await destroyStaleCopies(stale) else {
                membership.onAssignmentFailed(now: now)
                return
            }
            for directive in membership.onAssigned(assigned.groupManager.managerInfo, now: now) { apply(directive) }
        } catch {
            log.debug("assignment failed; retrying", metadata: ["error": "\(error)"])
            membership.onAssignmentFailed(now: now)
        }
    }

    /// Destroys (and undefines) the copies of VMs that were restarted elsewhere while this host was fenced. False
    /// when one could not be destroyed: the controller then does not join (and so reports nothing) and asks again.
    private func destroyStaleCopies(_ stale: [String]) async -> Bool {
        guard !stale.isEmpty else { return true }
        var destroyedAll = true
        let here = Set(await controller.vmNames())
        for vm in stale where here.contains(vm) {
            do {
                try await controller.destroy(vm: vm)
                log.warning("destroyed a stale copy: the VM was restarted on another host while this one was fenced",
                            metadata: ["doze/vm": "\(vm)"])
            } catch where error.kind == .notFound {
                continue
            } catch {
                log.error("cannot destroy a stale copy; not joining until it is gone", metadata: ["doze/vm": "\(vm)", "error": "\(error)"])
                destroyedAll = false
            }
        }
        return destroyedAll
    }

    private func join(_ manager: ManagerInfo) async {
        let vms = (try? await controller.virtualMachines()) ?? []
        let request = JoinManagerRequest(controller: await info(), hypervisorURI: controller.hypervisor.uri, virtualMachines: vms)
        do {
            _ = try await peers.call(.POST, manager.control, "/groupmanager?joinGroupManager", body: request, as: String.self)
            for directive in membership.onJoined(manager, now: now) { apply(directive) }
        } catch {
            log.warning("joining the group manager failed", metadata: ["doze/gm": "\(manager.id)", "error": "\(error)"])
            membership.onJoinFailed(now: now)
        }
    }
}

extension LocalController {
    /// Total, used and requested capacity of this host, for heartbeats.
    func capacitySummary() -> CapacitySummary {
        let quota = effectiveQuota
        var requested = ResourceVector.zero
        for (name, record) in vms where record.info.state.isActive && incomingMigrations[name] == nil {
            requested = requested + ResourceVector(vcpus: Double(record.info.vcpus), memoryKiB: Double(record.info.memoryKiB),
                                                   rxBytes: record.rxBytes, txBytes: record.txBytes)
        }
        // Room held for VMs on their way here counts as requested, so managers place nothing in it.
        for hold in incomingMigrations.values {
            requested = requested + ResourceVector(vcpus: Double(hold.demand.vcpus), memoryKiB: Double(hold.demand.memoryMiB) * 1024)
        }
        return CapacitySummary(total: ResourceVector(vcpus: Double(quota.cpuMax), memoryKiB: Double(quota.memoryMaxMiB) * 1024),
                               used: requested, requested: requested, vmCount: vms.count)
    }

    /// VMs on their way here are not here yet: the cluster keeps them where they come from until they arrive.
    func vmNames() -> [String] { vms.keys.filter { incomingMigrations[$0] == nil }.sorted() }
}
