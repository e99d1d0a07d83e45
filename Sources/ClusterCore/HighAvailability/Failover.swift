/// VM high availability, as the group leader decides it: which VMs a dead host held, when that host is fenced,
/// which of its VMs are started again elsewhere, and which copies a returning host must destroy. Pure: the shell
/// (`FailoverCoordinator`) runs the fence agent, submits the restarts, persists `records` and feeds back what
/// happened. Time comes in as `now`.
///
/// The rule it exists for: a VM is started on another host **only after its host is fenced** (the fence agent
/// said it is off). Without a fence agent, or while fencing fails, the VMs of a dead host stay recorded with
/// status UNKNOWN, never started twice. Per VM:
///
/// ```
/// running(on: H) ──H down──▶ lost(from: H) ──H fenced, VM is ha──▶ restarting(from: H, task) ──listed on H'──▶ running(on: H')
///       ▲                        │ (UNKNOWN)                        (UNKNOWN; H is added to staleOn)
///       └────listed on H again───┘ (not fenced: H came back, its VMs never stopped)
/// ```
/// A host in a VM's `staleOn` was fenced while it held the VM: its copy is stale. When it asks to re-join it is
/// told to destroy that copy first (`staleVMs(on:)`); a copy it reports anyway is destroyed (`.destroyStale`).
public struct Failover: Sendable {
    public struct Settings: Sendable {
        /// A fence agent is configured. Without one (`--fence none`) nothing is ever restarted elsewhere.
        public var canFence = false
        /// The pause after a failed fence, doubling per attempt up to `maxFenceRetry`.
        public var firstFenceRetry: Duration = .seconds(2)
        public var maxFenceRetry: Duration = .seconds(60)
        /// Fence attempts before giving up on a host: its VMs stay UNKNOWN until it comes back.
        public var maxFenceAttempts = 8
        /// The pause before a failed restart is submitted again.
        public var restartRetry: Duration = .seconds(5)
        /// A host that leaves the view without a `controllerDown` (it died while the leadership changed) is treated
        /// as down after this long.
        public var missingHostGrace: Duration = .seconds(5)
        /// A VM its host, in view, no longer lists is forgotten after this long (a user destroyed it).
        public var vanishedGrace: Duration = .seconds(5)
        /// A leader just elected: the managers' reports are incomplete this long, so absences mean nothing yet.
        public var settleTime: Duration
        public init(settleTime: Duration) { self.settleTime = settleTime }
    }

    /// Legal transitions are in the type's diagram above.
    public enum Phase: Sendable, Equatable, Codable {
        /// Listed by this host's controller.
        case running(on: NodeID)
        /// Its host is down and not fenced (fencing, fence failed, or no fence agent): UNKNOWN.
        case lost(from: NodeID)
        /// Its host was fenced; a restart elsewhere is recorded (with its submission's task once submitted): UNKNOWN
        /// until a controller lists it.
        case restarting(from: NodeID, task: String?)
    }

    /// One VM as the records keep it. Every VM the heartbeats list has one, HA or not, so the VMs of a dead host
    /// are shown UNKNOWN instead of vanishing.
    public struct VMRecord: Sendable, Equatable, Codable {
        public var name: String
        public var ha: Bool
        public var phase: Phase
        /// Hosts fenced while they held this VM: a copy of it there is stale.
        public var staleOn: Set<NodeID>
        public init(name: String, ha: Bool, phase: Phase, staleOn: Set<NodeID> = []) {
            self.name = name
            self.ha = ha
            self.phase = phase
            self.staleOn = staleOn
        }

        /// The host it runs on, or the dead host it was last on.
        public var host: NodeID {
            switch phase {
            case .running(let host), .lost(let host), .restarting(let host, _): host
            }
        }

        public var isRunning: Bool { if case .running = phase { true } else { false } }
    }

    public enum FenceState: Sendable, Equatable {
        /// The fence agent runs (attempt 1, 2, …).
        case fencing(attempt: Int)
        /// The last attempt failed; the next is due at `at`.
        case retrying(attempt: Int, at: MonotonicTime, lastError: String)
        /// `maxFenceAttempts` failed: the host's VMs stay UNKNOWN until it comes back.
        case gaveUp(lastError: String)
    }

    public enum Directive: Sendable, Equatable {
        /// Run the fence agent on this host; answer with `onFenceSucceeded` or `onFenceFailed`.
        case fence(NodeID, attempt: Int)
        /// Submit this VM again (its host is fenced) on a host other than `avoiding` (the fenced host and any other
        /// holding a stale copy, whose copy would be destroyed). `records` says `restarting` already: persist
        /// before submitting. Answer with `onRestartSubmitted`, then the heartbeats (or `onRestartFailed`).
        case restart(String, avoiding: Set<NodeID>)
        /// These VMs are UNKNOWN now, and why (for the log; the views read `records`).
        case markedUnknown([String], host: NodeID, reason: String)
        /// A fenced host reports a stale copy of this VM: destroy (and undefine) it there.
        case destroyStale(String, on: NodeID)
        /// `records` changed: write them.
        case persist
    }

    public var settings: Settings
    public private(set) var records: [String: VMRecord]
    public private(set) var fencing: [NodeID: FenceState] = [:]
    /// Restarts submitted and not yet listed or failed.
    private var restartsInFlight: Set<String> = []
    /// Restarts waiting for their time (a failed one, or one recorded by an earlier leader).
    private var restartDue: [String: MonotonicTime] = [:]
    private var missingSince: [NodeID: MonotonicTime] = [:]
    private var vanishedSince: [String: MonotonicTime] = [:]
    /// `vm@host` pairs a `.destroyStale` was sent for (once per pair until the host stops listing it).
    private var destroyAsked: Set<String> = []

    /// `records`: what an earlier leader persisted (empty on a fresh cluster).
    public init(records: [VMRecord] = [], settings: Settings) {
        self.settings = settings
        self.records = Dictionary(records.map { ($0.name, $0) }, uniquingKeysWith: { _, last in last })
        // Restarts an earlier leader recorded but had not submitted: due once the views have settled.
        for record in records {
            if case .restarting(_, nil) = record.phase { restartDue[record.name] = settings.settleTime }
        }
    }

    // MARK: - Queries

    /// The VMs a host must destroy before it reports its VMs again: it was fenced while it held them.
    public func staleVMs(on host: NodeID) -> [String] {
        records.values.filter { $0.staleOn.contains(host) }.map(\.name).sorted()
    }

    /// The VMs whose status is UNKNOWN (their host is down, or they are being restarted).
    public var unknownVMs: [VMRecord] { records.values.filter { !$0.isRunning }.sorted { $0.name < $1.name } }

    // MARK: - Events

    /// MUST be invoked when the leader declares a local controller dead (`GroupLeaderState`'s `.controllerDown`),
    /// with the VMs the leader last knew there (its last report, and VMs just started there that no view listed
    /// yet) and which VMs are marked `ha`.
    public mutating func onControllerDown(_ host: NodeID, vms: Set<String>, highlyAvailable: Set<String>,
                                          now: MonotonicTime) -> [Directive] {
        for vm in vms where records[vm] == nil {
            records[vm] = VMRecord(name: vm, ha: highlyAvailable.contains(vm), phase: .running(on: host))
        }
        return hostDown(host, now: now)
    }

    private mutating func hostDown(_ host: NodeID, now: MonotonicTime) -> [Directive] {
        missingSince[host] = nil
        let names = records.values.filter { $0.phase == .running(on: host) }.map(\.name).sorted()
        for name in names { records[name]!.phase = .lost(from: host) }
        var directives: [Directive] = []
        let lostHA = records.values.contains { $0.ha && $0.phase == .lost(from: host) }
        if !names.isEmpty {
            let reason = !lostHA ? "its host is down"
                : settings.canFence ? "its host is down; fencing it before restarting HA VMs elsewhere"
                : "its host is down and no fence agent is configured: not restarted elsewhere"
            directives += [.markedUnknown(names, host: host, reason: reason), .persist]
        }
        if lostHA { directives += startFencing(host) }
        return directives
    }

    /// MUST be invoked when the fence agent reported `host` fenced (exit 0).
    public mutating func onFenceSucceeded(_ host: NodeID, now: MonotonicTime) -> [Directive] {
        guard case .fencing = fencing[host] else { return [] }
        fencing[host] = nil
        var directives: [Directive] = []
        // The fence stopped the host: every HA VM it held is down, including any it reported after coming back
        // while the fence ran.
        for name in records.keys.sorted() {
            let record = records[name]!
            guard record.ha, record.phase == .lost(from: host) || record.phase == .running(on: host) else { continue }
            records[name]!.phase = .restarting(from: host, task: nil)
            records[name]!.staleOn.insert(host)
            restartsInFlight.insert(name)
            directives.append(.restart(name, avoiding: records[name]!.staleOn))
        }
        return directives.isEmpty ? [] : [.persist] + directives
    }

    /// MUST be invoked when the fence agent failed (non-zero exit, timeout, could not run). Nothing is restarted;
    /// the VMs stay UNKNOWN, and the agent runs again after a back-off, at most `maxFenceAttempts` times.
    public mutating func onFenceFailed(_ host: NodeID, error: String, now: MonotonicTime) -> [Directive] {
        guard case .fencing(let attempt) = fencing[host] else { return [] }
        let names = records.values.filter { $0.phase == .lost(from: host) }.map(\.name).sorted()
        if attempt >= settings.maxFenceAttempts {
            fencing[host] = .gaveUp(lastError: error)
            return [.markedUnknown(names, host: host, reason: "fencing failed \(attempt) times (\(error)); left UNKNOWN until the host comes back")]
        }
        let pause = min(settings.maxFenceRetry, settings.firstFenceRetry * (1 << min(attempt - 1, 20)))
        fencing[host] = .retrying(attempt: attempt, at: now + pause, lastError: error)
        return [.markedUnknown(names, host: host, reason: "fencing failed (\(error)); not restarted, fencing again in \(pause)")]
    }

    /// MUST be invoked once a restart's submission is recorded, with its task id.
    public mutating func onRestartSubmitted(_ vm: String, task: String) -> [Directive] {
        guard let record = records[vm], case .restarting(let host, _) = record.phase else { return [] }
        records[vm]!.phase = .restarting(from: host, task: task)
        return [.persist]
    }

    /// MUST be invoked when a restart was refused or its submission ended in ERROR: submitted again after `restartRetry`.
    public mutating func onRestartFailed(_ vm: String, reason: String, now: MonotonicTime) -> [Directive] {
        guard let record = records[vm], case .restarting(let host, _) = record.phase else { return [] }
        restartsInFlight.remove(vm)
        records[vm]!.phase = .restarting(from: host, task: nil)
        restartDue[vm] = now + settings.restartRetry
        return [.persist, .markedUnknown([vm], host: host, reason: "restart failed (\(reason)); trying again in \(settings.restartRetry)")]
    }

    /// MUST be invoked on every heartbeat-paced tick with the leader's view: which hosts report which VMs
    /// (a VM may briefly be listed twice), which hosts are in view, and which VMs are marked `ha`.
    public mutating func onView(listed: [String: Set<NodeID>], hostsInView: Set<NodeID>, highlyAvailable: Set<String>,
                                now: MonotonicTime) -> [Directive] {
        var directives: [Directive] = []
        var changed = false
        for (vm, hosts) in listed.sorted(by: { $0.key < $1.key }) {
            var record = records[vm] ?? VMRecord(name: vm, ha: false, phase: .running(on: hosts.sorted()[0]))
            if records[vm] == nil { changed = true }
            for host in hosts.sorted() where record.staleOn.contains(host) && destroyAsked.insert("\(vm)@\(host)").inserted {
                directives.append(.destroyStale(vm, on: host))
            }
            if let host = hosts.subtracting(record.staleOn).sorted().first {
                if record.phase != .running(on: host) {
                    record.phase = .running(on: host)
                    changed = true
                }
                restartsInFlight.remove(vm)
                restartDue[vm] = nil
                vanishedSince[vm] = nil
            }
            let ha = highlyAvailable.contains(vm)
            if record.ha != ha {
                record.ha = ha
                changed = true
            }
            records[vm] = record
        }
        // A fenced host back in view without its stale copy: nothing left to destroy there.
        for (name, record) in records {
            for host in record.staleOn where hostsInView.contains(host) && listed[name]?.contains(host) != true {
                records[name]!.staleOn.remove(host)
                destroyAsked.remove("\(name)@\(host)")
                changed = true
            }
        }
        // A host back in view is not fenced any more (a fence still running finishes: see onFenceSucceeded).
        for (host, state) in fencing where hostsInView.contains(host) {
            if case .fencing = state { continue }
            fencing[host] = nil
        }
        for host in missingSince.keys where hostsInView.contains(host) { missingSince[host] = nil }
        guard now >= settings.settleTime else { return (changed ? [.persist] : []) + directives }

        var missing: Set<NodeID> = []
        for name in records.keys.sorted() {
            guard let record = records[name], listed[name] == nil else { continue }
            switch record.phase {
            case .running(let host) where !hostsInView.contains(host):
                missing.insert(host)
            case .running(let host), .lost(let host):
                guard hostsInView.contains(host) else { break }
                // Its host is in view and does not list it: destroyed on purpose.
                let since = vanishedSince[name] ?? now
                vanishedSince[name] = since
                if now - since >= settings.vanishedGrace {
                    records[name] = nil
                    vanishedSince[name] = nil
                    changed = true
                }
            case .restarting(_, let task):
                // Not followed by this leader yet: one with a task is that submission's to finish (the shell
                // follows it); one without was recorded but never submitted.
                guard !restartsInFlight.contains(name), restartDue[name] == nil else { break }
                if task != nil { restartsInFlight.insert(name) } else { restartDue[name] = now }
            }
        }
        for host in missing.sorted() {
            let since = missingSince[host] ?? now
            missingSince[host] = since
            if now - since >= settings.missingHostGrace { directives += hostDown(host, now: now) }
        }
        // HA VMs recorded lost (by an earlier leader, or before a fence gave up and the grace ran out) whose host
        // is still away and not being fenced: fence it.
        let unfenced = Set(records.values.filter { $0.ha }.compactMap { record -> NodeID? in
            guard case .lost(let host) = record.phase, !hostsInView.contains(host), fencing[host] == nil else { return nil }
            return host
        })
        for host in unfenced.sorted() { directives += startFencing(host) }
        return (changed ? [.persist] : []) + directives
    }

    /// MUST be invoked periodically: fences and restarts whose back-off has passed run again.
    public mutating func onTick(now: MonotonicTime) -> [Directive] {
        var directives: [Directive] = []
        for host in fencing.keys.sorted() {
            guard case .retrying(let attempt, let at, _) = fencing[host], now >= at else { continue }
            fencing[host] = .fencing(attempt: attempt + 1)
            directives.append(.fence(host, attempt: attempt + 1))
        }
        for (vm, at) in restartDue.sorted(by: { $0.key < $1.key }) where now >= at {
            restartDue[vm] = nil
            guard let record = records[vm], case .restarting(let host, _) = record.phase, !restartsInFlight.contains(vm) else { continue }
            restartsInFlight.insert(vm)
            directives.append(.restart(vm, avoiding: record.staleOn.union([host])))
        }
        return directives
    }

    private mutating func startFencing(_ host: NodeID) -> [Directive] {
        guard settings.canFence, fencing[host] == nil else { return [] }
        fencing[host] = .fencing(attempt: 1)
        return [.fence(host, attempt: 1)]
    }

    public var metadata: [String: String] {
        ["doze/ha/vms": "\(records.count)", "doze/ha/unknown": "\(unknownVMs.count)", "doze/ha/fencing": "\(fencing.count)"]
    }
}
