import Foundation
import Testing
@testable import ClusterNode

/// The power agents' command lines (energy saving): a shell snippet with the host's id and address appended.
@Suite struct AgentCommandTests {
    @Test func theHostIsAppendedToTheCommandLineAndExitZeroSucceeds() async throws {
        let out = NSTemporaryDirectory() + "doze-agent-test-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: out) }
        let error = await AgentCommand.shell("printf '%s|' off /layout.json > \(out); printf '%s|' >> \(out)", arguments: ["h-1", "10.0.0.7:5010"],
                                             timeout: .seconds(10))
        #expect(error == nil)
        #expect((try? String(contentsOfFile: out, encoding: .utf8)) == "off|/layout.json|h-1|10.0.0.7:5010|")
    }

    @Test func aFailureSaysItsStatusAndTheEndOfItsOutput() async {
        let error = await AgentCommand.shell("echo one; echo 'no BMC' >&2; exit 4", arguments: ["h-1", "a:1"], timeout: .seconds(10))
        #expect(error?.contains("exited with status 4") == true && error?.contains("no BMC") == true, "\(String(describing: error))")
        let missing = await AgentCommand.shell("/nonexistent/power-off", arguments: ["h-1", "a:1"], timeout: .seconds(10))
        #expect(missing?.contains("exited with status 127") == true, "\(String(describing: missing))")
    }

    @Test func aHangingAgentIsStoppedAtTheTimeout() async {
        let started = ContinuousClock.now
        let error = await AgentCommand.shell("sleep 30.\(Int.random(in: 100_000...999_999)); true", arguments: ["h", "a:1"], timeout: .milliseconds(300))
        #expect(error?.contains("did not finish within") == true, "\(String(describing: error))")
        #expect(ContinuousClock.now - started < .seconds(10))
    }
}
