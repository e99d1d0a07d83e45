import Foundation

/// Sends raw bytes over one TCP connection on loopback and returns everything read until the peer closes or
/// `timeout` passes: for requests an HTTP client library would refuse to send.
public func rawTCPExchange(port: Int, _ request: String, timeout: TimeInterval = 3) throws -> String {
    let fd = try connectLoopback(port: port)
    defer { close(fd) }
    var limit = timeval(tv_sec: Int(timeout), tv_usec: 0)
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    let bytes = Array(request.utf8)
    _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    var received: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let bytesRead = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if bytesRead <= 0 { break }
        received += chunk[0..<bytesRead]
    }
    return String(decoding: received, as: UTF8.self)
}

/// A TCP socket connected to 127.0.0.1:`port`; the caller closes it.
func connectLoopback(port: Int) throws -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EMFILE) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    let connected = withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    }
    guard connected == 0 else {
        let error = POSIXError(POSIXErrorCode(rawValue: errno) ?? .ECONNREFUSED)
        close(fd)
        throw error
    }
    return fd
}

/// One TCP connection to a loopback port that a test holds open, sends partial requests on, and reads from.
public final class HeldConnection: @unchecked Sendable {
    public let fd: Int32

    public init(port: Int) throws {
        fd = try connectLoopback(port: port)
    }

    public func send(_ text: String) {
        let bytes = Array(text.utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    /// Everything the peer sends until it closes (`closed`) or `timeout` passes without its closing.
    public func read(timeout: TimeInterval) -> (text: String, closed: Bool) {
        let deadline = Date().addingTimeInterval(timeout)
        var received: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let left = deadline.timeIntervalSinceNow
            guard left > 0 else { return (String(decoding: received, as: UTF8.self), false) }
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            guard poll(&poller, 1, Int32(max(1, left * 1000))) > 0 else { continue }
            let bytesRead = chunk.withUnsafeMutableBytes { Foundation.read(fd, $0.baseAddress, $0.count) }
            if bytesRead <= 0 { return (String(decoding: received, as: UTF8.self), true) }
            received += chunk[0..<bytesRead]
        }
    }

    deinit { close(fd) }
}
