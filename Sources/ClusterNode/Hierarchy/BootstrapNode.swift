import ClusterAPI
import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import Logging
import NIOCore
import HTTPTypes
import NIOHTTP1

/// The stable entry point. It follows the leader's announcements (never an older term), relays the leader's
/// own signed announcement to nodes whose hello shows they do not know it yet, and forwards reads to the leader.
public actor BootstrapNode: BootstrapBackend {
    public nonisolated let id: NodeID
    let cluster: ClusterSettings
    let link: HeartbeatLink
    let peers = PeerClient(timeout: .seconds(3))
    let log: Logger
    private let clock = ContinuousClock()
    private let started: ContinuousClock.Instant
    private(set) var leader: LeaderInfo?
    private var leaderHeard: MonotonicTime = .zero

    init(id: NodeID, link: HeartbeatLink, cluster: ClusterSettings, logger: Logger) {
        self.id = id
        self.link = link
        self.cluster = cluster
        var log = logger
        log[metadataKey: "doze/role"] = "bootstrap"
        self.log = log
        started = clock.now
    }

    var now: MonotonicTime { started.duration(to: clock.now) }

    func run() async {
        await link.drive(interval: cluster.heartbeatInterval, receive: { await self.receive($0) }, tick: { await self.tick() })
    }

    private func tick() {
        if let current = leader, now - leaderHeard > cluster.leaderTimeout {
            log.warning("group leader silent; forgetting it", metadata: ["doze/leader": "\(current.id)", "doze/term": "\(current.term)"])
            leader = nil
        }
    }

    func receive(_ decoded: HeartbeatCodec.Decoded) async {
        switch decoded.message {
        case .leader(let announced):
            if let current = leader, announced.term < current.term || (announced.term == current.term && announced.id != current.id) {
                await link.count("staleTerm")
                return
            }
            if leader?.id != announced.id || leader?.term != announced.term {
                log.notice("following group leader", metadata: ["doze/leader": "\(announced.id)", "doze/term": "\(announced.term)",
                                                                "doze/address": "\(announced.control)"])
                cluster.metrics?.leaderSeen(term: announced.term)
            }
            leader = announced
            leaderHeard = now
        case .hello(let member, let knownTerm):
            // The relayed datagram is the leader's own, signed by it: the bootstrap vouches for nothing.
            if let current = leader, current.term > knownTerm, let raw = await link.lastLeaderDatagram, raw.term == current.term {
                await link.sendRaw(raw.bytes, to: member.heartbeat)
            }
        default:
            break
        }
    }

    private func requireLeader() throws(DozeError) -> LeaderInfo {
        guard let leader else { throw DozeError(.unavailable, "no group leader is known yet; the cluster is electing one") }
        return leader
    }

    public func groupLeaderDescription() async -> GroupManagerDescription? {
        guard let leader else { return nil }
        return GroupManagerDescription(ManagerInfo(id: leader.id, control: leader.control, heartbeat: leader.heartbeat),
                                       term: leader.term, isLeader: true)
    }

    public func completeHierarchy() async throws(DozeError) -> ByteBuffer {
        try await forward("getGroupLeaderRepositoryInformation", method: .POST, body: "0")
    }

    public func localControllerList() async throws(DozeError) -> ByteBuffer {
        try await forward("getLocalControllerList", method: .GET, body: nil)
    }

    /// The leader's answer, byte for byte: decoding and re-encoding 200 controllers cost ~30 ms.
    private func forward(_ op: String, method: HTTPMethod, body: String?) async throws(DozeError) -> ByteBuffer {
        let target = try requireLeader()
        let answer: (status: Int, body: ByteBuffer)
        do {
            answer = try await peers.send(method, target.control, "/groupmanager?\(op)", body: body)
        } catch {
            throw DozeError(.unavailable, "the group leader at \(target.control) did not answer \(op): \(error)")
        }
        guard answer.status == 200 else {
            throw DozeError(.unavailable, "the group leader at \(target.control) answered \(op) with \(answer.status): \(String(buffer: answer.body))")
        }
        return answer.body
    }

    public func callLeader(_ method: HTTPRequest.Method, _ target: String, body: ByteBuffer?, timeout: Duration) async throws(DozeError) -> (status: Int, body: ByteBuffer) {
        let text = body.map { String(buffer: $0) }
        let verb = HTTPMethod(rawValue: method.rawValue)
        let deadline = now + timeout
        // Between two leaders (an election takes a heartbeat or two) wait for the next one rather than fail.
        if leader == nil { _ = await awaitLeader(until: min(deadline, now + cluster.leaderTimeout * 2)) }
        var current = try requireLeader()
        while true {
            do {
                return try await peers.send(verb, current.control, target, body: text, timeout: timeout)
            } catch {
                // The leader died under the call: a new one answers the same (task records survive it).
                guard let failure = error as? PeerClient.Failure, failure.status == nil else {
                    throw DozeError(.unavailable, "the group leader at \(current.control) did not answer: \(error)")
                }
                guard let next = await awaitNewLeader(after: current, until: deadline) else {
                    throw DozeError(.unavailable, "the group leader at \(current.control) did not answer and no new leader was elected in time: \(failure.message)")
                }
                log.info("retrying with the new group leader", metadata: ["doze/leader": "\(next.id)", "doze/term": "\(next.term)"])
                current = next
            }
        }
    }

    private func awaitLeader(until deadline: MonotonicTime) async -> LeaderInfo? {
        while now < deadline {
            if let leader { return leader }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return leader
    }

    private func awaitNewLeader(after old: LeaderInfo, until deadline: MonotonicTime) async -> LeaderInfo? {
        let limit = min(deadline, now + cluster.leaderTimeout * 3)
        while now < limit {
            if let current = leader, current.term > old.term || current.id != old.id { return current }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return nil
    }

    public func callVMManager(_ vm: String, _ operation: String,
                              body: @Sendable (VirtualMachineLocation) throws -> ByteBuffer) async throws(DozeError) -> (status: Int, body: ByteBuffer) {
        let found = try await callLeader(.post, "/groupmanager?discoverVirtualMachine", body: ByteBuffer(string: vm), timeout: .seconds(5))
        guard found.status == 200 else { return found }
        let located: VirtualMachineDiscoveryResponse
        do { located = try WireCoding.decode(VirtualMachineDiscoveryResponse.self, from: found.body.readableBytesView) } catch {
            throw DozeError(.unavailable, "the group leader's discoverVirtualMachine answer is unreadable: \(error)")
        }
        let manager = located.groupManagerEndpoint
        let payload: ByteBuffer
        do { payload = try body(located.location(vm: vm)) } catch { throw DozeError(.badRequest, "\(error)") }
        do {
            return try await peers.send(.POST, manager, "/groupmanager?\(operation)", body: String(buffer: payload), timeout: .seconds(60))
        } catch {
            throw DozeError(.unavailable, "the group manager at \(manager) holding VM '\(vm)' did not answer: \(error)")
        }
    }
}
