/// Time since this node started. Deadlines are kept in it; it is never compared across nodes.
public typealias MonotonicTime = Duration

/// A node's identity: a UUID string, stable across restarts of the same node (kept in its state directory).
public typealias NodeID = String

/// An election term. Every election produces a higher one; announcements of lower terms are ignored.
public typealias Term = UInt64

public enum NodeRole: String, Sendable, Codable, CaseIterable {
    case bootstrap, groupManager = "gm", localController = "lc"
}

/// A host and port: HTTP control endpoints and UDP heartbeat endpoints alike.
public struct Endpoint: Sendable, Hashable, Codable, CustomStringConvertible {
    public var host: String
    public var port: Int
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }
    public var description: String { "\(host):\(port)" }

    /// Parses `HOST:PORT`.
    public init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]),
              (0...65535).contains(port), colon > text.startIndex
        else { return nil }
        self.init(host: String(text[..<colon]), port: port)
    }
}

/// What a local controller (or, summed, a group manager) holds: Snooze's total / used / requested vectors
/// `[vcpus, memory KiB, rx, tx]` and the VM count.
public struct CapacitySummary: Sendable, Equatable, Codable {
    public var total: ResourceVector
    public var used: ResourceVector
    public var requested: ResourceVector
    public var vmCount: Int

    public init(total: ResourceVector = .zero, used: ResourceVector = .zero, requested: ResourceVector = .zero, vmCount: Int = 0) {
        self.total = total
        self.used = used
        self.requested = requested
        self.vmCount = vmCount
    }

    public static func + (l: Self, r: Self) -> Self {
        .init(total: l.total + r.total, used: l.used + r.used, requested: l.requested + r.requested, vmCount: l.vmCount + r.vmCount)
    }

    /// vCPUs and memory not yet asked for (what placement can still hand out).
    public var free: HostUsage {
        HostUsage(vcpus: Int(total.vcpus - requested.vcpus), memoryMiB: Int((total.memoryKiB - requested.memoryKiB) / 1024))
    }

    /// Free share of the scarcest dimension (vCPUs or memory), 0…1, for least-loaded choices.
    public var freeFraction: Double {
        func free(_ capacity: Double, _ taken: Double) -> Double { capacity > 0 ? max(0, (capacity - taken) / capacity) : 0 }
        return min(free(total.vcpus, requested.vcpus), free(total.memoryKiB, requested.memoryKiB))
    }
}

/// A local controller as the hierarchy knows it.
public struct ControllerInfo: Sendable, Equatable, Codable {
    public var id: NodeID
    public var control: Endpoint
    public var heartbeat: Endpoint
    public var summary: CapacitySummary
    public var vms: [String]
    /// Drained (`doze host drain`): takes no new VMs. Optional so heartbeats of older nodes still decode.
    public var draining: Bool?
    /// Each running VM's last use sample: only in the controller's heartbeat to its manager, which keeps the
    /// window (`UsageWindows`) and strips it before the info goes anywhere else.
    public var usage: ControllerUsageReport?
    public init(id: NodeID, control: Endpoint, heartbeat: Endpoint, summary: CapacitySummary = .init(), vms: [String] = [],
                draining: Bool? = nil, usage: ControllerUsageReport? = nil) {
        self.id = id
        self.control = control
        self.heartbeat = heartbeat
        self.summary = summary
        self.vms = vms
        self.draining = draining
        self.usage = usage
    }
}

extension ControllerInfo {
    /// This view with `vm` (and what it asks for) gone: the books between a migration and the next heartbeat.
    public func removingVM(_ vm: String, _ demand: ResourceVector) -> ControllerInfo {
        var updated = self
        updated.vms.removeAll { $0 == vm }
        updated.summary.requested = updated.summary.requested - demand
        updated.summary.used = updated.summary.used - demand
        updated.summary.vmCount = max(0, updated.summary.vmCount - 1)
        return updated
    }

    public func addingVM(_ vm: String, _ demand: ResourceVector) -> ControllerInfo {
        var updated = self
        updated.vms.append(vm)
        updated.summary.requested = updated.summary.requested + demand
        updated.summary.used = updated.summary.used + demand
        updated.summary.vmCount += 1
        return updated
    }
}

/// A group manager as the hierarchy knows it.
public struct ManagerInfo: Sendable, Equatable, Codable {
    public var id: NodeID
    public var control: Endpoint
    public var heartbeat: Endpoint
    public init(id: NodeID, control: Endpoint, heartbeat: Endpoint) {
        self.id = id
        self.control = control
        self.heartbeat = heartbeat
    }
}

/// The elected group leader of one term.
public struct LeaderInfo: Sendable, Equatable, Codable {
    public var id: NodeID
    public var term: Term
    public var control: Endpoint
    public var heartbeat: Endpoint
    public init(id: NodeID, term: Term, control: Endpoint, heartbeat: Endpoint) {
        self.id = id
        self.term = term
        self.control = control
        self.heartbeat = heartbeat
    }
}

/// Any node, as the bootstrap's registry knows it: where the leader sends its announcements.
public struct MemberInfo: Sendable, Equatable, Codable {
    public var id: NodeID
    public var role: NodeRole
    public var control: Endpoint
    public var heartbeat: Endpoint
    public init(id: NodeID, role: NodeRole, control: Endpoint, heartbeat: Endpoint) {
        self.id = id
        self.role = role
        self.control = control
        self.heartbeat = heartbeat
    }
}

/// Every heartbeat datagram's payload. Each kind travels one way:
/// leader → everyone, manager → its controllers, controller → its manager, manager → leader,
/// every node → the bootstraps (hello: "I exist, here is my heartbeat address").
public enum HeartbeatMessage: Sendable, Equatable {
    /// `knownTerm`: the leader term the sender follows (0: none); a bootstrap that knows a newer leader relays
    /// that leader's own signed announcement back.
    case hello(MemberInfo, knownTerm: Term)
    case leader(LeaderInfo)
    case manager(ManagerInfo, leaderTerm: Term)
    case controller(ControllerInfo, managerID: NodeID)
    case managerSummary(ManagerInfo, term: Term, controllers: [ControllerInfo])
}
