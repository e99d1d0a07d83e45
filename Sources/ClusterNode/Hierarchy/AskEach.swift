import ClusterCore
import ClusterWire

/// Asks every target at once and returns the answers that came, by target id: how both group-manager roles fan a
/// view out to their managers or controllers. A target that does not answer (`ask` gives nil) is left out; each
/// call is bounded by the timeout `ask` gives it.
func askEach<Target: Sendable, Answer: Sendable>(_ targets: [Target], id: @escaping @Sendable (Target) -> NodeID,
                                                 _ ask: @escaping @Sendable (Target) async -> Answer?) async -> [NodeID: Answer] {
    await withTaskGroup(of: (NodeID, Answer?).self) { group in
        for target in targets { group.addTask { (id(target), await ask(target)) } }
        var answers: [NodeID: Answer] = [:]
        for await (target, answer) in group { answers[target] = answer }
        return answers
    }
}

extension VirtualMachineList {
    /// The VMs of several lists, by VM id.
    init(merging lists: some Sequence<[VirtualMachineMetaData]>) {
        self.init(virtualMachines: lists.flatMap { $0 }.sorted {
            $0.virtualMachineLocation.virtualMachineId < $1.virtualMachineLocation.virtualMachineId
        })
    }
}
