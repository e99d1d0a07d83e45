import Foundation

/// External programs the launcher runs (`ip`, `virsh`, `cp`), always with a deadline.
enum Tool {
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    /// The absolute path of `name` on PATH, or in the sbin directories a non-login root shell may lack.
    static func find(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let dirs = path.split(separator: ":").map(String.init) + ["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"]
        return dirs.map { "\($0)/\(name)" }.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    /// Runs `path args` to completion within `timeout` (then kills it) and returns its output, stdout and stderr
    /// together; throws with that output when it fails.
    @discardableResult
    static func run(_ path: String, _ arguments: [String], timeout: Duration = .seconds(30)) async throws -> String {
        // Output goes to a file, not a pipe, so a chatty tool can never block on a full pipe while we poll.
        let outputPath = NSTemporaryDirectory() + "/doze-tool-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: outputPath) }
        let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
        defer { try? output.close() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = output
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(5)) }
        let command = ([(path as NSString).lastPathComponent] + arguments).joined(separator: " ")
        if process.isRunning {
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
            throw Failure(description: "`\(command)` did not finish within \(timeout)")
        }
        let text = (try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? ""
        guard process.terminationStatus == 0 else {
            throw Failure(description: "`\(command)` failed (\(process.terminationStatus)): \(text.trimmingCharacters(in: .whitespacesAndNewlines))")
        }
        return text
    }

    /// `text` as one word for `sh -c`.
    static func quote(_ text: String) -> String { "'" + text.replacingOccurrences(of: "'", with: "'\\''") + "'" }
}
