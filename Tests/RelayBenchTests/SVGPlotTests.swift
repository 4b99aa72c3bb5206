import Foundation
import Testing

#if canImport(FoundationXML)
import FoundationXML
#endif

@testable import relay_bench

/// Collects element names and attributes while parsing; records parse errors.
private final class SVGCollector: NSObject, XMLParserDelegate {
    var elements: [(name: String, attributes: [String: String])] = []
    var texts: [String] = []
    var error: (any Error)?

    func parser(_ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?, attributes: [String: String] = [:]) {
        self.elements.append((elementName, attributes))
    }

    private var pendingText = ""

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        // The parser delivers text around entities in pieces; join them per element.
        self.pendingText += string
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
        let trimmed = self.pendingText.trimmingCharacters(in: .whitespacesAndNewlines)
        if !trimmed.isEmpty { self.texts.append(trimmed) }
        self.pendingText = ""
    }

    func parser(_ parser: XMLParser, parseErrorOccurred parseError: any Error) {
        self.error = parseError
    }
}

@Suite("SVGPlot")
struct SVGPlotTests {
    private func sweepPlot() -> SVGPlot {
        let sizes: [Double] = [16, 32, 64, 128, 256, 512, 1024, 2048, 4096]
        return SVGPlot(
            title: "Throughput by record size <2 producers & null sink>",
            xLabel: "record size (bytes)",
            yLabel: "throughput (records/s)",
            xScale: .log2,
            xFormat: .bytes,
            series: [
                SVGPlot.Series(name: "swift-relay", points: sizes.map { .init(x: $0, y: 40e6 / ($0 / 16).squareRoot()) }),
                SVGPlot.Series(name: "mutex-buffer-64KiB", points: sizes.map { .init(x: $0, y: 6e6 / ($0 / 16).squareRoot()) }),
                SVGPlot.Series(name: "write-per-record", points: sizes.map { .init(x: $0, y: 900e3) }),
            ]
        )
    }

    private func parse(_ svg: String) throws -> SVGCollector {
        let collector = SVGCollector()
        let parser = XMLParser(data: Data(svg.utf8))
        parser.delegate = collector
        let ok = parser.parse()
        if let error = collector.error { throw error }
        #expect(ok)
        return collector
    }

    @Test("output is well-formed XML with one path per variant")
    func wellFormed() throws {
        let svg = try self.sweepPlot().render()
        let collector = try self.parse(svg)
        #expect(collector.elements.first?.name == "svg")
        #expect(collector.elements.first?.attributes["xmlns"] == "http://www.w3.org/2000/svg")
        let paths = collector.elements.filter { $0.name == "path" }
        #expect(paths.count == 3)
        #expect(paths.allSatisfy { $0.attributes["class"] == "series" })
        // Each path visits its 9 points.
        for path in paths {
            let commands = (path.attributes["d"] ?? "").split(separator: " ").filter { $0.hasPrefix("M") || $0.hasPrefix("L") }
            #expect(commands.count == 9)
        }
        let variants = collector.elements.compactMap { $0.attributes["data-variant"] }
        #expect(variants == ["swift-relay", "mutex-buffer-64KiB", "write-per-record"])
        #expect(collector.elements.filter { $0.name == "circle" }.count == 27 + 3)  // markers + legend
        // Title (escaped and unescaped by the parser), axis titles, log-scale ticks, legend, value labels.
        #expect(collector.texts.contains("Throughput by record size <2 producers & null sink>"))
        #expect(collector.texts.contains("record size (bytes), log scale"))
        #expect(collector.texts.contains("throughput (records/s)"))
        for tick in ["16", "64", "256", "1K", "4K"] { #expect(collector.texts.contains(tick), "tick \(tick)") }
        #expect(collector.texts.contains("40M"))
        #expect(collector.texts.contains("900k"))
        #expect(collector.texts.contains("write-per-record"))
    }

    @Test("linear axes get round ticks from zero")
    func linear() throws {
        let plot = SVGPlot(
            title: "Scaling",
            xLabel: "producers",
            yLabel: "GB/s",
            series: [SVGPlot.Series(name: "swift-relay", points: [.init(x: 1, y: 1.2), .init(x: 2, y: 2.3), .init(x: 4, y: 3.9)])]
        )
        let collector = try self.parse(try plot.render())
        #expect(collector.elements.filter { $0.name == "path" }.count == 1)
        #expect(collector.texts.contains("0"))
        #expect(collector.texts.contains("4"))
        #expect(SVGPlot.niceTicks(low: 0, high: 3.9, count: 6) == [0, 1, 2, 3, 4])
        #expect(SVGPlot.niceTicks(low: 0, high: 37e6, count: 6) == [0, 1e7, 2e7, 3e7, 4e7])
    }

    @Test("bad data is a BenchError, not a broken file")
    func badData() {
        #expect(throws: BenchError.self) {
            try SVGPlot(title: "t", xLabel: "x", yLabel: "y", series: []).render()
        }
        #expect(throws: BenchError.self) {
            try SVGPlot(title: "t", xLabel: "x", yLabel: "y", xScale: .log2, series: [.init(name: "a", points: [.init(x: 0, y: 1)])]).render()
        }
        #expect(throws: BenchError.self) {
            try SVGPlot(title: "t", xLabel: "x", yLabel: "y", series: [.init(name: "a", points: [.init(x: 1, y: .nan)])]).render()
        }
    }

    @Test("writes a file")
    func writes() throws {
        let directory = try BenchTestDirectory()
        let path = directory.file("sweep.svg")
        try self.sweepPlot().write(to: path)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        #expect(text == (try self.sweepPlot().render()))
        #expect(throws: BenchError.self) { try self.sweepPlot().write(to: directory.file("no/such/dir.svg")) }
    }
}
