import ClusterAPI
import ClusterCore
import ClusterWire
import ClusterTransport
import Logging
import NIOHTTP1
import Foundation

// Seed 004's networks on the leader. The `NetworkBook` lives in the submission coordinator because a VM's
// switch addresses are handed out in the same step as its placement (no suspension between them), and kept
// with the same records. Floating IPs follow their VM: every heartbeat-paced tick (and right after a move)
// compares the host each bound floating IP is applied on with the host its VM runs on, and moves it.

extension SubmissionCoordinator {
    /// Asks a host's controller to apply (`bind: true`) or remove a floating IP's translation.
    func applyOnHost(_ control: Endpoint, _ request: HostFloatingIPRequest, bind: Bool) async throws(DozeError) -> HostFloatingIPResult {
        do {
            return try await peers.call(.POST, control, bind ? "/v1/host/floating-ips" : "/v1/host/floating-ips/remove", body: request,
                                        as: HostFloatingIPResult.self, timeout: .seconds(10))
        } catch {
            throw remoteError(error, "local controller at \(control) did not answer")
        }
    }

    /// Reads the book back (in `load`), then takes the configured floating range.
    func loadNetworks() async {
        if let store {
            do { networkBook = try await store.loadNetworks() ?? networkBook } catch {
                log.error("cannot read the network records; switches and floating IPs start empty", metadata: ["error": "\(error)"])
            }
        }
        if let range = settings.floatingRange, range != networkBook.floatingRange {
            do { try networkBook.setFloatingRange(range) } catch {
                log.error("invalid floating range; none is configured", metadata: ["error": "\(error.message)"])
            }
        }
    }

    /// Records the book and waits until it is written: an answer means it survives a failover.
    private func persistNetworks() async throws(DozeError) {
        do {
            try store?.saveNetworks(networkBook)
            try await store?.flush()
        } catch {
            throw DozeError(.unavailable, "cannot record the networks in the cluster records: \(error)")
        }
    }

    /// Runs `change` on a copy and keeps it only once recorded.
    private func changeNetworks<T>(_ change: (inout NetworkBook) throws(DozeError) -> T) async throws(DozeError) -> T {
        guard active else { throw DozeError(.unavailable, "this node is no longer the group leader") }
        try await whenLoaded()
        let before = networkBook
        var draft = networkBook
        let result = try change(&draft)
        networkBook = draft
        do { try await persistNetworks() } catch {
            networkBook = before
            throw error
        }
        return result
    }

    // MARK: - Switches

    /// The cluster's own networks a switch must not overlap (the default VM subnet).
    private var reservedSubnets: [String: String] {
        settings.subnet.map { ["cluster's default VM subnet": $0] } ?? [:]
    }

    func createNetwork(_ request: NetworkCreateRequest) async throws(DozeError) -> SwitchDocument {
        var start = request.dhcpStart, end = request.dhcpEnd
        if let range = request.dhcpRange {
            guard start == nil, end == nil else { throw DozeError(.badRequest, "give dhcpRange or dhcpStart/dhcpEnd, not both") }
            let parts = range.split(separator: "-", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
            guard parts.count == 2 else { throw DozeError(.badRequest, "dhcpRange '\(range)' is not of the form FIRST-LAST") }
            start = parts[0]; end = parts[1]
        }
        let reserved = reservedSubnets
        let owner = RequestPrincipal.current.scope
        let created = try await changeNetworks { (book) throws(DozeError) in
            var made = try book.createSwitch(name: request.name, subnet: request.subnet, gateway: request.gateway, dhcpStart: start,
                                             dhcpEnd: end, reserved: reserved)
            book.setOwner(ofSwitch: made.name, owner)
            made.tenant = owner
            return made
        }
        log.info("network created", metadata: ["doze/network": "\(created.name)", "doze/subnet": "\(created.cidr)", "doze/vni": "\(created.vni)"])
        return document(created)
    }

    func listNetworks() async throws(DozeError) -> NetworkList {
        try await whenLoaded()
        let principal = RequestPrincipal.current
        return NetworkList(networks: networkBook.switches.values.filter { principal.sees($0.tenant) }.sorted { $0.name < $1.name }.map(document),
                           floatingRange: networkBook.floatingRange)
    }

    func network(_ name: String) async throws(DozeError) -> SwitchDocument {
        try await whenLoaded()
        return document(try visibleSwitch(name))
    }

    /// A switch of the asking tenant's (another tenant's is "no such network", like one that does not exist).
    func visibleSwitch(_ name: String) throws(DozeError) -> VirtualSwitch {
        let found = try networkBook.requireSwitch(name)
        guard RequestPrincipal.current.sees(found.tenant) else { throw DozeError(.notFound, "no network '\(name)'") }
        return found
    }

    /// A floating IP of the asking tenant's.
    func visibleFloatingIP(_ address: String) throws(DozeError) -> FloatingIP {
        let found = try networkBook.requireFloatingIP(address)
        guard RequestPrincipal.current.sees(found.tenant) else { throw DozeError(.notFound, "floating IP \(address) is not allocated") }
        return found
    }

    func deleteNetwork(_ name: String) async throws(DozeError) {
        try await whenLoaded()
        _ = try visibleSwitch(name)
        try await changeNetworks { (book) throws(DozeError) in try book.deleteSwitch(name) }
        log.info("network deleted", metadata: ["doze/network": "\(name)"])
    }

    func document(_ sw: VirtualSwitch) -> SwitchDocument {
        SwitchDocument(sw, floating: Array(networkBook.floatingIPs.values))
    }

    /// Seed 004's document of a switch.
    func seedDocument(_ name: String, lifecycle: SeedNetworkDocument.Lifecycle) async throws(DozeError) -> SeedNetworkDocument {
        try await whenLoaded()
        return SeedNetworkDocument(try visibleSwitch(name), floating: Array(networkBook.floatingIPs.values), lifecycle: lifecycle)
    }

    /// The VM holding a switch address with this MAC (seed 004 names VMs by MAC).
    func vm(withMAC mac: String) throws(DozeError) -> String {
        let wanted = mac.lowercased()
        for sw in networkBook.switches.values where RequestPrincipal.current.sees(sw.tenant) {
            if let lease = sw.leases.values.first(where: { $0.mac == wanted }) { return lease.vm }
        }
        throw DozeError(.notFound, "no VM has a NIC with MAC \(mac) on any network")
    }

    // MARK: - Submissions

    /// Checks the networks a submission names exist (before anything is planned).
    func checkNetworks(of template: VirtualMachineTemplate, field: String) throws(DozeError) {
        guard let names = template.networks, !names.isEmpty else { return }
        guard Set(names).count == names.count else { throw DozeError(.badRequest, "\(field): a network is named twice in \(names)") }
        for name in names {
            let found: VirtualSwitch
            do { found = try networkBook.requireSwitch(name) } catch { throw DozeError(error.kind, "\(field): \(error.message)") }
            // Only the switch's own tenant's VMs attach to it.
            guard (found.tenant ?? Tenant.defaultName) == (template.tenant ?? Tenant.defaultName) else {
                throw DozeError(.notFound, "\(field): no network '\(name)'")
            }
        }
    }

    /// Hands out the switch addresses of the VMs about to be dispatched, all or nothing (no suspension).
    func attachNetworks(_ vms: [(name: String, networks: [String])]) throws(DozeError) -> [String: [NetworkAttachment]] {
        var draft = networkBook
        var attached: [String: [NetworkAttachment]] = [:]
        for vm in vms where !vm.networks.isEmpty {
            attached[vm.name] = try draft.attach(vm: vm.name, to: vm.networks)
        }
        networkBook = draft
        return attached
    }

    /// A VM that failed or ended gives its switch addresses back (its floating IPs stay allocated, unbound).
    func releaseNetworks(of vm: String) {
        if networkBook.release(vm: vm) { try? store?.saveNetworks(networkBook) }
    }

    /// Switch addresses of VMs seen nowhere for the address grace go back (`inUse`: listed, pending, held).
    func reclaimNetworkAddresses(inUse: Set<String>, now: Duration) {
        var changed = false
        for vm in networkBook.attachedVMs {
            if inUse.contains(vm) { networkAbsentSince[vm] = nil; continue }
            let since = networkAbsentSince[vm] ?? now
            networkAbsentSince[vm] = since
            if now - since >= .seconds(10) {
                networkAbsentSince[vm] = nil
                changed = networkBook.release(vm: vm) || changed
                log.info("network addresses of a VM seen nowhere released", metadata: ["doze/vm": "\(vm)"])
            }
        }
        if changed { try? store?.saveNetworks(networkBook) }
    }

    // MARK: - Floating IPs

    func floatingIPList() async throws(DozeError) -> FloatingIPList {
        try await whenLoaded()
        let range = networkBook.floatingRange.flatMap { (try? NetworkBook.parseRange($0))?.count } ?? 0
        let principal = RequestPrincipal.current
        return FloatingIPList(floatingIPs: networkBook.floatingIPs.values.filter { principal.sees($0.tenant) }.sorted { (IPPool.parse($0.address) ?? 0) < (IPPool.parse($1.address) ?? 0) }
                                .map { FloatingIPDocument($0, dataPlane: floatingDataPlane[$0.address]) },
                              floatingRange: networkBook.floatingRange, free: range - networkBook.floatingIPs.count)
    }

    func floatingIP(_ address: String) async throws(DozeError) -> FloatingIPDocument {
        try await whenLoaded()
        let floating = try visibleFloatingIP(address)
        return FloatingIPDocument(floating, dataPlane: floatingDataPlane[address])
    }

    func allocateFloatingIP(_ request: FloatingIPAllocateRequest, quota: Tenant? = nil) async throws(DozeError) -> FloatingIPDocument {
        let owner = RequestPrincipal.current.scope
        try await whenLoaded()
        if let quota {
            let held = networkBook.floatingIPs.values.filter { ($0.tenant ?? Tenant.defaultName) == quota.name }.count
            try quota.admit(TenantUsage(floatingIPs: 1), to: TenantUsage(floatingIPs: held))
        }
        let floating = try await changeNetworks { (book) throws(DozeError) in
            var made = try book.allocateFloatingIP(request.address)
            book.setOwner(ofFloatingIP: made.address, owner)
            made.tenant = owner
            return made
        }
        log.info("floating IP allocated", metadata: ["doze/fip": "\(floating.address)"])
        return FloatingIPDocument(floating)
    }

    /// Binds, records, then applies it on the VM's host at once (the answer says where and how).
    func bindFloatingIP(_ address: String, _ request: FloatingIPBindRequest) async throws(DozeError) -> FloatingIPDocument {
        try await whenLoaded()
        let floating = try visibleFloatingIP(address)
        // The VM must be on a switch of the floating IP's tenant (its own: VMs attach only to their tenant's switches).
        let onOwnSwitch = networkBook.switches.values.contains { sw in
            (sw.tenant ?? Tenant.defaultName) == (floating.tenant ?? Tenant.defaultName) && sw.leases.values.contains { $0.vm == request.vm }
                && (request.network == nil || request.network == sw.name)
        }
        let onAnySwitch = networkBook.switches.values.contains { $0.leases.values.contains { $0.vm == request.vm } }
        if onAnySwitch && !onOwnSwitch { throw DozeError(.notFound, "no VM '\(request.vm)' on a network of this floating IP's tenant") }
        _ = try await changeNetworks { (book) throws(DozeError) in try book.bind(address, to: request.vm, network: request.network) }
        log.info("floating IP bound", metadata: ["doze/fip": "\(address)", "doze/vm": "\(request.vm)"])
        await reconcileFloatingIPs(only: address)
        return try await floatingIP(address)
    }

    func unbindFloatingIP(_ address: String) async throws(DozeError) -> FloatingIPDocument {
        try await whenLoaded()
        _ = try visibleFloatingIP(address)
        let before = try await changeNetworks { (book) throws(DozeError) in try book.unbind(address) }
        await removeTranslation(before)
        log.info("floating IP unbound", metadata: ["doze/fip": "\(address)"])
        return try await floatingIP(address)
    }

    func releaseFloatingIP(_ address: String) async throws(DozeError) -> FloatingIPDocument {
        try await whenLoaded()
        _ = try visibleFloatingIP(address)
        let before = try await changeNetworks { (book) throws(DozeError) in try book.releaseFloatingIP(address) }
        await removeTranslation(before)
        floatingDataPlane[address] = nil
        log.info("floating IP released", metadata: ["doze/fip": "\(address)"])
        return FloatingIPDocument(FloatingIP(address: address))
    }

    /// Where each VM runs now, from the managers' summaries: VM → its controller.
    private func vmHosts() async -> [String: ControllerInfo] {
        var hosts: [String: ControllerInfo] = [:]
        for record in await managers().values {
            for controller in record.controllers { for vm in controller.vms { hosts[vm] = controller } }
        }
        return hosts
    }

    /// Removes a floating IP's translation from the host that carried it. A host no summary lists is gone (and
    /// its translation with its namespace); a live host that fails to answer is asked again on the next tick.
    private func removeTranslation(_ floating: FloatingIP) async {
        guard let host = floating.appliedOn else { return }
        if let control = await managers().values.flatMap(\.controllers).first(where: { $0.id == host })?.control {
            do {
                _ = try await applyOnHost(control, HostFloatingIPRequest(address: floating.address, privateIP: floating.privateIP ?? "",
                                                                         vm: floating.vm ?? ""), bind: false)
            } catch {
                log.warning("cannot remove a floating IP from its old host; retrying", metadata: ["doze/fip": "\(floating.address)", "error": "\(error.message)"])
                return
            }
        }
        if networkBook.floatingIPs[floating.address]?.appliedOn == host {
            networkBook.markApplied(floating.address, on: nil)
            try? store?.saveNetworks(networkBook)
        }
    }

    /// Moves every bound floating IP (or just `only`) to the host its VM runs on; one at a time per address.
    func reconcileFloatingIPs(only: String? = nil) async {
        guard active, loaded else { return }
        let hosts = await vmHosts()
        for floating in networkBook.floatingIPs.values where only == nil || floating.address == only {
            guard !floatingInFlight.contains(floating.address) else { continue }
            var target = floating.vm.flatMap { hosts[$0] }.map { (id: $0.id, control: $0.control) }
            if target == nil, only != nil, let vm = floating.vm, let found = try? await discover(vm) {
                // Just bound to a VM no summary lists yet (it started a moment ago): where discovery finds it.
                target = (found.localControllerId, Endpoint(host: found.localControllerAddress.address, port: found.localControllerAddress.port))
            }
            guard floating.appliedOn != target?.id else { continue }
            // A bound VM no summary lists is starting, moving or on a dead host: leave its translation be until
            // it shows up somewhere (a dead host's went with it).
            if floating.vm != nil, target == nil { continue }
            floatingInFlight.insert(floating.address)
            defer { floatingInFlight.remove(floating.address) }
            if floating.appliedOn != nil { await removeTranslation(floating) }
            guard let target, let vm = floating.vm, let privateIP = floating.privateIP else { continue }
            do {
                let result = try await applyOnHost(target.control, HostFloatingIPRequest(address: floating.address, privateIP: privateIP, vm: vm), bind: true)
                // Still bound to the same VM after the call (an unbind may have come meanwhile)?
                guard networkBook.floatingIPs[floating.address]?.vm == vm else { continue }
                networkBook.markApplied(floating.address, on: target.id)
                floatingDataPlane[floating.address] = result.dataPlane
                try? store?.saveNetworks(networkBook)
                log.info("floating IP applied", metadata: ["doze/fip": "\(floating.address)", "doze/vm": "\(vm)", "doze/lc": "\(target.id)",
                                                           "doze/dataPlane": "\(result.dataPlane)"])
            } catch {
                log.warning("cannot apply a floating IP on its VM's host; retrying", metadata: ["doze/fip": "\(floating.address)", "error": "\(error.message)"])
            }
        }
    }

    /// The floating IPs bound to each VM (its metadata's `floatingIPs`).
    /// Floating IPs each tenant holds (allocated, bound or not).
    func floatingIPCountByTenant() -> [String: Int] {
        var counts: [String: Int] = [:]
        for floating in networkBook.floatingIPs.values { counts[floating.tenant ?? Tenant.defaultName, default: 0] += 1 }
        return counts
    }

    func floatingIPsByVM() -> [String: [String]] {
        var byVM: [String: [String]] = [:]
        for floating in networkBook.floatingIPs.values { if let vm = floating.vm { byVM[vm, default: []].append(floating.address) } }
        return byVM.mapValues { $0.sorted() }
    }
}
