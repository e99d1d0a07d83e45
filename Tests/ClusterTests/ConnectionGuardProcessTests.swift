import ClusterTestKit
import Foundation
import NIOHTTP1
import Testing

extension ProcessTests {
/// The HTTP server's guards (issue 17 C) on the real `doze lc` binary: a request that is never finished gets a
/// 408 and is closed, an idle kept-alive connection is closed, connections beyond the cap get a 503, the
/// open-file limit is raised, and HEAD answers as GET without a body — while everyone else is answered.
@Suite(.serialized) struct ConnectionGuardProcessTests {
    static func start(_ dir: TemporaryDirectory, _ arguments: [String]) async throws -> (LocalControllerProcessTests.Node, Int) {
        try TestHostFile.write(to: dir.file("host.xml"), cpus: 4, memoryMiB: 4096)
        let node = try await LocalControllerProcessTests.startLC(hostFile: dir.file("host.xml"),
                                                                  state: dir.file("state"), log: dir.file("lc.log"),
                                                                  extraArguments: arguments)
        let port = try #require(node.base.split(separator: ":").last.flatMap { Int($0) })
        return (node, port)
    }

    static func status(_ response: String) -> String {
        response.split(separator: "\r\n", maxSplits: 1).first.map(String.init) ?? ""
    }

    @Test func unfinishedRequestsGet408AndCloseWhileOthersAreServed() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (node, port) = try await Self.start(dir, ["--read-timeout", "1", "--idle-timeout", "60"])
        defer { node.process.kill9() }
        // Half a head, a head and half a body, a body that stops: each held open by a client that never finishes.
        let partial = ["GET /hypervisor/usa", "POST /vm HTTP/1.1\r\nHost: x\r\nContent-Le",
                       "POST /vm HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n<domain type='kvm'>"]
        let held = try (0..<60).map { i in
            let c = try HeldConnection(port: port)
            c.send(partial[i % partial.count])
            return c
        }
        // Meanwhile everyone else is answered.
        let (code, _) = try await LocalControllerProcessTests.request(.GET, node.base + "/hypervisor/usages")
        #expect(code == 200)
        for c in held {
            let (text, closed) = c.read(timeout: 10)
            #expect(closed, "a held connection was not closed within 10 s")
            #expect(Self.status(text) == "HTTP/1.1 408 Request Timeout", "\(text)")
            #expect(text.contains("not received whole within"))
        }
    }

    @Test func idleKeptAliveConnectionsAreClosed() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (node, port) = try await Self.start(dir, ["--idle-timeout", "1"])
        defer { node.process.kill9() }
        let c = try HeldConnection(port: port)
        c.send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        let (text, closed) = c.read(timeout: 10)
        #expect(Self.status(text) == "HTTP/1.1 200 OK")
        #expect(closed, "the kept-alive connection was still open 10 s after its answer")
        let silent = try HeldConnection(port: port)
        #expect(silent.read(timeout: 10) == ("", true), "a connection that never sent a byte stayed open")
    }

    @Test func connectionsBeyondTheCapGet503AndSlotsComeBack() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (node, port) = try await Self.start(dir, ["--max-connections", "20", "--idle-timeout", "60"])
        defer { node.process.kill9() }
        var held = try (0..<20).map { _ in try HeldConnection(port: port) }
        try await Task.sleep(for: .milliseconds(300))   // accepted and counted
        let refused = try HeldConnection(port: port)
        let (text, closed) = refused.read(timeout: 10)
        #expect(Self.status(text) == "HTTP/1.1 503 Service Unavailable", "\(text)")
        #expect(text.contains("20 connections open, its limit") && closed)
        held.removeAll()   // the clients go away: their slots are free again
        try await eventually(.seconds(10), "a slot to come back") {
            (try? await LocalControllerProcessTests.request(.GET, node.base + "/health").0) == 200
        }
    }

    @Test func openFileLimitIsRaisedToTheHardLimit() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (node, _) = try await Self.start(dir, [])
        defer { node.process.kill9() }
        let limits = try String(contentsOfFile: "/proc/\(node.process.pid)/limits", encoding: .utf8)
        let line = try #require(limits.split(separator: "\n").first { $0.hasPrefix("Max open files") })
        let numbers = line.split(separator: " ").compactMap { Int($0) }
        #expect(numbers.count == 2 && numbers[0] == numbers[1], "\(line)")
    }

    @Test func headAnswersAsGetWithoutABody() async throws {
        let dir = try TemporaryDirectory()
        defer { dir.remove() }
        let (node, port) = try await Self.start(dir, [])
        defer { node.process.kill9() }
        let (_, body) = try await LocalControllerProcessTests.request(.GET, node.base + "/hypervisor/usages")
        let c = try HeldConnection(port: port)
        c.send("HEAD /hypervisor/usages HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        let (text, _) = c.read(timeout: 10)
        let answers = text.components(separatedBy: "HTTP/1.1 ")
        #expect(answers.count == 3, "\(text)")   // "", the HEAD's answer, the GET's
        let head = answers.count > 1 ? answers[1] : ""
        #expect(head.hasPrefix("200 OK") && head.contains("Content-Length: \(body.utf8.count)"), "\(head)")
        #expect(head.hasSuffix("\r\n\r\n"), "HEAD's answer carried a body: \(head)")
        #expect(answers.last?.hasSuffix("ok") == true)
        let unknown = try rawTCPExchange(port: port, "HEAD /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        #expect(Self.status(unknown) == "HTTP/1.1 404 Not Found" && unknown.hasSuffix("\r\n\r\n"))
    }
}
}
