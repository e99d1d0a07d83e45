import Foundation

/// Runs an operator's agent (a fence command, a power-off or wake command), bounded in time. Output goes to a
/// temporary file, not a pipe: an agent that leaves a background process behind cannot hold us up. On timeout the
/// agent and everything it started get TERM, then KILL (a script's `sleep` or `ipmitool` would otherwise live on).
enum AgentCommand {
    struct Outcome: Sendable {
        /// Exited 0 within the time.
        var succeeded: Bool
        /// Why not, when not.
        var error: String?
        /// The end of what it printed (at most `outputLimit` bytes, 4 KiB unless asked).
        var output: String
    }

    /// `what` names the agent in errors (its path, or its command line). `input`, when given, is its standard input.
    static func run(_ executable: String, _ arguments: [String], environment extra: [String: String] = [:], what: String,
                    timeout: Duration, input: String? = nil, outputLimit: Int = 4096) async -> Outcome {
        let outputPath = NSTemporaryDirectory() + "doze-agent-\(UUID().uuidString).log"
        guard FileManager.default.createFile(atPath: outputPath, contents: nil), let output = FileHandle(forWritingAtPath: outputPath) else {
            return Outcome(succeeded: false, error: "cannot create \(outputPath) for the output of \(what)", output: "")
        }
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(extra) { $1 }
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        // Standard input from a file too, for the same reason as the output: nothing can block on a pipe.
        let inputPath = NSTemporaryDirectory() + "doze-agent-\(UUID().uuidString).in"
        var inputHandle: FileHandle?
        defer { try? inputHandle?.close() }
        if let input {
            guard FileManager.default.createFile(atPath: inputPath, contents: Data(input.utf8)),
                  let handle = FileHandle(forReadingAtPath: inputPath) else {
                try? output.close()
                return Outcome(succeeded: false, error: "cannot create \(inputPath) for the input of \(what)", output: "")
            }
            process.standardInput = handle
            inputHandle = handle
        }
        defer { if input != nil { try? FileManager.default.removeItem(atPath: inputPath) } }
        let exited = AsyncStream<Int32>.makeStream()
        process.terminationHandler = { exited.continuation.yield($0.terminationStatus) }
        // The child inherits this thread's signal mask, and a concurrency pool thread blocks nearly every signal: the
        // agent would never see our SIGTERM on timeout, a daemon it starts never its SIGTERM or SIGHUP. So the mask is
        // cleared around the spawn (posix_spawn, in this thread); a process-wide signal arriving in that instant may be
        // taken by this thread, which handles it as the process does.
        var open = sigset_t(), saved = sigset_t()
        sigemptyset(&open)
        pthread_sigmask(SIG_SETMASK, &open, &saved)
        var launchError: (any Error)?
        do { try process.run() } catch { launchError = error }
        pthread_sigmask(SIG_SETMASK, &saved, nil)
        if let launchError {
            try? output.close()
            return Outcome(succeeded: false, error: "cannot run \(what): \(launchError.localizedDescription)", output: "")
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
            // The agent first, so a script does not go on to its next line when its child dies; a late exit status is
            // not trusted either way.
            let tree = [pid] + descendants(of: pid)
            for member in tree { kill(member, SIGTERM) }
            try? await Task.sleep(for: .seconds(2))
            for member in tree { kill(member, SIGKILL) }
        }
        try? output.close()
        let text = String(decoding: (FileManager.default.contents(atPath: outputPath) ?? Data()).suffix(outputLimit), as: UTF8.self)
        guard let status else {
            return Outcome(succeeded: false, error: "\(what) did not finish within \(timeout)", output: text)
        }
        if process.terminationReason == .uncaughtSignal {
            return Outcome(succeeded: false, error: "\(what) was killed by signal \(status)", output: text)
        }
        return status == 0 ? Outcome(succeeded: true, error: nil, output: text)
            : Outcome(succeeded: false, error: "\(what) exited with status \(status)", output: text)
    }

    /// A shell command line (`topology/power-agent.py off /run/layout.json`) with `arguments` appended, through
    /// `/bin/sh`, so an operator can give options; nil when it succeeded, else why not and the end of its output.
    static func shell(_ command: String, arguments: [String], timeout: Duration) async -> String? {
        let outcome = await run("/bin/sh", ["-c", command + " \"$@\"", "doze-agent"] + arguments, what: "'\(command)'", timeout: timeout)
        guard let error = outcome.error else { return nil }
        let tail = outcome.output.split(separator: "\n").suffix(3).joined(separator: " | ")
        return tail.isEmpty ? error : "\(error): \(tail)"
    }

    /// The processes below `pid`, found from `/proc/*/stat` (Linux; elsewhere none are known).
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
