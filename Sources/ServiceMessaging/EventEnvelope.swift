import Foundation
import ServiceCore

/// One event, in CloudEvents 1.0 JSON form, with the partitioning, correlation and tracing extensions.
public struct EventEnvelope: Codable, Sendable, Equatable {
    public var specversion: String
    public var id: String
    public var type: String
    public var source: String
    public var time: String
    public var datacontenttype: String
    /// Events with the same key reach each consumer group in publish order (CloudEvents `partitionkey`).
    public var partitionkey: String
    public var correlationid: String?
    public var traceparent: String?
    public var data: JSONValue

    public init(
        id: String = UUID().uuidString.lowercased(),
        type: String,
        source: String,
        partitionKey: String,
        data: JSONValue,
        time: String = Timestamp.now(),
        correlationID: String? = CorrelationID.current,
        traceparent: String? = TraceContext.traceparent()
    ) {
        self.specversion = "1.0"
        self.id = id
        self.type = type
        self.source = source
        self.time = time
        self.datacontenttype = "application/json"
        self.partitionkey = partitionKey
        self.correlationid = correlationID
        self.traceparent = traceparent
        self.data = data
    }

    /// An event whose data is `payload` encoded as JSON.
    public init(
        type: String,
        source: String,
        partitionKey: String,
        payload: some Encodable,
        correlationID: String? = CorrelationID.current,
        traceparent: String? = TraceContext.traceparent()
    ) throws {
        let data = try JSONDecoder().decode(JSONValue.self, from: JSONEncoder().encode(payload))
        self.init(type: type, source: source, partitionKey: partitionKey, data: data, correlationID: correlationID, traceparent: traceparent)
    }

    /// The data decoded as `T`; a mismatch is a ``MalformedEvent`` (the event goes to the dead-letter queue).
    public func payload<T: Decodable>(as type: T.Type = T.self) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: JSONEncoder().encode(data))
        } catch {
            throw MalformedEvent(reason: "data of \(self.type) does not decode as \(T.self): \(error)")
        }
    }

    /// The data as JSON text, as stored.
    var dataText: String {
        (try? JSONEncoder().encode(data)).map { String(decoding: $0, as: UTF8.self) } ?? "null"
    }
}

/// A failure that no retry can mend (a malformed event, a mail server's permanent refusal): the delivery is
/// dead-lettered at once, with the error's description as the reason.
public protocol PermanentFailure: Error, CustomStringConvertible {}

/// An event that cannot be handled as it is: it is dead-lettered at once, with this reason, never retried.
public struct MalformedEvent: PermanentFailure {
    public var reason: String
    public init(reason: String) { self.reason = reason }
    public var description: String { reason }
}
