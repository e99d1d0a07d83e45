import ClusterCore
import Foundation

/// Elects one group leader per term. Backends must be safe: never two leaders in one term.
/// The roles only see this protocol, so the etcd backend drops in without touching them.
public protocol LeaderElection: Sendable {
    /// Returns once this node leads, with a term higher than any before. Cancellable.
    func campaign(candidate: NodeID) async throws -> any Leadership
}

/// One term of leadership.
public protocol Leadership: Sendable {
    var term: Term { get }
    /// Returns when leadership is lost (a lease the backend can no longer prove); the holder must stop
    /// acting as leader at once. Backends whose leadership lasts as long as the process never return.
    func lost() async
    /// Gives leadership up (graceful shutdown), so another node takes over at once.
    func resign() async
}

/// The one-host backend: an exclusive `flock` on `DIR/leader.lock`. The kernel releases it the moment the
/// holder dies, so the next candidate wins within one polling interval; the term is a counter in `DIR/term`,
/// read and bumped only while holding the lock, so terms strictly grow and no two holders share one.
public struct FlockElection: LeaderElection {
    public let directory: String
    public var pollInterval: Duration

    public init(directory: String, pollInterval: Duration = .milliseconds(20)) {
        self.directory = directory
        self.pollInterval = pollInterval
    }

    public func campaign(candidate: NodeID) async throws -> any Leadership {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let fd = open(directory + "/leader.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        do {
            // Non-blocking attempts keep the wait cancellable and off any thread pool.
            while flock(fd, LOCK_EX | LOCK_NB) != 0 {
                try await Task.sleep(for: pollInterval)
            }
            let term = try Self.bumpTerm(directory + "/term")
            let holder = "\(candidate) \(term)\n"
            ftruncate(fd, 0)
            _ = holder.withCString { pwrite(fd, $0, strlen($0), 0) }
            return FlockLeadership(fd: fd, term: term)
        } catch {
            close(fd)
            throw error
        }
    }

    static func bumpTerm(_ path: String) throws -> Term {
        let current = (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Term($0.trimmingCharacters(in: .whitespacesAndNewlines)) } ?? 0
        let next = current + 1
        let tmp = path + ".tmp"
        let fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        let text = "\(next)\n"
        _ = text.withCString { write(fd, $0, strlen($0)) }
        fsync(fd)   // a term must never be handed out twice, even across a machine crash
        close(fd)
        guard rename(tmp, path) == 0 else { throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EIO) }
        return next
    }

    /// Who holds the lock now, as written by the holder (`ID TERM`); nil if nobody ever did.
    public static func currentHolder(directory: String) -> (id: NodeID, term: Term)? {
        guard let text = try? String(contentsOfFile: directory + "/leader.lock", encoding: .utf8) else { return nil }
        let parts = text.split(separator: " ")
        guard parts.count == 2, let term = Term(parts[1].trimmingCharacters(in: .whitespacesAndNewlines)) else { return nil }
        return (String(parts[0]), term)
    }
}

final class FlockLeadership: Leadership, @unchecked Sendable {
    // @unchecked: `fd` is guarded by `lock`; it is closed exactly once.
    private let lock = NSLock()
    private var fd: Int32
    let term: Term

    init(fd: Int32, term: Term) {
        self.fd = fd
        self.term = term
    }

    /// The kernel keeps the lock for as long as this process lives, so leadership ends only by resigning:
    /// then this returns and the node campaigns again.
    func lost() async {
        while !Task.isCancelled && lock.withLock({ fd >= 0 }) { try? await Task.sleep(for: .milliseconds(100)) }
    }

    func resign() async {
        lock.withLock {
            if fd >= 0 {
                close(fd)
                fd = -1
            }
        }
    }

    deinit { if fd >= 0 { close(fd) } }
}
