import ClusterAPI
import ClusterCore
import ClusterWire
import Hypervisor

// Issue 12: each running VM's use, read every `settings.usageInterval` and smoothed by `usageSampler`.
extension LocalController {
    /// Reads the counters of every running VM once. A VM whose reading fails keeps its previous values
    /// until the next round; VMs no longer running are forgotten.
    public func sampleUsage(now: MonotonicTime, wallClockMs: Int64) async {
        let running = vms.filter { $0.value.info.state.isActive }
        // libvirt's test driver counts CPU time as wall time: every VM would look one vCPU busy. It does no work,
        // so there a VM uses no CPU until load is declared for it.
        let measuresCPU = !HypervisorURI.isTestDriver(settings.hypervisorURI)
        for (name, record) in running {
            guard let stats = try? await hypervisor.stats(.uuid(record.info.uuid)) else { continue }
            let reading = VMReading(cpuTimeNs: measuresCPU ? stats.cpuTimeNs : 0, vcpus: stats.vcpus > 0 ? stats.vcpus : record.info.vcpus,
                                    memoryKiB: stats.memoryKiB, rxBytes: stats.rxBytes, txBytes: stats.txBytes)
            // Read after the await: a load declared meanwhile counts from this reading on.
            let declared = vms[name]?.metadata.syntheticLoad
            usageSampler.record(vm: name, reading, synthetic: declared?.isEmpty == false ? declared : nil,
                                now: now, wallClockMs: wallClockMs)
        }
        usageSampler.keepOnly(Set(running.keys))
    }

    /// The last sample of every running VM, for the heartbeat to the manager; nil before the first one.
    /// VMs on their way in are left out, as in `vmNames()`.
    func usageReport() -> ControllerUsageReport? {
        var samples: [String: UsageSample] = [:]
        var newest: Int64 = 0
        for (name, record) in vms where record.info.state.isActive && incomingMigrations[name] == nil {
            guard let last = usageSampler.lastSample(of: name) else { continue }
            samples[name] = UsageSample(cpu: last.cpu, vcpus: last.vcpus, mem: last.memoryMiB,
                                        memMax: HostUsage.memoryMiB(fromKiB: record.info.memoryKiB), rx: last.rx, tx: last.tx,
                                        synthetic: last.synthetic ? true : nil, paused: [.paused, .suspendedToMemory].contains(record.info.state) ? true : nil)
            newest = max(newest, last.atMs)
        }
        return samples.isEmpty ? nil : ControllerUsageReport(at: newest, vms: samples)
    }

    public func vmUsage(_ name: String) async throws(DozeError) -> VMUsageDocument {
        try Validation.vmName(name)
        guard let record = vms[name] else { throw DozeError(.notFound, "unknown VM '\(name)'") }
        guard record.info.state.isActive, let usage = usageSampler.usage(of: name) else {
            let every = settings.usageInterval / .seconds(1)
            throw DozeError(.unavailable, "no usage of VM '\(name)' yet: it is \(record.info.state.rawValue) or has not been "
                + "sampled twice since it started (the controller samples every \(every) s)")
        }
        return VMUsageDocument(vm: name, usage: usage)
    }

    public func hostUsage() async throws(DozeError) -> HostUsageDocument {
        let usages = vms.keys.sorted().compactMap { name in
            vms[name]?.info.state.isActive == true ? usageSampler.usage(of: name) : nil
        }
        return HostUsageDocument(host: id, usages: usages,
                                 capacity: .init(cpus: node.cpus, memoryMiB: HostUsage.memoryMiB(fromKiB: node.memoryKiB)))
    }

    /// Keeps the load in the VM's Doze metadata, so it outlives a controller restart and travels with a migration.
    public func declareLoad(vm name: String, _ load: SyntheticLoad) async throws(DozeError) -> SyntheticLoadDocument {
        let record = try await current(name)
        let accepted = try load.validated(hypervisorURI: settings.hypervisorURI, vmVCPUs: record.info.vcpus,
                                          vmMemoryMiB: HostUsage.memoryMiB(fromKiB: record.info.memoryKiB))
        let before = record.metadata.syntheticLoad
        // Into the books before the await, so a concurrent metadata write (a resize) carries it too.
        vms[name]?.metadata.syntheticLoad = accepted
        guard let metadata = vms[name]?.metadata else { throw DozeError(.notFound, "unknown VM '\(name)'") }
        do {
            try await hypervisor.setMetadata(.name(name), xml: metadata.encode(), key: DozeDomainMetadata.key,
                                             namespace: DozeDomainMetadata.namespace)
        } catch {
            vms[name]?.metadata.syntheticLoad = before
            throw Self.map(error, doing: "record the load of VM '\(name)'")
        }
        // The test-host journal keeps the XML, metadata included: re-read it so a restart finds the load.
        guard try await refresh(name, xmlChanged: true) != nil else { throw DozeError(.notFound, "VM '\(name)' went away") }
        return SyntheticLoadDocument(vm: name, load: accepted)
    }
}
