import Glibc

/// A standalone SVG line chart for `relay-bench sweep --plot FILE.svg`.
///
/// It draws a title, both axes with tick labels and unit-bearing axis titles, light grid lines,
/// one polyline `<path class="series">` per variant with a marker and value label at every
/// point, and a legend. The x axis can be logarithmic (base 2) for sizes such as 16…4096 bytes.
/// The output needs no fonts or scripts beyond a generic sans-serif and renders in browsers,
/// `rsvg-convert` and ImageMagick.
struct SVGPlot: Sendable {
    /// How an axis maps values.
    enum Scale: Sendable {
        /// Evenly spaced values.
        case linear
        /// Powers of two evenly spaced; every x must be positive.
        case log2
    }

    /// How tick and marker values are printed.
    enum ValueFormat: Sendable {
        /// Compact SI: `950`, `12.5k`, `3.2M`, `1.5G`.
        case compact
        /// Binary sizes: `512`, `4K`, `1M`.
        case bytes
    }

    /// One point of a series.
    struct Point: Sendable, Equatable {
        var x: Double
        var y: Double

        init(x: Double, y: Double) {
            self.x = x
            self.y = y
        }
    }

    /// One line of the chart (a variant).
    struct Series: Sendable {
        var name: String
        var points: [Point]

        init(name: String, points: [Point]) {
            self.name = name
            self.points = points
        }
    }

    /// The chart title.
    var title: String
    /// The x axis title including its unit, e.g. `record size (bytes)`.
    var xLabel: String
    /// The y axis title including its unit, e.g. `throughput (records/s)`.
    var yLabel: String
    /// Linear or base-2 logarithmic x axis.
    var xScale: Scale
    /// How x tick labels print.
    var xFormat: ValueFormat
    /// How y tick and value labels print.
    var yFormat: ValueFormat
    /// The lines, one per variant, in legend order.
    var series: [Series]
    /// Width in pixels.
    var width: Int
    /// Height in pixels.
    var height: Int

    /// Creates a chart description.
    init(
        title: String,
        xLabel: String,
        yLabel: String,
        xScale: Scale = .linear,
        xFormat: ValueFormat = .compact,
        yFormat: ValueFormat = .compact,
        series: [Series],
        width: Int = 900,
        height: Int = 540
    ) {
        self.title = title
        self.xLabel = xLabel
        self.yLabel = yLabel
        self.xScale = xScale
        self.xFormat = xFormat
        self.yFormat = yFormat
        self.series = series
        self.width = width
        self.height = height
    }

    /// Series colors, distinguishable for common color-vision deficiencies (Okabe–Ito).
    static let palette = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]

    /// Writes ``render()`` to `path`.
    ///
    /// - Throws: ``BenchError`` when the file cannot be written or the data cannot be plotted.
    func write(to path: String) throws(BenchError) {
        let text = try self.render()
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw BenchError.system("cannot write plot '\(path)'", errno: errno, fix: "pick a writable path for --plot")
        }
        defer { POSIXIO.closeQuietly(fd) }
        var bytes = Array(text.utf8)
        let code = bytes.withUnsafeMutableBytes { POSIXIO.writeAll(fd, $0.baseAddress!, $0.count) }
        guard code == 0 else {
            throw BenchError.system("cannot write plot '\(path)'", errno: code, fix: "free space or pick another path for --plot")
        }
        bytes.removeAll()
    }

    /// The chart as an SVG document.
    ///
    /// - Throws: ``BenchError`` when there is nothing to plot or a log-scale x is not positive.
    func render() throws(BenchError) -> String {
        let points = self.series.flatMap(\.points)
        guard !points.isEmpty else {
            throw BenchError("nothing to plot: the sweep produced no measurements")
        }
        guard points.allSatisfy({ $0.x.isFinite && $0.y.isFinite }) else {
            throw BenchError("cannot plot non-finite values: check the sweep results")
        }
        if self.xScale == .log2 && points.contains(where: { $0.x <= 0 }) {
            throw BenchError("a log-scale x axis needs positive values: use a linear x axis")
        }

        // Plot area.
        let left = 90.0
        let right = Double(self.width) - 190.0
        let top = 60.0
        let bottom = Double(self.height) - 70.0

        // X mapping.
        let xs = points.map(\.x)
        var xMin = xs.min()!
        var xMax = xs.max()!
        var xTicks: [Double]
        let xPosition: (Double) -> Double
        switch self.xScale {
        case .log2:
            let low = Glibc.floor(Glibc.log2(xMin))
            var high = Glibc.ceil(Glibc.log2(xMax))
            if high == low { high = low + 1 }
            xMin = Glibc.exp2(low)
            xMax = Glibc.exp2(high)
            let step = max(1.0, Glibc.ceil((high - low) / 10))
            xTicks = stride(from: low, through: high, by: step).map { Glibc.exp2($0) }
            // Keep the first and last markers off the axis lines.
            let pad = (high - low) * 0.04
            let (from, to) = (low - pad, high + pad)
            xPosition = { left + (Glibc.log2($0) - from) / (to - from) * (right - left) }
        case .linear:
            let ticks = SVGPlot.niceTicks(low: xMin, high: xMax, count: 8)
            xTicks = ticks
            xMin = ticks.first!
            xMax = ticks.last!
            let pad = (xMax - xMin) * 0.04
            let (minimum, maximum) = (xMin - pad, xMax + pad)
            xPosition = { left + ($0 - minimum) / (maximum - minimum) * (right - left) }
        }

        // Y mapping: from zero when all values are non-negative, so ratios read true.
        let ys = points.map(\.y)
        let yLow = min(0, ys.min()!)
        // 6% headroom keeps the top marker's value label inside the plot.
        let yHigh = ys.max()! > 0 ? ys.max()! * 1.06 : ys.max()!
        let yTicks = SVGPlot.niceTicks(low: yLow, high: max(yHigh, yLow + 1e-9), count: 6)
        let yMin = yTicks.first!
        let yMax = yTicks.last!
        let yPosition: (Double) -> Double = { bottom - ($0 - yMin) / (yMax - yMin) * (bottom - top) }

        var svg: [String] = []
        svg.append(##"<?xml version="1.0" encoding="UTF-8"?>"##)
        svg.append(
            ##"<svg xmlns="http://www.w3.org/2000/svg" width="\##(self.width)" height="\##(self.height)" viewBox="0 0 \##(self.width) \##(self.height)" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">"##
        )
        svg.append(##"<title>\##(SVGPlot.escape(self.title))</title>"##)
        svg.append(##"<rect x="0" y="0" width="\##(self.width)" height="\##(self.height)" fill="#ffffff"/>"##)
        svg.append(##"<text x="\##(SVGPlot.f((left + right) / 2))" y="32" text-anchor="middle" font-size="18" font-weight="bold" fill="#222">\##(SVGPlot.escape(self.title))</text>"##)

        // Grid and y ticks.
        svg.append(##"<g class="y-axis" font-size="12" fill="#333">"##)
        for tick in yTicks {
            let y = SVGPlot.f(yPosition(tick))
            svg.append(##"<line x1="\##(SVGPlot.f(left))" y1="\##(y)" x2="\##(SVGPlot.f(right))" y2="\##(y)" stroke="#e3e3e3" stroke-width="1"/>"##)
            svg.append(##"<text x="\##(SVGPlot.f(left - 8))" y="\##(y)" dy="4" text-anchor="end">\##(SVGPlot.escape(SVGPlot.format(tick, self.yFormat)))</text>"##)
        }
        svg.append("</g>")

        // X ticks.
        svg.append(##"<g class="x-axis" font-size="12" fill="#333">"##)
        for tick in xTicks {
            let x = SVGPlot.f(xPosition(tick))
            svg.append(##"<line x1="\##(x)" y1="\##(SVGPlot.f(top))" x2="\##(x)" y2="\##(SVGPlot.f(bottom))" stroke="#f0f0f0" stroke-width="1"/>"##)
            svg.append(##"<line x1="\##(x)" y1="\##(SVGPlot.f(bottom))" x2="\##(x)" y2="\##(SVGPlot.f(bottom + 5))" stroke="#333" stroke-width="1"/>"##)
            svg.append(##"<text x="\##(x)" y="\##(SVGPlot.f(bottom + 20))" text-anchor="middle">\##(SVGPlot.escape(SVGPlot.format(tick, self.xFormat)))</text>"##)
        }
        svg.append("</g>")

        // Axes and their titles.
        svg.append(##"<line x1="\##(SVGPlot.f(left))" y1="\##(SVGPlot.f(bottom))" x2="\##(SVGPlot.f(right))" y2="\##(SVGPlot.f(bottom))" stroke="#333" stroke-width="1.5"/>"##)
        svg.append(##"<line x1="\##(SVGPlot.f(left))" y1="\##(SVGPlot.f(top))" x2="\##(SVGPlot.f(left))" y2="\##(SVGPlot.f(bottom))" stroke="#333" stroke-width="1.5"/>"##)
        let xTitle = self.xLabel + (self.xScale == .log2 ? ", log scale" : "")
        svg.append(##"<text x="\##(SVGPlot.f((left + right) / 2))" y="\##(SVGPlot.f(bottom + 48))" text-anchor="middle" font-size="14" fill="#222">\##(SVGPlot.escape(xTitle))</text>"##)
        let yMiddle = SVGPlot.f((top + bottom) / 2)
        svg.append(##"<text x="22" y="\##(yMiddle)" text-anchor="middle" font-size="14" fill="#222" transform="rotate(-90 22 \##(yMiddle))">\##(SVGPlot.escape(self.yLabel))</text>"##)

        // Series: a line and a marker per point, each variant in its own group.
        let plotted = self.series.enumerated().map { index, series in
            (index: index, name: series.name, points: series.points.sorted { $0.x < $1.x }.map { (x: xPosition($0.x), y: yPosition($0.y), value: $0.y) })
        }
        for series in plotted where !series.points.isEmpty {
            let color = SVGPlot.palette[series.index % SVGPlot.palette.count]
            let commands = series.points.enumerated().map { offset, point in
                "\(offset == 0 ? "M" : "L")\(SVGPlot.f(point.x)) \(SVGPlot.f(point.y))"
            }
            svg.append(##"<g class="variant" data-variant="\##(SVGPlot.escape(series.name))">"##)
            svg.append(##"<path class="series" d="\##(commands.joined(separator: " "))" fill="none" stroke="\##(color)" stroke-width="2.5" stroke-linejoin="round"/>"##)
            for point in series.points {
                svg.append(##"<circle cx="\##(SVGPlot.f(point.x))" cy="\##(SVGPlot.f(point.y))" r="4" fill="#fff" stroke="\##(color)" stroke-width="2"/>"##)
            }
            svg.append("</g>")
        }

        // Value labels, drawn last so no line covers them. Each goes above or below its marker,
        // wherever it overlaps no earlier label and no marker and stays inside the plot; the
        // preferred side alternates per series so neighbouring lines label on opposite sides.
        let markers = plotted.flatMap { $0.points.map { (x: $0.x, y: $0.y) } }
        var placed: [(x: Double, y: Double, width: Double)] = []
        svg.append(##"<g class="values" font-size="10" text-anchor="middle" stroke="#ffffff" stroke-width="3" paint-order="stroke">"##)
        for series in plotted {
            let color = SVGPlot.palette[series.index % SVGPlot.palette.count]
            for point in series.points {
                let label = SVGPlot.format(point.value, self.yFormat)
                let width = Double(label.count) * 6.2 + 4
                let above = [point.y - 9, point.y - 21, point.y - 33]
                let below = [point.y + 18, point.y + 30, point.y + 42]
                let preferred = series.index % 2 == 0 ? zip(above, below).flatMap { [$0, $1] } : zip(below, above).flatMap { [$0, $1] }
                let candidates = preferred.filter { $0 - 10 >= top - 14 && $0 <= bottom - 3 }
                // A label's baseline is `y`; its box spans y - 9 ... y + 2.
                func hitsLabel(_ y: Double) -> Bool {
                    placed.contains { Swift.abs($0.x - point.x) < ($0.width + width) / 2 && Swift.abs($0.y - y) < 11 }
                }
                func hitsMarker(_ y: Double) -> Bool {
                    markers.contains { Swift.abs($0.x - point.x) < width / 2 + 4 && $0.y > y - 14 && $0.y < y + 7 }
                }
                // Overlapping a marker is better than overlapping another label.
                let labelY = candidates.first { !hitsLabel($0) && !hitsMarker($0) }
                    ?? candidates.first { !hitsLabel($0) }
                    ?? preferred.first { !hitsLabel($0) && $0 - 10 >= top - 14 }
                    ?? candidates.first ?? point.y - 9
                placed.append((x: point.x, y: labelY, width: width))
                svg.append(##"<text x="\##(SVGPlot.f(point.x))" y="\##(SVGPlot.f(labelY))" fill="\##(color)">\##(SVGPlot.escape(label))</text>"##)
            }
        }
        svg.append("</g>")

        // Legend.
        let legendX = right + 20
        svg.append(##"<g class="legend" font-size="13" fill="#222">"##)
        for (index, series) in self.series.enumerated() {
            let color = SVGPlot.palette[index % SVGPlot.palette.count]
            let y = top + 10 + Double(index) * 22
            svg.append(##"<line x1="\##(SVGPlot.f(legendX))" y1="\##(SVGPlot.f(y))" x2="\##(SVGPlot.f(legendX + 24))" y2="\##(SVGPlot.f(y))" stroke="\##(color)" stroke-width="2.5"/>"##)
            svg.append(##"<circle cx="\##(SVGPlot.f(legendX + 12))" cy="\##(SVGPlot.f(y))" r="4" fill="#fff" stroke="\##(color)" stroke-width="2"/>"##)
            svg.append(##"<text x="\##(SVGPlot.f(legendX + 32))" y="\##(SVGPlot.f(y))" dy="4">\##(SVGPlot.escape(series.name))</text>"##)
        }
        svg.append("</g>")
        svg.append("</svg>")
        return svg.joined(separator: "\n") + "\n"
    }

    /// About `count` evenly spaced round ticks (steps of 1, 2 or 5 × 10^k) covering `low...high`.
    static func niceTicks(low: Double, high: Double, count: Int) -> [Double] {
        var low = low
        var high = high
        if high <= low {
            let pad = low == 0 ? 1 : Swift.abs(low) * 0.1
            low -= pad
            high += pad
        }
        let raw = (high - low) / Double(max(count - 1, 1))
        let magnitude = Glibc.pow(10, Glibc.floor(Glibc.log10(raw)))
        let fraction = raw / magnitude
        let step = (fraction <= 1 ? 1 : fraction <= 2 ? 2 : fraction <= 5 ? 5 : 10) * magnitude
        let first = Glibc.floor(low / step) * step
        let last = Glibc.ceil(high / step) * step
        var ticks: [Double] = []
        var value = first
        while value <= last + step / 2 {
            ticks.append(Swift.abs(value) < step / 1e6 ? 0 : value)
            value += step
        }
        return ticks
    }

    /// Formats `value` for a tick or marker label.
    static func format(_ value: Double, _ format: ValueFormat) -> String {
        switch format {
        case .compact:
            let magnitude = Swift.abs(value)
            if magnitude >= 1e9 { return SVGPlot.trim(value / 1e9) + "G" }
            if magnitude >= 1e6 { return SVGPlot.trim(value / 1e6) + "M" }
            if magnitude >= 1e3 { return SVGPlot.trim(value / 1e3) + "k" }
            return SVGPlot.trim(value)
        case .bytes:
            let magnitude = Swift.abs(value)
            if magnitude >= 1_073_741_824 { return SVGPlot.trim(value / Double(1 << 30)) + "G" }
            if magnitude >= 1_048_576 { return SVGPlot.trim(value / Double(1 << 20)) + "M" }
            if magnitude >= 1024 { return SVGPlot.trim(value / Double(1 << 10)) + "K" }
            return SVGPlot.trim(value)
        }
    }

    /// Up to 3 significant digits, no trailing zeros: `12.5`, `3`, `0.25`.
    private static func trim(_ value: Double) -> String {
        let magnitude = Swift.abs(value)
        let digits = magnitude >= 100 ? 0 : magnitude >= 10 ? 1 : 2
        var text = BenchUnits.fixed(value, digits)
        if text.contains(".") {
            while text.hasSuffix("0") { text.removeLast() }
            if text.hasSuffix(".") { text.removeLast() }
        }
        return text == "-0" ? "0" : text
    }

    /// A coordinate with at most one decimal.
    private static func f(_ value: Double) -> String {
        var text = BenchUnits.fixed(value, 1)
        if text.hasSuffix(".0") { text.removeLast(2) }
        return text
    }

    /// `text` with XML's special characters escaped.
    static func escape(_ text: String) -> String {
        var result = ""
        result.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": result += "&amp;"
            case "<": result += "&lt;"
            case ">": result += "&gt;"
            case "\"": result += "&quot;"
            case "'": result += "&apos;"
            default: result.append(character)
            }
        }
        return result
    }
}
