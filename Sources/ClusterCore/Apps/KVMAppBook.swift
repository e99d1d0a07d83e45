/// What a user asks of a whole app after creating it (seed 000: start, stop, suspend, resume, delete).
public enum KVMAppOperation: String, Sendable, Codable, CaseIterable {
    case start, stop, suspend, resume, delete

    /// The app's `operationStatus` while it runs.
    public var progressive: String {
        switch self {
        case .start: return "starting"
        case .stop: return "stopping"
        case .suspend: return "suspending"
        case .resume: return "resuming"
        case .delete: return "deleting"
        }
    }

    /// A task's `opstatus` while the operation runs, once it succeeded, once it failed (seed 000's TaskStatus list).
    public var inFlight: String {
        switch self {
        case .start: return "KvmStarting"
        case .stop: return "KvmStopping"
        case .suspend: return "KvmSuspending"
        case .resume: return "KvmResuming"
        case .delete: return "KvmDeleting"
        }
    }

    public var succeeded: String {
        switch self {
        case .start, .resume: return "KvmRunning"
        case .stop: return "KvmStopped"
        case .suspend: return "KvmSuspended"
        case .delete: return "KvmDeleted"
        }
    }

    public var failed: String {
        switch self {
        case .start: return "KvmStartFailed"
        case .stop: return "KvmStopFailed"
        case .suspend: return "KvmSuspendFailed"
        case .resume: return "KvmResumeFailed"
        case .delete: return "KvmDeleteFailed"
        }
    }
}

/// One VM of an app (a seed "task").
public struct KVMAppTask: Sendable, Equatable, Codable {
    /// How the VM's creation through the submission pipeline went.
    public enum Creation: Sendable, Equatable, Codable {
        case pending
        case started(controller: String, ipAddress: String)
        case failed(String)
    }

    public struct LastOperation: Sendable, Equatable, Codable {
        public var operation: KVMAppOperation
        /// nil: it succeeded (or the VM already was in the wanted state).
        public var failure: String?
        public init(operation: KVMAppOperation, failure: String?) {
            self.operation = operation
            self.failure = failure
        }
    }

    /// `<12 hex>.<name>`, stable for the task's life (the seed's task ids look the same).
    public var id: String
    public var name: String
    public var creation: Creation
    public var lastOperation: LastOperation?
    /// Wall-clock milliseconds.
    public var createdAt: Int64
    public var updatedAt: Int64

    public init(id: String, name: String, creation: Creation = .pending, lastOperation: LastOperation? = nil, createdAt: Int64, updatedAt: Int64) {
        self.id = id
        self.name = name
        self.creation = creation
        self.lastOperation = lastOperation
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    public var isPending: Bool { creation == .pending }
}

/// One kvm-app as the leader records it (persisted: the next leader reads it back).
public struct KVMAppRecord: Sendable, Equatable, Codable {
    public var app: KVMAppID
    public var spec: KVMAppSpec
    /// The submission that creates the VMs; nil while it is being submitted.
    public var submission: String?
    public var tasks: [KVMAppTask]
    /// Why the last operation (or the creation) did not fully succeed; "" when it did.
    public var errmsg: String
    public var createdAt: Int64
    public var updatedAt: Int64
    /// The tenant whose token created it (nil: the default tenant); its VMs are that tenant's.
    public var tenant: String?

    public init(app: KVMAppID, spec: KVMAppSpec, submission: String? = nil, tasks: [KVMAppTask], errmsg: String = "",
                createdAt: Int64, updatedAt: Int64) {
        self.app = app
        self.spec = spec
        self.submission = submission
        self.tasks = tasks
        self.errmsg = errmsg
        self.createdAt = createdAt
        self.updatedAt = updatedAt
    }

    public var id: String { app.id }
    public var isCreating: Bool { tasks.contains(where: \.isPending) }
}

/// Where a VM is now, as the leader could find out.
public enum KVMAppPresence: Sendable, Equatable {
    /// A local controller answered with the VM's status.
    case live(VMStatus)
    /// The VM's status cannot be known now, and why: its manager did not answer, or its controller is not in
    /// the leader's view (down, or not re-joined after a failover). Never taken for a lost VM.
    case unknown(String)
    /// No controller has it, and the one that ran it is in the view.
    case absent

    /// `live`: the statuses controllers answered, by VM; `listed`: VMs the heartbeats list; `controllers`: the
    /// controllers in the leader's view.
    public static func of(_ task: KVMAppTask, live: [String: VMStatus], listed: Set<String>, controllers: Set<String>) -> Self {
        if let status = live[task.name] { return .live(status) }
        if listed.contains(task.name) { return .unknown("its group manager did not answer") }
        if case .started(let controller, _) = task.creation, !controllers.contains(controller) {
            return .unknown("its local controller \(controller) is not in the cluster's view (down, or not re-joined yet)")
        }
        return .absent
    }
}

/// What to do to one VM for an app operation, given where it stands.
public enum KVMAppAction: Sendable, Equatable {
    /// Already as wanted.
    case skip
    /// These operations, in order.
    case send([VMOperation])
    case fail(String)
}

/// The leader's book of kvm-apps: identity and naming rules, constraint evaluation and spreading, task and app
/// statuses, which operations may start. Pure: the shell submits, forwards, persists and passes the time in.
public struct KVMAppBook: Sendable {
    public private(set) var apps: [String: KVMAppRecord] = [:]
    /// Operations under way, by app id. Never persisted: a leader that dies mid-operation leaves none behind.
    public private(set) var busy: [String: KVMAppOperation] = [:]

    public init(_ records: [KVMAppRecord] = []) {
        for record in records { apps[record.id] = record }
    }

    // MARK: - Creating

    /// Checks a create against the book and the controllers, and returns, per VM in index order, its name and the
    /// controller it is pinned to (nil: the pipeline's own dispatch and placement choose). Changes nothing.
    ///
    /// With constraints, every VM is pinned to a satisfying controller, spreading them greedily to the roomiest;
    /// without, only the capacity check is made. A create that cannot fit is refused whole.
    public func plan(_ app: KVMAppID, _ spec: KVMAppSpec, hosts: [KVMAppHost]) throws(DozeError) -> [(name: String, controller: String?)] {
        guard apps[app.id] == nil else { throw DozeError(.conflict, "kvm-app '\(app.id)' already exists; delete it first or choose another name") }
        try spec.validate(for: app)
        guard !hosts.isEmpty else { throw DozeError(.unavailable, "no local controller has joined the cluster yet") }
        let satisfying = try Self.satisfying(spec.constraints, among: hosts)
        let demand = HostUsage(vcpus: spec.cpus, memoryMiB: spec.memoryMiB)
        let which = spec.constraints.isEmpty ? "" : " satisfying \(Self.describe(spec.constraints))"
        let large = satisfying.filter { $0.total.vcpus >= demand.vcpus && $0.total.memoryMiB >= demand.memoryMiB }
        guard !large.isEmpty else {
            let biggest = satisfying.max { ($0.total.memoryMiB, $0.total.vcpus) < ($1.total.memoryMiB, $1.total.vcpus) }!
            throw DozeError(.conflict, "no local controller\(which) is large enough for \(demand.vcpus) vCPUs and \(demand.memoryMiB) MiB; "
                + "the largest has \(biggest.total.vcpus) vCPUs and \(biggest.total.memoryMiB) MiB")
        }
        var free = Dictionary(uniqueKeysWithValues: large.map { ($0.id, $0.free) })
        var placed: [(name: String, controller: String?)] = []
        for index in 0..<spec.count {
            // The roomiest controller that still fits: most free memory, then vCPUs, then id (deterministic).
            let fitting = large.filter { free[$0.id]!.vcpus >= demand.vcpus && free[$0.id]!.memoryMiB >= demand.memoryMiB }
            guard let pick = fitting.max(by: { lhs, rhs in
                let lhsFree = free[lhs.id]!, rhsFree = free[rhs.id]!
                return (lhsFree.memoryMiB, lhsFree.vcpus, rhs.id) < (rhsFree.memoryMiB, rhsFree.vcpus, lhs.id)
            }) else {
                throw DozeError(.conflict, "the local controllers\(which) have room for \(index) of the \(spec.count) VMs "
                    + "(\(demand.vcpus) vCPUs, \(demand.memoryMiB) MiB each); nothing was created")
            }
            free[pick.id] = free[pick.id]! - demand
            placed.append((app.vmName(index), spec.constraints.isEmpty ? nil : pick.id))
        }
        return placed
    }

    /// The controllers satisfying every constraint; none is an error naming the constraint nothing satisfies.
    static func satisfying(_ constraints: [KVMAppConstraint], among hosts: [KVMAppHost]) throws(DozeError) -> [KVMAppHost] {
        let hostnames = Set(hosts.map(\.hostname)).sorted().prefix(10).joined(separator: ", ")
        for constraint in constraints where !hosts.contains(where: constraint.isSatisfied) {
            throw DozeError(.conflict, "no local controller satisfies the constraint \(constraint) (local controller hostnames: \(hostnames))")
        }
        let all = hosts.filter { host in constraints.allSatisfy { $0.isSatisfied(by: host) } }
        guard !all.isEmpty else {
            throw DozeError(.conflict, "no local controller satisfies all of \(describe(constraints)) together (local controller hostnames: \(hostnames))")
        }
        return all
    }

    static func describe(_ constraints: [KVMAppConstraint]) -> String {
        constraints.map(\.description).joined(separator: " and ")
    }

    /// Books a planned app before it is submitted, so a concurrent create of the same id is refused.
    public mutating func setTenant(of id: String, _ tenant: String?) { apps[id]?.tenant = tenant }

    public mutating func reserve(_ app: KVMAppID, _ spec: KVMAppSpec, taskIDs: [String], names: [String], nowMillis: Int64) {
        precondition(taskIDs.count == names.count && apps[app.id] == nil, "reserve of \(app.id) with \(taskIDs.count) ids for \(names.count) names, or twice")
        let tasks = zip(taskIDs, names).map { KVMAppTask(id: $0, name: $1, createdAt: nowMillis, updatedAt: nowMillis) }
        apps[app.id] = KVMAppRecord(app: app, spec: spec, tasks: tasks, createdAt: nowMillis, updatedAt: nowMillis)
    }

    /// The submission was refused: the app never existed.
    public mutating func cancel(_ id: String) {
        apps[id] = nil
    }

    public mutating func submitted(_ id: String, submission: String) {
        apps[id]?.submission = submission
    }

    /// Takes the pipeline's verdicts on pending VMs. Returns true if anything changed (the shell then persists).
    @discardableResult
    public mutating func onCreation(_ id: String, outcomes: [String: KVMAppTask.Creation], nowMillis: Int64) -> Bool {
        guard var record = apps[id] else { return false }
        var changed = false
        for i in record.tasks.indices where record.tasks[i].isPending {
            guard let outcome = outcomes[record.tasks[i].name], outcome != .pending else { continue }
            record.tasks[i].creation = outcome
            record.tasks[i].updatedAt = nowMillis
            changed = true
        }
        guard changed else { return false }
        let failed = record.tasks.compactMap { task -> String? in
            if case .failed(let reason) = task.creation { return "\(task.name): \(reason)" }
            return nil
        }
        if !record.isCreating && !failed.isEmpty {
            record.errmsg = "\(failed.count) of \(record.tasks.count) tasks failed to start; \(failed[0])"
        }
        record.updatedAt = nowMillis
        apps[id] = record
        return true
    }

    // MARK: - Operations

    /// Marks `operation` under way; refused while the app is still being created or another operation runs.
    public mutating func begin(_ operation: KVMAppOperation, on id: String) throws(DozeError) -> KVMAppRecord {
        guard let record = apps[id] else { throw DozeError(.notFound, "no kvm-app '\(id)'") }
        if let running = busy[id] {
            throw DozeError(.conflict, "kvm-app '\(id)' is \(running.progressive); retry when that is done")
        }
        let pending = record.tasks.filter(\.isPending).count
        guard pending == 0 else {
            throw DozeError(.conflict, "kvm-app '\(id)' is still being created (\(pending) of \(record.tasks.count) VMs pending); retry when that is done")
        }
        busy[id] = operation
        return record
    }

    /// What `operation` needs done to one VM. A VM that cannot be reached fails (even a delete: dropping the
    /// app then would orphan a VM that comes back with its controller).
    public static func action(_ operation: KVMAppOperation, for task: KVMAppTask, presence: KVMAppPresence) -> KVMAppAction {
        let status: VMStatus
        switch presence {
        case .live(let liveStatus): status = liveStatus
        case .unknown(let why): return .fail("the VM cannot be reached: \(why)")
        case .absent:
            if operation == .delete { return .skip }
            if case .failed(let reason) = task.creation { return .fail("the VM was never created: \(reason)") }
            return .fail("the VM is on no local controller any more")
        }
        if operation == .delete { return .send([.destroy]) }
        // A paused guest cannot hear the ACPI request: wake it, then ask it to power off.
        if operation == .stop, status == .paused { return .send([.resume, .shutdown]) }
        let wanted: (done: Set<VMStatus>, from: Set<VMStatus>, op: VMOperation, hint: String)
        switch operation {
        case .start: wanted = ([.running], [.offline], .start, status == .paused ? " (resume it instead)" : "")
        case .resume: wanted = ([.running], [.paused], .resume, status == .offline ? " (start it instead)" : "")
        case .suspend: wanted = ([.paused], [.running], .suspend, "")
        case .stop: wanted = ([.offline], [.running, .shutdownPending], .shutdown, "")
        case .delete: preconditionFailure("a delete destroys whatever state the VM is in (handled above)")
        }
        if wanted.done.contains(status) { return .skip }
        if wanted.from.contains(status) { return .send([wanted.op]) }
        return .fail("cannot \(operation.rawValue) a VM that is \(status.rawValue)\(wanted.hint)")
    }

    /// Records each VM's outcome (`nil`: done or nothing to do) and ends the operation. A delete that fully
    /// succeeded drops the app; one that did not keeps it, so it can be retried.
    public mutating func finish(_ operation: KVMAppOperation, on id: String, failures: [String: String], targeted: [String], nowMillis: Int64) {
        busy[id] = nil
        guard var record = apps[id] else { return }
        if operation == .delete && failures.isEmpty {
            apps[id] = nil
            return
        }
        let wanted = Set(targeted)
        for i in record.tasks.indices where wanted.contains(record.tasks[i].name) {
            record.tasks[i].lastOperation = .init(operation: operation, failure: failures[record.tasks[i].name])
            record.tasks[i].updatedAt = nowMillis
        }
        if failures.isEmpty {
            record.errmsg = ""
        } else {
            let first = failures.keys.sorted()[0]
            record.errmsg = "\(operation.rawValue) failed for \(failures.count) of \(targeted.count) tasks; \(first): \(failures[first]!)"
        }
        record.updatedAt = nowMillis
        apps[id] = record
    }

    // MARK: - Statuses

    /// The seed's task `status`, from where the VM is (which wins) or else how its creation went:
    ///
    /// | VM | status |
    /// |---|---|
    /// | creation pending | `pending` |
    /// | creation failed | `KvmStartFailed` (errmsg: why) |
    /// | RUNNING | `TASK_RUNNING` |
    /// | PAUSED | `KvmSuspended` |
    /// | SHUTDOWN_PENDING | `KvmStopping` |
    /// | OFFLINE | `KvmStopped` |
    /// | UNKNOWN, or unreachable | `TASK_UNKNOWN` (errmsg: why) |
    /// | started, now on no controller | `TASK_LOST` |
    public static func status(of task: KVMAppTask, presence: KVMAppPresence) -> (status: String, errmsg: String) {
        var errmsg = task.lastOperation?.failure ?? ""
        switch (presence, task.creation) {
        case (.live(let liveStatus), _):
            switch liveStatus {
            case .running: return ("TASK_RUNNING", errmsg)
            case .paused: return ("KvmSuspended", errmsg)
            case .shutdownPending: return ("KvmStopping", errmsg)
            case .offline: return ("KvmStopped", errmsg)
            case .error: return ("KvmStartFailed", errmsg)
            case .unknown: return ("TASK_UNKNOWN", errmsg)
            }
        case (_, .pending): return ("pending", "")
        case (_, .failed(let reason)): return ("KvmStartFailed", reason)
        case (.unknown(let why), .started):
            if errmsg.isEmpty { errmsg = why }
            return ("TASK_UNKNOWN", errmsg)
        case (.absent, .started):
            return ("TASK_LOST", errmsg.isEmpty ? "the VM is on no local controller any more" : errmsg)
        }
    }

    /// The seed's task `opstatus`: the app operation under way or last applied to the VM, and how it ended.
    public func opStatus(of task: KVMAppTask, in id: String, presence: KVMAppPresence) -> String {
        if let running = busy[id] { return running.inFlight }
        guard let last = task.lastOperation else { return "" }
        if last.failure != nil { return last.operation.failed }
        // A shutdown is a request to the guest: stopping until the VM is actually off.
        if last.operation == .stop, presence == .live(.shutdownPending) || presence == .live(.running) { return last.operation.inFlight }
        return last.operation.succeeded
    }

    /// The app's `operationStatus`: the operation under way, `creating` while VMs are pending, else `noop`.
    public func operationStatus(_ id: String) -> String {
        if let running = busy[id] { return running.progressive }
        if apps[id]?.isCreating == true { return "creating" }
        return "noop"
    }
}

extension KVMAppBook {
    /// The VNC display of a running domain, from its live XML's `<graphics type='vnc' port='5901' …>` (display
    /// = port - 5900); nil before the hypervisor chose a port (autoport), or without a VNC console.
    public static func vncDisplay(inDomainXML xml: String) -> Int? {
        var rest = Substring(xml)
        while let open = rest.firstRange(of: "<graphics") {
            guard let end = rest[open.upperBound...].firstIndex(of: ">") else { return nil }
            let tag = rest[open.upperBound..<end]
            rest = rest[end...]
            guard attribute("type", in: tag) == "vnc", let port = attribute("port", in: tag).flatMap({ Int($0) }), port >= 5900 else { continue }
            return port - 5900
        }
        return nil
    }

    /// The domain's `<uuid>` from its XML, "" when absent.
    public static func domainUUID(inDomainXML xml: String) -> String {
        guard let open = xml.firstRange(of: "<uuid>"), let close = xml[open.upperBound...].firstRange(of: "</uuid>") else { return "" }
        return String(xml[open.upperBound..<close.lowerBound].filter { !$0.isWhitespace })
    }

    static func attribute(_ name: String, in tag: Substring) -> String? {
        for quote in ["'", "\""] {
            guard let start = tag.firstRange(of: " \(name)=\(quote)"),
                  let end = tag[start.upperBound...].firstIndex(of: Character(quote)) else { continue }
            return String(tag[start.upperBound..<end])
        }
        return nil
    }
}
