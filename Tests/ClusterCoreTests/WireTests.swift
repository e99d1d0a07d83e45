import ClusterCore
import ClusterWire
import Foundation
import Testing

@Suite struct SnoozeWireTests {
    @Test func metaDataDecodesWithMissingFields() throws {
        let json = #"{"virtualMachineLocation":{"virtualMachineId":"vm1"},"xmlRepresentation":"<domain/>","requestedCapacity":[1,2048,10,20]}"#
        let m = try JSONDecoder().decode(VirtualMachineMetaData.self, from: Data(json.utf8))
        #expect(m.virtualMachineLocation.virtualMachineId == "vm1")
        #expect(m.virtualMachineLocation.localControllerControlDataAddress == NetworkAddress(address: "UNKNOWN", port: -1))
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
