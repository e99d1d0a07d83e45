import ClusterCore
import Foundation

/// HTTP GETs made from inside another network namespace, for `doze cluster up`'s health checks: the nodes of a
/// network-namespace topology listen on addresses that exist only inside the cluster's namespaces.
///
/// A fresh thread joins the namespace (`setns` moves only the calling thread), makes one blocking request with
/// socket timeouts, and ends; the rest of the process never leaves the root namespace.
enum NamespaceProbe {
    private typealias SetNS = @convention(c) (Int32, Int32) -> Int32
    private static let cloneNewNet: Int32 = 0x4000_0000

    /// Glibc declares `setns` only under _GNU_SOURCE, which Swift's Glibc module does not see.
    private static let setns: SetNS? = dlsym(nil, "setns").map { unsafeBitCast($0, to: SetNS.self) }

    /// True when `GET /health` answers 200 `ok` within `timeout`.
    static func healthy(netns: String, _ listen: String, timeout: Duration = .seconds(1)) async -> Bool {
        guard let endpoint = Endpoint(listen), let reply = await get(netns: netns, endpoint, "/health", timeout: timeout) else { return false }
        return reply.status == 200 && reply.body == "ok"
    }

    /// `netns` nil asks from this namespace (loopback members of a topology without `network:`).
    static func get(netns: String?, _ endpoint: Endpoint, _ path: String, timeout: Duration) async -> (status: Int, body: String)? {
        await withCheckedContinuation { continuation in
            let thread = Thread { continuation.resume(returning: blockingGet(netns: netns, endpoint, path, timeout: timeout)) }
            thread.start()
        }
    }

    private static func blockingGet(netns: String?, _ endpoint: Endpoint, _ path: String, timeout: Duration) -> (status: Int, body: String)? {
        guard let address = IPPool.parse(endpoint.host) else { return nil }
        if let netns {
            guard let setns else { return nil }
            let nsfd = open("/run/netns/\(netns)", O_RDONLY | O_CLOEXEC)
            guard nsfd >= 0 else { return nil }
            defer { close(nsfd) }
            guard setns(nsfd, cloneNewNet) == 0 else { return nil }
        }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        // A blocking connect honours SO_SNDTIMEO on Linux, so these bound the whole exchange.
        var tv = timeval(tv_sec: Int(timeout.components.seconds),
                         tv_usec: Int(timeout.components.attoseconds / 1_000_000_000_000))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var sin = sockaddr_in()
        sin.sin_family = sa_family_t(AF_INET)
        sin.sin_port = in_port_t(UInt16(endpoint.port).bigEndian)
        sin.sin_addr = in_addr(s_addr: address.bigEndian)
        let connected = withUnsafePointer(to: &sin) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { return nil }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: \(endpoint)\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else { return nil }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while response.count < 1 << 20 {
            let received = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if received <= 0 { break }
            response += buffer[..<received]
        }
        let text = String(decoding: response, as: UTF8.self)
        guard let head = text.range(of: "\r\n\r\n") else { return nil }
        let statusLine = text[..<head.lowerBound].split(separator: "\r\n").first ?? ""
        let parts = statusLine.split(separator: " ")
        guard parts.count >= 2, let status = Int(parts[1]) else { return nil }
        return (status, String(text[head.upperBound...]))
    }
}
