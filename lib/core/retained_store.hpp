// The broker's retained messages for the topics under the filters the bridge holds, so that a
// client joining a filter the bridge already holds gets the current retained messages without
// a second SUBSCRIBE (which would replay them to every existing subscriber as well).
//
// It is exact only with MQTT v5 and retain-as-published: then every message that changes the
// broker's retained store reaches the bridge with its retain flag set, and an empty retained
// payload deletes. With MQTT 3.1.1 the broker clears the flag on live messages, so the engine
// does not use this store (see engine.hpp). Bounded by bytes: past the bound new topics are not
// stored and `overflowed()` says so (late joiners then miss those; logged and counted).
//
// Thread safety: none; owned by the engine's thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/topic_trie.hpp"

namespace mqttws {

struct retained_message {
    std::string topic;
    std::string payload;
    std::uint8_t qos = 0;
};

class retained_store {
  public:
    explicit retained_store(std::size_t max_bytes) : max_bytes_(max_bytes) {}

    // Stores the retained message for `topic`; an empty payload deletes it (MQTT semantics).
    void put(std::string_view topic, std::string_view payload, std::uint8_t qos) {
        if (payload.empty()) {
            if (retained_message* old = trie_.find(topic)) {
                bytes_ -= cost(*old);
                trie_.erase(topic);
            }
            return;
        }
        retained_message* slot = trie_.find(topic);
        const std::size_t added = topic.size() + payload.size();
        const std::size_t removed = slot != nullptr ? cost(*slot) : 0;
        if (bytes_ - removed + added > max_bytes_) {
            overflowed_ = true;
            if (slot != nullptr) {  // keep nothing stale
                bytes_ -= removed;
                trie_.erase(topic);
            }
            return;
        }
        if (slot == nullptr) {
            slot = &trie_.get_or_create(topic);
            slot->topic = std::string(topic);
        }
        bytes_ = bytes_ - removed + added;
        slot->payload = std::string(payload);
        slot->qos = qos;
    }

    // visit(const retained_message&) for every stored topic that `filter` matches.
    template <class Visit>
    void for_each_matching(std::string_view filter, Visit&& visit) {
        trie_.match_names(
            filter, [&](retained_message& m) { visit(static_cast<const retained_message&>(m)); });
    }

    // After the last subscriber of `filter` left: drops the topics under it for which
    // `still_held(topic)` is false (no other held filter keeps them up to date).
    template <class StillHeld>
    void evict_under(std::string_view filter, StillHeld&& still_held) {
        std::vector<std::string> doomed;
        trie_.match_names(filter, [&](retained_message& m) {
            if (!still_held(m.topic)) doomed.push_back(m.topic);
        });
        for (const auto& t : doomed)
            put(t, {}, 0);
    }

    void clear() {
        trie_ = {};
        bytes_ = 0;
        overflowed_ = false;
    }

    std::size_t bytes() const { return bytes_; }
    std::size_t size() const { return trie_.size(); }
    bool overflowed() const { return overflowed_; }

  private:
    static std::size_t cost(const retained_message& m) { return m.topic.size() + m.payload.size(); }

    topic_trie<retained_message> trie_;
    std::size_t bytes_ = 0;
    std::size_t max_bytes_;
    bool overflowed_ = false;
};

}  // namespace mqttws
