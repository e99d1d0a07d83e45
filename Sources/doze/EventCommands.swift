import ArgumentParser
import ClusterCore
import ClusterTransport
import ClusterWire
import Foundation
import NIOCore
import NIOHTTP1

// `doze events`: the cluster's events stream, read with long-polls through the bootstrap (`GET /v1/events`).

struct EventsCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "events", abstract: "Print the cluster's events (VM states, placements, migrations, hosts, managers, leaders).",
        discussion: """
            One line per event, oldest first: revision, time, kind and what it concerns. Without --since, every event \
            the leader keeps; with --since REV, those after revision REV. --follow keeps printing new events, across a \
            leader change (it asks again from the last revision it printed, so nothing is missed or printed twice). \
            --json prints each event as one JSON object a line.
            """)

    @Option(help: "Print the events after this revision.")
    var since: Int64?

    @Option(help: "Start with the last N events kept (0: only new ones, with --follow).")
    var tail: Int?

    @Flag(help: "Keep printing events as they happen (Ctrl-C stops).")
    var follow = false

    @Option(help: "Only the events about this VM.")
    var vm: String?

    @Option(help: "Stop after printing N events.")
    var count: Int?

    @Option(help: "With --follow: stop after this many seconds (default: never).")
    var timeout: Double?

    @OptionGroup var client: ClientOptions

    func validate() throws {
        if let since { guard since >= 0 else { throw ValidationError("--since must be a revision >= 0, got \(since)") } }
        if let timeout { guard timeout > 0, timeout.isFinite else { throw ValidationError("--timeout must be > 0 seconds") } }
        if let tail { guard tail >= 0 else { throw ValidationError("--tail must be >= 0, got \(tail)") } }
        if let count { guard count > 0 else { throw ValidationError("--count must be > 0, got \(count)") } }
        guard since == nil || tail == nil else { throw ValidationError("give --since or --tail, not both") }
    }

    func run() async throws {
        try await reportingFailures {
            let api = try client.client()
            let clock = ContinuousClock()
            let deadline = timeout.map { clock.now + .milliseconds(Int64(min(max($0, 0), 1e9) * 1000)) }
            var since = self.since
            var lostLeader = false
            var printed = 0
            if let tail { since = try await Self.startOfTail(api, tail) }
            while true {
                let wait: Duration = follow ? min(.seconds(25), deadline.map { max(.zero, $0 - clock.now) } ?? .seconds(25)) : .zero
                let page: EventPage
                do {
                    page = try await Self.fetch(api, since: since, wait: wait)
                } catch let error as ClientError where follow && (error.isTransient || error.code == "conflict") {
                    // No leader for a moment: ask again, from the last revision printed.
                    if !lostLeader { printError("events: \(error.message); resuming from revision \(since.map(String.init) ?? "the start")") }
                    lostLeader = true
                    if let deadline, clock.now >= deadline { return }
                    try await Task.sleep(for: .milliseconds(300))
                    continue
                } catch let gone as Gone where follow {
                    printError("events: \(gone.detail.message); going on from the oldest kept")
                    since = gone.detail.resumeSince
                    continue
                } catch let gone as Gone {
                    throw ClientError(gone.detail.message, status: 410, code: "gone")
                }
                if lostLeader { printError("events: the cluster answers again") }
                lostLeader = false
                for event in page.events where vm == nil || event.vm == vm {
                    print(client.json ? Self.json(event) : Self.line(event))
                    printed += 1
                    if let count, printed >= count {
                        fflush(nil)
                        return
                    }
                }
                fflush(nil)
                since = page.resume(after: since)
                let caughtUp = (since ?? 0) >= page.latestRevision
                if !follow && caughtUp { return }
                if let deadline, clock.now >= deadline { return }
            }
        }
    }

    /// A 410: the events after `since` were compacted away.
    struct Gone: Error { var detail: GoneBody.Detail }
    struct GoneBody: Decodable {
        struct Detail: Decodable {
            var message: String
            var oldestRevision: Int64?
            var resumeSince: Int64
        }
        var error: Detail
    }

    static func fetch(_ api: BootstrapClient, since: Int64?, wait: Duration) async throws -> EventPage {
        var path = "/v1/events?wait=\(wait.components.seconds)"
        if let since { path += "&since=\(since)" }
        do {
            return try api.decode(EventPage.self, try await api.call(.GET, path, timeout: wait + .seconds(30)))
        } catch let error as ClientError where error.status == 410 {
            // Ask once more for the body's numbers (the call threw its message away): the answer is the same 410.
            let answer = try? await api.peers.send(.GET, api.endpoint, path, body: nil as String?, timeout: .seconds(10))
            if let answer, answer.status == 410,
               let gone = try? WireCoding.decoder().decode(GoneBody.self, from: Data(answer.body.readableBytesView)) {
                throw Gone(detail: gone.error)
            }
            throw error
        }
    }

    /// The `since` that shows the last `n` events kept: the revision before them (every kept one is read, a page at a time).
    static func startOfTail(_ api: BootstrapClient, _ n: Int) async throws -> Int64? {
        var since: Int64?
        var revisions: [Int64] = []
        while true {
            let page = try await fetch(api, since: since, wait: .zero)
            revisions += page.events.map(\.revision)
            since = page.resume(after: since)
            if page.events.isEmpty || (since ?? 0) >= page.latestRevision {
                guard n > 0 else { return since ?? page.latestRevision }
                guard revisions.count > n else { return nil }   // fewer kept than asked: all of them
                return revisions[revisions.count - n - 1]
            }
        }
    }

    static func json(_ event: ClusterEvent) -> String {
        (try? WireCoding.encoder().encode(event)).map { String(decoding: $0, as: UTF8.self) } ?? "{}"
    }

    /// `REV  TIME  KIND  field=value …`: the columns up to the kind are aligned across lines (a stream cannot
    /// measure lines it has not seen yet).
    static func line(_ event: ClusterEvent) -> String {
        var fields: [(String, String?)] = [
            ("vm", event.vm), ("host", event.host), ("manager", event.manager), ("task", event.task), ("status", event.status),
            ("outcome", event.outcome), ("migration", event.migration), ("from", event.source), ("to", event.destination),
            ("term", event.term.map(String.init)), ("leader", event.leader), ("tenant", event.tenant),
        ]
        if let ms = event.durationMs { fields.append(("took", String(format: "%.1fs", Double(ms) / 1000))) }
        if let detail = event.detail { fields.append(("detail", detail.contains(" ") ? "\"\(detail)\"" : detail)) }
        let shown = fields.compactMap { key, value in value.map { "\(key)=\($0)" } }.joined(separator: " ")
        func pad(_ text: String, _ width: Int) -> String { text + String(repeating: " ", count: max(1, width - text.count)) }
        return (pad(String(event.revision), 7) + " " + pad(event.time, 25) + " " + pad(event.kind.rawValue, 18) + " " + shown)
            .trimmingCharacters(in: .whitespaces)
    }
}
