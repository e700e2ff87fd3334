/// Makes correlation ids in the UUID text form without a system call per request: a SplitMix64 stream seeded once from
/// the system's random source. Ids need to be unique, not secret. One generator per event loop, used only there.
struct RequestIDGenerator {
    private var state: UInt64

    init() {
        var random = SystemRandomNumberGenerator()
        self.state = random.next()
    }

    private mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A random version-4-shaped UUID in lower case, e.g. `3f2b…-…`.
    mutating func make() -> String {
        let high = next()
        let low = next()
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        return String(unsafeUninitializedCapacity: 36) { buffer in
            var index = 0
            func put(_ value: UInt64, _ nibbles: Int, _ shift: Int) {
                for position in 0..<nibbles {
                    buffer[index] = digits[Int((value >> UInt64(shift - 4 * position)) & 0xF)]
                    index += 1
                }
            }
            put(high, 8, 60)
            buffer[index] = UInt8(ascii: "-"); index += 1
            put(high, 4, 28)
            buffer[index] = UInt8(ascii: "-"); index += 1
            buffer[index] = UInt8(ascii: "4"); index += 1
            put(high, 3, 8)
            buffer[index] = UInt8(ascii: "-"); index += 1
            buffer[index] = digits[Int(8 | (low >> 62))]; index += 1
            put(low, 3, 56)
            buffer[index] = UInt8(ascii: "-"); index += 1
            put(low, 12, 44)
            return index
        }
    }
}
