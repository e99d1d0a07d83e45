import ClusterCore
import ClusterWire
import Foundation
import Testing

private let demo = try! KVMAppID(name: "demo", runAs: "bbk", cluster: "bj")

private func spec(count: Int = 3, cpus: Int = 1, mems: Int = 512, uri: String = "cirros.qcow2", type: KVMAppSpec.ImageType = .qcow2,
                  vnc: String? = nil, constraints: [KVMAppConstraint] = []) -> KVMAppSpec {
    KVMAppSpec(count: count, cpus: cpus, memoryMiB: mems, diskGiB: 10, imageType: type, imageURI: uri, vncPassword: vnc, constraints: constraints)
}

private func host(_ id: String, _ hostname: String, vcpus: Int = 8, mib: Int = 16384, freeVCPUs: Int? = nil, freeMiB: Int? = nil) -> KVMAppHost {
    KVMAppHost(id: id, hostname: hostname, total: HostUsage(vcpus: vcpus, memoryMiB: mib),
               free: HostUsage(vcpus: freeVCPUs ?? vcpus, memoryMiB: freeMiB ?? mib))
}

/// The refusal's kind and message; nil when `body` did not throw.
private func message(_ body: () throws -> Void) -> (DozeError.Kind, String)? {
    do { try body() } catch let error as DozeError { return (error.kind, error.message) } catch { return (.badRequest, "not a DozeError: \(error)") }
    return nil
}

@Suite struct KVMAppRulesTests {
    @Test func idsAndVMNamesFollowTheSeed() throws {
        #expect(demo.id == "demo.bbk.bj")
        #expect(demo.vmName(1) == "1.demo.bbk.bj")
        for (name, runAs, cluster) in [("", "bbk", "bj"), ("de.mo", "bbk", "bj"), ("demo", "b b", "bj"), ("demo", "bbk", "bj/x"),
                                       (String(repeating: "a", count: 25), "bbk", "bj")] {
            #expect(throws: DozeError.self) { try KVMAppID(name: name, runAs: runAs, cluster: cluster) }
        }
        let dotted = message { _ = try KVMAppID(name: "de.mo", runAs: "bbk", cluster: "bj") }
        #expect(dotted?.0 == .badRequest && dotted?.1.contains("dots separate") == true)
    }

    @Test func constraintsAreCheckedWhenWritten() {
        #expect(message { _ = try KVMAppConstraint(attribute: "rack", operator: "==", value: "a") }?.1.contains("unknown constraint attribute 'rack'") == true)
        #expect(message { _ = try KVMAppConstraint(attribute: "hostname", operator: "LIKE", value: "a") }?.1.contains("unknown constraint operator 'LIKE'") == true)
        let regex = message { _ = try KVMAppConstraint(attribute: "hostname", operator: "~=", value: "(10") }
        #expect(regex?.0 == .badRequest && regex?.1.contains("not a valid regular expression") == true)
    }

    @Test func constraintOperators() throws {
        let h = host("lc1", "192.168.0.107")
        #expect(try KVMAppConstraint(attribute: "hostname", operator: "==", value: "192.168.0.107").isSatisfied(by: h))
        #expect(!(try KVMAppConstraint(attribute: "hostname", operator: "!=", value: "192.168.0.107").isSatisfied(by: h)))
        #expect(try KVMAppConstraint(attribute: "hostname", operator: "~=", value: "107").isSatisfied(by: h))   // the seed's example
        #expect(!(try KVMAppConstraint(attribute: "hostname", operator: "~=", value: "^107$").isSatisfied(by: h)))
    }

    @Test func specRefusalsNameTheField() {
        let cases: [(KVMAppSpec, String)] = [
            (spec(count: 0), "count must be >= 1"),
            (spec(cpus: 0), "cpus must be >= 1"),
            (spec(mems: 0), "mems is in MiB"),
            (spec(mems: Int.max), "mems is in MiB"),
            (spec(uri: "http://x/cirros.qcow2"), "must be a file name"),
            (spec(uri: "../etc/passwd"), "must be a file name"),
            (spec(uri: "centos.iso", type: .qcow2), "is a .iso file but image.type says qcow2"),
            (spec(vnc: "much-too-long"), "vnc.password must be 1 to 8"),
        ]
        for (s, expected) in cases {
            let m = message { try s.validate(for: demo) }
            #expect(m?.0 == .badRequest && m?.1.contains(expected) == true, "\(expected): got \(String(describing: m))")
        }
        let long = try! KVMAppID(name: String(repeating: "n", count: 24), runAs: String(repeating: "r", count: 24), cluster: String(repeating: "c", count: 12))
        #expect(message { try spec(count: 100).validate(for: long) }?.1.contains("would exceed 64 bytes") == true)
        #expect(message { try spec(uri: "cirros", vnc: "password").validate(for: demo) } == nil)
    }
}

@Suite struct KVMAppPlacementTests {
    let hosts = [host("lc-a", "127.0.0.1"), host("lc-b", "127.0.0.2"), host("lc-c", "10.0.0.7")]

    @Test func withoutConstraintsThePipelinePlaces() throws {
        let plan = try KVMAppBook().plan(demo, spec(), hosts: hosts)
        #expect(plan.map(\.name) == ["0.demo.bbk.bj", "1.demo.bbk.bj", "2.demo.bbk.bj"])
        #expect(plan.allSatisfy { $0.controller == nil })
    }

    @Test func constraintsPinEveryVMAndSpreadThem() throws {
        let only = try KVMAppConstraint(attribute: "hostname", operator: "==", value: "127.0.0.2")
        #expect(try KVMAppBook().plan(demo, spec(constraints: [only]), hosts: hosts).map(\.controller) == ["lc-b", "lc-b", "lc-b"])
        let loopback = try KVMAppConstraint(attribute: "hostname", operator: "~=", value: "^127\\.")
        let spread = try KVMAppBook().plan(demo, spec(count: 4, constraints: [loopback]), hosts: hosts).map(\.controller)
        #expect(spread == ["lc-a", "lc-b", "lc-a", "lc-b"])
        // The roomiest first.
        let uneven = [host("lc-a", "127.0.0.1", freeMiB: 1024), host("lc-b", "127.0.0.2")]
        #expect(try KVMAppBook().plan(demo, spec(count: 2, constraints: [loopback]), hosts: uneven).map(\.controller) == ["lc-b", "lc-b"])
    }

    @Test func aConstraintNothingSatisfiesIsAnErrorNamingIt() throws {
        let nowhere = try KVMAppConstraint(attribute: "hostname", operator: "~=", value: "^192\\.168\\.")
        let m = message { _ = try KVMAppBook().plan(demo, spec(constraints: [nowhere]), hosts: hosts) }
        #expect(m?.0 == .conflict)
        #expect(m?.1 == "no local controller satisfies the constraint hostname ~= \"^192\\.168\\.\" (local controller hostnames: 10.0.0.7, 127.0.0.1, 127.0.0.2)")
        let a = try KVMAppConstraint(attribute: "hostname", operator: "==", value: "127.0.0.1")
        let b = try KVMAppConstraint(attribute: "hostname", operator: "==", value: "127.0.0.2")
        #expect(message { _ = try KVMAppBook().plan(demo, spec(constraints: [a, b]), hosts: hosts) }?.1.contains("satisfies all of") == true)
    }

    @Test func capacityIsCheckedWholeBeforeAnythingIsCreated() throws {
        let tooBig = message { _ = try KVMAppBook().plan(demo, spec(cpus: 16), hosts: hosts) }
        #expect(tooBig?.0 == .conflict && tooBig?.1.contains("is large enough for 16 vCPUs") == true)
        let loopback = try KVMAppConstraint(attribute: "hostname", operator: "~=", value: "^127\\.")
        let small = [host("lc-a", "127.0.0.1", freeVCPUs: 1), host("lc-b", "127.0.0.2", freeVCPUs: 0)]
        let m = message { _ = try KVMAppBook().plan(demo, spec(constraints: [loopback]), hosts: small) }
        #expect(m?.1.contains("have room for 1 of the 3 VMs") == true)
        #expect(message { _ = try KVMAppBook().plan(demo, spec(), hosts: []) }?.0 == .unavailable)
    }

    @Test func aReservedIDIsTaken() throws {
        var book = KVMAppBook()
        let plan = try book.plan(demo, spec(), hosts: hosts)
        book.reserve(demo, spec(), taskIDs: plan.map { "abc.\($0.name)" }, names: plan.map(\.name), nowMillis: 1)
        #expect(message { _ = try book.plan(demo, spec(), hosts: hosts) }?.1.contains("already exists") == true)
        book.cancel(demo.id)
        #expect(try book.plan(demo, spec(), hosts: hosts).count == 3)
    }
}

@Suite struct KVMAppStatusTests {
    func created(_ outcomes: [KVMAppTask.Creation]) -> KVMAppBook {
        var book = KVMAppBook()
        let names = (0..<outcomes.count).map(demo.vmName)
        book.reserve(demo, spec(count: outcomes.count), taskIDs: names.map { "t.\($0)" }, names: names, nowMillis: 10)
        book.submitted(demo.id, submission: "task-1")
        var byName: [String: KVMAppTask.Creation] = [:]
        for (n, o) in zip(names, outcomes) { byName[n] = o }
        book.onCreation(demo.id, outcomes: byName, nowMillis: 20)
        return book
    }

    @Test func taskStatusMapping() {
        let started = KVMAppTask(id: "t", name: "0.demo.bbk.bj", creation: .started(controller: "lc", ipAddress: "10.0.0.2"), createdAt: 0, updatedAt: 0)
        let expected: [(KVMAppPresence, String)] = [
            (.live(.running), "TASK_RUNNING"), (.live(.paused), "KvmSuspended"), (.live(.shutdownPending), "KvmStopping"),
            (.live(.offline), "KvmStopped"), (.live(.unknown), "TASK_UNKNOWN"), (.unknown("lc down"), "TASK_UNKNOWN"), (.absent, "TASK_LOST"),
        ]
        for (presence, status) in expected { #expect(KVMAppBook.status(of: started, presence: presence).status == status) }
        #expect(KVMAppBook.status(of: started, presence: .unknown("lc down")).errmsg == "lc down")
        var pending = started
        pending.creation = .pending
        #expect(KVMAppBook.status(of: pending, presence: .absent) == ("pending", ""))
        #expect(KVMAppBook.status(of: pending, presence: .live(.running)).status == "TASK_RUNNING")   // the controller's word wins
        var failed = started
        failed.creation = .failed("image 'x' is not in this host's image pool")
        #expect(KVMAppBook.status(of: failed, presence: .absent) == ("KvmStartFailed", "image 'x' is not in this host's image pool"))
    }

    @Test func aVMIsLostOnlyWhenItsControllerIsSeenWithoutIt() {
        let t = KVMAppTask(id: "t", name: "0.demo.bbk.bj", creation: .started(controller: "lc1", ipAddress: ""), createdAt: 0, updatedAt: 0)
        #expect(KVMAppPresence.of(t, live: ["0.demo.bbk.bj": .paused], listed: [], controllers: []) == .live(.paused))
        #expect(KVMAppPresence.of(t, live: [:], listed: ["0.demo.bbk.bj"], controllers: ["lc1"]) == .unknown("its group manager did not answer"))
        #expect(KVMAppPresence.of(t, live: [:], listed: [], controllers: ["lc1"]) == .absent)
        // Just after a failover the leader's view is empty: unknown, not lost.
        #expect(KVMAppPresence.of(t, live: [:], listed: [], controllers: []) == .unknown("its local controller lc1 is not in the cluster's view (down, or not re-joined yet)"))
    }

    @Test func creationProgressAndOperationStatus() {
        var book = created([.pending, .started(controller: "lc", ipAddress: "10.0.0.2"), .pending])
        #expect(book.operationStatus(demo.id) == "creating")
        #expect(book.apps[demo.id]?.tasks[1].updatedAt == 20)
        #expect(throws: DozeError.self) { _ = try book.begin(.suspend, on: demo.id) }   // still being created
        book.onCreation(demo.id, outcomes: ["0.demo.bbk.bj": .started(controller: "lc", ipAddress: "10.0.0.3"),
                                            "2.demo.bbk.bj": .failed("no room")], nowMillis: 30)
        #expect(book.operationStatus(demo.id) == "noop")
        #expect(book.apps[demo.id]?.errmsg == "1 of 3 tasks failed to start; 2.demo.bbk.bj: no room")
    }

    @Test func operationsAreExclusiveAndRecorded() throws {
        var book = created([.started(controller: "lc", ipAddress: "a"), .started(controller: "lc", ipAddress: "b")])
        let record = try book.begin(.suspend, on: demo.id)
        #expect(book.operationStatus(demo.id) == "suspending")
        #expect(book.opStatus(of: record.tasks[0], in: demo.id, presence: .live(.running)) == "KvmSuspending")
        let busy = message { _ = try book.begin(.stop, on: demo.id) }
        #expect(busy?.0 == .conflict && busy?.1.contains("is suspending") == true)
        book.finish(.suspend, on: demo.id, failures: ["1.demo.bbk.bj": "cannot suspend a VM that is OFFLINE"],
                    targeted: ["0.demo.bbk.bj", "1.demo.bbk.bj"], nowMillis: 40)
        let after = try #require(book.apps[demo.id])
        #expect(book.opStatus(of: after.tasks[0], in: demo.id, presence: .live(.paused)) == "KvmSuspended")
        #expect(book.opStatus(of: after.tasks[1], in: demo.id, presence: .live(.offline)) == "KvmSuspendFailed")
        #expect(after.errmsg == "suspend failed for 1 of 2 tasks; 1.demo.bbk.bj: cannot suspend a VM that is OFFLINE")
        #expect(KVMAppBook.status(of: after.tasks[1], presence: .live(.offline)).errmsg == "cannot suspend a VM that is OFFLINE")
        // A shutdown still under way shows as stopping.
        _ = try book.begin(.stop, on: demo.id)
        book.finish(.stop, on: demo.id, failures: [:], targeted: ["0.demo.bbk.bj", "1.demo.bbk.bj"], nowMillis: 50)
        #expect(book.opStatus(of: book.apps[demo.id]!.tasks[0], in: demo.id, presence: .live(.shutdownPending)) == "KvmStopping")
        #expect(book.opStatus(of: book.apps[demo.id]!.tasks[0], in: demo.id, presence: .live(.offline)) == "KvmStopped")
        #expect(book.apps[demo.id]?.errmsg == "")
        // A failed delete keeps the app; a full one drops it.
        _ = try book.begin(.delete, on: demo.id)
        book.finish(.delete, on: demo.id, failures: ["0.demo.bbk.bj": "unreachable"], targeted: ["0.demo.bbk.bj"], nowMillis: 60)
        #expect(book.apps[demo.id] != nil)
        _ = try book.begin(.delete, on: demo.id)
        book.finish(.delete, on: demo.id, failures: [:], targeted: ["0.demo.bbk.bj"], nowMillis: 70)
        #expect(book.apps[demo.id] == nil)
    }

    @Test func whatEachOperationDoesToAVM() {
        let t = KVMAppTask(id: "t", name: "0.demo.bbk.bj", creation: .started(controller: "lc", ipAddress: ""), createdAt: 0, updatedAt: 0)
        let table: [(KVMAppOperation, KVMAppPresence, KVMAppAction)] = [
            (.suspend, .live(.running), .send([.suspend])), (.suspend, .live(.paused), .skip),
            (.resume, .live(.paused), .send([.resume])), (.resume, .live(.running), .skip),
            (.stop, .live(.running), .send([.shutdown])), (.stop, .live(.shutdownPending), .send([.shutdown])), (.stop, .live(.offline), .skip),
            (.start, .live(.offline), .send([.start])), (.start, .live(.running), .skip),
            (.delete, .live(.running), .send([.destroy])), (.delete, .live(.offline), .send([.destroy])), (.delete, .absent, .skip),
        ]
        for (op, presence, action) in table { #expect(KVMAppBook.action(op, for: t, presence: presence) == action, "\(op) \(presence)") }
        #expect(KVMAppBook.action(.delete, for: t, presence: .unknown("lc down")) == .fail("the VM cannot be reached: lc down"))
        #expect(KVMAppBook.action(.stop, for: t, presence: .live(.paused)) == .send([.resume, .shutdown]))
        #expect(KVMAppBook.action(.resume, for: t, presence: .live(.offline)) == .fail("cannot resume a VM that is OFFLINE (start it instead)"))
        #expect(KVMAppBook.action(.start, for: t, presence: .absent) == .fail("the VM is on no local controller any more"))
        var failed = t
        failed.creation = .failed("no image")
        #expect(KVMAppBook.action(.start, for: failed, presence: .absent) == .fail("the VM was never created: no image"))
    }

    @Test func vncDisplayAndUUIDFromLiveXML() {
        let xml = "<domain type='kvm'><name>0.demo.bbk.bj</name><uuid> 6f2bcb5a-0b1e-4c7e-9a51-1f1e1a000001 </uuid><devices>"
            + "<graphics type='spice' port='5900'/><graphics type='vnc' port='5902' autoport='yes' listen='0.0.0.0'/></devices></domain>"
        #expect(KVMAppBook.vncDisplay(inDomainXML: xml) == 2)
        #expect(KVMAppBook.domainUUID(inDomainXML: xml) == "6f2bcb5a-0b1e-4c7e-9a51-1f1e1a000001")
        #expect(KVMAppBook.vncDisplay(inDomainXML: "<graphics type=\"vnc\" port=\"-1\" autoport=\"yes\"/>") == nil)
        #expect(KVMAppBook.vncDisplay(inDomainXML: "<domain/>") == nil)
    }

    @Test func imageDomainsGetAVNCConsoleWithAnEscapedPassword() {
        let xml = TemplateAdaptation.domainXML(name: "0.demo.bbk.bj", type: "test", vcpus: 1, memoryKiB: 524_288, imagePath: "/p/c.qcow2",
                                               format: "qcow2", mac: nil, vncPassword: "a'b<c")
        #expect(xml.contains("<graphics type='vnc' port='-1' autoport='yes' listen='0.0.0.0' passwd='a&apos;b&lt;c'/>"))
        #expect(!TemplateAdaptation.domainXML(name: "v", type: "test", vcpus: 1, memoryKiB: 1024, imagePath: "/p/c", format: "raw", mac: nil)
            .contains("<graphics"))
    }
}

@Suite struct KVMAppWireTests {
    /// The seed's create body, byte for byte (comments removed).
    let seedBody = """
        {"count": 3, "cpus": 1, "mems": 500, "disks": 10, "image": {"type": "iso", "uri": "CentOS-7-x86_64-Minimal-1708.iso"},
         "vnc": {"password": "password"}, "executor": {"url": "http://192.168.0.104:81/swan-executor", "command": "./swan-executor kvm"},
         "constraints": [{"attribute": "hostname", "operator": "~=", "value": "107"}]}
        """

    @Test func theSeedsCreateBodyBecomesASpec() throws {
        let request = try WireCoding.decoder().decode(KVMAppCreateRequest.self, from: Data(seedBody.utf8))
        let s = try request.spec()
        #expect(s == KVMAppSpec(count: 3, cpus: 1, memoryMiB: 500, diskGiB: 10, imageType: .iso, imageURI: "CentOS-7-x86_64-Minimal-1708.iso",
                                vncPassword: "password", constraints: [try KVMAppConstraint(attribute: "hostname", operator: "~=", value: "107")],
                                executorURL: "http://192.168.0.104:81/swan-executor", executorCommand: "./swan-executor kvm"))
        try s.validate(for: demo)
    }

    @Test func missingOrMalformedFieldsAreNamed() throws {
        func refusal(_ json: String) throws -> String? {
            let r = try WireCoding.decoder().decode(KVMAppCreateRequest.self, from: Data(json.utf8))
            do { _ = try r.spec() } catch { return error.message }
            return nil
        }
        #expect(try refusal(#"{"cpus":1,"mems":1,"image":{"type":"iso","uri":"a.iso"}}"#)?.contains("count is missing") == true)
        #expect(try refusal(#"{"count":1,"cpus":1,"mems":1,"image":{"type":"vmdk","uri":"a"}}"#) == "image.type must be iso or qcow2, got 'vmdk'")
        #expect(try refusal(#"{"count":1,"cpus":1,"mems":1,"image":{"type":"iso","uri":"a.iso"},"vnc":{}}"#)?.contains("vnc.password is missing") == true)
        #expect(try refusal(#"{"count":1,"cpus":1,"mems":1,"image":{"type":"iso","uri":"a.iso"},"constraints":[{"attribute":"hostname"}]}"#)
            == "constraints[0] needs attribute, operator and value")
    }

    @Test func listEntriesUseTheSeedsShape() throws {
        var book = KVMAppBook()
        let s = try WireCoding.decoder().decode(KVMAppCreateRequest.self, from: Data(seedBody.utf8)).spec()
        book.reserve(demo, s, taskIDs: ["a.0", "a.1", "a.2"], names: ["0.demo.bbk.bj", "1.demo.bbk.bj", "2.demo.bbk.bj"], nowMillis: 1_505_745_674_441)
        let entry = KVMAppEntry(book.apps[demo.id]!, tasksStatus: ["pending": 3], operationStatus: book.operationStatus(demo.id))
        let json = try #require(String(data: try WireCoding.encoder().encode(entry), encoding: .utf8))
        #expect(json.contains(#""createdAt":"2017-09-18T14:41:14.441Z""#))
        #expect(json.contains(#""killPolicy":null"#))
        #expect(json.contains(#""vnc":{"enabled":true,"password":"password"}"#))
        #expect(json.contains(#""constraints":[{"attribute":"hostname","operator":"~=","value":"107"}]"#))
        #expect(json.contains(#""operationStatus":"creating""#) && json.contains(#""runAs":"bbk""#) && json.contains(#""taskCount":3"#))
        let back = try WireCoding.decoder().decode(KVMAppEntry.self, from: Data(json.utf8))
        #expect(back == entry)
    }
}
