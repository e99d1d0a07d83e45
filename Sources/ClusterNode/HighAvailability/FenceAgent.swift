import ClusterCore
import Foundation
import Logging

/// How the leader fences a dead host before restarting its HA VMs elsewhere (`--fence none` or
/// `--fence-command PATH`).
public enum FenceAgent: Sendable, Equatable {
    /// Never fence, so never restart elsewhere: a dead host's VMs stay UNKNOWN until it comes back.
    case none
    /// Run this program with the host's id as its argument (and in the environment, with its address): exit
    /// status 0 means the host is off. Anything else, or no exit within the timeout, is a failure.
    case command(String)

    /// Refuses a command that is not an executable file now, at startup, rather than at the first dead host.
    public func validated() throws(DozeError) -> FenceAgent {
        guard case .command(let path) = self else { return self }
        guard path.hasPrefix("/") else { throw DozeError(.badRequest, "--fence-command must be an absolute path, got '\(path)'") }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw DozeError(.badRequest, "--fence-command \(path): no such file")
        }
        guard FileManager.default.isExecutableFile(atPath: path) else {
            throw DozeError(.badRequest, "--fence-command \(path) is not executable")
        }
        return self
    }
}

/// VM high availability on the leader: the fence agent and how long one fencing may take.
public struct HighAvailabilitySettings: Sendable {
    public var fence: FenceAgent = .none
    /// A fence command still running after this long is killed and counts as failed.
    public var fenceTimeout: Duration = .seconds(30)
    public init() {}
}

/// One run of a fence command. The host's id is the one argument; `DOZE_FENCE_HOST_ID`, `DOZE_FENCE_HOST_ADDRESS`
/// (the controller's control host) and `DOZE_FENCE_HOST_PORT` carry the same and more. Output goes to a
/// temporary file, not a pipe: a fence script that leaves a background process behind cannot hold us up.
struct FenceRun {
    struct Outcome: Sendable {
        var fenced: Bool
        /// Why not, when not fenced.
        var error: String?
        var output: String
    }

    static func run(_ path: String, host: NodeID, address: Endpoint?, timeout: Duration) async -> Outcome {
        var environment = ["DOZE_FENCE_HOST_ID": host]
        if let address {
            environment["DOZE_FENCE_HOST_ADDRESS"] = address.host
            environment["DOZE_FENCE_HOST_PORT"] = "\(address.port)"
        }
        let outcome = await AgentCommand.run(path, [host], environment: environment, what: path, timeout: timeout)
        return Outcome(fenced: outcome.succeeded, error: outcome.error, output: outcome.output)
    }
}
