// A hash map from non-zero 64-bit ids (connection ids) to values, kept in one flat array.
//
// The app's thread looks up a connection's byte counts for every frame it hands to an I/O
// thread (io_threads.cpp), and with 1,000 subscribers of one stream that is 1,000 lookups per
// message. std::unordered_map keeps each entry in a node of its own, so each lookup was two
// dependent cache misses (bucket, then node): 12 % of the engine thread's time in an S1 profile
// (docs/benchmarks.md). Here an entry sits in the array itself (open addressing, linear
// probing), and the array is at most 3/4 full; erasing shifts the entries after it back
// (no tombstones), so a table that has seen millions of connections come and go is as fast as a
// new one.
//
// Pointers from find() and insert() stay valid until the next insert() or erase().
//
// Thread safety: none (a plain container).
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

namespace mqttws {

template <class V>
class id_map {
  public:
    std::size_t size() const { return size_; }
    bool empty() const { return size_ == 0; }
    std::size_t capacity() const { return slots_.size(); }

    V* find(std::uint64_t id) {
        const std::size_t i = place_of(id);
        return i == none ? nullptr : &slots_[i].value;
    }
    const V* find(std::uint64_t id) const {
        const std::size_t i = place_of(id);
        return i == none ? nullptr : &slots_[i].value;
    }

    // Asks for the cache line of `id`'s home slot, for a find() soon after (io_threads, a few
    // sends ahead). Inlined by force: GCC drops calls to a function that only prefetches.
    [[gnu::always_inline]] void prefetch(std::uint64_t id) const {
        if (!slots_.empty()) __builtin_prefetch(&slots_[home(id)]);
    }

    // Adds `id` (non-zero) with `value`, or replaces the value of an `id` already there.
    V& insert(std::uint64_t id, V value) {
        if (V* there = find(id)) return *there = std::move(value);
        if (4 * (size_ + 1) > 3 * slots_.size()) grow();
        std::size_t i = home(id);
        while (slots_[i].id != 0)
            i = next(i);
        slots_[i].id = id;
        slots_[i].value = std::move(value);
        ++size_;
        return slots_[i].value;
    }

    // Removes `id`; false when it was not there.
    bool erase(std::uint64_t id) {
        std::size_t hole = place_of(id);
        if (hole == none) return false;
        // Move back each later entry of the run that the hole would cut off from its home.
        for (std::size_t i = next(hole); slots_[i].id != 0; i = next(i)) {
            const std::size_t want = home(slots_[i].id);
            const bool home_after_hole =
                hole < i ? (want > hole && want <= i) : (want > hole || want <= i);
            if (home_after_hole) continue;
            slots_[hole] = std::move(slots_[i]);
            hole = i;
        }
        slots_[hole] = slot{};
        --size_;
        return true;
    }

    // Calls f(id, value) for each entry, in no particular order.
    template <class F>
    void for_each(F f) const {
        for (const slot& s : slots_)
            if (s.id != 0) f(s.id, s.value);
    }

  private:
    struct slot {
        std::uint64_t id = 0;  // 0: empty
        V value{};
    };

    static constexpr std::size_t none = static_cast<std::size_t>(-1);

    // The slot holding `id`, or `none`.
    std::size_t place_of(std::uint64_t id) const {
        if (slots_.empty()) return none;
        for (std::size_t i = home(id);; i = next(i)) {
            if (slots_[i].id == id) return i;
            if (slots_[i].id == 0) return none;
        }
    }

    // Fibonacci hashing: consecutive ids (and ids a stride apart) land far apart.
    std::size_t home(std::uint64_t id) const {
        return static_cast<std::size_t>((id * 0x9E3779B97F4A7C15ull) >> shift_);
    }
    std::size_t next(std::size_t i) const { return (i + 1) & (slots_.size() - 1); }

    void grow() {
        std::vector<slot> old(slots_.empty() ? 16 : 2 * slots_.size());
        old.swap(slots_);
        shift_ = 64;
        for (std::size_t n = slots_.size(); n > 1; n /= 2)
            --shift_;
        size_ = 0;
        for (slot& s : old)
            if (s.id != 0) insert(s.id, std::move(s.value));
    }

    std::vector<slot> slots_;  // a power of two in size (or none yet)
    unsigned shift_ = 64;      // 64 - log2(slots_.size())
    std::size_t size_ = 0;
};

}  // namespace mqttws
