import Hypervisor
import Testing

/// The reader's refusals that keep Doze and libvirt reading one document (issue 14).
@Suite struct XMLScannerTests {
    static func failure(_ xml: String) -> XMLScanner.Failure? {
        do throws(XMLScanner.Failure) {
            try XMLScanner.scan(xml, maxDepth: 64) { _ in }
            return nil
        } catch {
            return error
        }
    }

    @Test func anXMLDeclarationMayNameUTF8Only() throws {
        for declaration in ["<?xml version='1.0'?>", "<?xml version=\"1.0\" encoding=\"UTF-8\"?>", "<?xml version='1.0' encoding = 'utf-8' ?>"] {
            #expect(Self.failure(declaration + "<domain/>") == nil, "\(declaration)")
        }
        for encoding in ["UTF-7", "utf-16", "ISO-8859-1", "EBCDIC-US"] {
            let failure = try #require(Self.failure("<?xml version='1.0' encoding='\(encoding)'?><domain/>"), "\(encoding) was accepted")
            #expect(failure.reason.contains("encoding '\(encoding)'") && failure.line == 1 && failure.column == 1, "\(failure)")
        }
        // Another processing instruction that mentions an encoding is not a declaration.
        #expect(Self.failure("<domain><?note encoding='UTF-7'?></domain>") == nil)
    }

    @Test func entityTricksAreRefusedWhereTheyStart() throws {
        let cases: [(String, String, Int)] = [
            ("<!DOCTYPE d [<!ENTITY e 'x'>]><domain>&e;</domain>", "DOCTYPE is not accepted", 1),
            ("<domain>\n<!ENTITY e 'x'></domain>", "a declaration is not accepted", 1),
            ("<domain>&e;</domain>", "unknown entity &e;", 9),
            ("<domain>&#xD800;</domain>", "unknown entity &#xD800;", 9),
        ]
        for (xml, reason, column) in cases {
            let failure = try #require(Self.failure(xml), "\(xml) was accepted")
            #expect(failure.reason.contains(reason) && failure.column == column, "\(xml) → \(failure)")
        }
    }
}
