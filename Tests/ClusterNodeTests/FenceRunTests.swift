import ClusterCore
import Foundation
import Testing
@testable import ClusterNode

/// The fence command as the leader runs it: the host's id and address reach it, exit 0 alone means fenced, and a
/// command that hangs is killed at the timeout and counts as failed.
@Suite struct FenceRunTests {
    static func script(_ body: String) throws -> String {
        let path = NSTemporaryDirectory() + "doze-fence-test-\(UUID().uuidString).sh"
        try "#!/bin/sh\n\(body)\n".write(toFile: path, atomically: true, encoding: .utf8)
        chmod(path, 0o755)
        return path
    }

    @Test func exitZeroFencesAndTheCommandSeesTheHost() async throws {
        let path = try Self.script("echo \"arg=$1 id=$DOZE_FENCE_HOST_ID at=$DOZE_FENCE_HOST_ADDRESS:$DOZE_FENCE_HOST_PORT\"; exit 0")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let outcome = await FenceRun.run(path, host: "h-1", address: Endpoint(host: "10.0.0.7", port: 5010), timeout: .seconds(10))
        #expect(outcome.fenced && outcome.error == nil)
        #expect(outcome.output == "arg=h-1 id=h-1 at=10.0.0.7:5010\n")
    }

    @Test func aNonZeroExitIsAFailureWithItsStatusAndOutput() async throws {
        let path = try Self.script("echo BMC unreachable >&2; exit 3")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let outcome = await FenceRun.run(path, host: "h-1", address: nil, timeout: .seconds(10))
        #expect(!outcome.fenced)
        #expect(outcome.error == "\(path) exited with status 3")
        #expect(outcome.output.contains("BMC unreachable"))
    }

    @Test func aHangingCommandIsKilledAtTheTimeoutAndFails() async throws {
        let marker = NSTemporaryDirectory() + "doze-fence-marker-\(UUID().uuidString)"
        let nap = "29.\(Int.random(in: 100_000...999_999))"   // a sleep no other process runs
        let path = try Self.script("sleep \(nap); touch \(marker); exit 0")
        defer { try? FileManager.default.removeItem(atPath: path) }
        let started = ContinuousClock.now
        let outcome = await FenceRun.run(path, host: "h-1", address: nil, timeout: .milliseconds(300))
        let took = ContinuousClock.now - started
        #expect(!outcome.fenced)
        #expect(outcome.error?.contains("did not finish within") == true, "\(String(describing: outcome.error))")
        #expect(took < .seconds(10), "bounded: \(took)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the command was stopped, not left to report later")
        // Nothing of it lives on: not the script, not its sleep.
        let left = (try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8)) != nil
            ? ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).filter { entry in
                guard Int32(entry) != nil, let cmdline = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return false }
                let text = String(decoding: cmdline, as: UTF8.self)
                return text.contains(path) || text.contains(nap)
            } : []
        #expect(left.isEmpty, "still running: \(left)")
    }

    @Test func aCommandThatIsMissingOrNotExecutableIsRefusedUpFront() throws {
        #expect(throws: DozeError.self) { try FenceAgent.command("/nonexistent/fence.sh").validated() }
        #expect(throws: DozeError.self) { try FenceAgent.command("relative.sh").validated() }
        let path = NSTemporaryDirectory() + "doze-fence-plain-\(UUID().uuidString)"
        _ = FileManager.default.createFile(atPath: path, contents: Data("echo".utf8))
        defer { try? FileManager.default.removeItem(atPath: path) }
        #expect(throws: DozeError.self) { try FenceAgent.command(path).validated() }
        #expect(try FenceAgent.none.validated() == .none)
    }
}
