import Foundation
import ServiceCore
import ServiceHTTP
import Testing

@Suite struct ValidationTests {
    func parse(_ text: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    struct Person: Equatable {
        var email: String
        var age: Int
    }

    func readPerson(_ text: String) throws -> Person {
        try Validation.validate(try parse(text)) { body -> Person? in
            body.allowOnly(["email", "age"])
            let email = body.string("email", rule: Rules.email)
            let age = body.integer("age", in: 0...150)
            guard let email, let age else { return nil }
            return Person(email: email, age: age)
        }
    }

    func fields(of error: any Error) -> [String] {
        (error as? APIError)?.details?.map(\.field) ?? []
    }

    @Test func acceptsAValidBodyAndTrimsStrings() throws {
        #expect(try readPerson(#"{"email":"  a@example.com ","age":30}"#) == Person(email: "a@example.com", age: 30))
    }

    @Test func reportsEveryBadFieldAtOnce() throws {
        let error = #expect(throws: APIError.self) { try readPerson(#"{"email":"nope","age":-1,"extra":true}"#) }
        #expect(error?.status == .badRequest)
        #expect(error?.message == "Validation failed")
        #expect(Set(fields(of: error!)) == ["email", "age", "extra"])
    }

    @Test func reportsMissingFieldsAndWrongTypes() throws {
        let error = #expect(throws: APIError.self) { try readPerson(#"{"age":"thirty"}"#) }
        let details = error?.details ?? []
        #expect(details.contains(.init(field: "email", message: "\"email\" is required")))
        #expect(details.contains(.init(field: "age", message: "\"age\" must be an integer")))
    }

    @Test func refusesANonObjectBody() throws {
        #expect(throws: APIError.self) { try readPerson("[1,2]") }
        #expect(throws: APIError.self) { try readPerson("null") }
    }

    @Test func nestedPathsAreDotted() throws {
        let body = try parse(#"{"items":[{"q":1},{"q":0},"x"]}"#)
        let error = #expect(throws: APIError.self) {
            _ = try Validation.validate(body) { body -> [Int]? in
                body.objects("items", count: 1...5)?.compactMap { $0.integer("q", in: 1...10) }
            }
        }
        #expect(Set(fields(of: error!)) == ["items.1.q", "items.2"])
    }

    @Test func numbersCheckSignAndDecimals() throws {
        func price(_ text: String) throws -> Double {
            try Validation.validate(try parse(text)) { $0.number("price", positive: true, maxFractionDigits: 2) }
        }
        #expect(try price(#"{"price":29.99}"#) == 29.99)
        #expect(throws: APIError.self) { try price(#"{"price":0}"#) }
        #expect(throws: APIError.self) { try price(#"{"price":1.005}"#) }
        #expect(throws: APIError.self) { try price(#"{"price":"29.99"}"#) }
        #expect(throws: APIError.self) { try price(#"{"price":true}"#) }
    }

    @Test(arguments: ["a@example.com", "first.last+tag@sub.example.co.uk", "x_y@host-name.io"])
    func validEmails(_ email: String) {
        #expect(Rules.email(email) == nil)
    }

    @Test(arguments: ["plain", "a@b", "a@@b.com", "@b.com", "a@b.c", "a@-b.com", "a b@c.com", "a..b@c.com", "a@b..com", "a@b.c0m"])
    func invalidEmails(_ email: String) {
        #expect(Rules.email(email) != nil)
    }

    @Test func passwordRuleFollowsTheGuide() {
        #expect(Rules.strongPassword("Secret123") == nil)
        #expect(Rules.strongPassword("secret123") != nil)
        #expect(Rules.strongPassword("SECRET123") != nil)
        #expect(Rules.strongPassword("SecretABC") != nil)
    }

    @Test func phoneRuleFollowsTheGuide() {
        #expect(Rules.phone("+1 (555) 123-4567") == nil)
        #expect(Rules.phone("555x") != nil)
        #expect(Rules.phone("+") != nil)
    }
}

/// What Foundation's JSON parser would let through silently.
@Suite struct JSONShapeTests {
    @Test func duplicateKeysAreFoundHoweverTheyAreWritten() {
        #expect(JSONShape.problem(in: Array(#"{"a":1,"b":2}"#.utf8)) == nil)
        #expect(JSONShape.problem(in: Array(#"{"a":1,"a":2}"#.utf8)) == .duplicateKey("a"))
        #expect(JSONShape.problem(in: Array(#"{"a":1,"\u0061":2}"#.utf8)) == .duplicateKey("a"))
        #expect(JSONShape.problem(in: Array(#"{"x":{"a":1},"y":{"a":1}}"#.utf8)) == nil, "the same key in two objects is fine")
        #expect(JSONShape.problem(in: Array(#"{"x":[{"a":1,"a":2}]}"#.utf8)) == .duplicateKey("a"))
        #expect(JSONShape.problem(in: Array(#"{"a":"{\"a\":1,","b":"a"}"#.utf8)) == nil, "braces and quotes inside strings are text")
        #expect(JSONShape.problem(in: Array(#"["a","a"]"#.utf8)) == nil, "array elements are not keys")
    }

    @Test func nestingIsBounded() {
        let deep = String(repeating: "[", count: 33) + String(repeating: "]", count: 33)
        let fine = String(repeating: "[", count: 32) + String(repeating: "]", count: 32)
        #expect(JSONShape.problem(in: Array(deep.utf8)) == .tooDeep(limit: 32))
        #expect(JSONShape.problem(in: Array(fine.utf8)) == nil)
        // A huge nesting is refused at the limit, without reading (or recursing through) the rest.
        #expect(JSONShape.problem(in: Array((String(repeating: #"{"a":"#, count: 100_000)).utf8)) == .tooDeep(limit: 32))
    }
}

extension JSONShapeTests {
    @Test func aCommaBeforeAClosingBracketIsFound() {
        #expect(JSONShape.problem(in: Array(#"{"a":1,}"#.utf8)) == .trailingComma)
        #expect(JSONShape.problem(in: Array(#"[1,2,]"#.utf8)) == .trailingComma)
        #expect(JSONShape.problem(in: Array("{\"a\":[1 ,\n\t ]}".utf8)) == .trailingComma)
        #expect(JSONShape.problem(in: Array(#"{"a":{"b":1,},"c":2}"#.utf8)) == .trailingComma)
        // Commas inside strings, escaped quotes included, are text.
        #expect(JSONShape.problem(in: Array(#"{"a":"x,}","b":"\",]"}"#.utf8)) == nil)
        #expect(JSONShape.problem(in: Array(#"{"a":[1,2],"b":{"c":","}}"#.utf8)) == nil)
        #expect(JSONShape.problem(in: Array(#"[]"#.utf8)) == nil)
    }

    @Test func canonicallyEquivalentKeysAreOneKey() {
        // "é" precomposed and as "e" + combining accent: one key to a Swift dictionary, so a duplicate here.
        #expect(JSONShape.problem(in: Array("{\"caf\u{E9}\":1,\"cafe\u{301}\":2}".utf8)) == .duplicateKey("café"))
    }
}
