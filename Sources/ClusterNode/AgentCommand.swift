import Foundation

/// Runs an operator's agent (power off, wake): `/bin/sh -c COMMAND` with the arguments appended, bounded in time.
/// The command is a shell snippet (`topology/power.sh off /run/layout.json`), so an operator can give options.
enum AgentCommand {
    /// nil when it exited 0; otherwise why not (exit status or timeout, and the end of its output).
    static func run(_ command: String, arguments: [String], timeout: Duration) async -> String? {
        await Task.detached { () -> String? in
            let process = Process()
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments = ["-c", command + " \"$@\"", "doze-agent"] + arguments
            let output = Pipe()
            process.standardOutput = output
            process.standardError = output
            process.standardInput = FileHandle.nullDevice
            do { try process.run() } catch { return "cannot run '\(command)': \(error.localizedDescription)" }
            let reader = Task.detached { output.fileHandleForReading.readDataToEndOfFile() }
            let deadline = ContinuousClock.now + timeout
            while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
            let timedOut = process.isRunning
            if timedOut {
                process.terminate()
                try? await Task.sleep(for: .milliseconds(500))
                if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            }
            process.waitUntilExit()
            let text = String(decoding: await reader.value, as: UTF8.self)
            let tail = text.split(separator: "\n").suffix(3).joined(separator: " | ")
            if timedOut { return "'\(command)' did not end within \(timeout)" + (tail.isEmpty ? "" : ": \(tail)") }
            guard process.terminationStatus == 0 else {
                return "'\(command)' exited with status \(process.terminationStatus)" + (tail.isEmpty ? "" : ": \(tail)")
            }
            return nil
        }.value
    }
}
