// The sessions of the whole bridge that wait for a resume, oldest first, so that
// --max-detached-sessions (engine_config::max_detached_sessions) bounds them as one: past the
// limit the session that has waited longest ends, whichever engine shard holds it
// (engine_shards.hpp). One engine has one of its own.
//
// A session is known by its shard and its key there; they are kept in the order they were
// detached, which is the order their resume windows end (every shard has the same window).
//
// Thread safety: any thread. Engine shards share one; each call takes its lock (a session is
// detached or resumed once per connection, not per message). A session that must end is taken
// out at once, so that two shards over the limit at the same time do not both end the same one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

namespace mqttws {

class detached_sessions {
  public:
    struct entry {
        std::int64_t until_ms = 0;  // the end of its resume window (steady clock)
        std::size_t shard = 0;
        std::uint64_t key = 0;  // its session_key on that shard
    };

    // `limit`: how many may wait at once (0: no limit).
    explicit detached_sessions(std::size_t limit) : limit_(limit) {}

    // `e` was detached. Returns the sessions that must end now (past the limit), oldest first,
    // already taken out: `e` itself, or sessions of any shard.
    std::vector<entry> detached(const entry& e) {
        std::vector<entry> over;
        std::lock_guard<std::mutex> hold(lock_);
        const std::uint64_t n = next_++;
        by_session_[{e.shard, e.key}] = n;
        oldest_first_.emplace(n, e);
        while (limit_ != 0 && oldest_first_.size() > limit_) {
            const entry oldest = oldest_first_.begin()->second;
            oldest_first_.erase(oldest_first_.begin());
            by_session_.erase({oldest.shard, oldest.key});
            over.push_back(oldest);
        }
        return over;
    }
    // Session `key` of `shard` resumed or ended (nothing happens when it was taken out already).
    void gone(std::size_t shard, std::uint64_t key) {
        std::lock_guard<std::mutex> hold(lock_);
        const auto it = by_session_.find({shard, key});
        if (it == by_session_.end()) return;
        oldest_first_.erase(it->second);
        by_session_.erase(it);
    }

  private:
    const std::size_t limit_;
    std::mutex lock_;
    std::uint64_t next_ = 0;
    std::map<std::uint64_t, entry> oldest_first_;  // by the order they were detached
    std::map<std::pair<std::size_t, std::uint64_t>, std::uint64_t> by_session_;  // → that order
};

}  // namespace mqttws
