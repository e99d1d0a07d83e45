import ClusterWire
import Synchronization

/// How this process's calls to other nodes authenticate: signed with the cluster secret (set once by the node
/// runtime), and, on the bootstrap, carrying the client's own token to the leader so the leader applies the
/// client's tenant rather than the bootstrap's node rights.
public enum NodeCredentials {
    private static let signerBox = Mutex<NodeSignature?>(nil)

    /// Every `PeerClient` call of this process is signed with `secret` from now on.
    public static func install(secret: String) {
        signerBox.withLock { $0 = NodeSignature(secret: secret) }
    }

    public static var signer: NodeSignature? { signerBox.withLock { $0 } }

    private static let clientBox = Mutex<String?>(nil)

    /// A client process (the `doze` CLI) sends this `Authorization` value on every call.
    public static var clientAuthorization: String? {
        get { clientBox.withLock { $0 } }
        set { clientBox.withLock { $0 = newValue } }
    }

    /// The client's `Authorization` value while a bootstrap forwards its request (set by the auth middleware).
    @TaskLocal public static var forwardedAuthorization: String?
}
