import ClusterCore
import ClusterWire
import Foundation
import Testing

@Suite struct SnoozeWireTests {
    @Test func metaDataDecodesWithMissingFields() throws {
        let json = #"{"virtualMachineLocation":{"virtualMachineId":"vm1"},"xmlRepresentation":"<domain/>","requestedCapacity":[1,2048,10,20]}"#
        let m = try JSONDecoder().decode(VirtualMachineMetaData.self, from: Data(json.utf8))
        #expect(m.virtualMachineLocation.virtualMachineId == "vm1")
        #expect(m.virtualMachineLocation.localControllerControlDataAddress == nil)
        #expect(m.virtualMachineLocation.localControllerId == nil && m.groupManagerControlDataAddress == nil)
        #expect(m.status == .unknown)
        #expect(m.errorCode == .none)
        #expect(m.requested.txBytes == 20)
    }

    @Test func metaDataEncodesSnoozeNames() throws {
        let m = VirtualMachineMetaData(location: .init(virtualMachineId: "vm1"), status: .running)
        let object = try JSONSerialization.jsonObject(with: WireCoding.encoder().encode(m)) as! [String: Any]
        for key in ["virtualMachineLocation", "status", "errorCode", "ipAddress", "xmlRepresentation", "requestedCapacity",
                    "usedCapacity", "isAssigned", "groupManagerControlDataAddress"] {
            #expect(object[key] != nil, "missing \(key)")
        }
        #expect(object["errorCode"] as? String == "UNKNOWN")
    }

    /// Unknown parts are nil in Swift and Snooze's "UNKNOWN" / {"address":"UNKNOWN","port":-1} on the wire, both ways.
    @Test func unknownLocationPartsAreNilInsideAndSnoozesSentinelsOnTheWire() throws {
        let unplaced = VirtualMachineMetaData(location: .init(virtualMachineId: "vm1"))
        let text = String(decoding: try WireCoding.encoder().encode(unplaced.virtualMachineLocation), as: UTF8.self)
        #expect(text == #"{"groupManagerControlDataAddress":{"address":"UNKNOWN","port":-1},"groupManagerId":"UNKNOWN","#
                + #""localControllerControlDataAddress":{"address":"UNKNOWN","port":-1},"localControllerId":"UNKNOWN","virtualMachineId":"vm1"}"#)
        let object = try JSONSerialization.jsonObject(with: WireCoding.encoder().encode(unplaced)) as! [String: Any]
        #expect((object["groupManagerControlDataAddress"] as? [String: Any])?["port"] as? Int == -1)
        // What Snooze sends for "not known" reads back as nil, and a located VM keeps every part.
        let decoded = try JSONDecoder().decode(VirtualMachineLocation.self, from: Data(text.utf8))
        #expect(decoded == VirtualMachineLocation(virtualMachineId: "vm1"))
        var placed = unplaced
        placed.locate(on: ControllerInfo(id: "lc1", control: Endpoint(host: "127.0.0.1", port: 5010), heartbeat: Endpoint(host: "127.0.0.1", port: 5010)),
                      under: ManagerInfo(id: "gm1", control: Endpoint(host: "127.0.0.1", port: 5001), heartbeat: Endpoint(host: "127.0.0.1", port: 5001)))
        let again = try JSONDecoder().decode(VirtualMachineMetaData.self, from: WireCoding.encoder().encode(placed))
        #expect(again.virtualMachineLocation.localControllerId == "lc1" && again.virtualMachineLocation.groupManagerId == "gm1")
        #expect(again.groupManagerControlDataAddress == NetworkAddress(address: "127.0.0.1", port: 5001) && again.isAssigned)
        #expect(again == placed)
    }

    @Test func unknownStatusStringsDoNotFailTheWholeDocument() throws {
        let json = #"{"virtualMachineMetaData":[{"status":"WEIRD","errorCode":"NOPE"}]}"#
        let s = try JSONDecoder().decode(VirtualMachineSubmission.self, from: Data(json.utf8))
        #expect(s.virtualMachineMetaData.first?.status == .unknown)
    }

    @Test func hostDocumentsUseSeedNames() throws {
        let doc = ImagePoolDocument(imagePool: .init(path: "/x", maxGB: 5, usedGB: 1))
        let text = String(decoding: try WireCoding.encoder().encode(doc), as: UTF8.self)
        #expect(text == #"{"image-pool":{"max_gb":5,"path":"/x","used_gb":1}}"#)
        let quota = try JSONDecoder().decode(QuotaDocument.self, from: Data(#"{"quota":{"cpu_max":16}}"#.utf8))
        #expect(quota.quota.cpuMax == 16 && quota.quota.memoryMaxMB == nil)
    }
}
