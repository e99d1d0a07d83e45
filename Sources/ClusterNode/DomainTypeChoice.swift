import ClusterCore
import Foundation

/// The domain types a host runs, best first (a template written for another gets its type adapted), and why:
/// chosen once when a controller starts, from its `--accelerator` and what the machine shows of KVM.
struct DomainTypeChoice: Equatable {
    var types: [String]
    var reason: String

    /// What this machine shows of KVM. Read by `probe()`; the choice takes it as a value so it can be tested.
    struct KVMProbe: Equatable {
        /// `/dev/kvm` opens read-write.
        var deviceOpens: Bool
        /// The hardware KVM module loaded (`kvm_intel` or `kvm_amd`), if any.
        var hardwareModule: String?

        static func probe() -> KVMProbe {
            let descriptor = open("/dev/kvm", O_RDWR | O_CLOEXEC)
            if descriptor >= 0 { close(descriptor) }
            let module = ["kvm_intel", "kvm_amd"].first { FileManager.default.fileExists(atPath: "/sys/module/\($0)") }
            return KVMProbe(deviceOpens: descriptor >= 0, hardwareModule: module)
        }
    }

    /// `/dev/kvm` alone proves nothing: a nested, paravirtual KVM (kvm_pvm) opens fine and accepts `type='kvm'`
    /// domains, but boots no stock kernel. So `auto` takes KVM only with a hardware KVM module loaded as well.
    /// The probe runs only for `auto` on a non-test URI, and on this machine: a controller of a remote
    /// hypervisor should be given `--accelerator`.
    static func choose(uri: String, accelerator: LocalControllerSettings.Accelerator,
                       kvm: @autoclosure () -> KVMProbe = .probe()) -> DomainTypeChoice {
        if HypervisorURI.isTestDriver(uri) { return DomainTypeChoice(types: ["test"], reason: "test driver") }
        switch accelerator {
        case .kvm: return DomainTypeChoice(types: ["kvm", "qemu"], reason: "kvm (configured)")
        case .tcg: return DomainTypeChoice(types: ["qemu"], reason: "tcg (configured)")
        case .auto:
            let probe = kvm()
            switch (probe.deviceOpens, probe.hardwareModule) {
            case (true, let module?):
                return DomainTypeChoice(types: ["kvm", "qemu"], reason: "kvm (/dev/kvm opens read-write, \(module) is loaded)")
            case (true, nil):
                return DomainTypeChoice(types: ["qemu"], reason: "tcg (/dev/kvm opens, but neither kvm_intel nor kvm_amd is loaded)")
            case (false, _):
                return DomainTypeChoice(types: ["qemu"], reason: "tcg (/dev/kvm cannot be opened read-write)")
            }
        }
    }
}
