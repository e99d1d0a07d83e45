import ClusterCore
import Testing

@Suite struct MigrationBookTests {
    let vm1 = HostUsage(vcpus: 1, memoryMiB: 256)

    @Test func refusesSameHostAndASecondMoveOfTheSameVM() {
        var book = MigrationBook(limitPerHost: 2)
        #expect(book.admit(id: "m0", vm: "a", source: "h1", destination: "h1", demand: vm1, now: .zero) == .failure(.sameHost("h1")))
        #expect(book.admit(id: "m1", vm: "a", source: "h1", destination: "h2", demand: vm1, now: .zero) == .success(.running))
        #expect(book.admit(id: "m2", vm: "a", source: "h1", destination: "h3", demand: vm1, now: .zero)
                == .failure(.alreadyMigrating(vm: "a", id: "m1")))
        // Once it ended, the VM may move again (from wherever it is now).
        _ = book.finish("m1", now: .seconds(1))
        #expect(book.admit(id: "m3", vm: "a", source: "h2", destination: "h1", demand: vm1, now: .seconds(2)) == .success(.running))
    }

    @Test func limitsRunningMigrationsPerHostOnBothEnds() {
        var book = MigrationBook(limitPerHost: 1)
        #expect(book.admit(id: "m1", vm: "a", source: "h1", destination: "h2", demand: vm1, now: .zero) == .success(.running))
        // h1 is busy as a source, h2 as a destination; h3 → h4 is free.
        #expect(book.admit(id: "m2", vm: "b", source: "h1", destination: "h3", demand: vm1, now: .zero) == .failure(.hostBusy(host: "h1", limit: 1)))
        #expect(book.admit(id: "m3", vm: "c", source: "h3", destination: "h2", demand: vm1, now: .zero) == .failure(.hostBusy(host: "h2", limit: 1)))
        #expect(book.admit(id: "m4", vm: "d", source: "h3", destination: "h4", demand: vm1, now: .zero) == .success(.running))
        #expect(book.running(on: "h1") == 1 && book.running(on: "h3") == 1 && book.running(on: "h5") == 0)
    }

    @Test func queuedMigrationsStartInOrderAsSlotsFree() {
        var book = MigrationBook(limitPerHost: 1)
        #expect(book.admit(id: "m1", vm: "a", source: "h1", destination: "h2", demand: vm1, queue: true, now: .zero) == .success(.running))
        #expect(book.admit(id: "m2", vm: "b", source: "h1", destination: "h3", demand: vm1, queue: true, now: .zero) == .success(.queued))
        #expect(book.admit(id: "m3", vm: "c", source: "h1", destination: "h2", demand: vm1, queue: true, now: .zero) == .success(.queued))
        #expect(book.queue == ["m2", "m3"])
        #expect(book.finish("m1", now: .seconds(1)) == ["m2"])   // h1 has one slot: the older one goes first
        #expect(book.finish("m2", now: .seconds(2)) == ["m3"])
        #expect(book.finish("m3", now: .seconds(3)) == [])
        #expect(book.finish("m3", now: .seconds(4)) == [], "finishing twice changes nothing")
    }

    @Test func roomOnTheWayCountsUntilTheMoveEnds() {
        var book = MigrationBook(limitPerHost: 2)
        _ = book.admit(id: "m1", vm: "a", source: "h1", destination: "h2", demand: vm1, now: .zero)
        _ = book.admit(id: "m2", vm: "b", source: "h3", destination: "h2", demand: HostUsage(vcpus: 2, memoryMiB: 512), now: .zero)
        #expect(book.incoming(to: "h2") == HostUsage(vcpus: 3, memoryMiB: 768))
        #expect(book.incoming(to: "h1") == HostUsage())
        _ = book.finish("m1", now: .seconds(1))
        #expect(book.incoming(to: "h2") == HostUsage(vcpus: 2, memoryMiB: 512))
        book.prune(now: .seconds(100), keep: .seconds(10))
        #expect(book.entries["m1"] == nil && book.entries["m2"] != nil, "finished entries go after `keep`, running ones stay")
    }
}
