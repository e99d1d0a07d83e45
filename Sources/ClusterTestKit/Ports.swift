import Foundation

/// A loopback port held for a test and never served: TCP and UDP sockets are bound to it but the TCP one never
/// listens, so connections to it are refused and datagrams to it go nowhere, whatever else runs on the machine
/// (a fixed "unused" port such as 9 may be some machine's discard service). Closed when released or deinited.
public final class ClosedPort: @unchecked Sendable {
    // @unchecked: the descriptors are set once in init and only closed after.
    public let port: Int
    private let descriptors: [Int32]

    public var address: String { "127.0.0.1:\(port)" }

    public init() throws {
        for _ in 0..<50 {
            let tcp = try Self.bind(type: Int32(SOCK_STREAM.rawValue), port: 0)
            let port = try Self.boundPort(tcp)
            if let udp = try? Self.bind(type: Int32(SOCK_DGRAM.rawValue), port: port) {
                self.port = port
                self.descriptors = [tcp, udp]
                return
            }
            close(tcp)
        }
        throw POSIXError(.EADDRINUSE)
    }

    deinit { for fd in descriptors { close(fd) } }

    static func bind(type: Int32, port: Int) throws -> Int32 {
        let fd = socket(AF_INET, type, 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Foundation.bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard bound else {
            close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        return fd
    }

    static func boundPort(_ fd: Int32) throws -> Int {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) == 0 }
        }
        guard named else { throw POSIXError(.EIO) }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// Waits, if local midnight is less than `margin` away (before or after), until it is not: a test that samples
/// metrics and then asks for "today" must not see the day change in between. At most `2 * margin`.
public func awayFromLocalMidnight(margin: Duration = .seconds(30)) async throws {
    let marginSeconds = Double(margin.components.seconds)
    let now = Date()
    let calendar = Calendar.current
    let sinceMidnight = now.timeIntervalSince(calendar.startOfDay(for: now))
    guard let tomorrow = calendar.date(byAdding: .day, value: 1, to: calendar.startOfDay(for: now)) else { return }
    let untilMidnight = tomorrow.timeIntervalSince(now)
    if untilMidnight < marginSeconds {
        try await Task.sleep(for: .seconds(untilMidnight + marginSeconds))
    } else if sinceMidnight < marginSeconds {
        try await Task.sleep(for: .seconds(marginSeconds - sinceMidnight))
    }
}
