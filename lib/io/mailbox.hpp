// mailbox: the queue of calls from one thread to another's io_context (io_threads.cpp).
//
// Thread safety: push() and push_all() from any thread; the calls run on the io_context's.
#pragma once

#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <functional>
#include <iterator>
#include <mutex>
#include <utility>
#include <vector>

namespace mqttws {

// Calls from one thread to another's io_context. The first push after a drain posts one drain,
// so that a burst of calls costs one wake-up of the receiving thread, and the calls run in the
// order they were pushed.
template <class Item>
class mailbox {
  public:
    mailbox(asio::io_context& to, std::function<void(Item&)> run) : to_(to), run_(std::move(run)) {}

    void push(Item item) {
        bool first = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            first = items_.empty();
            items_.push_back(std::move(item));
        }
        if (first) asio::post(to_, [this] { drain(); });
    }

    // Pushes all of `items` at once (one lock, at most one wake-up) and leaves it empty.
    void push_all(std::vector<Item>& items) {
        if (items.empty()) return;
        bool first = false;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            first = items_.empty();
            if (first) {
                items_.swap(items);
            } else {
                items_.insert(items_.end(), std::make_move_iterator(items.begin()),
                              std::make_move_iterator(items.end()));
            }
        }
        items.clear();
        if (first) asio::post(to_, [this] { drain(); });
    }

  private:
    void drain() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            batch_.swap(items_);
        }
        for (Item& item : batch_)
            run_(item);
        batch_.clear();
    }

    asio::io_context& to_;
    std::function<void(Item&)> run_;
    std::mutex mutex_;
    std::vector<Item> items_;  // pushed, not drained yet
    std::vector<Item> batch_;  // being run (the receiving thread's)
};

}  // namespace mqttws
