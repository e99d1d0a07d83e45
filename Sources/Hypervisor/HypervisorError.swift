/// The one error type of the hypervisor layer: a code the layers above can switch on, and the
/// hypervisor's own message (libvirt's words, never paraphrased).
public struct HypervisorError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Code: Sendable, Equatable {
        case notFound            // no such domain, pool, volume, snapshot
        case alreadyExists
        case invalidSpec         // XML or argument rejected
        case invalidState        // operation not valid in the object's current state
        case unsupported         // the driver lacks the call
        case connection          // cannot reach the hypervisor
        case backend(Int32)      // any other libvirt error number
    }

    public var code: Code
    public var message: String

    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code): \(message)" }
}
