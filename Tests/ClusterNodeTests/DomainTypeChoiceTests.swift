@testable import ClusterNode
import Testing

@Suite struct DomainTypeChoiceTests {
    static func notProbed() -> DomainTypeChoice.KVMProbe {
        Issue.record("KVM was probed although the choice did not need it")
        return .init(deviceOpens: false, hardwareModule: nil)
    }

    @Test func aTestDriverHostRunsTestDomainsWhateverIsConfigured() {
        for accelerator in LocalControllerSettings.Accelerator.allCases {
            let choice = DomainTypeChoice.choose(uri: "test:///tmp/host.xml", accelerator: accelerator, kvm: Self.notProbed())
            #expect(choice == DomainTypeChoice(types: ["test"], reason: "test driver"))
        }
    }

    @Test func aConfiguredAcceleratorIsTakenWithoutProbing() {
        #expect(DomainTypeChoice.choose(uri: "qemu:///system", accelerator: .kvm, kvm: Self.notProbed()).types == ["kvm", "qemu"])
        #expect(DomainTypeChoice.choose(uri: "qemu:///system", accelerator: .tcg, kvm: Self.notProbed()).types == ["qemu"])
    }

    @Test func autoTakesKVMOnlyWithTheDeviceAndAHardwareModule() {
        let hardware = DomainTypeChoice.choose(uri: "qemu:///system", accelerator: .auto,
                                               kvm: .init(deviceOpens: true, hardwareModule: "kvm_amd"))
        #expect(hardware == DomainTypeChoice(types: ["kvm", "qemu"], reason: "kvm (/dev/kvm opens read-write, kvm_amd is loaded)"))
        // A paravirtual KVM opens but boots no stock kernel.
        let paravirtual = DomainTypeChoice.choose(uri: "qemu:///system", accelerator: .auto,
                                                  kvm: .init(deviceOpens: true, hardwareModule: nil))
        #expect(paravirtual.types == ["qemu"])
        #expect(paravirtual.reason == "tcg (/dev/kvm opens, but neither kvm_intel nor kvm_amd is loaded)")
        let noDevice = DomainTypeChoice.choose(uri: "qemu:///system", accelerator: .auto,
                                               kvm: .init(deviceOpens: false, hardwareModule: "kvm_intel"))
        #expect(noDevice == DomainTypeChoice(types: ["qemu"], reason: "tcg (/dev/kvm cannot be opened read-write)"))
    }
}
