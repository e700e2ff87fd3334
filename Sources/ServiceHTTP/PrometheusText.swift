import Foundation
import ServiceCore

/// A strict reader of the Prometheus text exposition format (version 0.0.4), for tests and for tools that report from
/// a process's registry (`shop bench checkout`): it refuses anything a Prometheus server would refuse (bad names, bad label syntax or escapes, unparsable values, samples of a family
/// without or before its `# TYPE`, duplicate series, histogram buckets that are not cumulative or lack `+Inf`).
/// Written here because no Swift package in reach parses the format.
public struct PrometheusText: Sendable {
    public struct Sample: Sendable, Equatable {
        public var name: String
        public var labels: [String: String]
        public var value: Double
    }

    public struct Invalid: Error, CustomStringConvertible {
        public let line: Int
        public let reason: String
        public var description: String { "line \(line): \(reason)" }
    }

    /// `# TYPE` of each family.
    public private(set) var types: [String: String] = [:]
    public private(set) var samples: [Sample] = []

    public init(_ text: String) throws {
        var seen = Set<String>()
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            let line = String(raw)
            if line.isEmpty { continue }
            if line.hasPrefix("#") {
                let parts = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: true).map(String.init)
                guard parts.count >= 2, parts[0] == "#" else { continue }  // a comment
                if parts[1] == "TYPE" {
                    guard parts.count == 4, Self.isMetricName(parts[2]) else { throw Invalid(line: number, reason: "malformed TYPE line") }
                    guard ["counter", "gauge", "histogram", "summary", "untyped"].contains(parts[3]) else {
                        throw Invalid(line: number, reason: "unknown type \(parts[3])")
                    }
                    guard types[parts[2]] == nil else { throw Invalid(line: number, reason: "second TYPE for \(parts[2])") }
                    guard !samples.contains(where: { Self.family(of: $0.name, types: [parts[2]: parts[3]]) == parts[2] }) else {
                        throw Invalid(line: number, reason: "TYPE for \(parts[2]) after its samples")
                    }
                    types[parts[2]] = parts[3]
                } else if parts[1] == "HELP" {
                    guard parts.count >= 3, Self.isMetricName(parts[2]) else { throw Invalid(line: number, reason: "malformed HELP line") }
                }
                continue
            }
            let sample = try Self.sample(line, number: number)
            guard Self.family(of: sample.name, types: types) != nil else {
                throw Invalid(line: number, reason: "sample \(sample.name) without a TYPE before it")
            }
            let key = sample.name + "{" + sample.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") + "}"
            guard seen.insert(key).inserted else { throw Invalid(line: number, reason: "duplicate series \(key)") }
            samples.append(sample)
        }
        try checkHistograms()
    }

    /// The family a sample name belongs to (`x_bucket` → `x` for a histogram), if it has a TYPE.
    static func family(of name: String, types: [String: String]) -> String? {
        if types[name] != nil { return name }
        for suffix in ["_bucket", "_sum", "_count"] where name.hasSuffix(suffix) {
            let base = String(name.dropLast(suffix.count))
            if let type = types[base], type == "histogram" || type == "summary" { return base }
        }
        return nil
    }

    static func isMetricName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first.isASCIILetter || first == "_" || first == ":" else { return false }
        return name.unicodeScalars.allSatisfy { $0.isASCIILetter || $0.isASCIIDigit || $0 == "_" || $0 == ":" }
    }

    static func isLabelName(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, first.isASCIILetter || first == "_" else { return false }
        return name.unicodeScalars.allSatisfy { $0.isASCIILetter || $0.isASCIIDigit || $0 == "_" }
    }

    static func sample(_ line: String, number: Int) throws -> Sample {
        let characters = Array(line)
        var index = 0
        while index < characters.count, characters[index] != "{", characters[index] != " " { index += 1 }
        let name = String(characters[0..<index])
        guard isMetricName(name) else { throw Invalid(line: number, reason: "bad metric name '\(name)'") }
        var labels: [String: String] = [:]
        if index < characters.count, characters[index] == "{" {
            index += 1
            while true {
                guard index < characters.count else { throw Invalid(line: number, reason: "unterminated labels") }
                if characters[index] == "}" {
                    index += 1
                    break
                }
                var labelEnd = index
                while labelEnd < characters.count, characters[labelEnd] != "=" { labelEnd += 1 }
                let label = String(characters[index..<labelEnd])
                guard isLabelName(label), labelEnd + 1 < characters.count, characters[labelEnd + 1] == "\"" else {
                    throw Invalid(line: number, reason: "bad label '\(label)'")
                }
                guard labels[label] == nil else { throw Invalid(line: number, reason: "label \(label) twice") }
                index = labelEnd + 2
                var value = ""
                while true {
                    guard index < characters.count else { throw Invalid(line: number, reason: "unterminated label value") }
                    let character = characters[index]
                    if character == "\"" { break }
                    if character == "\\" {
                        guard index + 1 < characters.count else { throw Invalid(line: number, reason: "dangling escape") }
                        switch characters[index + 1] {
                        case "\\": value.append("\\")
                        case "\"": value.append("\"")
                        case "n": value.append("\n")
                        default: throw Invalid(line: number, reason: "bad escape \\\(characters[index + 1])")
                        }
                        index += 2
                        continue
                    }
                    guard character != "\n" else { throw Invalid(line: number, reason: "raw newline in label value") }
                    value.append(character)
                    index += 1
                }
                labels[label] = value
                index += 1
                if index < characters.count, characters[index] == "," { index += 1 }
            }
        }
        guard index < characters.count, characters[index] == " " else { throw Invalid(line: number, reason: "no value") }
        let rest = String(characters[(index + 1)...]).split(separator: " ").map(String.init)
        guard (1...2).contains(rest.count), let value = parseValue(rest[0]) else {
            throw Invalid(line: number, reason: "bad value '\(rest.first ?? "")'")
        }
        if rest.count == 2, Int64(rest[1]) == nil { throw Invalid(line: number, reason: "bad timestamp") }
        return Sample(name: name, labels: labels, value: value)
    }

    static func parseValue(_ text: String) -> Double? {
        switch text {
        case "+Inf", "Inf": return .infinity
        case "-Inf": return -.infinity
        case "NaN": return .nan
        default: return Double(text)
        }
    }

    /// Every histogram series: buckets with `le`, cumulative, ending in `+Inf` equal to `_count`.
    func checkHistograms() throws {
        for (family, type) in types where type == "histogram" {
            let buckets = samples.filter { $0.name == family + "_bucket" }
            let series = Dictionary(grouping: buckets) { sample in
                sample.labels.filter { $0.key != "le" }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",")
            }
            for (key, buckets) in series {
                let ordered = try buckets.map { bucket -> (Double, Double) in
                    guard let le = bucket.labels["le"].flatMap(Self.parseValue) else { throw Invalid(line: 0, reason: "\(family) bucket without le") }
                    return (le, bucket.value)
                }.sorted { $0.0 < $1.0 }
                guard ordered.last?.0 == .infinity else { throw Invalid(line: 0, reason: "\(family){\(key)} has no +Inf bucket") }
                for (lower, upper) in zip(ordered, ordered.dropFirst()) where upper.1 < lower.1 {
                    throw Invalid(line: 0, reason: "\(family){\(key)} buckets are not cumulative")
                }
                let count = samples.first { $0.name == family + "_count" && Self.sameSeries($0.labels, key) }
                guard count?.value == ordered.last?.1 else { throw Invalid(line: 0, reason: "\(family){\(key)} +Inf bucket differs from _count") }
            }
        }
    }

    static func sameSeries(_ labels: [String: String], _ key: String) -> Bool {
        labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ",") == key
    }

    /// The value of the series `name` whose labels include `labels` (0 when there is none).
    public func value(_ name: String, _ labels: [String: String] = [:]) -> Double {
        samples.filter { sample in sample.name == name && labels.allSatisfy { sample.labels[$0.key] == $0.value } }.reduce(0) { $0 + $1.value }
    }
}

extension Unicode.Scalar {
    fileprivate var isASCIILetter: Bool { (0x41...0x5A).contains(value) || (0x61...0x7A).contains(value) }
    fileprivate var isASCIIDigit: Bool { (0x30...0x39).contains(value) }
}
