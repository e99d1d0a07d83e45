import ClusterAPI
import ClusterCore
import ClusterWire
import Foundation
import Hypervisor
import Logging

// Seed 003's single-host VM API.
extension LocalController {
    public func createVM(xml: String) async throws(DozeError) -> VMCreation {
        let (record, created, _) = try await startVM(xml: xml, expectedName: nil)
        return VMCreation(summary: summary(record), created: created)
    }

    public func createVM(xmlFile fileName: String) async throws(DozeError) -> VMCreation {
        let path = try allowedXMLFile(fileName)
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: path),
              attributes[.type] as? FileAttributeType == .typeRegular else {
            throw DozeError(.notFound, "no XML file '\(fileName)' in the XML directory")
        }
        guard ((attributes[.size] as? NSNumber)?.intValue ?? 0) <= settings.maxBodyBytes else {
            throw DozeError(.payloadTooLarge, "XML file '\(fileName)' is larger than \(settings.maxBodyBytes) bytes")
        }
        guard let xml = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw DozeError(.badRequest, "XML file '\(fileName)' is not readable UTF-8 text")
        }
        return try await createVM(xml: xml)
    }

    public func listVMs() async throws(DozeError) -> VMListDocument {
        VMListDocument(vms: vms.keys.sorted().compactMap { vms[$0].map(summary) })
    }

    public func vm(_ name: String) async throws(DozeError) -> VMSummary {
        summary(try await current(name))
    }

    public func deleteVM(_ name: String) async throws(DozeError) -> VMSummary {
        var gone = summary(try await remove(name))
        gone.state = "deleted"
        gone.status = .offline
        return gone
    }

    public func createSnapshot(vm: String, name: String?, xml: String?) async throws(DozeError) -> SnapshotSummary {
        _ = try await current(vm)
        let snapshotXML: String
        if let xml {
            snapshotXML = xml
        } else {
            let snapshotName = name ?? "snap-\(Int(Date().timeIntervalSince1970 * 1000))"
            try Validation.snapshotName(snapshotName)
            snapshotXML = "<domainsnapshot><name>\(snapshotName)</name></domainsnapshot>"
        }
        do {
            let snapshot = try await hypervisor.createSnapshot(.name(vm), xml: snapshotXML)
            log.info("snapshot taken", metadata: ["doze/vm": "\(vm)", "doze/snapshot": "\(snapshot.name)"])
            return SnapshotSummary(name: snapshot.name, createdAt: snapshot.createdAt, state: snapshot.state, current: snapshot.isCurrent)
        } catch {
            throw Self.map(error, doing: "snapshot '\(vm)'")
        }
    }

    public func snapshots(vm: String) async throws(DozeError) -> SnapshotListDocument {
        _ = try await current(vm)
        do {
            let list = try await hypervisor.listSnapshots(.name(vm))
            return SnapshotListDocument(vm: vm, snapshots: list.map {
                SnapshotSummary(name: $0.name, createdAt: $0.createdAt, state: $0.state, current: $0.isCurrent)
            })
        } catch {
            throw Self.map(error, doing: "list snapshots of '\(vm)'")
        }
    }

    public func revertSnapshot(vm: String, snapshot: String) async throws(DozeError) -> VMSummary {
        _ = try await current(vm)
        try Validation.snapshotName(snapshot)
        do {
            try await hypervisor.revertToSnapshot(.name(vm), snapshot: snapshot)
        } catch {
            throw Self.map(error, doing: "revert '\(vm)' to '\(snapshot)'")
        }
        guard let record = try await refresh(vm, xmlChanged: true) else { throw DozeError(.notFound, "unknown VM '\(vm)'") }
        return summary(record)
    }

    public func deleteSnapshot(vm: String, snapshot: String) async throws(DozeError) {
        _ = try await current(vm)
        try Validation.snapshotName(snapshot)
        do {
            try await hypervisor.deleteSnapshot(.name(vm), snapshot: snapshot)
        } catch {
            throw Self.map(error, doing: "delete snapshot '\(snapshot)' of '\(vm)'")
        }
    }
}
