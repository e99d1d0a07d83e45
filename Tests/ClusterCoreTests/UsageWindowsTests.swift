import ClusterCore
import Testing

/// The group manager's windows of its controllers' usage samples (issue 12).
@Suite struct UsageWindowsTests {
    func sample(_ cpu: Double, mem: Double = 100, synthetic: Bool? = nil) -> UsageSample {
        UsageSample(cpu: cpu, vcpus: 2, mem: mem, memMax: 1024, rx: 10, tx: 20, synthetic: synthetic)
    }

    @Test func aReportIsTakenInOnceAndAveragedOverTheWindow() throws {
        var windows = UsageWindows(estimator: try .average(window: .seconds(10)))
        windows.record(host: "h", ControllerUsageReport(at: 1000, vms: ["a": sample(1)]), now: .seconds(1))
        // Heartbeats repeat the last report until the controller samples again: not a second sample.
        windows.record(host: "h", ControllerUsageReport(at: 1000, vms: ["a": sample(1)]), now: .seconds(2))
        windows.record(host: "h", ControllerUsageReport(at: 3000, vms: ["a": sample(2, mem: 300)]), now: .seconds(3))
        let a = try #require(windows.estimates(host: "h", now: .seconds(3)).first)
        #expect(a.vm == "a" && a.usage.vcpusInUse == 1.5 && a.usage.memoryUsedMiB == 200 && a.memoryMaxMiB == 1024)
        #expect(a.usage.sampledAtMs == 3000 && !a.usage.synthetic && !a.paused)
        // An older report (reordered datagram) changes nothing.
        windows.record(host: "h", ControllerUsageReport(at: 2000, vms: ["a": sample(9)]), now: .seconds(4))
        #expect(windows.estimates(host: "h", now: .seconds(4)).first?.usage.vcpusInUse == 1.5)
    }

    @Test func aVMTheReportNoLongerListsIsForgottenAndSamplesAgeOut() throws {
        var windows = UsageWindows(estimator: try .average(window: .seconds(5)))
        windows.record(host: "h", ControllerUsageReport(at: 1, vms: ["a": sample(1), "b": sample(2)]), now: .seconds(1))
        windows.record(host: "h", ControllerUsageReport(at: 2, vms: ["b": sample(2)]), now: .seconds(2))
        #expect(windows.estimates(host: "h", now: .seconds(2)).map(\.vm) == ["b"], "a moved away or stopped")
        #expect(windows.estimates(host: "h", now: .seconds(10)).isEmpty, "a silent controller's estimates expire with the window")
        windows.forget(host: "h")
        #expect(windows.hosts.isEmpty)
    }

    @Test func declaringLoadStartsANewSeriesSoMeasuredAndDeclaredAreNotAveraged() throws {
        var windows = UsageWindows(estimator: try .average(window: .seconds(60)))
        windows.record(host: "h", ControllerUsageReport(at: 1, vms: ["a": sample(0)]), now: .seconds(1))
        windows.record(host: "h", ControllerUsageReport(at: 2, vms: ["a": sample(1.8, synthetic: true)]), now: .seconds(2))
        let a = try #require(windows.estimates(host: "h", now: .seconds(2)).first)
        #expect(a.usage.vcpusInUse == 1.8 && a.usage.synthetic)
    }

    @Test func ewmaWeighsEachNewSample() throws {
        var windows = UsageWindows(estimator: try .ewma(alpha: 0.5))
        for (i, cpu) in [0.0, 2, 2].enumerated() {
            windows.record(host: "h", ControllerUsageReport(at: Int64(i + 1), vms: ["a": sample(cpu)]), now: .seconds(i + 1))
        }
        #expect(windows.estimates(host: "h", now: .seconds(3)).first?.usage.vcpusInUse == 1.5, "0 → 1 → 1.5")
        #expect(windows.estimator.description == "ewma:0.5")
        #expect(try UsageEstimator.parse("average:30").description == "average:30")
    }
}
