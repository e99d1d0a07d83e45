import ClusterCore
import Testing

@Suite struct HostQuotaTests {
    let quota = HostQuota(cpuMax: 4, memoryMaxMiB: 1024)

    @Test func admitsUpToTheLimitsAndNotOneMore() {
        #expect(throws: Never.self) { try quota.admit(HostUsage(vcpus: 2, memoryMiB: 512), onTopOf: HostUsage(vcpus: 2, memoryMiB: 512)) }
        #expect(throws: DozeError.self) { try quota.admit(HostUsage(vcpus: 3, memoryMiB: 512), onTopOf: HostUsage(vcpus: 2, memoryMiB: 512)) }
        #expect(throws: DozeError.self) { try quota.admit(HostUsage(vcpus: 2, memoryMiB: 513), onTopOf: HostUsage(vcpus: 2, memoryMiB: 512)) }
    }

    @Test func refusesCPUOverLimitAndNamesIt() {
        #expect(throws: DozeError(.quotaExceeded, "quota exceeded: 2 vCPU requested, 3 of cpu_max 4 in use")) {
            try quota.admit(HostUsage(vcpus: 2, memoryMiB: 1), onTopOf: HostUsage(vcpus: 3, memoryMiB: 0))
        }
    }

    @Test func refusesMemoryOverLimit() {
        do {
            try quota.admit(HostUsage(vcpus: 1, memoryMiB: 600), onTopOf: HostUsage(vcpus: 0, memoryMiB: 500))
            Issue.record("admitted over the memory limit")
        } catch {
            #expect(error.kind == .quotaExceeded)
            #expect(error.message.contains("memory_max_mb 1024"))
        }
    }

    @Test func partialUpdateKeepsTheOtherLimit() throws {
        let next = try quota.updated(cpuMax: 8, memoryMaxMiB: nil, inUse: HostUsage())
        #expect(next == HostQuota(cpuMax: 8, memoryMaxMiB: 1024))
    }

    @Test func updateBelowUsageIsRefused() {
        #expect(throws: DozeError.self) { try quota.updated(cpuMax: 1, memoryMaxMiB: nil, inUse: HostUsage(vcpus: 2, memoryMiB: 0)) }
        #expect(throws: DozeError.self) { try quota.updated(cpuMax: -1, memoryMaxMiB: nil, inUse: HostUsage()) }
    }

    @Test func memoryRoundsUpToWholeMiB() {
        #expect(HostUsage.memoryMiB(fromKiB: 1) == 1)
        #expect(HostUsage.memoryMiB(fromKiB: 1024) == 1)
        #expect(HostUsage.memoryMiB(fromKiB: 1025) == 2)
    }
}

@Suite struct VolumePoolTests {
    let pool = VolumePool(uuid: "u", name: "pool1", path: "/data/p1", maxGB: 30, createdAt: "")

    @Test func pathNeverChanges() {
        #expect(throws: DozeError.self) { try pool.updated(name: nil, path: "/data/other", maxGB: nil, usedGB: 0) }
        // Repeating the same path is not a change.
        #expect((try? pool.updated(name: nil, path: "/data/p1", maxGB: nil, usedGB: 0)) != nil)
    }

    @Test func neverShrinksBelowUse() throws {
        #expect(throws: DozeError.self) { try pool.updated(name: nil, path: nil, maxGB: 10, usedGB: 20) }
        #expect(try pool.updated(name: nil, path: nil, maxGB: 20, usedGB: 20).maxGB == 20)
    }

    @Test func renames() throws {
        #expect(try pool.updated(name: "fast", path: nil, maxGB: nil, usedGB: 0).name == "fast")
        #expect(throws: DozeError.self) { try pool.updated(name: "../x", path: nil, maxGB: nil, usedGB: 0) }
    }
}

@Suite struct PathPolicyTests {
    let policy = PathPolicy(allowedDirectories: ["/var/lib/doze/images", "/data/pool1/"])

    @Test func insideIsAllowed() {
        #expect(throws: Never.self) { try policy.check("/var/lib/doze/images/debian.qcow2", what: "disk") }
        #expect(throws: Never.self) { try policy.check("/data/pool1/a/b.img", what: "disk") }
        #expect(throws: DozeError.self) { try policy.check("/var/lib/doze/imagesX/debian.qcow2", what: "disk") }
    }

    @Test func dotDotEscapesAreRefused() {
        #expect(throws: DozeError.self) { try policy.check("/var/lib/doze/images/../../../etc/shadow", what: "disk") }
    }

    @Test func siblingWithSamePrefixIsRefused() {
        #expect(throws: DozeError.self) { try policy.check("/data/pool10/x.img", what: "disk") }
    }

    @Test func relativePathsAreRefused() {
        #expect(throws: DozeError.self) { try policy.check("images/x.img", what: "disk") }
    }

    @Test func normalizes() {
        #expect(PathPolicy.normalize("/a//b/./c/../d/") == "/a/b/d")
        #expect(PathPolicy.normalize("/../..") == "/")
    }
}

@Suite struct ValidationTests {
    @Test(arguments: ["vm1", "web-01", "db_2.prod", "A"])
    func goodNames(_ name: String) { #expect(throws: Never.self) { try Validation.vmName(name) } }

    @Test(arguments: ["", "../x", "a/b", "-x", ".hidden", "with space", "x\u{0}y", String(repeating: "a", count: 65), "ünï"])
    func badNames(_ name: String) {
        #expect(throws: DozeError.self) { try Validation.vmName(name) }
    }

    @Test func fileNames() throws {
        try Validation.fileName("demo.xml")
        #expect(throws: DozeError.self) { try Validation.fileName("../demo.xml") }
        #expect(throws: DozeError.self) { try Validation.fileName("..") }
        #expect(throws: DozeError.self) { try Validation.fileName("a/b.xml") }
    }
}

@Suite struct VMOperationTests {
    @Test(arguments: [(VMOperation.suspend, VMStatus.running), (.resume, .paused), (.shutdown, .shutdownPending),
                      (.start, .offline), (.destroy, .paused)])
    func preconditions(_ operation: VMOperation, _ state: VMStatus) {
        #expect(throws: Never.self) { try operation.check(current: state, vm: "a") }
    }

    @Test func resumeOfARunningVMIsAConflictThatSaysSo() {
        #expect(throws: DozeError(.conflict, "cannot resume VM 'a': it is RUNNING (already running)")) {
            try VMOperation.resume.check(current: .running, vm: "a")
        }
    }

    @Test func everyOperationRefusesSomeState() {
        for op in VMOperation.allCases where ![.destroy, .snapshot, .revert].contains(op) {
            let refused = VMStatus.allCases.filter { (try? op.check(current: $0, vm: "a")) == nil }
            #expect(!refused.isEmpty, "\(op) accepts every state")
        }
    }
}

@Suite struct ResourceVectorTests {
    @Test func snoozeOrderIsVcpusMemoryRxTx() {
        let v = ResourceVector(snoozeArray: [2, 1024, 100, 200])
        #expect(v.rxBytes == 100)
        #expect(v.txBytes == 200)
        #expect(v.snoozeArray == [2, 1024, 100, 200])
        #expect(ResourceVector(snoozeArray: [1]).memoryKiB == 0)
    }
}
