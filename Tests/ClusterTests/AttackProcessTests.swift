import ClusterTestKit
import Foundation
import NIOHTTP1
import Testing

extension ProcessTests {
/// A hostile client against the real `doze lc` binary on loopback (issue 14): oversized heads and bodies, a crowd
/// of slow clients, malformed JSON, and XML built to make a parser fetch files or expand entities. Each is refused
/// with a clear 4xx and a closed connection, and the node goes on serving everyone else.
@Suite(.serialized) struct AttackProcessTests {
    static func start(_ dir: TemporaryDirectory, _ arguments: [String] = []) async throws -> (LocalControllerProcessTests.Node, Int) {
        try await ConnectionGuardProcessTests.start(dir, arguments)
    }

    static func status(_ response: String) -> String { ConnectionGuardProcessTests.status(response) }

    /// One raw request on its own connection: what came back, and whether the node closed the connection.
    static func exchange(_ port: Int, _ request: String, timeout: TimeInterval = 10) throws -> (text: String, closed: Bool) {
        let connection = try HeldConnection(port: port)
        connection.send(request)
        return connection.read(timeout: timeout)
    }

    static func expectAlive(_ node: LocalControllerProcessTests.Node) async throws {
        let (code, body) = try await LocalControllerProcessTests.request(.GET, node.base + "/health")
        #expect(code == 200 && body == "ok", "the node stopped answering: \(code) \(body)")
    }

    static func residentKiB(_ pid: Int32) -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }) else { return nil }
        return line.split(separator: " ").dropFirst().first.flatMap { Int($0) }
    }

    @Test func oversizedHeadsGet431Or414AndTheConnectionCloses() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (node, port) = try await Self.start(dir)
        defer { node.process.kill9() }
        let cases: [(String, String, String)] = [
            ("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: \(String(repeating: "a", count: 100_000))\r\n\r\n",
             "HTTP/1.1 431 Request Header Fields Too Large", "headersTooLarge"),
            ("GET /health HTTP/1.1\r\nHost: x\r\n" + (0..<20_000).map { "X-\($0): y\r\n" }.joined() + "\r\n",
             "HTTP/1.1 431 Request Header Fields Too Large", "headersTooLarge"),
            ("GET /health?\(String(repeating: "a", count: 200_000)) HTTP/1.1\r\nHost: x\r\n\r\n", "HTTP/1.1 414 URI Too Long", "uriTooLong"),
        ]
        for (request, status, code) in cases {
            let (text, closed) = try Self.exchange(port, request)
            #expect(Self.status(text) == status, "\(text.prefix(300))")
            #expect(text.contains(#"{"error":{"code":"\#(code)""#), "\(text.prefix(300))")
            #expect(closed, "the connection stayed open after a \(status)")
        }
        // Just under the limit is an ordinary request.
        let (text, _) = try Self.exchange(port, "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Big: \(String(repeating: "a", count: 60_000))\r\n\r\n")
        #expect(Self.status(text) == "HTTP/1.1 200 OK", "\(text.prefix(300))")
        try await Self.expectAlive(node)
    }

    @Test func oversizedBodiesGet413AndTheConnectionCloses() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (node, port) = try await Self.start(dir)   // the controller's default body limit: 1 MiB
        defer { node.process.kill9() }
        // Declared too large: answered at the head, not after reading 100 MB.
        let declared = try HeldConnection(port: port)
        declared.send("POST /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\n<domain>")
        let (text, closed) = declared.read(timeout: 10)
        #expect(Self.status(text) == "HTTP/1.1 413 Payload Too Large", "\(text.prefix(300))")
        #expect(text.contains(#""code":"payloadTooLarge""#) && text.contains("Connection: close"), "\(text.prefix(400))")
        #expect(closed, "the node kept draining a body it had refused")
        // Chunked, so no length to judge by: refused once the limit is passed, with the same JSON error.
        let chunk = String(repeating: "a", count: 1 << 16)
        let chunked = try HeldConnection(port: port)
        chunked.send("POST /localcontroller?startVirtualMachines HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in 0..<20 { chunked.send(String(chunk.utf8.count, radix: 16) + "\r\n" + chunk + "\r\n") }
        let (chunkedText, chunkedClosed) = chunked.read(timeout: 10)
        #expect(Self.status(chunkedText) == "HTTP/1.1 413 Payload Too Large", "\(chunkedText.prefix(300))")
        #expect(chunkedText.contains(#""code":"payloadTooLarge""#), "\(chunkedText.prefix(400))")
        #expect(chunkedClosed)
        try await Self.expectAlive(node)
    }

    @Test func ambiguousFramingIsA400AndTheConnectionCloses() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (node, port) = try await Self.start(dir)
        defer { node.process.kill9() }
        // Each would let a proxy and this node split the bytes into different requests (request smuggling).
        let requests = [
            "POST /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n",
            "POST /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\n<a/>",
            "POST /vm HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n<a/>",
            "POST /vm HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n<a/>\r\n0\r\n\r\n",
            String(decoding: (0..<256).map { UInt8($0) }, as: UTF8.self),
        ]
        for request in requests {
            let (text, closed) = try Self.exchange(port, request)
            #expect(Self.status(text) == "HTTP/1.1 400 Bad Request" && closed, "\(request.prefix(60).debugDescription) → \(text.prefix(200))")
            #expect(!text.contains("HTTP/1.1 200"), "a smuggled request was answered: \(text.prefix(300))")
        }
        try await Self.expectAlive(node)
    }

    @Test func hundredsOfSlowClientsDoNotDelayANormalRequest() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (node, port) = try await Self.start(dir, ["--read-timeout", "5"])
        defer { node.process.kill9() }
        // Half a request line, half a head, a head with half its body: each held open, never finished.
        let partial = ["GET /hypervisor/usa", "POST /vm HTTP/1.1\r\nHost: x\r\nContent-Le",
                       "POST /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n<domain type='kvm'>"]
        let held = try (0..<300).map { i in
            let connection = try HeldConnection(port: port)
            connection.send(partial[i % partial.count])
            return connection
        }
        let clock = ContinuousClock()
        let started = clock.now
        let (code, _) = try await LocalControllerProcessTests.request(.GET, node.base + "/hypervisor/usages")
        let took = started.duration(to: clock.now)
        #expect(code == 200)
        #expect(took < .seconds(1), "a normal request took \(took) behind 300 slow clients")
        // The slow ones are cut off by the read timeout, not left holding their descriptors.
        for connection in held.prefix(30) {
            let (text, closed) = connection.read(timeout: 15)
            #expect(closed && Self.status(text) == "HTTP/1.1 408 Request Timeout", "\(text.prefix(200))")
        }
        withExtendedLifetime(held) {}
    }

    @Test func malformedJSONIsA400() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (node, _) = try await Self.start(dir)
        defer { node.process.kill9() }
        let bodies = [String(repeating: "[", count: 100_000), String(repeating: #"{"a":"#, count: 50_000), #"{"virtualMachineMetaData":"#,
                      "{\"virtualMachineMetaData\":[{\"ipAddress\":\"a\u{0}b\"}]}", #"{"virtualMachineMetaData":[{"requestedCapacity":[1e999999]}]}"#,
                      "not json at all", "{}}"]
        for body in bodies {
            let (code, answer) = try await LocalControllerProcessTests.request(.POST, node.base + "/localcontroller?startVirtualMachines", body)
            #expect(code == 400 && answer.contains(#""code":"badRequest""#), "\(body.prefix(40)) → \(code) \(answer.prefix(200))")
        }
        let (code, answer) = try await LocalControllerProcessTests.request(.PUT, node.base + "/hypervisor/quota", #"{"quota":{"cpu_max":"#)
        #expect(code == 400, "\(answer)")
        try await Self.expectAlive(node)
    }

    @Test func entityTricksInDomainXMLAreRefusedAndNeverReachLibvirt() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (node, _) = try await Self.start(dir)
        defer { node.process.kill9() }
        let domain = "<domain type='kvm'><memory unit='MiB'>64</memory><os><type>hvm</type></os>"
        let laughs = "<!DOCTYPE lolz [<!ENTITY lol 'lol'>" + (1...9).map { level in
            "<!ENTITY lol\(level) '" + String(repeating: "&lol\(level == 1 ? "" : String(level - 1));", count: 10) + "'>"
        }.joined() + "]>"
        let attacks: [(name: String, xml: String, says: String)] = [
            ("laughs", laughs + domain + "<name>laughs</name><description>&lol9;</description></domain>", "DOCTYPE is not accepted"),
            ("xxe", "<!DOCTYPE d [<!ENTITY x SYSTEM 'file:///etc/passwd'>]>" + domain + "<name>xxe</name><description>&x;</description></domain>",
             "DOCTYPE is not accepted"),
            ("param", "<!DOCTYPE d [<!ENTITY % p SYSTEM 'http://127.0.0.1:9/x.dtd'> %p;]>" + domain + "<name>param</name></domain>",
             "DOCTYPE is not accepted"),
            ("undeclared", domain + "<name>undeclared</name><description>&x;</description></domain>", "unknown entity &x;"),
            ("nul", domain + "<name>nul</name><description>&#0;</description></domain>", "unknown entity &#0;"),
            // UTF-7 hides a disk on /etc/shadow from a UTF-8 reader; libvirt would decode it.
            ("utf7", "<?xml version='1.0' encoding='UTF-7'?>" + domain + "<name>utf7</name><devices>+ADw-disk type='file' device='disk'+AD4-"
                + "+ADw-source file='/etc/shadow'/+AD4-+ADw-target dev='vda'/+AD4-+ADw-/disk+AD4-</devices></domain>", "encoding 'UTF-7'"),
            ("utf16", "<?xml version=\"1.0\" encoding=\"UTF-16\"?>" + domain + "<name>utf16</name></domain>", "only UTF-8 is accepted"),
        ]
        let before = Self.residentKiB(node.process.pid)
        for _ in 0..<20 {   // repeated: memory must stay bounded, not grow with each expansion refused
            for attack in attacks {
                let (code, answer) = try await LocalControllerProcessTests.request(.POST, node.base + "/vm", attack.xml)
                #expect(code == 400 && answer.contains(attack.says), "\(attack.name) → \(code) \(answer.prefix(300))")
            }
        }
        if let before, let after = Self.residentKiB(node.process.pid) {
            #expect(after - before < 64 << 10, "the node grew from \(before) KiB to \(after) KiB refusing entity tricks")
        }
        // libvirt never saw one: no such domain was defined.
        let (_, list) = try await LocalControllerProcessTests.request(.GET, node.base + "/vms")
        for attack in attacks { #expect(!list.contains("\"\(attack.name)\""), "\(attack.name) reached libvirt: \(list.prefix(300))") }
        // A UTF-8 declaration is fine.
        let (code, answer) = try await LocalControllerProcessTests.request(.POST, node.base + "/vm",
                                                                          "<?xml version='1.0' encoding='utf-8'?>" + domain + "<name>plain</name></domain>")
        #expect(code == 201, "\(answer.prefix(300))")
        try await Self.expectAlive(node)
    }
}
}
