import ClusterCore
import Hypervisor
import Testing

@Suite struct DozeDomainMetadataTests {
    @Test func encodesEveryFieldAndEscapesTheAddressAndAdaptations() {
        let metadata = DozeDomainMetadata(rxBytes: 1.5, txBytes: 2, ipAddress: "10.0.0.<7>",
                                          adaptations: ["domain type 'kvm' adapted to 'test'", "b&c"], definitionDigest: "ab12")
        #expect(metadata.encode()
            == "<vm rx='1.5' tx='2.0' ip='10.0.0.&lt;7&gt;' adapted='domain type &apos;kvm&apos; adapted to &apos;test&apos;; b&amp;c' def='ab12'/>")
    }

    @Test func leavesOutEmptyAdaptationsAndAMissingDigest() {
        #expect(DozeDomainMetadata(ipAddress: "10.0.0.1").encode() == "<vm rx='0.0' tx='0.0' ip='10.0.0.1'/>")
    }

    @Test func carriesADeclaredLoadOnlyWhenThereIsOne() {
        var metadata = DozeDomainMetadata(ipAddress: "10.0.0.1")
        metadata.syntheticLoad = SyntheticLoad(vcpus: 1.5, memoryMiB: 512)
        #expect(metadata.encode() == "<vm rx='0.0' tx='0.0' ip='10.0.0.1' load-vcpus='1.5' load-mem='512.0'/>")
        #expect(DozeDomainMetadata(decoding: metadata.encode()) == metadata)
        metadata.syntheticLoad = SyntheticLoad(vcpus: 2)
        #expect(DozeDomainMetadata(decoding: metadata.encode()).syntheticLoad == SyntheticLoad(vcpus: 2))
        // A value no declaration could have made reads as none.
        #expect(DozeDomainMetadata(decoding: "<vm load-vcpus='-1' load-mem='nan'/>").syntheticLoad.isEmpty)
    }

    @Test func decodesWhatItEncodes() {
        let metadata = DozeDomainMetadata(rxBytes: 100, txBytes: 250.25, ipAddress: "192.168.1.9",
                                          adaptations: ["one 'quoted'", "two <b>"], definitionDigest: "f00d")
        #expect(DozeDomainMetadata(decoding: metadata.encode()) == metadata)
        #expect(DozeDomainMetadata(decoding: DozeDomainMetadata().encode()) == DozeDomainMetadata())
    }

    /// libvirt hands the element back in its own spelling: double quotes, a namespace declaration, a prefix.
    @Test func decodesLibvirtsSpelling() {
        let element = "\n<doze:vm xmlns:doze=\"urn:doze:vm:1\" rx=\"3\" tx=\"4\" ip=\"10.1.2.3\" adapted=\"x &amp; y\" def=\"9a\"/>\n"
        let metadata = DozeDomainMetadata(decoding: element)
        #expect(metadata == DozeDomainMetadata(rxBytes: 3, txBytes: 4, ipAddress: "10.1.2.3", adaptations: ["x & y"],
                                               definitionDigest: "9a"))
    }

    @Test func readsOnlyTheElementsOwnAttributes() {
        let metadata = DozeDomainMetadata(decoding: "<vm ip='10.0.0.1'><inner rx='5' def='no'/></vm>")
        #expect(metadata.ipAddress == "10.0.0.1")
        #expect(metadata.rxBytes == 0)
        #expect(metadata.definitionDigest == nil)
    }

    @Test func unreadableValuesReadAsDefaults() {
        #expect(DozeDomainMetadata(decoding: "<vm rx='lots' tx='' adapted=''/>") == DozeDomainMetadata())
        #expect(DozeDomainMetadata(decoding: "") == DozeDomainMetadata())
        #expect(DozeDomainMetadata(decoding: "not xml at all") == DozeDomainMetadata())
        // Broken after the start tag: the tag's attributes still count.
        #expect(DozeDomainMetadata(decoding: "<vm ip='10.0.0.2'><unclosed>").ipAddress == "10.0.0.2")
    }

    @Test func domainMetadataCarriesTheNamespaceAndKey() {
        let element = DozeDomainMetadata(ipAddress: "10.0.0.3").domainMetadata
        #expect(element.namespace == "urn:doze:vm:1")
        #expect(element.key == "doze")
        #expect(element.xml == "<vm rx='0.0' tx='0.0' ip='10.0.0.3'/>")
    }
}
