/// The id that ties one HTTP request's handling together across processes: the server side sets it for the
/// request's task (`RequestID.$current`), every log line made in that task carries it (a `Logger.MetadataProvider`
/// reads it), and `PeerClient` sends it on to the next node.
public enum RequestID {
    /// The header a request id travels in, in and out.
    public static let header = "X-Request-ID"

    /// The id of the request this task is handling, if any. Unstructured `Task {}`s started while handling
    /// inherit it, so work a request sets off in the background (a submission's dispatch) keeps its id.
    @TaskLocal public static var current: String?

    /// An incoming id is honoured only when it is short and plain, so a client cannot put arbitrary text
    /// (newlines, quotes, secrets of any length) into every log line and peer call.
    public static func sanitized(_ incoming: String?) -> String? {
        guard let incoming, (1...128).contains(incoming.utf8.count) else { return nil }
        let plain = incoming.utf8.allSatisfy { byte in
            (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
                || byte == 0x2D || byte == 0x5F || byte == 0x2E || byte == 0x3A
        }
        return plain ? incoming : nil
    }

    /// A fresh id: 16 hex digits (64 random bits), enough to grep one request out of a day of logs.
    public static func make() -> String {
        let hex = String(UInt64.random(in: .min ... .max), radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}
