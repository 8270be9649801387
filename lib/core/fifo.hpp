// A first-in-first-out queue on a std::vector that allocates nothing until the first push.
//
// Each session keeps a few queues (its delivery history, its backlog, its recent QoS 2
// msgids) that stay empty for most idle connections; libstdc++'s std::deque allocates ~600
// bytes at construction, which for 10,000 idle connections is 6 MB for nothing. Popping moves a
// head index; the consumed front is reclaimed when it is half the storage.
//
// Thread safety: none (a plain container).
#pragma once

#include <cstddef>
#include <utility>
#include <vector>

namespace mqttws {

template <class T>
class fifo {
  public:
    bool empty() const { return head_ == items_.size(); }
    std::size_t size() const { return items_.size() - head_; }

    T& front() { return items_[head_]; }
    const T& front() const { return items_[head_]; }

    void push_back(T value) { items_.push_back(std::move(value)); }

    void pop_front() {
        items_[head_] = T{};  // release what it holds now, not at the next compaction
        if (++head_ == items_.size()) {
            items_.clear();
            head_ = 0;
        } else if (head_ * 2 >= items_.size()) {
            items_.erase(items_.begin(), items_.begin() + static_cast<std::ptrdiff_t>(head_));
            head_ = 0;
        }
    }

    auto begin() { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
    auto end() { return items_.end(); }
    auto begin() const { return items_.begin() + static_cast<std::ptrdiff_t>(head_); }
    auto end() const { return items_.end(); }

  private:
    std::vector<T> items_;
    std::size_t head_ = 0;
};

}  // namespace mqttws
