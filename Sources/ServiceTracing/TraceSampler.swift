/// Which traces are recorded, as OpenTelemetry's samplers (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
public indirect enum TraceSampler: Sendable, Equatable {
    case alwaysOn
    case alwaysOff
    /// A fraction of the traces, decided by the trace id alone, so every process of a trace decides alike.
    case traceIDRatio(Double)
    /// The parent's decision when there is a parent; `root`'s for a new trace.
    case parentBased(root: TraceSampler)

    /// Whether a span of `traceID` under `parent` is recorded.
    public func shouldSample(traceID: TraceID, parent: TraceSpanContext?) -> Bool {
        switch self {
        case .alwaysOn: return true
        case .alwaysOff: return false
        case .traceIDRatio(let ratio):
            if ratio >= 1 { return true }
            if !(ratio > 0) { return false }  // zero, negative or NaN
            // The low 63 bits of the trace id against the ratio's share of them.
            return traceID.low & (UInt64.max >> 1) < UInt64(ratio * Double(UInt64.max >> 1))
        case .parentBased(let root):
            if let parent { return parent.sampled }
            return root.shouldSample(traceID: traceID, parent: nil)
        }
    }

    /// The sampler named by `OTEL_TRACES_SAMPLER` (default `parentbased_always_on`) with its argument; nil for a name
    /// OpenTelemetry does not define or a ratio outside 0…1.
    public init?(name: String?, argument: String?) {
        let ratio: Double?
        if let argument {
            guard let value = Double(argument), value >= 0, value <= 1 else { return nil }
            ratio = value
        } else {
            ratio = nil
        }
        switch name ?? "parentbased_always_on" {
        case "always_on": self = .alwaysOn
        case "always_off": self = .alwaysOff
        case "traceidratio": self = .traceIDRatio(ratio ?? 1)
        case "parentbased_always_on": self = .parentBased(root: .alwaysOn)
        case "parentbased_always_off": self = .parentBased(root: .alwaysOff)
        case "parentbased_traceidratio": self = .parentBased(root: .traceIDRatio(ratio ?? 1))
        default: return nil
        }
    }
}
