// The MQTT 5 subscription identifiers of the filters the bridge holds upstream, and the filter
// each one names: one engine's (upstream_subscriptions) and the hub's between engine shards
// (broker_hub). The broker tags each message with the ids of the subscriptions it matched, so
// that the bridge finds the filters without matching the topic again.
//
// An id runs from 1 to 268,435,455 (MQTT 5, 3.8.2.1.2). They are handed out in order, and after
// the last one the count starts over at 1, skipping those in use. So a bridge whose clients churn
// filters for years does not run out, and an id comes back only after every other id was handed
// out since: long after the broker last tagged a message with it for the filter it named before.
//
// Thread safety: none; its owner's thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>

namespace mqttws {

template <class Filter>
class subscription_ids {
  public:
    static constexpr std::uint32_t mqtt_max = 268435455;
    explicit subscription_ids(std::uint32_t max = mqtt_max) : max_(max) {}

    // A new id for `filter`; 0 (no id) only when all `max` are in use: that many filters held in
    // memory, which no bridge reaches.
    std::uint32_t add(Filter* filter) {
        if (by_id_.size() >= max_) return 0;
        while (by_id_.count(next_) > 0)
            advance();
        const std::uint32_t id = next_;
        by_id_.emplace(id, filter);
        advance();
        return id;
    }
    void erase(std::uint32_t id) { by_id_.erase(id); }
    Filter* find(std::uint32_t id) const {
        const auto it = by_id_.find(id);
        return it == by_id_.end() ? nullptr : it->second;
    }
    std::size_t size() const { return by_id_.size(); }

  private:
    void advance() { next_ = next_ == max_ ? 1 : next_ + 1; }

    const std::uint32_t max_;
    std::uint32_t next_ = 1;
    std::unordered_map<std::uint32_t, Filter*> by_id_;
};

}  // namespace mqttws
