// A first-in-first-out queue in a ring of slots that allocates nothing until the first push.
//
// Each session keeps a few queues (its delivery history, its backlog, its recent QoS 2
// msgids) that stay empty for most idle connections; libstdc++'s std::deque allocates ~600
// bytes at construction, which for 10,000 idle connections is 6 MB for nothing.
//
// A ring rather than a vector that is compacted from time to time: a session's history is a
// queue of constant length (one in, one out per delivery), and a compacted vector held up to
// twice that length and moved all of it every time the consumed half was reclaimed. At 10,000
// subscribers with the default history of 1,000 deliveries that was ~80 KB per session; the ring
// holds exactly the history's length (docs/benchmarks.md, "The engine's cost per delivery").
// The ring doubles when full, up to the length the owner expects to keep (`expected_length`,
// e.g. the history's length) and only past it when it must; it never shrinks, as the vector did
// not. At that length a queue kept full replaces its oldest item in place (`pop_push`).
//
// Thread safety: none (a plain container).
#pragma once

#include <cstddef>
#include <iterator>
#include <utility>
#include <vector>

namespace mqttws {

template <class T>
class fifo {
  public:
    fifo() = default;
    // A queue that will hold at most about `expected_length` items: its ring grows to exactly
    // that many slots (not the next power of two), so that pop_push() touches one slot.
    explicit fifo(std::size_t expected_length) : expected_length_(expected_length) {}

    bool empty() const { return size_ == 0; }
    std::size_t size() const { return size_; }
    std::size_t capacity() const { return slots_.size(); }  // slots allocated
    T& front() { return slots_[head_]; }
    const T& front() const { return slots_[head_]; }
    // The item `index` (less than size()) places after the front.
    T& operator[](std::size_t index) { return slots_[slot(index)]; }
    const T& operator[](std::size_t index) const { return slots_[slot(index)]; }

    void push_back(T value) {
        if (size_ == slots_.size()) grow();
        slots_[slot(size_)] = std::move(value);
        ++size_;
    }
    void pop_front() {
        slots_[head_] = T{};  // release what it holds now, not when the slot is reused
        head_ = slot(1);
        if (--size_ == 0) head_ = 0;
    }

    // pop_front() and push_back(value) in one step (the queue must not be empty); returns the
    // item taken from the front. When every slot is in use, the front's slot becomes the back's:
    // a queue of constant length (a session's history) then touches one slot per item, not two,
    // and with thousands of sessions each of those is a cache miss.
    T pop_push(T value) {
        T oldest = std::move(slots_[head_]);
        if (size_ == slots_.size()) {
            slots_[head_] = std::move(value);
            head_ = slot(1);
        } else {
            slots_[head_] = T{};
            head_ = slot(1);
            slots_[slot(size_ - 1)] = std::move(value);
        }
        return oldest;
    }

    // Where the item `index` (at most size()) places after the front lives, for a caller that
    // prefetches it: index 0 is the front, size() the slot the next push writes. Only an address
    // (the storage's start, maybe null, when nothing is allocated yet): it may hold no item.
    [[gnu::always_inline]] const T* address_of(std::size_t index) const {
        return slots_.data() + slot(index);
    }

    // Oldest first.
    template <class Fifo, class Value>
    class basic_iterator {
      public:
        using iterator_category = std::forward_iterator_tag;
        using value_type = T;
        using difference_type = std::ptrdiff_t;
        using pointer = Value*;
        using reference = Value&;

        basic_iterator(Fifo* queue, std::size_t index) : queue_(queue), index_(index) {}
        reference operator*() const { return queue_->slots_[queue_->slot(index_)]; }
        pointer operator->() const { return &**this; }
        basic_iterator& operator++() {
            ++index_;
            return *this;
        }
        bool operator==(const basic_iterator& other) const { return index_ == other.index_; }
        bool operator!=(const basic_iterator& other) const { return index_ != other.index_; }

      private:
        Fifo* queue_;
        std::size_t index_;  // 0 is the front
    };
    using iterator = basic_iterator<fifo, T>;
    using const_iterator = basic_iterator<const fifo, const T>;

    iterator begin() { return {this, 0}; }
    iterator end() { return {this, size_}; }
    const_iterator begin() const { return {this, 0}; }
    const_iterator end() const { return {this, size_}; }

  private:
    // The slot of the item `index` (at most size_) places after the front.
    std::size_t slot(std::size_t index) const {
        const std::size_t s = head_ + index;
        return s >= slots_.size() ? s - slots_.size() : s;
    }

    // Twice the slots (at first 4), but no more than expected_length_ unless already there; the
    // items moved to the front of them in order.
    void grow() {
        std::size_t more = slots_.empty() ? 4 : 2 * slots_.size();
        if (slots_.size() < expected_length_ && more > expected_length_) more = expected_length_;
        std::vector<T> bigger(more);
        for (std::size_t i = 0; i < size_; ++i)
            bigger[i] = std::move(slots_[slot(i)]);
        slots_.swap(bigger);
        head_ = 0;
    }

    std::vector<T> slots_;
    std::size_t head_ = 0;  // the front's slot
    std::size_t size_ = 0;
    std::size_t expected_length_ = 0;  // 0: no expectation (the ring doubles)
};

}  // namespace mqttws
