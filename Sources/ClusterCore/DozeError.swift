/// The one error every layer above the hypervisor speaks. The API maps `kind` to an HTTP status.
public struct DozeError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        case badRequest          // malformed input: JSON, XML, names, numbers
        case notFound            // unknown VM, pool, snapshot, file
        case conflict            // wrong state, duplicate name, non-empty pool
        case forbidden           // a path outside the allowed directories, or not this principal's to see or change
        case unauthorized        // no credentials where they are required, or a wrong or revoked token
        case quotaExceeded       // the host quota would be exceeded
        case payloadTooLarge
        case unsupported         // the hypervisor driver cannot do this
        case hypervisor          // the hypervisor refused; message carries libvirt's words
        case unavailable         // the hypervisor connection is gone
    }

    public var kind: Kind
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "\(kind.rawValue): \(message)" }
}
