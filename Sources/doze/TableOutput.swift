import Foundation

/// A plain-text table for humans: a header row, columns two spaces apart, the last column unpadded.
struct TextTable {
    var header: [String]
    var rows: [[String]] = []

    init(_ header: String...) { self.header = header }

    mutating func add(_ row: [String]) {
        precondition(row.count == header.count, "a row of \(row.count) cells for \(header.count) columns: \(row)")
        rows.append(row)
    }

    func render() -> String {
        var widths = header.map(\.count)
        for row in rows { for (i, cell) in row.enumerated() { widths[i] = max(widths[i], cell.count) } }
        return ([header] + rows).map { row in
            row.enumerated().map { i, cell in
                i == row.count - 1 ? cell : cell + String(repeating: " ", count: widths[i] - cell.count + 2)
            }.joined().trimmingTrailingSpaces()
        }.joined(separator: "\n")
    }
}

/// `key: value` lines with the values aligned.
func keyValueLines(_ pairs: [(String, String)]) -> String {
    let width = (pairs.map(\.0.count).max() ?? 0) + 2
    return pairs.map { key, value in
        (key + ":" + String(repeating: " ", count: width - key.count - 1) + value).trimmingTrailingSpaces()
    }.joined(separator: "\n")
}

extension String {
    func trimmingTrailingSpaces() -> String {
        var trimmed = self
        while trimmed.last == " " { trimmed.removeLast() }
        return trimmed
    }
}
