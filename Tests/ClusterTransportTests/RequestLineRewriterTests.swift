import ClusterTransport
import Foundation
import Testing

@Suite struct RequestLineRewriterTests {
    func rewrite(_ text: String, chunk: Int = .max) -> String {
        var r = RequestLineRewriter()
        let bytes = Array(text.utf8)
        var out: [UInt8] = []
        var i = 0
        while i < bytes.count {
            let end = min(bytes.count, i + chunk)
            out += r.feed(bytes[i..<end])
            i = end
        }
        return String(decoding: out, as: UTF8.self)
    }

    @Test func insertsTheMissingSlash() {
        #expect(rewrite("POST groupmanager?startVirtualCluster HTTP/1.1\r\nHost: x\r\n\r\n")
                == "POST /groupmanager?startVirtualCluster HTTP/1.1\r\nHost: x\r\n\r\n")
    }

    @Test func leavesValidTargetsAlone() {
        for request in ["GET /bootstrap?getGroupLeaderDescription HTTP/1.1\r\n\r\n", "OPTIONS * HTTP/1.1\r\n\r\n",
                        "GET http://h:5000/bootstrap HTTP/1.1\r\n\r\n"] {
            #expect(rewrite(request) == request)
        }
    }

    @Test func fixesEveryRequestOnAKeepAliveConnectionWhateverTheChunking() {
        let body = "a4fba1c6-4c8f-4691-a530-01c067e8deb2"
        let input = "POST groupmanager?startVirtualCluster HTTP/1.1\r\nContent-Length: 21\r\n\r\n{\"virtualMachines\":1}"
            + "POST groupmanager?getVirtualClusterResponse HTTP/1.1\r\ncontent-length: \(body.utf8.count)\r\n\r\n\(body)"
            + "\r\nGET /health HTTP/1.1\r\n\r\n"
        let expected = input.replacingOccurrences(of: "POST groupmanager", with: "POST /groupmanager")
        for chunk in [1, 2, 3, 7, 64, .max] {
            #expect(rewrite(input, chunk: chunk) == expected, "chunk \(chunk)")
        }
    }

    @Test func aBodyThatLooksLikeARequestLineIsNotTouched() {
        let input = "POST groupmanager?x HTTP/1.1\r\nContent-Length: 14\r\n\r\nGET a HTTP/1.1"
        #expect(rewrite(input) == "POST /groupmanager?x HTTP/1.1\r\nContent-Length: 14\r\n\r\nGET a HTTP/1.1")
    }

    @Test func chunkedOrUnreadableLengthsSwitchToPassThrough() {
        let chunked = "POST groupmanager?x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\nPOST groupmanager?y HTTP/1.1\r\n\r\n"
        // The first request is fixed; after a chunked body the rest passes as it came, for the parser to judge.
        #expect(rewrite(chunked) == chunked.replacingOccurrences(of: "POST groupmanager?x", with: "POST /groupmanager?x"))
        let bad = "POST groupmanager?x HTTP/1.1\r\nContent-Length: lots\r\n\r\nPOST groupmanager?y HTTP/1.1\r\n\r\n"
        #expect(rewrite(bad) == bad.replacingOccurrences(of: "POST groupmanager?x", with: "POST /groupmanager?x"))
    }
}


