import ClusterAPI
import ClusterCore
import ClusterTransport
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import NIOSSL

/// `--tls-cert`, `--tls-key`, `--tls-ca`: the node's HTTP API over TLS, and its calls to other nodes over HTTPS
/// verified against the cluster's CA. All of a cluster's nodes use TLS, or none.
public struct HTTPTLSSettings: Sendable {
    public var certificateFile: String
    public var keyFile: String
    /// The CA the other nodes' certificates are checked against.
    public var caFile: String

    public init(certificateFile: String, keyFile: String, caFile: String) {
        self.certificateFile = certificateFile
        self.keyFile = keyFile
        self.caFile = caFile
    }
}

enum NodeTLS {
    /// The node's HTTP server: the lenient HTTP/1 channel, inside TLS when the cluster has it. Also points this
    /// process's calls to other nodes at HTTPS.
    static func server(limits: HTTPServerLimits, tls: HTTPTLSSettings?) throws -> HTTPServerBuilder {
        guard let tls else { return .lenientHTTP1(limits: limits) }
        do {
            try PeerClient.useTLS(caFile: tls.caFile)
            let chain = try NIOSSLCertificate.fromPEMFile(tls.certificateFile).map { NIOSSLCertificateSource.certificate($0) }
            let key = try NIOSSLPrivateKey(file: tls.keyFile, format: .pem)
            let configuration = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
            return try .tls(.lenientHTTP1(limits: limits), tlsConfiguration: configuration)
        } catch {
            throw DozeError(.badRequest, "TLS: cannot use \(tls.certificateFile) / \(tls.keyFile) / CA \(tls.caFile): \(error)")
        }
    }
}
