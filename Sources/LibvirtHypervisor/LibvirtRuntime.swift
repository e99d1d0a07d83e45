import CLibvirt
import Foundation
import Hypervisor

enum CLibvirtShim {
    static func setThreadName(_ name: UnsafePointer<CChar>) { vshim_set_thread_name(name) }
}

/// Process-wide libvirt setup, done once before the first connection: silence libvirt's stderr printer,
/// register the default event loop implementation and run it on its own thread (libvirt.md §6).
enum LibvirtRuntime {
    static let started: Void = {
        _ = virInitialize()
        vshim_install_quiet_error_handler()
        if virEventRegisterDefaultImpl() < 0 {
            // Without the loop, events and remote keepalives do not work; connections still do.
            virResetLastError()
            return
        }
        let thread = Thread {
            "libvirt-events".withCString { vshim_set_thread_name($0) }
            while true {
                if virEventRunDefaultImpl() < 0 { virResetLastError() }
            }
        }
        thread.name = "libvirt-events"
        thread.start()
    }()

    static func ensureStarted() { _ = started }
}

/// Reads libvirt's last error on this thread and maps it to a `HypervisorError`.
/// Must be called in the same synchronous stretch as the failing call (the error slot is per thread).
func lastError(_ what: String) -> HypervisorError {
    guard let error = virGetLastError() else {
        return HypervisorError(.backend(-1), "\(what) failed without a libvirt error")
    }
    defer { virResetLastError() }
    let code = error.pointee.code
    // libvirt's own words, prefixed with what was being done ("Domain not found" alone names nothing).
    let message = error.pointee.message.map { String(cString: $0) } ?? "failed"
    return HypervisorError(mapCode(code), "\(what): \(truncatedEcho(message))")
}

/// The longest libvirt message passed on whole. libvirt's XML errors quote the offending input (its "Excessive
/// depth" error quotes the whole document): an answer must not echo a client's megabyte back at it.
let maxEchoedMessage = 400

func truncatedEcho(_ message: String) -> String {
    guard message.utf8.count > maxEchoedMessage else { return message }
    var cut = message.utf8.prefix(maxEchoedMessage)
    while !cut.isEmpty, String(cut) == nil { cut = cut.dropLast() }   // never split a UTF-8 sequence
    return (String(cut) ?? "") + "… (\(message.utf8.count - cut.count) more bytes)"
}

func mapCode(_ code: Int32) -> HypervisorError.Code {
    func c(_ number: virErrorNumber) -> Int32 { Int32(number.rawValue) }
    switch code {
    case c(VIR_ERR_NO_DOMAIN), c(VIR_ERR_NO_STORAGE_POOL), c(VIR_ERR_NO_STORAGE_VOL),
         c(VIR_ERR_NO_DOMAIN_SNAPSHOT), c(VIR_ERR_NO_DOMAIN_METADATA):
        return .notFound
    case c(VIR_ERR_DOM_EXIST):
        return .alreadyExists
    case c(VIR_ERR_XML_ERROR), c(VIR_ERR_XML_DETAIL), c(VIR_ERR_INVALID_ARG), c(VIR_ERR_CONFIG_UNSUPPORTED),
         c(VIR_ERR_XML_INVALID_SCHEMA), c(VIR_ERR_INVALID_DOMAIN):
        return .invalidSpec
    case c(VIR_ERR_OPERATION_INVALID):
        return .invalidState
    case c(VIR_ERR_NO_SUPPORT), c(VIR_ERR_ARGUMENT_UNSUPPORTED):
        return .unsupported
    case c(VIR_ERR_SYSTEM_ERROR), c(VIR_ERR_NO_CONNECT), c(VIR_ERR_RPC), c(VIR_ERR_AUTH_FAILED):
        return .connection
    default:
        return .backend(code)
    }
}

@inline(__always)
func check(_ rc: Int32, _ what: String) throws(HypervisorError) {
    if rc < 0 { throw lastError(what) }
}

@inline(__always)
func check<T>(_ value: T?, _ what: String) throws(HypervisorError) -> T {
    guard let value else { throw lastError(what) }
    return value
}

/// Takes ownership of a malloc'ed C string from libvirt.
func takeString(_ cString: UnsafeMutablePointer<CChar>?) -> String? {
    guard let cString else { return nil }
    defer { free(cString) }
    return String(cString: cString)
}

func domainState(_ raw: UInt8) -> DomainState {
    switch Int32(raw) {
    case Int32(VIR_DOMAIN_RUNNING.rawValue): return .running
    case Int32(VIR_DOMAIN_BLOCKED.rawValue): return .blocked
    case Int32(VIR_DOMAIN_PAUSED.rawValue): return .paused
    case Int32(VIR_DOMAIN_SHUTDOWN.rawValue): return .shuttingDown
    case Int32(VIR_DOMAIN_SHUTOFF.rawValue): return .shutOff
    case Int32(VIR_DOMAIN_CRASHED.rawValue): return .crashed
    case Int32(VIR_DOMAIN_PMSUSPENDED.rawValue): return .suspendedToMemory
    default: return .noState
    }
}

/// Reads a fixed-size C char array (imported as a tuple) as a string.
func tupleString<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in
        let bytes = raw.prefix { $0 != 0 }
        return String(decoding: bytes, as: UTF8.self)
    }
}
