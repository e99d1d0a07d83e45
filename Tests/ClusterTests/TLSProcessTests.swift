import AsyncHTTPClient
import ClusterCore
import ClusterTestKit
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import Testing

extension ProcessTests {
/// TLS on every node's HTTP API, with a CA and a node certificate made by openssl for this test: the nodes find
/// each other over HTTPS, clients that trust the CA get answers, plain HTTP and clients that do not trust it get
/// none, and the `doze` CLI verifies with `--ca-file`.
@Suite(.serialized) struct TLSProcessTests {
    /// `ca.pem`, `node.pem`, `node.key` in `dir` (a certificate for 127.0.0.1 signed by a fresh CA), and a second
    /// CA, `other-ca.pem`, that signed nothing here.
    static func makeCertificates(in dir: TemporaryDirectory) throws {
        let script = """
            set -e
            cd '\(dir.path)'
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj '/CN=doze test CA' 2>/dev/null
            openssl req -x509 -newkey rsa:2048 -nodes -keyout other-ca.key -out other-ca.pem -days 2 -subj '/CN=another CA' 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -keyout node.key -out node.csr -subj '/CN=127.0.0.1' 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nkeyUsage=digitalSignature,keyEncipherment\\nextendedKeyUsage=serverAuth,clientAuth\\n' > ext.cnf
            openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out node.pem -days 2 -extfile ext.cnf 2>/dev/null
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        try process.run()
        process.waitUntilExit()
        #expect(process.terminationStatus == 0, "openssl made the test certificates")
    }

    static func client(trusting ca: String?) throws -> HTTPClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        if let ca { tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMFile(ca)) }
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: HTTPClient.Configuration(tlsConfiguration: tls))
    }

    static func get(_ client: HTTPClient, _ url: String, token: String? = nil) async throws -> (Int, String) {
        var request = HTTPClientRequest(url: url)
        if let token { request.headers.add(name: "Authorization", value: "Bearer \(token)") }
        let response = try await client.execute(request, timeout: .seconds(10))
        return (Int(response.status.code), String(buffer: try await response.body.collect(upTo: 1 << 22)))
    }

    @Test func everyNodeSpeaksHTTPSAndClientsVerify() async throws {
        let c = try TestCluster(prefix: "doze-tls")
        defer { c.stop() }
        try Self.makeCertificates(in: c.dir)
        let ca = c.dir.file("ca.pem")
        c.nodeArguments = ["--tls-cert", c.dir.file("node.pem"), "--tls-key", c.dir.file("node.key"), "--tls-ca", ca,
                           "--auth", "tokens", "--admin-token-file", c.dir.file("admin.token")]
        try await c.startBootstrap()
        for gm in ["gm1", "gm2"] { try c.startManager(gm) }
        for lc in ["lc1", "lc2"] { try c.startController(lc) }
        try await eventually(.seconds(20), "the admin token made") { FileManager.default.fileExists(atPath: c.dir.file("admin.token")) }
        let admin = try String(contentsOfFile: c.dir.file("admin.token"), encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)

        let trusting = try Self.client(trusting: ca)
        let stranger = try Self.client(trusting: c.dir.file("other-ca.pem"))
        // The hierarchy forms over HTTPS: both controllers joined (managers and controllers call each other).
        try await eventually(.seconds(20), "both controllers listed over HTTPS") {
            let (status, body) = try await Self.get(trusting, "https://\(c.bootstrap)/v1/hosts", token: admin)
            return status == 200 && (try? JSONDecoder().decode(HostList.self, from: Data(body.utf8)))?.hosts.count == 2
        }
        #expect(try await Self.get(trusting, "https://\(c.bootstrap)/health").0 == 200)
        #expect(try await Self.get(trusting, "https://\(c.bootstrap)/v1/vms").0 == 401)

        // A client that does not trust the cluster's CA, and plain HTTP, get no answer.
        await #expect(throws: (any Error).self) { _ = try await Self.get(stranger, "https://\(c.bootstrap)/health") }
        await #expect(throws: (any Error).self) { _ = try await Self.get(HTTPClient.shared, "http://\(c.bootstrap)/health") }

        // The CLI: verifies with --ca-file (a submission runs end to end over HTTPS), and without it cannot talk.
        let dir = c.dir
        try "<domain type='kvm'><name>secure</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>"
            .write(toFile: dir.file("secure.xml"), atomically: true, encoding: .utf8)
        let submitted = try await ClientProcessTests.doze(["submit", dir.file("secure.xml"), "--wait", "--bootstrap", c.bootstrap, "--ca-file", ca,
                                                           "--token", admin], in: dir)
        #expect(submitted.status == 0 && submitted.stdout.contains("secure  RUNNING"), "\(submitted)")
        let plain = try await ClientProcessTests.doze(["vm", "list", "--bootstrap", c.bootstrap, "--token", admin], in: dir)
        #expect(plain.status != 0, "\(plain)")
        let wrongCA = try await ClientProcessTests.doze(["vm", "list", "--bootstrap", c.bootstrap, "--token", admin,
                                                         "--ca-file", dir.file("other-ca.pem")], in: dir)
        #expect(wrongCA.status != 0 && !wrongCA.stdout.contains("secure"), "\(wrongCA)")
        try await trusting.shutdown()
        try await stranger.shutdown()
    }
}
}
