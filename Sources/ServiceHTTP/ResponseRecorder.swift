import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import ServiceCore

/// Records every answered request as one JSON line (service, method, route pattern, status, content type, headers,
/// body) in the file named by `SHOP_RECORD_RESPONSES` (``ContractRecording``). The test script sets it for the test
/// run, then checks each line against the service's OpenAPI document (`scripts/contracts.py responses`): what the tests
/// made the services answer is what the documents say they answer. Without the variable the middleware is not added.
public struct ResponseRecorder: Sendable {
    /// The recorder `SHOP_RECORD_RESPONSES` asks for.
    public static let fromEnvironment: ResponseRecorder? = ContractRecording.responses.map(ResponseRecorder.init)

    let file: ContractRecording

    func record(service: String, method: String, route: String?, status: Int, headers: HTTPFields, body: ByteBuffer) {
        var fields: [String: JSONValue] = [:]
        for field in headers { fields[field.name.canonicalName] = .string(field.value) }
        let entry: JSONValue = .object([
            "service": .string(service),
            "method": .string(method),
            "route": route.map { .string($0) } ?? .null,
            "status": .integer(status),
            "contentType": headers[.contentType].map { .string($0) } ?? .null,
            "headers": .object(fields),
            "body": .string(String(decoding: body.readableBytesView, as: UTF8.self)),
        ])
        guard let line = try? JSONSerialization.data(withJSONObject: entry.foundationObject, options: [.sortedKeys]) else { return }
        file.append(line)
    }
}

/// Hands each response, once its body is written, to a ``ResponseRecorder``.
struct ResponseRecorderMiddleware: RouterMiddleware {
    typealias Context = ServiceRequestContext
    let service: String
    let recorder: ResponseRecorder

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        let (service, recorder, method, route) = (service, recorder, request.method.rawValue, context.endpointPath)
        let (status, headers, body) = (Int(response.status.code), response.headers, response.body)
        response.body = ResponseBody(contentLength: body.contentLength) { writer in
            try await body.write(
                RecordingWriter(inner: writer) { written in
                    recorder.record(service: service, method: method, route: route, status: status, headers: headers, body: written)
                })
        }
        return response
    }
}

/// Passes a body on, keeping a copy, and hands the copy over when the body is finished.
struct RecordingWriter: ResponseBodyWriter {
    var inner: any ResponseBodyWriter
    var written = ByteBuffer()
    let finished: @Sendable (ByteBuffer) -> Void

    init(inner: any ResponseBodyWriter, finished: @escaping @Sendable (ByteBuffer) -> Void) {
        self.inner = inner
        self.finished = finished
    }

    mutating func write(_ buffer: ByteBuffer) async throws {
        written.writeImmutableBuffer(buffer)
        try await inner.write(buffer)
    }

    consuming func finish(_ trailingHeaders: HTTPFields?) async throws {
        finished(written)
        try await inner.finish(trailingHeaders)
    }
}
