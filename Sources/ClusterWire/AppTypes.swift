import ClusterCore
import Foundation

// Seed 000's kvm-apps JSON (`/v1/kvm-apps`): the create body, the list entries and the tasks, in the seed's
// names. The checked values and the rules behind them are ClusterCore's `KVMAppSpec` and `KVMAppBook`.

/// `POST /v1/kvm-apps?name=&runas=&cluster=` body. Every field may be missing on input; `spec()` says which one
/// is wrong. Also what `doze app create` sends.
public struct KVMAppCreateRequest: Sendable, Equatable, Codable {
    public struct Image: Sendable, Equatable, Codable {
        public var type: String?
        public var uri: String?
        public init(type: String?, uri: String?) {
            self.type = type
            self.uri = uri
        }
    }
    public struct VNC: Sendable, Equatable, Codable {
        public var enabled: Bool?
        public var password: String?
        public init(password: String?) { self.password = password }
    }
    /// Accepted and shown back; Doze's local controllers run the VMs themselves.
    public struct Executor: Sendable, Equatable, Codable {
        public var url: String?
        public var command: String?
        public init(url: String?, command: String?) {
            self.url = url
            self.command = command
        }
    }
    public struct Constraint: Sendable, Equatable, Codable {
        public var attribute: String?
        public var `operator`: String?
        public var value: String?
        public init(attribute: String?, operator: String?, value: String?) {
            self.attribute = attribute
            self.operator = `operator`
            self.value = value
        }
    }

    public var count: Int?
    public var cpus: Int?
    /// MiB.
    public var mems: Int?
    /// GiB.
    public var disks: Int?
    public var image: Image?
    public var vnc: VNC?
    public var executor: Executor?
    public var constraints: [Constraint]?
    public var desc: String?
    /// Doze addition: restart the app's VMs on another host when theirs dies (after it is fenced). Absent: off.
    public var ha: Bool?
    /// Doze addition (seed 004): the switches each VM gets a NIC on (`doze network create`), in order.
    public var networks: [String]?

    public init(count: Int?, cpus: Int?, mems: Int?, disks: Int? = nil, image: Image?, vnc: VNC? = nil,
                executor: Executor? = nil, constraints: [Constraint]? = nil, desc: String? = nil) {
        self.count = count
        self.cpus = cpus
        self.mems = mems
        self.disks = disks
        self.image = image
        self.vnc = vnc
        self.executor = executor
        self.constraints = constraints
        self.desc = desc
    }

    /// The checked request; the refusal names the missing or malformed field.
    public func spec() throws(DozeError) -> KVMAppSpec {
        guard let count else { throw DozeError(.badRequest, "count is missing: how many VMs?") }
        guard let cpus else { throw DozeError(.badRequest, "cpus is missing: vCPUs per VM") }
        guard let mems else { throw DozeError(.badRequest, "mems is missing: memory per VM in MiB") }
        guard let image, let uri = image.uri else { throw DozeError(.badRequest, "image.uri is missing: an image file of the hosts' image pool") }
        let typeText = image.type ?? ""
        guard let type = KVMAppSpec.ImageType(rawValue: typeText.lowercased()) else {
            throw DozeError(.badRequest, "image.type must be iso or qcow2, got '\(typeText)'")
        }
        var constraints: [KVMAppConstraint] = []
        for (index, raw) in (self.constraints ?? []).enumerated() {
            guard let attribute = raw.attribute, let op = raw.operator, let value = raw.value else {
                throw DozeError(.badRequest, "constraints[\(index)] needs attribute, operator and value")
            }
            constraints.append(try KVMAppConstraint(attribute: attribute, operator: op, value: value))
        }
        if let vnc, vnc.enabled != false, vnc.password == nil || vnc.password == "" {
            throw DozeError(.badRequest, "vnc.password is missing: a VNC console needs one (omit vnc for none)")
        }
        return KVMAppSpec(count: count, cpus: cpus, memoryMiB: mems, diskGiB: disks ?? 0, imageType: type, imageURI: uri,
                          vncPassword: vnc?.enabled == false ? nil : vnc?.password, constraints: constraints,
                          executorURL: executor?.url, executorCommand: executor?.command, desc: desc ?? "", ha: ha == true ? true : nil)
            .withNetworks(networks)
    }
}

extension KVMAppSpec {
    func withNetworks(_ networks: [String]?) -> KVMAppSpec {
        var spec = self
        spec.networks = networks.flatMap { $0.isEmpty ? nil : $0 }
        return spec
    }
}

/// `{"id": "demo.bbk.bj"}`: the answer to a create (201) and a delete (200).
public struct KVMAppCreated: Sendable, Equatable, Codable {
    public var id: String
    public init(id: String) { self.id = id }
}

/// The app's configuration as the seed's list shows it (`killPolicy` is always null: Doze has none).
public struct KVMAppConfig: Sendable, Equatable, Codable {
    public struct VNC: Sendable, Equatable, Codable {
        public var enabled: Bool
        /// Shown back as the seed does; the API has no authentication, so it protects the console only from the network.
        public var password: String
    }
    public var count: Int
    public var cpus: Int
    public var mems: Int
    public var disks: Int
    public var executor: KVMAppCreateRequest.Executor?
    public var image: KVMAppCreateRequest.Image
    public var vnc: VNC?
    public var constraints: [KVMAppCreateRequest.Constraint]

    public init(_ spec: KVMAppSpec) {
        count = spec.count
        cpus = spec.cpus
        mems = spec.memoryMiB
        disks = spec.diskGiB
        executor = spec.executorURL == nil && spec.executorCommand == nil ? nil : .init(url: spec.executorURL, command: spec.executorCommand)
        image = .init(type: spec.imageType.rawValue, uri: spec.imageURI)
        vnc = spec.vncPassword.map { VNC(enabled: true, password: $0) }
        constraints = spec.constraints.map { .init(attribute: $0.attribute, operator: $0.op.rawValue, value: $0.value) }
    }

    enum CodingKeys: String, CodingKey { case count, cpus, mems, disks, executor, image, vnc, killPolicy, constraints }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(count, forKey: .count)
        try c.encode(cpus, forKey: .cpus)
        try c.encode(mems, forKey: .mems)
        try c.encode(disks, forKey: .disks)
        try c.encode(executor, forKey: .executor)   // null when absent, as the seed writes it
        try c.encode(image, forKey: .image)
        try c.encode(vnc, forKey: .vnc)
        try c.encodeNil(forKey: .killPolicy)
        try c.encode(constraints, forKey: .constraints)
    }

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        count = try c.value(.count, default: 0)
        cpus = try c.value(.cpus, default: 0)
        mems = try c.value(.mems, default: 0)
        disks = try c.value(.disks, default: 0)
        executor = try c.decodeIfPresent(KVMAppCreateRequest.Executor.self, forKey: .executor)
        image = try c.value(.image, default: .init(type: nil, uri: nil))
        vnc = try c.decodeIfPresent(VNC.self, forKey: .vnc)
        constraints = try c.value(.constraints, default: [])
    }
}

/// One element of `GET /v1/kvm-apps`.
public struct KVMAppEntry: Sendable, Equatable, Codable {
    public var id: String
    public var name: String
    public var runAs: String
    public var cluster: String
    public var desc: String
    public var taskCount: Int
    /// How many tasks are in each `status` (see `KVMAppTaskEntry.status`).
    public var tasksStatus: [String: Int]
    public var config: KVMAppConfig
    /// `creating`, `starting`, `stopping`, `suspending`, `resuming`, `deleting`, or `noop`.
    public var operationStatus: String
    public var errmsg: String
    public var createdAt: String
    public var updatedAt: String

    public init(_ record: KVMAppRecord, tasksStatus: [String: Int], operationStatus: String) {
        id = record.id
        name = record.app.name
        runAs = record.app.runAs
        cluster = record.app.cluster
        desc = record.spec.desc
        taskCount = record.tasks.count
        self.tasksStatus = tasksStatus
        config = KVMAppConfig(record.spec)
        self.operationStatus = operationStatus
        errmsg = record.errmsg
        createdAt = WireTime.rfc3339(millis: record.createdAt)
        updatedAt = WireTime.rfc3339(millis: record.updatedAt)
    }
}

/// One element of `GET /v1/kvm-apps/{id}`: a VM of the app.
public struct KVMAppTaskEntry: Sendable, Equatable, Codable {
    public var id: String
    public var name: String
    /// The local controller running the VM ("" before it is placed).
    public var agentId: String
    /// The Doze submission (task id of `/v1/virtual-clusters`) that created the VM.
    public var executorId: String
    public var domainUuid: String
    public var domainName: String
    /// The app operation under way or last applied, and how it ended (`KvmSuspended`, `KvmStopFailed`, …).
    public var opstatus: String
    /// `pending`, `TASK_RUNNING`, `KvmSuspended`, `KvmStopping`, `KvmStopped`, `KvmStartFailed`, `TASK_UNKNOWN`, `TASK_LOST`.
    public var status: String
    public var errmsg: String
    public var createdAt: String
    public var updatedAt: String
    public var ipAddr: String
    /// `HOST:DISPLAY` for a VNC viewer once the hypervisor gave the console a port; "" otherwise.
    public var vncAddr: String

    public init(id: String, name: String, agentId: String, executorId: String, domainUuid: String, domainName: String,
                opstatus: String, status: String, errmsg: String, createdAt: Int64, updatedAt: Int64, ipAddr: String, vncAddr: String) {
        self.id = id
        self.name = name
        self.agentId = agentId
        self.executorId = executorId
        self.domainUuid = domainUuid
        self.domainName = domainName
        self.opstatus = opstatus
        self.status = status
        self.errmsg = errmsg
        self.createdAt = WireTime.rfc3339(millis: createdAt)
        self.updatedAt = WireTime.rfc3339(millis: updatedAt)
        self.ipAddr = ipAddr
        self.vncAddr = vncAddr
    }
}

public enum WireTime {
    /// `2017-09-18T14:41:14.441Z`: the seed's RFC 3339 UTC times (milliseconds are all Doze records).
    public static func rfc3339(millis: Int64) -> String {
        // Whole seconds through the formatter, milliseconds by hand: a Double of ms/1000 would round .441 down to .440.
        let (seconds, ms) = (millis.quotientAndRemainder(dividingBy: 1000))
        let (s, m) = ms < 0 ? (seconds - 1, ms + 1000) : (seconds, ms)
        let text = Date.ISO8601FormatStyle().format(Date(timeIntervalSince1970: Double(s)))   // 2017-09-18T14:41:14Z
        return String(text.dropLast()) + "." + String(String(m + 1000).dropFirst()) + "Z"
    }
}
