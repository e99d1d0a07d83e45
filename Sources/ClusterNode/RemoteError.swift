import ClusterCore
import ClusterTransport
import Foundation

/// A peer's JSON error (`{"error":{"code","message"}}`) back as the `DozeError` it was, so a local controller's
/// refusal reaches the client with its own words and kind; a peer that did not answer is `unavailable`.
func remoteError(_ error: any Error, _ what: String) -> DozeError {
    struct Body: Decodable {
        struct Detail: Decodable { var code: String; var message: String }
        var error: Detail
    }
    if let failure = error as? PeerClient.Failure, failure.status != nil,
       let body = try? JSONDecoder().decode(Body.self, from: Data(failure.message.utf8)) {
        return DozeError(DozeError.Kind(rawValue: body.error.code) ?? .unavailable, body.error.message)
    }
    return DozeError(.unavailable, "\(what): \(error)")
}
