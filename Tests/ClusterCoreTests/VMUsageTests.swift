import ClusterCore
import Testing

@Suite struct VMUsageSamplerTests {
    static func reading(cpu: UInt64, vcpus: Int = 4, memoryMiB: UInt64 = 1024, rx: UInt64 = 0, tx: UInt64 = 0) -> VMReading {
        VMReading(cpuTimeNs: cpu, vcpus: vcpus, memoryKiB: memoryMiB * 1024, rxBytes: rx, txBytes: tx)
    }

    @Test func vcpusInUseAreCPUTimeOverWallTime() throws {
        var sampler = VMUsageSampler(estimator: try .ewma(alpha: 1))
        sampler.record(vm: "a", Self.reading(cpu: 0, rx: 1000, tx: 0), synthetic: nil, now: .seconds(10), wallClockMs: 1)
        #expect(sampler.usage(of: "a") == nil, "one reading has no CPU delta")
        // 3 s of CPU time over 2 s of wall time: 1.5 vCPUs busy; 4000 bytes in, 1000 out over 2 s.
        sampler.record(vm: "a", Self.reading(cpu: 3_000_000_000, memoryMiB: 512, rx: 5000, tx: 1000), synthetic: nil,
                       now: .seconds(12), wallClockMs: 2)
        let usage = try #require(sampler.usage(of: "a"))
        #expect(usage == VMUsage(vcpusInUse: 1.5, vcpus: 4, memoryUsedMiB: 512, rxBytesPerSecond: 2000, txBytesPerSecond: 500,
                                 synthetic: false, sampledAtMs: 2))
        #expect(sampler.usage(of: "unknown") == nil)
    }

    @Test func aCounterThatWentBackwardsGivesNoRateThatRound() throws {
        var sampler = VMUsageSampler(estimator: try .average(window: .seconds(60)))
        sampler.record(vm: "a", Self.reading(cpu: 0, rx: 0), synthetic: nil, now: .seconds(0), wallClockMs: 0)
        sampler.record(vm: "a", Self.reading(cpu: 2_000_000_000, rx: 2000), synthetic: nil, now: .seconds(2), wallClockMs: 0)
        // The VM restarted: its counters start again from almost zero.
        sampler.record(vm: "a", Self.reading(cpu: 100, rx: 10), synthetic: nil, now: .seconds(4), wallClockMs: 0)
        let usage = try #require(sampler.usage(of: "a"))
        #expect(usage.vcpusInUse == 1 && usage.rxBytesPerSecond == 1000, "the average holds only the good round")
        // From the new baseline the rates are counted again.
        sampler.record(vm: "a", Self.reading(cpu: 100 + 6_000_000_000, rx: 4010), synthetic: nil, now: .seconds(6), wallClockMs: 0)
        let next = try #require(sampler.usage(of: "a"))
        #expect(next.vcpusInUse == 2 && next.rxBytesPerSecond == 1500, "(1 + 3) / 2 and (1000 + 2000) / 2")
    }

    @Test func busyVCPUsNeverExceedTheVMsCount() throws {
        var sampler = VMUsageSampler(estimator: try .ewma(alpha: 1))
        sampler.record(vm: "a", Self.reading(cpu: 0, vcpus: 2), synthetic: nil, now: .seconds(0), wallClockMs: 0)
        sampler.record(vm: "a", Self.reading(cpu: 9_000_000_000, vcpus: 2), synthetic: nil, now: .seconds(1), wallClockMs: 0)
        #expect(sampler.usage(of: "a")?.vcpusInUse == 2)
    }

    @Test func readingsAreSmoothedByTheEstimator() throws {
        var sampler = VMUsageSampler(estimator: try .ewma(alpha: 0.5))
        sampler.record(vm: "a", Self.reading(cpu: 0), synthetic: nil, now: .seconds(0), wallClockMs: 0)
        sampler.record(vm: "a", Self.reading(cpu: 4_000_000_000), synthetic: nil, now: .seconds(1), wallClockMs: 0)   // 4
        sampler.record(vm: "a", Self.reading(cpu: 4_000_000_000), synthetic: nil, now: .seconds(2), wallClockMs: 0)   // 0
        #expect(sampler.usage(of: "a")?.vcpusInUse == 2)
    }

    @Test func declaredLoadReplacesMeasuredCPUAndMemory() throws {
        var sampler = VMUsageSampler(estimator: try .average(window: .seconds(60)))
        sampler.record(vm: "a", Self.reading(cpu: 0), synthetic: nil, now: .seconds(0), wallClockMs: 0)
        sampler.record(vm: "a", Self.reading(cpu: 4_000_000_000), synthetic: nil, now: .seconds(1), wallClockMs: 0)
        #expect(sampler.usage(of: "a")?.vcpusInUse == 4)
        // Declared: the measured 4 vCPUs are not averaged in, and memory is the declared one too.
        let load = SyntheticLoad(vcpus: 0.5, memoryMiB: 300)
        sampler.record(vm: "a", Self.reading(cpu: 8_000_000_000), synthetic: load, now: .seconds(2), wallClockMs: 0)
        let declared = try #require(sampler.usage(of: "a"))
        #expect(declared.vcpusInUse == 0.5 && declared.memoryUsedMiB == 300 && declared.synthetic)
        // Only vCPUs declared: memory is measured again.
        sampler.record(vm: "a", Self.reading(cpu: 9_000_000_000, memoryMiB: 700), synthetic: SyntheticLoad(vcpus: 1.5),
                       now: .seconds(3), wallClockMs: 0)
        let cpuOnly = try #require(sampler.usage(of: "a"))
        #expect(cpuOnly.vcpusInUse == 1 && cpuOnly.memoryUsedMiB == 700 && cpuOnly.synthetic)
        // Cleared: measured from the counters again (1 s of CPU over 1 s), nothing declared left over.
        sampler.record(vm: "a", Self.reading(cpu: 10_000_000_000, memoryMiB: 700), synthetic: nil, now: .seconds(4), wallClockMs: 0)
        let measured = try #require(sampler.usage(of: "a"))
        #expect(measured.vcpusInUse == 1 && measured.memoryUsedMiB == 700 && !measured.synthetic)
    }

    @Test func aDeclaredLoadIsKnownFromTheFirstReading() throws {
        var sampler = VMUsageSampler(estimator: try .ewma(alpha: 0.3))
        sampler.record(vm: "a", Self.reading(cpu: 0), synthetic: SyntheticLoad(vcpus: 2), now: .seconds(0), wallClockMs: 7)
        #expect(sampler.usage(of: "a")
            == VMUsage(vcpusInUse: 2, vcpus: 4, memoryUsedMiB: 1024, rxBytesPerSecond: 0, txBytesPerSecond: 0, synthetic: true, sampledAtMs: 7))
    }

    @Test func keepOnlyDropsVMsThatLeft() throws {
        var sampler = VMUsageSampler(estimator: .defaultForSampling)
        sampler.record(vm: "a", Self.reading(cpu: 0), synthetic: SyntheticLoad(vcpus: 1), now: .seconds(0), wallClockMs: 0)
        sampler.record(vm: "b", Self.reading(cpu: 0), synthetic: SyntheticLoad(vcpus: 1), now: .seconds(0), wallClockMs: 0)
        sampler.keepOnly(["b"])
        #expect(sampler.vms == ["b"])
    }
}

@Suite struct SyntheticLoadTests {
    @Test func onlyTestDriverHostsTakeDeclaredLoad() throws {
        let load = SyntheticLoad(vcpus: 1)
        #expect(try load.validated(hypervisorURI: "test:///default", vmVCPUs: 2, vmMemoryMiB: 512) == load)
        #expect(try load.validated(hypervisorURI: "test:///tmp/host.xml", vmVCPUs: 2, vmMemoryMiB: 512) == load)
        for uri in ["qemu:///system", "qemu+tcp://10.0.0.5/system", "testing:///x", "no-scheme"] {
            #expect(throws: DozeError(.conflict, SyntheticLoad.testDriverOnly)) {
                try load.validated(hypervisorURI: uri, vmVCPUs: 2, vmMemoryMiB: 512)
            }
        }
    }

    @Test func refusesValuesTheVMCannotHave() {
        let uri = "test:///default"
        #expect(throws: DozeError(.badRequest, "vcpus must be a number >= 0, got -1.0")) {
            try SyntheticLoad(vcpus: -1).validated(hypervisorURI: uri, vmVCPUs: 2, vmMemoryMiB: 512)
        }
        #expect(throws: DozeError(.badRequest, "vcpus 2.5 is more than the VM's 2 vCPU(s)")) {
            try SyntheticLoad(vcpus: 2.5).validated(hypervisorURI: uri, vmVCPUs: 2, vmMemoryMiB: 512)
        }
        #expect(throws: DozeError(.badRequest, "memoryMiB must be a number >= 0, got nan")) {
            try SyntheticLoad(memoryMiB: .nan).validated(hypervisorURI: uri, vmVCPUs: 2, vmMemoryMiB: 512)
        }
        #expect(throws: DozeError(.badRequest, "memoryMiB 600.0 is more than the VM's 512 MiB")) {
            try SyntheticLoad(memoryMiB: 600).validated(hypervisorURI: uri, vmVCPUs: 2, vmMemoryMiB: 512)
        }
    }
}

@Suite struct UsageEstimatorParsingTests {
    @Test func parsesBothMethods() throws {
        #expect(try UsageEstimator.parse("average:30").method == .average(window: .seconds(30)))
        #expect(try UsageEstimator.parse("average:1.5").method == .average(window: .milliseconds(1500)))
        #expect(try UsageEstimator.parse("ewma:0.3").method == .ewma(alpha: 0.3))
        #expect(UsageEstimator.defaultForSampling.method == .average(window: .seconds(30)))
    }

    @Test func refusesWithAMessageSayingWhatIsExpected() {
        let syntax = "use average:SECONDS (e.g. average:30) or ewma:ALPHA (e.g. ewma:0.3)"
        #expect(throws: DozeError(.badRequest, "usage estimator 'average' is not understood; \(syntax)")) { try UsageEstimator.parse("average") }
        #expect(throws: DozeError(.badRequest, "usage estimator 'median' is unknown; \(syntax)")) { try UsageEstimator.parse("median:3") }
        #expect(throws: DozeError(.badRequest, "usage estimator 'ewma:x': 'x' is not a number; \(syntax)")) { try UsageEstimator.parse("ewma:x") }
        #expect(throws: DozeError(.badRequest, "usage estimator EWMA alpha must be in (0, 1], got 1.5")) { try UsageEstimator.parse("ewma:1.5") }
        #expect(throws: DozeError(.badRequest, "usage estimator window must be from more than 0 to 86400 seconds, got -5")) {
            try UsageEstimator.parse("average:-5")
        }
    }
}
