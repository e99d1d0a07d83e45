import ClusterCore
import Foundation

/// An exclusive `flock` on `STATE/lock`, held for the life of the process (the kernel drops it on exit).
enum StateDirectoryLock {
    static let held = NSLock()
    nonisolated(unsafe) static var descriptors: [String: Int32] = [:]   // guarded by `held`

    static func acquire(_ directory: String) throws {
        try held.withLock {
            let descriptor = open(directory + "/lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard descriptor >= 0 else { throw DozeError(.unavailable, "cannot open \(directory)/lock") }
            guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
                close(descriptor)
                let holder = (try? String(contentsOfFile: directory + "/lock", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
                throw DozeError(.conflict, "state directory \(directory) is in use by another doze process (pid \(holder))")
            }
            ftruncate(descriptor, 0)
            let pid = "\(getpid())\n"
            _ = pid.withCString { pwrite(descriptor, $0, strlen($0), 0) }
            descriptors[directory] = descriptor
        }
    }
}
