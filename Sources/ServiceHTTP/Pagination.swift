import Hummingbird
import ServiceCore

/// A page request from `?page=&limit=` (page ≥ 1, default 1; limit 1…100, default 10), as the guide's paginate helper.
public struct PageRequest: Sendable, Equatable {
    public var page: Int
    public var limit: Int
    /// Rows to skip.
    public var offset: Int { (page - 1) * limit }

    public init(page: Int = 1, limit: Int = 10) {
        self.page = page
        self.limit = limit
    }

    /// Parses the query of `request`; a non-numeric or out-of-range value is a 400 with details.
    public init(request: Request, maxLimit: Int = 100) throws {
        var errors: [APIError.FieldError] = []
        func read(_ name: String, default value: Int, range: ClosedRange<Int>) -> Int {
            guard let raw = request.uri.queryParameters[name[...]] else { return value }
            guard let number = Int(raw), range.contains(number) else {
                errors.append(.init(field: name, message: "\"\(name)\" must be an integer between \(range.lowerBound) and \(range.upperBound)"))
                return value
            }
            return number
        }
        let page = read("page", default: 1, range: 1...1_000_000)
        let limit = read("limit", default: 10, range: 1...maxLimit)
        guard errors.isEmpty else { throw APIError.validation(errors) }
        self.init(page: page, limit: limit)
    }
}

/// One page of results: `{results, pagination:{page, limit, total, pages}}`.
public struct Paginated<Element: Codable & Sendable>: Codable, Sendable, ResponseEncodable {
    public struct Info: Codable, Sendable, Equatable {
        public var page: Int
        public var limit: Int
        public var total: Int
        public var pages: Int

        public init(page: Int, limit: Int, total: Int, pages: Int) {
            self.page = page
            self.limit = limit
            self.total = total
            self.pages = pages
        }
    }

    public var results: [Element]
    public var pagination: Info

    public init(results: [Element], request: PageRequest, total: Int) {
        self.results = results
        self.pagination = Info(page: request.page, limit: request.limit, total: total, pages: (total + request.limit - 1) / request.limit)
    }
}
