import Foundation

/// The real `doze` binary, run as a child process by multi-process tests.
public final class DozeProcess: @unchecked Sendable {
    // @unchecked: `process` is set once in init; Foundation.Process is thread-safe for terminate/isRunning.
    public let process: Process
    public let logPath: String

    /// The `doze` executable: `$DOZE_BIN`, else the build folder next to the test bundle, else `.build/debug`.
    public static func binaryPath(file: String = #filePath) -> String {
        if let env = ProcessInfo.processInfo.environment["DOZE_BIN"] { return env }
        let bundleDir = URL(fileURLWithPath: CommandLine.arguments[0]).deletingLastPathComponent()
        for dir in [bundleDir, bundleDir.deletingLastPathComponent(), bundleDir.deletingLastPathComponent().deletingLastPathComponent()] {
            let candidate = dir.appendingPathComponent("doze").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        let root = URL(fileURLWithPath: file).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        return root.appendingPathComponent(".build/debug/doze").path
    }

    public init(arguments: [String], logPath: String) throws {
        process = Process()
        process.executableURL = URL(fileURLWithPath: Self.binaryPath())
        process.arguments = arguments
        process.environment = TestEnvironment.child
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        process.standardOutput = log
        process.standardError = log
        process.standardInput = FileHandle.nullDevice
        self.logPath = logPath
        try process.run()
    }

    public var pid: Int32 { process.processIdentifier }

    public func kill9() {
        Foundation.kill(pid, SIGKILL)
        process.waitUntilExit()
    }

    /// SIGTERM, then waits up to `limit` for the exit; returns the exit status, or nil (and SIGKILLs) on timeout.
    public func terminate(within limit: Duration = .seconds(5)) async -> Int32? {
        Foundation.kill(pid, SIGTERM)
        let deadline = ContinuousClock.now + limit
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning {
            kill9()
            return nil
        }
        return process.terminationStatus
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    deinit { if process.isRunning { Foundation.kill(pid, SIGKILL) } }
}

/// What child processes of the tests run with: the test's own environment, but never the user's API token or
/// config directory (`doze cluster up` makes its admin token in `$XDG_CONFIG_HOME/doze/token`, and the CLI sends
/// the token it finds there).
public enum TestEnvironment {
    public static let configHome: String = {
        let path = NSTemporaryDirectory() + "doze-test-config-\(getpid())"
        try? FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        return path
    }()

    public static var child: [String: String] {
        var environment = ProcessInfo.processInfo.environment.filter { !["DOZE_TOKEN", "DOZE_TOKEN_FILE"].contains($0.key) }
        environment["XDG_CONFIG_HOME"] = configHome
        // A `doze cluster up` of one test makes an admin token under `configHome`; the CLI of another test must not
        // send it to its own cluster. Tests that want a token pass `--token` or DOZE_TOKEN.
        environment["DOZE_TOKEN_FILE"] = "/dev/null"
        return environment
    }
}
