import ClusterCore
@testable import ClusterNode
import ClusterWire
import Testing

@Suite struct TaskBookTests {
    static func vm(_ name: String, final: Bool = false, status: VMStatus = .unknown) -> TaskVM {
        TaskVM(meta: VirtualMachineMetaData(location: VirtualMachineLocation(virtualMachineId: name), status: status,
                                            ipAddress: "10.0.0.\(name.count)", requestedCapacity: ResourceVector(vcpus: 1, memoryKiB: 1024)),
               manager: "gm", pinnedController: nil, isFinal: final)
    }

    static func result(_ name: String, _ status: VMStatus, lc: String = "lc1") -> VirtualMachineMetaData {
        VirtualMachineMetaData(location: VirtualMachineLocation(virtualMachineId: name, localControllerId: lc), status: status)
    }

    @Test func resultsAreMergedByVMIDNotByPosition() {
        var book = TaskBook(resultTTL: .seconds(60))
        book.add(TaskRecord(id: "t", createdAt: 0, vms: [Self.vm("a"), Self.vm("b"), Self.vm("c")]))
        #expect(Set(book.pendingVMs.keys) == ["a", "b", "c"])
        // The manager answers in another order, with a VM the task never had.
        let done = book.apply([Self.result("c", .running), Self.result("zz", .running), Self.result("a", .error)], to: "t", nowMillis: 10)
        #expect(!done)
        let doc = book.document("t")!
        #expect(doc.state == .pending && doc.counts.pending == 1 && doc.counts.running == 1 && doc.counts.failed == 1)
        #expect(doc.response.virtualMachineMetaData.map(\.virtualMachineLocation.virtualMachineId) == ["a", "b", "c"])
        #expect(doc.response.virtualMachineMetaData[2].virtualMachineLocation.localControllerId == "lc1")
        #expect(doc.response.virtualMachineMetaData[2].ipAddress == "10.0.0.1", "the leader's address stands when the host sends none")
        #expect(Set(book.pendingVMs.keys) == ["b"])
        // UNKNOWN is not an answer: still pending.
        let afterUnknown = book.apply([Self.result("b", .unknown)], to: "t", nowMillis: 20)
        #expect(!afterUnknown)
        let afterRunning = book.apply([Self.result("b", .running)], to: "t", nowMillis: 30)
        #expect(afterRunning)
        #expect(book.document("t")!.state == .done && book.document("t")!.finishedAt == 30)
        // A final entry never changes again.
        book.apply([Self.result("a", .running)], to: "t", nowMillis: 40)
        #expect(book.document("t")!.response.virtualMachineMetaData[0].status == .error)
    }

    @Test func finishedResultsStayReadableUntilTheirTTL() {
        var book = TaskBook(resultTTL: .seconds(60))
        book.add(TaskRecord(id: "t", createdAt: 0, vms: [Self.vm("a")]))
        book.add(TaskRecord(id: "open", createdAt: 0, vms: [Self.vm("b")]))
        book.apply([Self.result("a", .running)], to: "t", nowMillis: 1000)
        #expect(book.document("t")?.expiresAt == 61_000)
        let early = book.expire(nowMillis: 60_999)
        #expect(early.isEmpty)
        #expect(book.document("t") != nil && book.document("t") != nil, "reads do not consume the result")
        let expired = book.expire(nowMillis: 61_000)
        #expect(expired == ["t"])
        #expect(book.document("t") == nil)
        #expect(book.document("open") != nil, "an unfinished task never expires")
    }

    @Test func failingMarksOnlyPendingVMs() {
        var book = TaskBook(resultTTL: .seconds(60))
        book.add(TaskRecord(id: "t", createdAt: 0, vms: [Self.vm("a"), Self.vm("b")]))
        book.apply([Self.result("a", .running)], to: "t", nowMillis: 1)
        let finished = book.fail(["a", "b"], in: "t", code: .unableToStartOnGroupManager, message: "gm gone", nowMillis: 2)
        #expect(finished)
        let vms = book.document("t")!.response.virtualMachineMetaData
        #expect(vms[0].status == .running)
        #expect(vms[1].status == .error && vms[1].errorCode == .unableToStartOnGroupManager && vms[1].errorMessage == "gm gone")
    }

    @Test func recentlyStartedNamesStayTakenUntilReported() {
        var book = TaskBook(resultTTL: .seconds(60))
        book.add(TaskRecord(id: "t", createdAt: 0, vms: [Self.vm("a"), Self.vm("b")]))
        book.apply([Self.result("a", .running), Self.result("b", .error)], to: "t", nowMillis: 5_000)
        #expect(Set(book.recentlyStarted(since: 4_000).keys) == ["a"])   // a failed VM frees its name at once
        #expect(book.recentlyStarted(since: 6_000).isEmpty)
    }
}
