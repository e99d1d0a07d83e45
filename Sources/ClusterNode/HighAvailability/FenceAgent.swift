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
        let outputPath = NSTemporaryDirectory() + "doze-fence-\(UUID().uuidString).log"
        guard FileManager.default.createFile(atPath: outputPath, contents: nil), let output = FileHandle(forWritingAtPath: outputPath) else {
            return Outcome(fenced: false, error: "cannot create \(outputPath) for the fence command's output", output: "")
        }
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = [host]
        var environment = ProcessInfo.processInfo.environment
        environment["DOZE_FENCE_HOST_ID"] = host
        if let address {
            environment["DOZE_FENCE_HOST_ADDRESS"] = address.host
            environment["DOZE_FENCE_HOST_PORT"] = "\(address.port)"
        }
        process.environment = environment
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        let exited = AsyncStream<Int32>.makeStream()
        process.terminationHandler = { exited.continuation.yield($0.terminationStatus) }
        do { try process.run() } catch {
            try? output.close()
            return Outcome(fenced: false, error: "cannot run \(path): \(error.localizedDescription)", output: "")
        }
        let pid = process.processIdentifier
        let status: Int32? = await withTaskGroup(of: Int32?.self) { group in
            group.addTask { await exited.stream.first { _ in true } }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        if status == nil {
            // Timed out: TERM, then KILL after a moment, to the command and everything it started (a script's
            // `sleep` or `ipmitool` would otherwise live on); a late exit status is not trusted either way.
            // The command first, so a script does not go on to its next line when its child dies.
            let tree = [pid] + descendants(of: pid)
            for member in tree { kill(member, SIGTERM) }
            try? await Task.sleep(for: .seconds(2))
            for member in tree { kill(member, SIGKILL) }
        }
        try? output.close()
        let text = String(decoding: (FileManager.default.contents(atPath: outputPath) ?? Data()).suffix(4096), as: UTF8.self)
        guard let status else {
            return Outcome(fenced: false, error: "\(path) did not finish within \(timeout)", output: text)
        }
        if process.terminationReason == .uncaughtSignal {
            return Outcome(fenced: false, error: "\(path) was killed by signal \(status)", output: text)
        }
        return status == 0 ? Outcome(fenced: true, error: nil, output: text)
            : Outcome(fenced: false, error: "\(path) exited with status \(status)", output: text)
    }

    /// The processes below `pid`, children first found from `/proc/*/stat` (Linux; elsewhere none are known).
    static func descendants(of pid: Int32) -> [Int32] {
        #if os(Linux)
        var parents: [Int32: [Int32]] = [:]
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let child = Int32(entry), let stat = try? String(contentsOfFile: "/proc/\(entry)/stat", encoding: .utf8),
                  let close = stat.lastIndex(of: ")") else { continue }
            // "pid (comm) state ppid …": the name may hold spaces and parentheses, so read after the last ')'.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            if fields.count > 1, let parent = Int32(fields[1]) { parents[parent, default: []].append(child) }
        }
        var found: [Int32] = []
        var queue = parents[pid] ?? []
        while let next = queue.popLast() {
            found.append(next)
            queue += parents[next] ?? []
        }
        return found
        #else
        return []
        #endif
    }
}
