/// The in-process level of a cache: entries bounded by count and by bytes, evicted least recently used first, each
/// with its own expiry, and indexed by tag so a tag's entries are found without a scan.
///
/// Not thread-safe (``Cache`` holds it under a lock). The recency list is doubly linked through array slots, so a hit,
/// an insertion and an eviction are O(1) apart from the dictionary lookups.
struct LRUStore<Value: Sendable>: Sendable {
    struct Entry: Sendable {
        var value: Value
        var bytes: Int
        /// Served as it is until then (a time on the cache's clock).
        var freshUntil: Duration
        /// Served while a refresh runs until then (stale-while-revalidate); equal to `freshUntil` without it.
        var staleUntil: Duration
        var tags: [String]
    }

    private struct Node: Sendable {
        var key: String
        var entry: Entry
        var newer = -1
        var older = -1
    }

    let maxEntries: Int
    let maxBytes: Int
    private var nodes: [Node?] = []
    private var free: [Int] = []
    private var slots: [String: Int] = [:]
    private var newest = -1
    private var oldest = -1
    private var tagged: [String: Set<String>] = [:]
    private(set) var bytes = 0

    init(maxEntries: Int, maxBytes: Int) {
        self.maxEntries = max(1, maxEntries)
        self.maxBytes = max(1, maxBytes)
    }

    var count: Int { slots.count }

    /// The entry of `key`, made the most recently used.
    mutating func get(_ key: String) -> Entry? {
        guard let slot = slots[key] else { return nil }
        moveToNewest(slot)
        return nodes[slot]!.entry
    }

    /// Stores `entry` under `key` (replacing what was there) and evicts the least recently used entries until both
    /// bounds hold; answers how many were evicted. An entry larger than the byte bound is not stored.
    @discardableResult
    mutating func set(_ key: String, _ entry: Entry) -> Int {
        remove(key)
        guard entry.bytes <= maxBytes else { return 0 }
        let node = Node(key: key, entry: entry)
        let slot: Int
        if let reused = free.popLast() {
            slot = reused
            nodes[slot] = node
        } else {
            slot = nodes.count
            nodes.append(node)
        }
        slots[key] = slot
        bytes += entry.bytes
        for tag in entry.tags { tagged[tag, default: []].insert(key) }
        link(slot)
        var evicted = 0
        while slots.count > maxEntries || bytes > maxBytes, oldest != -1, oldest != slot {
            remove(nodes[oldest]!.key)
            evicted += 1
        }
        return evicted
    }

    /// Removes `key`; answers whether it was there.
    @discardableResult
    mutating func remove(_ key: String) -> Bool {
        guard let slot = slots.removeValue(forKey: key) else { return false }
        let node = nodes[slot]!
        unlink(slot)
        bytes -= node.entry.bytes
        for tag in node.entry.tags {
            tagged[tag]?.remove(key)
            if tagged[tag]?.isEmpty == true { tagged[tag] = nil }
        }
        nodes[slot] = nil
        free.append(slot)
        return true
    }

    /// Removes every entry carrying `tag`; answers how many.
    mutating func remove(tag: String) -> Int {
        guard let keys = tagged[tag] else { return 0 }
        var removed = 0
        for key in keys where remove(key) { removed += 1 }
        return removed
    }

    /// Removes everything; answers how many entries there were.
    mutating func removeAll() -> Int {
        let count = slots.count
        self = LRUStore(maxEntries: maxEntries, maxBytes: maxBytes)
        return count
    }

    /// Keys from the most to the least recently used (for tests).
    var keysByRecency: [String] {
        var keys: [String] = []
        var slot = newest
        while slot != -1 {
            keys.append(nodes[slot]!.key)
            slot = nodes[slot]!.older
        }
        return keys
    }

    private mutating func link(_ slot: Int) {
        nodes[slot]!.older = newest
        nodes[slot]!.newer = -1
        if newest != -1 { nodes[newest]!.newer = slot }
        newest = slot
        if oldest == -1 { oldest = slot }
    }

    private mutating func unlink(_ slot: Int) {
        let node = nodes[slot]!
        if node.newer != -1 { nodes[node.newer]!.older = node.older } else { newest = node.older }
        if node.older != -1 { nodes[node.older]!.newer = node.newer } else { oldest = node.newer }
    }

    private mutating func moveToNewest(_ slot: Int) {
        guard slot != newest else { return }
        unlink(slot)
        link(slot)
    }
}
